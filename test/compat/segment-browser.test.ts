// @segment/analytics-next (the browser library, its standalone UMD build) in a real headless Chromium, pointed at
// Candor. The page and the library are served from 127.0.0.1; nothing is fetched from Segment's CDN or API.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { useListeningCandor } from '../support/listening.ts';
import { resultsOf } from './answers.ts';
import { CONSENT_METHOD, checkBatchOfThree, checkGpcHonoured, checkResentOnce, checkShopperStored, failFirst, skipWithoutChromium, useBrowser, waitFor, type Site } from './browser.ts';

const TIMEOUT = 60_000;
const BUNDLES = join(import.meta.dirname, '..', '..', 'node_modules', '@segment', 'analytics-next', 'dist', 'umd');

// The shop page: loads the library from this server, as a site that self-hosts analytics.js would.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Candor compat shop</title>
<script src="/analytics-next/bundles/index.js"></script>
<script>
window.shop = {
  async load({ writeKey, apiHost, cdnURL, batching }) {
    const segmentio = { apiKey: writeKey, apiHost, protocol: 'http' };
    if (batching) segmentio.deliveryStrategy = { strategy: 'batching', config: { size: 50, timeout: 300 } };
    // Settings given inline: no settings request to the CDN; remote metrics off (they would go to api.segment.io).
    window.analytics = window.AnalyticsNext.AnalyticsBrowser.load({ writeKey, cdnURL, cdnSettings: { integrations: { 'Segment.io': segmentio }, metrics: { sampleRate: 0 } } });
    const [instance] = await window.analytics;
    return instance.user().anonymousId();
  },
${CONSENT_METHOD}
};
</script></head><body><h1>Shop</h1></body></html>`;

/** The page and the library's UMD bundles (the library's own files, unchanged). */
function site(): Site {
  const bundles = new Set(readdirSync(BUNDLES).filter((f) => f.endsWith('.js')));
  return {
    page: PAGE,
    file(path) {
      const bundle = path.startsWith('/analytics-next/bundles/') ? path.slice('/analytics-next/bundles/'.length) : undefined;
      return bundle && bundles.has(bundle) ? { type: 'text/javascript; charset=utf-8', body: readFileSync(join(BUNDLES, bundle)) } : undefined;
    },
  };
}

interface Shop {
  load(config: { writeKey: string; apiHost: string; cdnURL: string; batching: boolean }): Promise<string>;
  consent(config: { candorUrl: string; writeKey: string; anonymousId: string; purposes: Record<string, string> }): Promise<{ status: number; body: Record<string, unknown> }>;
}
/** The analytics-next calls the tests make (a subset of its API, as the page sees it). */
interface BrowserAnalytics {
  identify(userId: string, traits: Record<string, unknown>): Promise<unknown>;
  track(event: string, properties: Record<string, unknown>): Promise<unknown>;
  page(): Promise<unknown>;
  screen(name: string): Promise<unknown>;
  group(groupId: string, traits: Record<string, unknown>): Promise<unknown>;
  alias(to: string, from: string): Promise<unknown>;
}
// Functions passed to page.evaluate run in the page, so they reach these through globalThis (no closures).
type PageGlobals = { shop: Shop; analytics: BrowserAnalytics };

describe('compat: @segment/analytics-next in headless Chromium [sqlite]', { skip: skipWithoutChromium, timeout: 4 * TIMEOUT }, () => {
  const candor = useListeningCandor('sqlite', 'web-shop');
  const browser = useBrowser(site());
  const open = (headers?: Record<string, string>) => browser.open(headers);

  const loadConfig = (batching: boolean, port = candor.port) => ({ writeKey: candor.writeKey, apiHost: `127.0.0.1:${port}/v1`, cdnURL: browser.siteUrl, batching });
  const consentIn = (page: Page, anonymousId: string, purposes: Record<string, string>) =>
    page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.consent(config), [{ candorUrl: candor.url, writeKey: candor.writeKey, anonymousId, purposes }] as const);

  it('delivers identify, track, page, screen, group and alias one call per request (Segment short paths), all stored', { timeout: TIMEOUT }, async () => {
    const opened = await open();
    const { context, page, answers, problems } = opened;
    try {
      const anonymousId = await page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.load(config), [loadConfig(false)] as const);
      assert.ok(anonymousId);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));

      await page.evaluate(async () => {
        const analytics = (globalThis as unknown as PageGlobals).analytics;
        await analytics.identify('browser-user-1', { email: 'margaret@hamilton.dev', first_name: 'Margaret', country: 'US', lunar_module: 'Eagle' });
        await analytics.track('Product Viewed', { product_id: 'p-7', name: 'Guidance computer', price: 1969, currency: 'USD' });
        await analytics.track('Order Completed', { order_id: 'o-11', total: 1969, currency: 'USD', products: [{ product_id: 'p-7', price: 1969, quantity: 1 }] });
        await analytics.page();
        await analytics.screen('Checkout');
        await analytics.group('g-mit', { name: 'MIT Instrumentation Lab', employees: 400 });
        await analytics.alias('browser-user-1', 'browser-old-anon');
      });
      await waitFor('seven answers from Candor', () => answers.length >= 7, () => ({ answers, problems }));

      // One request per call, to its short path. The library does not wait for an answer before it sends the next
      // call, and group commit may answer two requests in flight in either order: the answers' order is not the calls'.
      const pathOf = (a: (typeof answers)[number]) => new URL(a.url).pathname;
      assert.deepEqual(answers.map(pathOf).sort(), ['/v1/a', '/v1/g', '/v1/i', '/v1/p', '/v1/s', '/v1/t', '/v1/t']);
      for (const answer of answers) {
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.results?.length, 1, 'one result per event');
        assert.equal(answer.body.results?.[0]?.status, 'stored', JSON.stringify(answer.body));
      }
      assert.ok(resultsOf(answers.filter((a) => pathOf(a) === '/v1/i'))[0]?.dropped?.includes('traits.lunar_module'));

      const profileId = await candor.profileOf('user_id', 'browser-user-1');
      assert.ok(profileId);
      assert.equal(await candor.profileOf('anonymous_id', anonymousId), profileId, 'identify linked the visitor to the user');
      assert.equal(await candor.profileOf('anonymous_id', 'browser-old-anon'), profileId, 'alias linked the old id');
      const pageView = (await candor.eventsOf(profileId)).find((e) => e.kind === 'page');
      assert.equal((pageView?.data as { properties?: { title?: string } }).properties?.title, 'Candor compat shop');
      await checkShopperStored(candor, opened, profileId, { kinds: ['alias', 'group', 'identify', 'page', 'screen', 'track', 'track'], pageUrl: `${browser.siteUrl}/`, email: 'margaret@hamilton.dev', firstName: 'Margaret' });
    } finally {
      await context.close();
    }
  });

  it('delivers a batch to /v1/b with the batching strategy, one result per event', { timeout: TIMEOUT }, async () => {
    const opened = await open();
    const { context, page } = opened;
    try {
      const anonymousId = await page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.load(config), [loadConfig(true)] as const);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      await page.evaluate(async () => {
        const analytics = (globalThis as unknown as PageGlobals).analytics;
        await analytics.page();
        await analytics.track('Product Viewed', { product_id: 'p-8', price: 10 });
        await analytics.track('Product Added', { product_id: 'p-8', quantity: 2 });
      });
      await checkBatchOfThree(candor, opened, anonymousId, '/v1/b');
    } finally {
      await context.close();
    }
  });

  it('resends an event after a server error (its X-Retry-Count header passes the CORS preflight): the lost answer was to a stored event, so the resend is answered duplicate and stored once', { timeout: TIMEOUT }, async () => {
    const flaky = await failFirst(candor.url, '/v1/t', 'x-retry-count');
    const opened = await open();
    const { context, page } = opened;
    try {
      const anonymousId = await page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.load(config), [loadConfig(false, flaky.port)] as const);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      await page.evaluate(async () => {
        await (globalThis as unknown as PageGlobals).analytics.track('Product Viewed', { product_id: 'p-retry' });
      });
      await checkResentOnce(candor, opened, anonymousId, flaky);
    } finally {
      await context.close();
      await flaky.close();
    }
  });

  it('honours Sec-GPC: 1 from the browser: consent answer and event answers say so, targeted advertising is refused', { timeout: TIMEOUT }, async () => {
    const opened = await open({ 'Sec-GPC': '1' });
    const { context, page } = opened;
    try {
      const anonymousId = await page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.load(config), [loadConfig(false)] as const);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      assert.equal(consent.body.gpcHonoured, true);
      await page.evaluate(async () => {
        await (globalThis as unknown as PageGlobals).analytics.track('Product Viewed', { product_id: 'p-9' });
      });
      await checkGpcHonoured(candor, opened, anonymousId);
    } finally {
      await context.close();
    }
  });
});
