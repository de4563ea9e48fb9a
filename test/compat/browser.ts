// Browser libraries in a real headless Chromium (Debian's), pointed at Candor: a shop page and the library's own
// files served from 127.0.0.1, every answer Candor gives recorded, and any request that would leave 127.0.0.1 noted.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { after, before } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { ListeningCandor } from '../support/listening.ts';
import { parseAnswer, resultsOf, type RecordedAnswer } from './answers.ts';

const CHROMIUM = '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);
/** The `skip` option of a browser suite: skipped without Chromium, except under CI, where the suite fails instead. */
export const skipWithoutChromium = missing && !process.env.CI ? `Chromium not installed at ${CHROMIUM}: skipped (apt-get install chromium; fails under CI=true)` : false;

/**
 * The shop page's `consent` method (page script text, for `window.shop`): the consent banner's choice goes to Candor
 * first, as text/plain with the write key in the body.
 */
export const CONSENT_METHOD = `  async consent({ candorUrl, writeKey, anonymousId, purposes }) {
    const response = await fetch(candorUrl + '/v1/consent', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ writeKey, anonymousId, purposes, mechanism: 'banner_accept', source: location.href }),
    });
    return { status: response.status, body: await response.json() };
  },`;

/** What the shop's server answers: the page at `/`, and files (the library's, unchanged) by path. */
export interface Site {
  page: string;
  /** A path's content type and body, or undefined for a 404. */
  file(path: string): { type: string; body: string | Buffer } | undefined;
}

export interface OpenPage {
  context: BrowserContext;
  page: Page;
  /** Candor's answers to the library's POSTs under /v1/ (the consent call excepted), in order. */
  answers: RecordedAnswer[];
  /** Requests to anything but 127.0.0.1. */
  outside: string[];
  /** Page errors, console errors and failed requests. */
  problems: string[];
}

export interface BrowserSuite {
  /** The shop's base URL. */
  readonly siteUrl: string;
  /** A fresh browser profile on the shop page (with extra request headers, such as Sec-GPC), recording answers. */
  open(headers?: Record<string, string>): Promise<OpenPage>;
}

function serve(site: Site): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const file = path === '/' ? { type: 'text/html; charset=utf-8', body: site.page } : site.file(path);
    if (file) response.writeHead(200, { 'content-type': file.type }).end(file.body);
    else if (path === '/favicon.ico') response.writeHead(204).end();
    else response.writeHead(404).end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
}

/** Launches Chromium and serves the site before the suite; closes both after it. */
export function useBrowser(site: Site): BrowserSuite {
  let browser: Browser | undefined;
  let served: { server: Server; url: string } | undefined;
  before(async () => {
    if (missing) throw new Error(`Chromium is not installed at ${CHROMIUM}; CI requires it (apt-get install chromium)`);
    served = await serve(site);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // No name resolves: whatever is not 127.0.0.1 cannot be reached, even by accident.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (served ? served.server.close(resolve) : resolve(undefined)));
  });
  return {
    get siteUrl() {
      return served?.url ?? '';
    },
    async open(headers = {}) {
      assert.ok(browser && served);
      const siteUrl = served.url;
      const context = await browser.newContext();
      context.setDefaultTimeout(15_000);
      if (Object.keys(headers).length > 0) await context.setExtraHTTPHeaders(headers);
      const answers: RecordedAnswer[] = [];
      const outside: string[] = [];
      const problems: string[] = [];
      context.on('request', (request) => {
        if (new URL(request.url()).hostname !== '127.0.0.1') outside.push(request.url());
      });
      const page = await context.newPage();
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
      });
      page.on('requestfailed', (request) => problems.push(`request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText ?? ''}`));
      page.on('response', async (response) => {
        const request = response.request();
        const target = new URL(response.url());
        if (request.method() !== 'POST' || target.origin === siteUrl || !target.pathname.startsWith('/v1/') || target.pathname === '/v1/consent') return;
        answers.push({ url: response.url(), status: response.status(), body: parseAnswer(await response.text()) });
      });
      await page.goto(`${siteUrl}/`);
      return { context, page, answers, outside, problems };
    },
  };
}

