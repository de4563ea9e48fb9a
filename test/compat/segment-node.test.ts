// @segment/analytics-node, unchanged, pointed at Candor over a loopback socket.
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { Analytics } from '@segment/analytics-node';
import { describeEachDialect } from '../support/databases.ts';
import { useListeningCandor } from '../support/listening.ts';
import { parseAnswer, resultFor, resultsOf, type RecordedAnswer } from './answers.ts';

const TIMEOUT = 30_000;

/** A client as an application would create one, plus what it answered and what it reported as errors. */
function client(url: string, writeKey: string) {
  const answers: RecordedAnswer[] = [];
  const errors: unknown[] = [];
  const analytics = new Analytics({
    writeKey,
    host: url,
    path: '/v1/batch',
    flushAt: 50,
    flushInterval: 60_000,
    maxRetries: 0,
    httpRequestTimeout: 10_000,
    // The library's own fetch, observed: the request goes out exactly as the library built it.
    httpClient: async (target, init) => {
      const response = await fetch(target, init);
      const text = await response.text();
      answers.push({ url: target, status: response.status, body: parseAnswer(text) });
      return { status: response.status, statusText: response.statusText, headers: response.headers, text: async () => text };
    },
  });
  analytics.on('error', (error) => errors.push(error));
  return { analytics, answers, errors };
}

