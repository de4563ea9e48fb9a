import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

const DAY = 86_400_000;

// Segment's own duplicate detection works on the messageId alone within about a day, and senders rely on it: one that
// sets its own messageId (an order id) so that a retried job is stored once gets a new timestamp from the client
// library on every call. A source's messageId stored within the last day makes a message a duplicate whatever its time.
describeEachDialect('duplicates by messageId within a day', (dialect) => {
  const ctx = useKernel(dialect);
  const ingest = async (messages: Record<string, unknown>[], source = 'web', receivedAt = Date.now()) =>
    (await ctx.kernel.collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source, gpc: false, receivedAt, actor: CLI_ACTOR })).map((r) => r.status);
  const person = async (userId: string) => {
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const id = resolved?.profileId as string;
    await ctx.kernel.consent.record(id, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    return id;
  };
  const order = (userId: string, messageId: string, timestamp: string) => ({ type: 'track', userId, messageId, event: 'Order Completed', timestamp, properties: { order_id: messageId, total: 100, currency: 'EUR' } });
  const stored = async (messageId: string) => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE message_id = ${messageId}`.execute(ctx.kernel.storage.db)).rows[0]?.n);

  it('answers the same messageId with another time duplicate, across requests and within one, and counts it once', async () => {
    const userId = uniqueId('buyer');
    const profile = await person(userId);
    const id = uniqueId('order');
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T10:00:00.000Z')]), ['stored']);
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T10:00:05.000Z')]), ['duplicate']);
    const other = uniqueId('order');
    assert.deepEqual(await ingest([order(userId, other, '2026-12-01T11:00:00.000Z'), order(userId, other, '2026-12-01T11:00:09.000Z')]), ['stored', 'duplicate']);
    assert.equal(await stored(id), 1);
    assert.equal(await stored(other), 1);
    const computed = (await ctx.kernel.profiles.get([profile], { decrypt: false })).computed;
    assert.equal(computed.orderCount, 2);
    assert.equal(computed.totalOrderValue, 200);
  });

  it('forgets the messageIds of an erased person with their events', async () => {
    const userId = uniqueId('erased-buyer');
    await person(userId);
    const id = uniqueId('order');
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T10:00:00.000Z')]), ['stored']);
    const kept = async () => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_recent_ids WHERE message_id = ${id}`.execute(ctx.kernel.storage.db)).rows[0]?.n);
    assert.equal(await kept(), 1);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: userId } });
    assert.ok(subject);
    await ctx.kernel.erasure.erase(subject, { requestId: `req-${uniqueId('erase')}` }, CLI_ACTOR);
    assert.equal(await stored(id), 0);
    assert.equal(await kept(), 0);
  });

  it('scopes it to the source, keeps no id of a message not stored, and forgets ids after the day', async () => {
    const userId = uniqueId('buyer');
    await person(userId);
    const id = uniqueId('order');
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T10:00:00.000Z')]), ['stored']);
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T10:00:01.000Z')], 'crm'), ['stored'], 'another source');
    // Refused (nobody consented for this person): no id kept, so once consent is on record it is stored.
    const later = uniqueId('late-buyer');
    const refusedId = uniqueId('view');
    const view = (timestamp: string) => ({ type: 'track', userId: later, messageId: refusedId, event: 'Product Viewed', timestamp, properties: { product_id: 'p-1' } });
    assert.deepEqual(await ingest([view('2026-12-01T10:00:00.000Z')]), ['refused']);
    await person(later);
    assert.deepEqual(await ingest([view('2026-12-01T10:00:02.000Z')]), ['stored']);

    // A day and more on, the sweep deletes the ids: the same messageId at another time is stored again; the very same
    // message (same time) is still a duplicate by the event's own key.
    const report = await ctx.kernel.retention.sweep({ now: new Date(Date.now() + 2 * DAY), batchSize: 2 });
    assert.ok(report.counts.filter((c) => c.rule === 'collect.recent_ids').reduce((n, c) => n + c.count, 0) >= 3);
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T10:00:00.000Z')]), ['duplicate']);
    assert.deepEqual(await ingest([order(userId, id, '2026-12-01T12:00:00.000Z')]), ['stored']);
    assert.equal(await stored(id), 3);
  });
});