/** Polls until `condition` holds; on timeout, fails with what was seen. */
export async function waitFor(what: string, condition: () => boolean, seen: () => unknown, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; seen: ${JSON.stringify(seen())}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * A pass-through to Candor that forwards the first POST to `path` and, once Candor has answered it, answers the client
 * with a 500 instead (a transient failure after the server stored the message: the answer was lost), so that the resend
 * must be recognised as a duplicate. Every other request is forwarded unchanged, CORS preflights included, so Candor's
 * own preflight answers are what the browser sees. `retryHeaders` lists the named header of each later POST to `path`;
 * `firstAnswer` is what Candor answered to the first one.
 */
export function failFirst(upstream: string, path: string, retryHeader: string): Promise<{ port: number; retryHeaders: () => (string | undefined)[]; firstAnswer: () => RecordedAnswer['body'] | undefined; close: () => Promise<void> }> {
  let failed = false;
  let first: RecordedAnswer['body'] | undefined;
  const retryHeaders: (string | undefined)[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const failing = request.method === 'POST' && request.url === path && !failed;
      if (failing) failed = true;
      else if (request.method === 'POST' && request.url === path) retryHeaders.push(request.headers[retryHeader] as string | undefined);
      const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => !['host', 'connection', 'content-length'].includes(name))) as Record<string, string>;
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
      fetch(`${upstream}${request.url ?? '/'}`, { method: request.method, headers, body, signal: AbortSignal.timeout(10_000) })
        .then(async (answer) => {
          const text = Buffer.from(await answer.arrayBuffer());
          if (failing) {
            first = parseAnswer(text.toString());
            response.writeHead(500, { 'access-control-allow-origin': '*', 'content-type': 'application/json' }).end('{}');
            return;
          }
          const relayed = Object.fromEntries([...answer.headers].filter(([name]) => !['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(name)));
          response.writeHead(answer.status, relayed).end(text);
        })
        .catch(() => response.writeHead(502).end());
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        retryHeaders: () => retryHeaders,
        firstAnswer: () => first,
        close: () => new Promise((done) => server.close(() => done())),
      }),
    ),
  );
}

// Checks both browser suites make after the same scenario, whatever library sent the events.

/** A batch of a page view, 'Product Viewed' and 'Product Added' went to `path`, consent for analytics only. */
export async function checkBatchOfThree(candor: ListeningCandor, opened: OpenPage, anonymousId: string, path: string): Promise<void> {
  const { answers, outside, problems } = opened;
  await waitFor('the batch answer', () => resultsOf(answers).length >= 3, () => ({ answers, problems }));
  assert.deepEqual(answers.map((a) => new URL(a.url).pathname), [path]);
  assert.equal(answers[0]?.status, 200, JSON.stringify(answers[0]?.body));
  assert.deepEqual(resultsOf(answers).map((r) => [r.index, r.status]), [
    [0, 'stored'],
    [1, 'stored'],
    [2, 'stored'],
  ]);
  const profileId = await candor.profileOf('anonymous_id', anonymousId);
  assert.ok(profileId);
  const events = await candor.eventsOf(profileId);
  assert.deepEqual(events.map((e) => e.event ?? e.kind).sort(), ['Product Added', 'Product Viewed', 'page']);
  // only analytics was consented to: profiling is not among the purposes the events may serve
  assert.ok(events.every((e) => e.purposes.join() === 'analytics.reporting'), JSON.stringify(events.map((e) => e.purposes)));
  assert.deepEqual(outside, []);
  assert.deepEqual(problems, []);
}

/**
 * A 'Product Viewed' event stored by Candor but answered 500 (by `failFirst`) was resent with the retry header,
 * recognised as a duplicate, and is stored once.
 */
