// @rudderstack/rudder-sdk-node, unchanged, pointed at Candor over a loopback socket (gzip bodies, Basic auth).
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import Analytics from '@rudderstack/rudder-sdk-node';
import { describeEachDialect } from '../support/databases.ts';
import { useListeningCandor } from '../support/listening.ts';
import { parseAnswer, resultFor, resultsOf, type RecordedAnswer } from './answers.ts';

const TIMEOUT = 30_000;

interface Recorded extends RecordedAnswer {
  contentEncoding: string | undefined;
  /** The size of the request's JSON, inflated. */
  bytes: number;
}

/** A client as an application would create one, plus what Candor answered and what the library reported as errors. */
function client(url: string, writeKey: string) {
  const answers: Recorded[] = [];
  const errors: unknown[] = [];
  const analytics = new Analytics(writeKey, {
    dataPlaneUrl: url,
    flushAt: 50,
    flushInterval: 60_000,
    retryCount: 0,
    logLevel: 'none',
    errorHandler: (error: unknown) => errors.push(error),
    axiosConfig: {
      timeout: 10_000,
      // Observes each answer (the library ignores answer bodies); the request is left as the library built it.
      transformResponse: [
        function (this: { url: string; headers: Record<string, string | undefined>; data: Buffer | string }, data: string, _headers: unknown, status: number) {
          const bytes = typeof this.data === 'string' ? Buffer.byteLength(this.data) : gunzipSync(this.data).length;
          answers.push({ url: this.url, status, body: parseAnswer(data), contentEncoding: this.headers['Content-Encoding'], bytes });
          return data;
        },
      ],
    },
  });
  return { analytics, answers, errors };
}