describeEachDialect('compat: @segment/analytics-node', (dialect) => {
  const candor = useListeningCandor(dialect, 'node-server');

  before(async () => {
    const given = await candor.consent({ userId: 'seg-user-1', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.equal(given.status, 200, JSON.stringify(given.body));
  });

  it('delivers identify, track, page, screen, group and alias in one batch; every message is stored with its purposes', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, candor.writeKey);
    const userId = 'seg-user-1';
    analytics.identify({ userId, messageId: 'seg-identify', traits: { email: 'grace@hopper.dev', first_name: 'Grace', country: 'US', shoe_size: 39 } });
    analytics.track({ userId, messageId: 'seg-viewed', event: 'Product Viewed', properties: { product_id: 'p-1', name: 'Compiler', price: 42.5, currency: 'USD' } });
    analytics.track({
      userId,
      messageId: 'seg-order',
      event: 'Order Completed',
      properties: {
        order_id: 'o-1',
        total: 97.5,
        revenue: 90,
        currency: 'USD',
        products: [
          { product_id: 'p-1', name: 'Compiler', price: 42.5, quantity: 1 },
          { product_id: 'p-2', name: 'Debugger', price: 27.5, quantity: 2 },
        ],
      },
    });
    analytics.page({ userId, messageId: 'seg-page', name: 'Home', properties: { path: '/', title: 'Shop', url: 'https://shop.example/' } });
    analytics.screen({ userId, messageId: 'seg-screen', name: 'Cart' });
    analytics.group({ userId, messageId: 'seg-group', groupId: 'g-navy', traits: { name: 'Navy', industry: 'Defence', employees: 5000 } });
    analytics.alias({ userId, previousId: 'seg-anon-1', messageId: 'seg-alias' });
    await analytics.closeAndFlush({ timeout: TIMEOUT - 5_000 });

    assert.deepEqual(errors, []);
    assert.ok(answers.length >= 1);
    for (const answer of answers) {
      assert.equal(new URL(answer.url).pathname, '/v1/batch');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.success, true);
    }
    const ids = ['seg-identify', 'seg-viewed', 'seg-order', 'seg-page', 'seg-screen', 'seg-group', 'seg-alias'];
    assert.deepEqual(resultsOf(answers).map((r) => r.messageId).sort(), [...ids].sort(), 'one result per message');
    for (const id of ids) assert.equal(resultFor(answers, id).status, 'stored', JSON.stringify(resultFor(answers, id)));
    assert.ok(resultFor(answers, 'seg-identify').dropped?.includes('traits.shoe_size'), 'undeclared trait dropped');
    // The library's envelope (`_metadata`, `channel`, `integrations`, …) is protocol: no top-level key is listed as dropped.
    assert.deepEqual(resultsOf(answers).flatMap((r) => r.dropped ?? []).filter((path) => !/^(properties|traits|context)[.[]/.test(path)), []);

    const profileId = await candor.profileOf('user_id', userId);
    assert.ok(profileId);
    const events = await candor.eventsOf(profileId);
    const byId = new Map(events.map((e) => [e.messageId, e]));
    for (const id of ids) assert.ok(byId.has(id), `${id} stored`);
    assert.equal(byId.get('seg-viewed')?.event, 'Product Viewed');
    assert.deepEqual(byId.get('seg-viewed')?.purposes.sort(), ['analytics.reporting', 'personalize.profiling']);
    assert.equal(byId.get('seg-order')?.event, 'Order Completed');
    // order_id, total, revenue and currency also serve order operations (a contract purpose)
    assert.deepEqual(byId.get('seg-order')?.purposes.sort(), ['analytics.reporting', 'essential.service.operations', 'personalize.profiling']);
    const order = JSON.stringify({ data: byId.get('seg-order')?.data, personal: byId.get('seg-order')?.personal });
    assert.match(order, /"order_id":"o-1"/);
    assert.match(order, /"product_id":"p-2"/);
    assert.deepEqual(
      ids.map((id) => byId.get(id)?.kind),
      ['identify', 'track', 'track', 'page', 'screen', 'group', 'alias'],
    );
    for (const event of events) assert.ok(event.purposes.length > 0, `${event.messageId} records its purposes`);
    assert.ok(events.every((e) => e.source === 'node-server'));

    const view = await candor.viewOf(profileId);
    const trait = (key: string) => view.traits.find((t) => t.key === key)?.value;
    assert.equal(trait('email'), 'grace@hopper.dev');
    assert.equal(trait('first_name'), 'Grace');
    assert.equal(trait('country'), 'US');
    assert.equal(trait('shoe_size'), undefined);
    assert.equal(view.computed.orderCount, 1);
    // alias linked the earlier anonymous id to the same person
    assert.equal(await candor.profileOf('anonymous_id', 'seg-anon-1'), profileId);
  });

  it('gets a refusal per message, and no library error, for a person without consent; nothing is stored', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, candor.writeKey);
    analytics.track({ userId: 'seg-user-no-consent', messageId: 'seg-refused-1', event: 'Product Viewed', properties: { product_id: 'p-1' } });
    analytics.page({ userId: 'seg-user-no-consent', messageId: 'seg-refused-2', name: 'Home' });
    await analytics.closeAndFlush({ timeout: TIMEOUT - 5_000 });
    assert.deepEqual(errors, []);
    assert.deepEqual(
      resultsOf(answers).map((r) => [r.messageId, r.status, r.code]),
      [
        ['seg-refused-1', 'refused', 'COLLECT_NO_LAWFUL_BASIS'],
        ['seg-refused-2', 'refused', 'COLLECT_NO_LAWFUL_BASIS'],
      ],
    );
    assert.equal(await candor.profileOf('user_id', 'seg-user-no-consent'), null);
  });

  it('reports an error through the library when the write key is wrong, and stores nothing', { timeout: TIMEOUT }, async () => {
    const { analytics, answers, errors } = client(candor.url, 'cwk_not_a_real_key');
    const before = await candor.kernel.collect.countEvents();
    analytics.track({ userId: 'seg-user-1', messageId: 'seg-bad-key', event: 'Product Viewed', properties: { product_id: 'p-1' } });
    await analytics.closeAndFlush({ timeout: TIMEOUT - 5_000 });
    assert.equal(answers.length, 1);
    assert.equal(answers[0]?.status, 401, JSON.stringify(answers[0]?.body));
    assert.equal(errors.length, 1);
    assert.equal(await candor.kernel.collect.countEvents(), before);
  });
});