export async function checkResentOnce(candor: ListeningCandor, opened: OpenPage, anonymousId: string, flaky: { retryHeaders: () => (string | undefined)[]; firstAnswer: () => RecordedAnswer['body'] | undefined }): Promise<void> {
  const { answers, outside, problems } = opened;
  await waitFor('the resent event to be answered', () => answers.some((a) => a.status === 200), () => ({ answers, problems }));
  assert.deepEqual(answers.map((a) => a.status), [500, 200]);
  assert.equal(flaky.retryHeaders()[0], '1', 'the resend carried the retry header');
  const first = flaky.firstAnswer()?.results?.[0];
  const resent = answers[1]?.body.results?.[0];
  assert.equal(first?.status, 'stored', JSON.stringify(flaky.firstAnswer()));
  assert.deepEqual([resent?.status, resent?.messageId], ['duplicate', first.messageId], JSON.stringify(answers[1]?.body));
  const profileId = await candor.profileOf('anonymous_id', anonymousId);
  assert.ok(profileId);
  assert.equal((await candor.eventsOf(profileId)).filter((e) => e.event === 'Product Viewed').length, 1);
  assert.deepEqual(outside, []);
  // the browser logs the failed first attempt; nothing else may go wrong
  assert.deepEqual(problems.filter((p) => !/status of 500/.test(p)), []);
}

/** One event sent with Sec-GPC: 1 after consent to analytics: stored, GPC honoured and recorded as an opt-out. */
export async function checkGpcHonoured(candor: ListeningCandor, opened: OpenPage, anonymousId: string): Promise<void> {
  const { answers, outside, problems } = opened;
  await waitFor('the track answer', () => answers.length >= 1, () => ({ answers, problems }));
  assert.equal(answers[0]?.status, 200, JSON.stringify(answers[0]?.body));
  assert.equal(answers[0]?.body.gpcHonoured, true);
  assert.equal(answers[0]?.body.results?.[0]?.status, 'stored');
  const profileId = await candor.profileOf('anonymous_id', anonymousId);
  assert.ok(profileId);
  const state = await candor.kernel.consent.state(profileId);
  assert.equal(state['marketing.advertising.third_party.targeted']?.state, 'refused');
  assert.equal(state['marketing.advertising.third_party.targeted']?.gpc, true);
  assert.equal(state['analytics.reporting']?.allowed, true);
  assert.equal((await candor.eventsOf(profileId)).length, 1);
  assert.deepEqual(outside, []);
  assert.deepEqual(problems, []);
}

/**
 * The person of the one-call-per-request scenario (identify with e-mail and first name, 'Product Viewed', one order,
 * a page view, …; consent to analytics and profiling) has the events of `kinds`, the traits and the order count.
 */
export async function checkShopperStored(candor: ListeningCandor, opened: OpenPage, profileId: string, expected: { kinds: string[]; pageUrl: string; email: string; firstName: string }): Promise<void> {
  const events = await candor.eventsOf(profileId);
  assert.deepEqual(events.map((e) => e.kind).sort(), expected.kinds);
  assert.ok(events.every((e) => e.source === 'web-shop' && e.purposes.includes('analytics.reporting')));
  const viewed = events.find((e) => e.event === 'Product Viewed');
  assert.deepEqual(viewed?.purposes.sort(), ['analytics.reporting', 'personalize.profiling']);
  const pageView = events.find((e) => e.kind === 'page');
  assert.equal((pageView?.personal as { properties?: { url?: string } } | null)?.properties?.url, expected.pageUrl);
  const view = await candor.viewOf(profileId);
  const trait = (key: string) => view.traits.find((t) => t.key === key)?.value;
  assert.equal(trait('email'), expected.email);
  assert.equal(trait('first_name'), expected.firstName);
  assert.equal(view.computed.orderCount, 1);
  assert.deepEqual(opened.outside, [], 'no request left 127.0.0.1');
  assert.deepEqual(opened.problems, []);
}
