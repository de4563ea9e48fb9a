import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { DEFAULT_PLAN } from '../../modules/catalog/index.ts';
import { MAX_EVENT_BYTES } from '../../modules/collect/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// What Segment's libraries send, read as Segment reads it: clock-skew correction with `sentAt`, the batch-level context
// merged into each message's own, a screen's top-level category, group traits that are the company's, numeric ids.
describeEachDialect('Segment ingest as the Segment spec reads it', (dialect) => {
  const ctx = useKernel(dialect);
  const ingest = useIngestServer(ctx);
  type Result = { status: string; code?: string; detail?: string; dropped?: string[] };
  const results = async (url: string, payload: unknown) => {
    const response = await ingest.send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: Result[] }).results;
  };
  const consent = async (ids: Record<string, unknown>) => {
    const response = await ingest.send('/v1/consent', { mechanism: 'banner_save', ...ids, purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.equal(response.statusCode, 200, response.body);
  };
  const eventsOf = async (type: string, value: string) => {
    const profile = await ingest.profileOf(type, value);
    assert.ok(profile, `a profile for ${type} ${value}`);
    return Object.fromEntries((await ctx.kernel.collect.events([profile], { decrypt: true, limit: 100 })).map((e) => [e.messageId, e]));
  };
  const iso = (ms: number) => new Date(ms).toISOString();
  const viewed = (messageId: string, extra: Record<string, unknown> = {}) => ({ type: 'track', userId: 'u-spec', messageId, event: 'Product Viewed', properties: { product_id: 'p1' }, ...extra });

  before(async () => {
    // A plan that declares a group's email (a company's address) and a screen's category, as a shop may.
    const plan = structuredClone(DEFAULT_PLAN);
    const groupTraits = plan.groupTraits?.properties as Record<string, unknown>;
    groupTraits.email = { type: 'string', maxLength: 320, 'x-candor': { category: 'user.workplace', purposes: ['analytics.reporting', 'personalize.profiling'], retention: 'P3Y', personal: false } };
    const screen = plan.screens?.properties.properties as Record<string, unknown>;
    screen.category = (plan.pages?.properties.properties as Record<string, unknown>).category;
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    await consent({ userId: 'u-spec' });
  });

  it("corrects a device clock that runs fast or slow with the message's sentAt, or its batch's, as Segment does", async () => {
    const fast = 10 * 60_000;
    const slow = -3 * 3600_000;
    const start = Date.now();
    // analytics.js: one call, the event 10 s before the send, on a clock 10 minutes fast.
    const single = await results('/v1/t', viewed('skew-fast', { timestamp: iso(start + fast - 10_000), sentAt: iso(start + fast) }));
    // analytics-node: `timestamp` per message, `sentAt` once for the batch.
    const batch = await results('/v1/batch', { sentAt: iso(start + fast), batch: [viewed('skew-batch', { timestamp: iso(start + fast - 10_000) })] });
    // A clock three hours slow.
    const late = await results('/v1/track', viewed('skew-slow', { timestamp: iso(start + slow - 10_000), sentAt: iso(start + slow) }));
    const end = Date.now();
    assert.deepEqual([...single, ...batch, ...late].map((r) => r.code ?? r.status), ['stored', 'stored', 'stored']);
    const events = await eventsOf('user_id', 'u-spec');
    for (const messageId of ['skew-fast', 'skew-batch', 'skew-slow']) {
      // Received between start and end, it happened 10 s before it was received.
      const at = Date.parse(events[messageId]?.occurredAt ?? '');
      assert.ok(at >= start - 10_000 && at <= end - 10_000, `${messageId}: ${events[messageId]?.occurredAt} not 10 s before ${iso(start)}…${iso(end)}`);
    }
  });

  it('answers a retry with a later sentAt duplicate, keeps a timestamp without sentAt as sent, and refuses an event dated after its own send', async () => {
    const now = Date.now();
    const timestamp = iso(now + 600_000 - 5_000);
    assert.deepEqual((await results('/v1/track', viewed('skew-retry', { timestamp, sentAt: iso(now + 600_000) }))).map((r) => r.status), ['stored']);
    assert.deepEqual((await results('/v1/track', viewed('skew-retry', { timestamp, sentAt: iso(now + 660_000) }))).map((r) => r.status), ['duplicate']);
    // An import of history: no sentAt, the timestamp is the event's time.
    const history = '2025-03-01T08:00:00.000Z';
    assert.deepEqual((await results('/v1/import', { batch: [viewed('history-1', { timestamp: history })] })).map((r) => r.status), ['stored']);
    assert.equal((await eventsOf('user_id', 'u-spec'))['history-1']?.occurredAt, history);
    // The future limit applies to the corrected time: an event dated 10 minutes after the send that carries it.
    const future = await results('/v1/track', viewed('skew-future', { timestamp: iso(now + 600_000), sentAt: iso(now) }));
    assert.deepEqual(future.map((r) => [r.code, r.detail]), [['COLLECT_TIMESTAMP_IN_FUTURE', 'timestamp']]);
  });

  it("never links a group call's email or phone as the person's, and still links an identify call's", async () => {
    await consent({ anonymousId: 'dev-alice' });
    await consent({ anonymousId: 'dev-bob' });
    for (const anonymousId of ['dev-alice', 'dev-bob']) {
      const answer = await results('/v1/group', { anonymousId, groupId: 'acme', messageId: `group-${anonymousId}`, traits: { name: 'Acme', email: 'info@acme-corp.de', phone: '+49 30 1234567' } });
      assert.deepEqual(answer.map((r) => r.status), ['stored'], anonymousId);
    }
    const alice = await ingest.profileOf('anonymous_id', 'dev-alice');
    const bob = await ingest.profileOf('anonymous_id', 'dev-bob');
    assert.ok(alice && bob);
    assert.notEqual(alice, bob, 'two people of one company are two people');
    assert.equal(await ingest.profileOf('email', 'info@acme-corp.de'), null);
    assert.equal(await ingest.profileOf('phone', '+49301234567'), null);
    assert.deepEqual((await results('/v1/identify', { anonymousId: 'dev-alice', traits: { email: 'alice@acme-corp.de' } })).map((r) => r.status), ['stored']);
    assert.equal(await ingest.profileOf('email', 'alice@acme-corp.de'), alice);
  });

  it("merges the batch-level context into each message's own context, the message's members winning", async () => {
    const answer = await results('/v1/batch', {
      context: { locale: 'de-DE', library: { name: 'analytics-ios', version: '4.1' } },
      batch: [
        viewed('ctx-own', { context: { timezone: 'Europe/Berlin' } }),
        viewed('ctx-wins', { context: { locale: 'en-GB' } }),
        viewed('ctx-empty', { context: {} }),
        viewed('ctx-none'),
      ],
    });
    assert.deepEqual(answer.map((r) => r.status), ['stored', 'stored', 'stored', 'stored']);
    const events = await eventsOf('user_id', 'u-spec');
    const library = { name: 'analytics-ios', version: '4.1' };
    assert.deepEqual(events['ctx-own']?.data.context, { locale: 'de-DE', library, timezone: 'Europe/Berlin' });
    assert.deepEqual(events['ctx-wins']?.data.context, { locale: 'en-GB', library });
    assert.deepEqual(events['ctx-empty']?.data.context, { locale: 'de-DE', library });
    assert.deepEqual(events['ctx-none']?.data.context, { locale: 'de-DE', library });
  });

  it('measures a message with the batch-level context members it takes, exactly, and answers a forbidden or too deep one it takes', async () => {
    // 18 KB of UTF-8 in the batch-level context (each ü two bytes), 16 KB in each message.
    const context = { locale: 'de', junk: 'ü'.repeat(9_000) };
    const note = 'y'.repeat(16_000);
    const own = viewed('size-own', { properties: { product_id: 'p1', note }, context: { timezone: 'Europe/Berlin' } });
    const empty = viewed('size-empty', { properties: { product_id: 'p1', note }, context: {} });
    const overrides = viewed('size-overrides', { properties: { product_id: 'p1', note }, context: { junk: 'small' } });
    const answer = await results('/v1/batch', { context, batch: [own, empty, overrides] });
    assert.deepEqual(answer.map((r) => r.code ?? r.status), ['COLLECT_EVENT_TOO_LARGE', 'COLLECT_EVENT_TOO_LARGE', 'stored']);
    const size = (message: Record<string, unknown>) => `${Buffer.byteLength(JSON.stringify({ ...message, context: { ...context, ...(message.context as object) } }))} bytes`;
    assert.deepEqual(answer.slice(0, 2).map((r) => r.detail), [size(own), size(empty)]);
    assert.ok(Buffer.byteLength(JSON.stringify(own)) < MAX_EVENT_BYTES, 'under the limit without the batch-level context');

    // A forbidden key in the batch-level context spoils every message that takes it, and none that overrides it.
    const poisoned = `{"context":{"constructor":{"prototype":{"x":1}}},"batch":[${JSON.stringify(viewed('fk-merged', { context: { timezone: 'UTC' } }))},${JSON.stringify(viewed('fk-overrides', { context: { constructor: 'Rocket' } }))}]}`;
    const fk = await ingest.send('/v1/batch', JSON.parse(poisoned));
    const fkResults = (fk.json() as { results: Result[] }).results;
    assert.deepEqual(fkResults.map((r) => [r.code ?? r.status, r.detail]), [['REQUEST_FORBIDDEN_KEY', 'context.constructor'], ['stored', undefined]], fk.body);

    // Likewise a member nested deeper than a message may be.
    let deep: unknown = 'bottom';
    for (let i = 0; i < 70; i++) deep = [deep];
    const deeper = await results('/v1/batch', { context: { deep }, batch: [viewed('deep-merged', { context: { timezone: 'UTC' } }), viewed('deep-overrides', { context: { deep: 'flat' } })] });
    assert.deepEqual(deeper.map((r) => r.code ?? r.status), ['COLLECT_MESSAGE_INVALID', 'stored']);
  });

  it("keeps a screen's top-level category, as a page's, when the plan declares it", async () => {
    const answer = await results('/v1/batch', {
      batch: [
        { type: 'screen', userId: 'u-spec', messageId: 'screen-top', name: 'Checkout', category: 'Shop' },
        { type: 'screen', userId: 'u-spec', messageId: 'screen-own', name: 'Checkout', category: 'Shop', properties: { category: 'Basket' } },
      ],
    });
    assert.deepEqual(answer.map((r) => [r.status, r.dropped ?? []]), [['stored', []], ['stored', []]]);
    const events = await eventsOf('user_id', 'u-spec');
    assert.deepEqual(events['screen-top']?.data.properties, { name: 'Checkout', category: 'Shop' });
    assert.deepEqual(events['screen-own']?.data.properties, { name: 'Checkout', category: 'Basket' }, "the message's own property wins");
  });

  it('takes whole-number ids on /v1/consent and /v1/consent/opt-out-notice as a message does, as text', async () => {
    const given = await ingest.send('/v1/consent', { mechanism: 'api', userId: 777, anonymousId: 4242, purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    const person = await ingest.profileOf('user_id', '777');
    assert.ok(person);
    assert.equal(await ingest.profileOf('anonymous_id', '4242'), person);
    // The event sent with the number is stored under the consent given with it.
    assert.deepEqual((await results('/v1/track', { userId: 777, messageId: 'numeric-1', event: 'Product Viewed', properties: { product_id: 'p1' } })).map((r) => r.status), ['stored']);
    assert.equal(await ingest.profileOf('user_id', '777'), person);
    await ctx.kernel.consent.setPurpose({ ...(ctx.kernel.consent.purpose('analytics.reporting') ?? assert.fail('purpose')), optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    const notice = await ingest.send('/v1/consent/opt-out-notice', { anonymousId: 5150, purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion: ctx.kernel.consent.currentNotice().version });
    assert.equal(notice.statusCode, 200, notice.body);
    assert.ok(await ingest.profileOf('anonymous_id', '5150'));
    // What a message refuses, consent refuses: a fraction, or a number beyond 2^53 that JSON readers round.
    const refused = [['userId', '2.5', 'type'], ['userId', '1e21', 'maximum'], ['anonymousId', '9007199254740993', 'maximum'], ['anonymousId', '-9007199254740993', 'minimum'], ['userId', 'true', 'type']] as const;
    for (const [field, text, rule] of refused) {
      const response = await ingest.send('/v1/consent', JSON.parse(`{"mechanism":"api","${field}":${text},"purposes":{"analytics.reporting":"given"}}`));
      assert.equal(response.statusCode, 400, `${field} ${text}: ${response.body}`);
      const problem = response.json() as { code: string; details: { errors: { path: string; rule: string }[] } };
      assert.equal(problem.code, 'REQUEST_VALIDATION_FAILED');
      assert.deepEqual(problem.details.errors.map((e) => [e.path, e.rule]), [[`/${field}`, rule]], response.body);
    }
  });
});
