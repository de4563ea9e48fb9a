import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('stored events keep being recognised after the duplicate key changed (migration 0090)', (dialect) => {
  const at = '2026-10-01T08:00:00.000Z';
  // A database as the release before the change left it, with one event stored under the old key.
  const ctx = useUpgradedKernel(dialect, '0090', async (db) => {
    await sql`INSERT INTO collect_events (id, source, message_id, profile_id, kind, event, occurred_at, received_at, purposes, data, data_enc, plan_version)
      VALUES ('evt_old', 'web', 'old-1', 'prf_old', 'track', 'Product Viewed', ${at}, ${at}, '["analytics.reporting"]', '{}', NULL, 1)`.execute(db);
  });

  it('keeps every stored event, keyed by the time it was stored with', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0090_collect_events_dedup_by_time'));
    const rows = (await sql<{ id: string; dedup_at: string }>`SELECT id, dedup_at FROM collect_events`.execute(ctx.kernel.storage.db)).rows;
    assert.deepEqual(rows.map((r) => ({ ...r })), [{ id: 'evt_old', dedup_at: at }]);
  });

  it('answers a retry of a message stored before the change as a duplicate', async () => {
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-old' }], source: 'web', at }]));
    await ctx.kernel.consent.record(resolved?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const message = { type: 'track', anonymousId: 'anon-old', event: 'Product Viewed', messageId: 'old-1', timestamp: at, properties: { product_id: 'p1' } };
    const context = { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR };
    const [retry] = await ctx.kernel.collect.ingest([{ raw: message, bytes: 200 }], undefined, context);
    assert.equal(retry?.status, 'duplicate');
    const [later] = await ctx.kernel.collect.ingest([{ raw: { ...message, timestamp: '2026-10-02T08:00:00.000Z' }, bytes: 200 }], undefined, context);
    assert.equal(later?.status, 'stored');
    assert.equal(Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE message_id = 'old-1'`.execute(ctx.kernel.storage.db)).rows[0]?.n), 2);
  });
});