describeEachDialect('compat: @rudderstack/rudder-sdk-node', (dialect) => {
  const candor = useListeningCandor(dialect, 'rudder-server');

  before(async () => {
    const given = await candor.consent({ userId: 'rs-user-1', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.equal(given.status, 200, JSON.stringify(given.body));
  });

  it('delivers identify, track, page, screen, group and alias gzipped to /v1/batch; every message is stored with its purposes', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, candor.writeKey);
    const userId = 'rs-user-1';
    // The library sends a given messageId (it only generates one when missing); its typings just do not declare it.
    analytics.identify({ userId, messageId: 'rs-identify', traits: { email: 'ada@lovelace.dev', first_name: 'Ada', country: 'GB', favourite_engine: 'analytical' } } as Analytics.IdentifyParams);
    analytics.track({ userId, messageId: 'rs-viewed', event: 'Product Viewed', properties: { product_id: 'p-1', name: 'Engine', price: 120, currency: 'GBP' } } as Analytics.TrackParams);
    analytics.track({
      userId,
      messageId: 'rs-order',
      event: 'Order Completed',
      properties: {
        order_id: 'o-9',
        total: 150,
        currency: 'GBP',
        products: [
          { product_id: 'p-1', name: 'Engine', price: 120, quantity: 1 },
          { product_id: 'p-3', name: 'Punch cards', price: 15, quantity: 2 },
        ],
      },
    } as Analytics.TrackParams);
    analytics.page({ userId, messageId: 'rs-page', name: 'Home', properties: { path: '/', title: 'Shop' } } as Analytics.PageParams);
    analytics.screen({ userId, messageId: 'rs-screen', name: 'Cart' } as Analytics.ScreenParams);
    analytics.group({ userId, messageId: 'rs-group', groupId: 'g-babbage', traits: { name: 'Babbage & Co', employees: 2 } } as Analytics.GroupParams);
    analytics.alias({ userId, previousId: 'rs-anon-1', messageId: 'rs-alias' } as Analytics.AliasParams);
    await analytics.flush();

    assert.deepEqual(errors, []);
    assert.ok(answers.length >= 1);
    for (const answer of answers) {
      assert.equal(new URL(answer.url).pathname, '/v1/batch');
      assert.equal(answer.contentEncoding, 'gzip');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.success, true);
    }
    const ids = ['rs-identify', 'rs-viewed', 'rs-order', 'rs-page', 'rs-screen', 'rs-group', 'rs-alias'];
    assert.deepEqual(resultsOf(answers).map((r) => r.messageId).sort(), [...ids].sort(), 'one result per message');
    for (const id of ids) assert.equal(resultFor(answers, id).status, 'stored', JSON.stringify(resultFor(answers, id)));
    assert.ok(resultFor(answers, 'rs-identify').dropped?.includes('traits.favourite_engine'), 'undeclared trait dropped');
    // The library's envelope (`_metadata`, `channel`, `integrations`, …) is protocol: no top-level key is listed as dropped.
    assert.deepEqual(resultsOf(answers).flatMap((r) => r.dropped ?? []).filter((path) => !/^(properties|traits|context)[.[]/.test(path)), []);

    const profileId = await candor.profileOf('user_id', userId);
    assert.ok(profileId);
    const events = await candor.eventsOf(profileId);
    const byId = new Map(events.map((e) => [e.messageId, e]));
    assert.deepEqual(
      ids.map((id) => byId.get(id)?.kind),
      ['identify', 'track', 'track', 'page', 'screen', 'group', 'alias'],
    );
    assert.equal(byId.get('rs-viewed')?.event, 'Product Viewed');
    assert.deepEqual(byId.get('rs-viewed')?.purposes.sort(), ['analytics.reporting', 'personalize.profiling']);
    assert.equal(byId.get('rs-order')?.event, 'Order Completed');
    assert.ok(byId.get('rs-order')?.purposes.includes('analytics.reporting'));
    assert.match(JSON.stringify(byId.get('rs-order')?.data), /"product_id":"p-3"/);
    for (const event of events) assert.ok(event.purposes.length > 0, `${event.messageId} records its purposes`);
    assert.ok(events.every((e) => e.source === 'rudder-server'));

    const view = await candor.viewOf(profileId);
    const trait = (key: string) => view.traits.find((t) => t.key === key)?.value;
    assert.equal(trait('email'), 'ada@lovelace.dev');
    assert.equal(trait('first_name'), 'Ada');
    assert.equal(trait('country'), 'GB');
    assert.equal(trait('favourite_engine'), undefined);
    assert.equal(view.computed.orderCount, 1);
    assert.equal(await candor.profileOf('anonymous_id', 'rs-anon-1'), profileId);
  });

  it('stores every message of a batch the library builds past 500 KB: what queued during a flush goes in one batch', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, candor.writeKey);
    const userId = 'rs-user-1';
    // The first call is sent at once. The next ones queue while it is in flight: past the library's 450 KB (counted in
    // characters) each asks for a flush, which waits for the one in flight and then sends up to flushAt (50) messages.
    analytics.track({ userId, messageId: 'rs-large-0', event: 'Product Viewed', properties: { product_id: 'p-0' } } as Analytics.TrackParams);
    const ids = Array.from({ length: 20 }, (_, i) => `rs-large-${i + 1}`);
    for (const [i, messageId] of ids.entries()) analytics.track({ userId, messageId, event: 'Product Viewed', properties: { product_id: `p-${i}`, notes: 'x'.repeat(30_000) } } as Analytics.TrackParams);
    // The first flush returns once the large batch is on its way (the queue is empty then); the second waits for it.
    await analytics.flush();
    await analytics.flush();
    assert.deepEqual(errors, []);
    assert.deepEqual(answers.map((a) => a.status), [200, 200], JSON.stringify(answers.map((a) => [a.status, a.bytes, a.body.code])));
    assert.ok((answers[1]?.bytes ?? 0) > 600_000, `a batch of ${answers[1]?.bytes} bytes`);
    for (const id of ['rs-large-0', ...ids]) assert.equal(resultFor(answers, id).status, 'stored', id);
  });

  it('gets a refusal per message, and no library error, for a person without consent; nothing is stored', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, candor.writeKey);
    analytics.track({ anonymousId: 'rs-anon-no-consent', messageId: 'rs-refused-1', event: 'Product Viewed', properties: { product_id: 'p-1' } } as Analytics.TrackParams);
    analytics.page({ anonymousId: 'rs-anon-no-consent', messageId: 'rs-refused-2', name: 'Home' } as Analytics.PageParams);
    await analytics.flush();
    assert.deepEqual(errors, []);
    assert.deepEqual(
      resultsOf(answers).map((r) => [r.messageId, r.status, r.code]),
      [
        ['rs-refused-1', 'refused', 'COLLECT_NO_LAWFUL_BASIS'],
        ['rs-refused-2', 'refused', 'COLLECT_NO_LAWFUL_BASIS'],
      ],
    );
    assert.equal(await candor.profileOf('anonymous_id', 'rs-anon-no-consent'), null);
  });

  it('hands a wrong write key to the error handler as a 401, and stores nothing', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, 'cwk_not_a_real_key');
    const before = await candor.kernel.collect.countEvents();
    analytics.track({ userId: 'rs-user-1', messageId: 'rs-bad-key', event: 'Product Viewed', properties: { product_id: 'p-1' } } as Analytics.TrackParams);
    await analytics.flush();
    assert.equal(answers.length, 1);
    assert.equal(answers[0]?.status, 401);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as { response?: { status?: number } }).response?.status, 401);
    assert.equal(await candor.kernel.collect.countEvents(), before);
  });
});
