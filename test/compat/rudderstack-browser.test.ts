// @rudderstack/analytics-js (RudderStack's browser SDK v3, its self-contained "bundled" build, unchanged) in a real
// headless Chromium, pointed at Candor as its data plane. The page and the SDK are served from 127.0.0.1; the source
// configuration is given inline, so nothing is fetched from RudderStack's control plane or CDN.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { useListeningCandor } from '../support/listening.ts';
import { resultsOf } from './answers.ts';
import { CONSENT_METHOD, checkBatchOfThree, checkGpcHonoured, checkResentOnce, checkShopperStored, failFirst, skipWithoutChromium, useBrowser, waitFor } from './browser.ts';

const TIMEOUT = 60_000;
// The ES module build (import.meta.resolve takes the package's `import` condition).
const SDK = fileURLToPath(import.meta.resolve('@rudderstack/analytics-js/bundled'));

// The shop page: imports the SDK from this server, as a site that self-hosts it would.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Candor RudderStack shop</title>
<script type="module">
import { RudderAnalytics } from '/rudderstack/analytics.mjs';
window.shop = {
  load({ writeKey, dataPlaneUrl, batching, consentManagement }) {
    const analytics = new RudderAnalytics();
    window.rudderanalytics = analytics;
    return new Promise((resolve) => {
      analytics.load(writeKey, dataPlaneUrl, {
        // The source configuration inline (no request to the control plane), with no device-mode destinations.
        getSourceConfig: () => ({ source: { id: 'candor-shop', name: 'Candor shop', enabled: true, workspaceId: 'candor', config: {}, destinations: [] } }),
        polyfillIfRequired: false,
        logLevel: 'ERROR',
        ...(batching ? { queueOptions: { batch: { enabled: true, maxItems: 3, flushInterval: 300 } } } : {}),
        // Retries come quickly in the test.
        ...(batching ? {} : { queueOptions: { minRetryDelay: 100, maxRetryDelay: 500 } }),
        ...(consentManagement ? { consentManagement } : {}),
      });
      analytics.ready(() => resolve(analytics.getAnonymousId()));
    });
  },
${CONSENT_METHOD}
};
</script></head><body><h1>Shop</h1></body></html>`;

interface Shop {
  load(config: { writeKey: string; dataPlaneUrl: string; batching: boolean; consentManagement?: Record<string, unknown> }): Promise<string>;
  consent(config: { candorUrl: string; writeKey: string; anonymousId: string; purposes: Record<string, string> }): Promise<{ status: number; body: Record<string, unknown> }>;
}
/** The SDK calls the tests make (a subset of its API, as the page sees it). */
interface BrowserAnalytics {
  identify(userId: string, traits: Record<string, unknown>): void;
  track(event: string, properties: Record<string, unknown>): void;
  page(category?: string, name?: string): void;
  group(groupId: string, traits: Record<string, unknown>): void;
  alias(to: string, from: string): void;
}
// Functions passed to page.evaluate run in the page, so they reach these through globalThis (no closures).
type PageGlobals = { shop: Shop; rudderanalytics: BrowserAnalytics };

describe('compat: @rudderstack/analytics-js in headless Chromium [sqlite]', { skip: skipWithoutChromium, timeout: 4 * TIMEOUT }, () => {
  const candor = useListeningCandor('sqlite', 'web-shop');
  const browser = useBrowser({
    page: PAGE,
    file: (path) => (path === '/rudderstack/analytics.mjs' ? { type: 'text/javascript; charset=utf-8', body: readFileSync(SDK) } : undefined),
  });

  const loadIn = async (page: Page, batching: boolean, port = candor.port, consentManagement?: Record<string, unknown>) => {
    // The page's module script runs after the SDK module has been fetched.
    await page.waitForFunction(() => (globalThis as unknown as Partial<PageGlobals>).shop !== undefined);
    return page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.load(config), [{ writeKey: candor.writeKey, dataPlaneUrl: `http://127.0.0.1:${port}`, batching, consentManagement }] as const);
  };
  const consentIn = (page: Page, anonymousId: string, purposes: Record<string, string>) =>
    page.evaluate(([config]) => (globalThis as unknown as PageGlobals).shop.consent(config), [{ candorUrl: candor.url, writeKey: candor.writeKey, anonymousId, purposes }] as const);

  it('delivers identify, track, page, group and alias one call per request (Basic auth, JSON), all stored', { timeout: TIMEOUT }, async () => {
    const opened = await browser.open();
    const { context, page, answers, problems } = opened;
    try {
      const anonymousId = await loadIn(page, false);
      assert.ok(anonymousId);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));

      // One call at a time: the SDK sends each from its queue, in order.
      const send = (n: number) => waitFor(`${n} answers from Candor`, () => answers.length >= n, () => ({ answers, problems }));
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.identify('rs-browser-user-1', { email: 'grace@hopper.dev', first_name: 'Grace', country: 'US', compiler: 'A-0' }));
      await send(1);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.track('Product Viewed', { product_id: 'p-7', name: 'UNIVAC manual', price: 1952, currency: 'USD' }));
      await send(2);
      await page.evaluate(() =>
        (globalThis as unknown as PageGlobals).rudderanalytics.track('Order Completed', { order_id: 'o-12', total: 1952, currency: 'USD', products: [{ product_id: 'p-7', price: 1952, quantity: 1 }] }),
      );
      await send(3);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.page());
      await send(4);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.group('g-navy', { name: 'US Navy', employees: 1000 }));
      await send(5);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.alias('rs-browser-user-1', 'rs-browser-old-anon'));
      await send(6);

      assert.deepEqual(
        answers.map((a) => new URL(a.url).pathname),
        ['/v1/identify', '/v1/track', '/v1/track', '/v1/page', '/v1/group', '/v1/alias'],
      );
      for (const answer of answers) {
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.results?.length, 1, 'one result per event');
        assert.equal(answer.body.results?.[0]?.status, 'stored', JSON.stringify(answer.body));
      }
      assert.ok(resultsOf(answers)[0]?.dropped?.includes('traits.compiler'), JSON.stringify(resultsOf(answers)[0]));

      const profileId = await candor.profileOf('user_id', 'rs-browser-user-1');
      assert.ok(profileId);
      assert.equal(await candor.profileOf('anonymous_id', anonymousId), profileId, 'identify linked the visitor to the user');
      await checkShopperStored(candor, opened, profileId, { kinds: ['alias', 'group', 'identify', 'page', 'track', 'track'], pageUrl: `${browser.siteUrl}/`, email: 'grace@hopper.dev', firstName: 'Grace' });
    } finally {
      await context.close();
    }
  });

  it('delivers a batch to /v1/batch with batching on, one result per event', { timeout: TIMEOUT }, async () => {
    const opened = await browser.open();
    const { context, page } = opened;
    try {
      const anonymousId = await loadIn(page, true);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      await page.evaluate(() => {
        const analytics = (globalThis as unknown as PageGlobals).rudderanalytics;
        analytics.page();
        analytics.track('Product Viewed', { product_id: 'p-8', price: 10 });
        analytics.track('Product Added', { product_id: 'p-8', quantity: 2 });
      });
      await checkBatchOfThree(candor, opened, anonymousId, '/v1/batch');
    } finally {
      await context.close();
    }
  });

  it('resends an event after a server error (its Rsa-Retry-Attempt header passes the CORS preflight): the lost answer was to a stored event, so the resend is answered duplicate and stored once', { timeout: TIMEOUT }, async () => {
    const flaky = await failFirst(candor.url, '/v1/track', 'rsa-retry-attempt');
    const opened = await browser.open();
    const { context, page } = opened;
    try {
      const anonymousId = await loadIn(page, false, flaky.port);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.track('Product Viewed', { product_id: 'p-retry' }));
      await checkResentOnce(candor, opened, anonymousId, flaky);
    } finally {
      await context.close();
      await flaky.close();
    }
  });

  it('takes a purpose the visitor denied in its consent manager away from every event it sends, and stores nothing of the signal', { timeout: TIMEOUT }, async () => {
    const opened = await browser.open();
    const { context, page, answers, problems } = opened;
    try {
      // The custom provider: the site tells the SDK the visitor's choices, by Candor's purpose keys.
      const consentManagement = { enabled: true, provider: 'custom', allowedConsentIds: ['analytics.reporting'], deniedConsentIds: ['personalize.profiling'] };
      const anonymousId = await loadIn(page, false, candor.port, consentManagement);
      // Consent on record for both purposes: the denial on the events still takes profiling away from them.
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.track('Product Viewed', { product_id: 'p-cm' }));
      await waitFor('the track answer', () => answers.length >= 1, () => ({ answers, problems }));
      const [result] = resultsOf(answers);
      assert.deepEqual([result?.status, result?.purposes], ['stored', ['analytics.reporting']], JSON.stringify(answers));
      assert.ok(!result?.dropped?.some((path) => path.startsWith('context.consentManagement')), JSON.stringify(result));
      const profileId = await candor.profileOf('anonymous_id', anonymousId);
      assert.ok(profileId);
      const events = await candor.eventsOf(profileId);
      assert.deepEqual(events.map((e) => e.purposes), [['analytics.reporting']]);
      assert.ok(!JSON.stringify(events).includes('consentManagement'));
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  it('honours Sec-GPC: 1 from the browser: the event answers say so, targeted advertising is refused', { timeout: TIMEOUT }, async () => {
    const opened = await browser.open({ 'Sec-GPC': '1' });
    const { context, page } = opened;
    try {
      const anonymousId = await loadIn(page, false);
      const consent = await consentIn(page, anonymousId, { 'analytics.reporting': 'given' });
      assert.equal(consent.status, 200, JSON.stringify(consent.body));
      assert.equal(consent.body.gpcHonoured, true);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).rudderanalytics.track('Product Viewed', { product_id: 'p-9' }));
      await checkGpcHonoured(candor, opened, anonymousId);
    } finally {
      await context.close();
    }
  });
});
