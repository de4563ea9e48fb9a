import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

const DAY = 86_400_000;

describeEachDialect('the inactivity index holds the day of the last activity (migration 0091)', (dialect) => {
  // A database as the release before the change left it: one person's computed traits, indexed by last_seen_at.
  const ctx = useUpgradedKernel(dialect, '0091', async (db) => {
    await sql`INSERT INTO profiles_computed (profile_id, first_seen_at, last_seen_at, event_count, order_count, total_order_value, currency)
      VALUES ('prf_before', '2026-09-30T10:00:00.000Z', '2026-10-01T23:59:59.000Z', 3, 0, 0, NULL)`.execute(db);
  });
  const seen = async (profileId: string) =>
    (await sql<{ last_seen_at: string; last_seen_day: string; event_count: number }>`SELECT last_seen_at, last_seen_day, event_count FROM profiles_computed WHERE profile_id = ${profileId}`.execute(ctx.kernel.storage.db)).rows.map((r) => ({ ...r, event_count: Number(r.event_count) }))[0];
  const activity = (profileId: string, ...times: string[]) => ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, times.map((at) => ({ profileId, at, kind: 'track' }))));
  const indexes = async () => {
    const rows = dialect === 'postgres'
      ? (await sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes WHERE tablename = 'profiles_computed'`.execute(ctx.kernel.storage.db)).rows
      : (await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'profiles_computed'`.execute(ctx.kernel.storage.db)).rows;
    return rows.map((r) => r.name);
  };

  it('gives stored computed traits the day of their last activity and replaces the index', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0091_profiles_computed_by_last_seen_day'));
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-01T23:59:59.000Z', last_seen_day: '2026-10-01', event_count: 3 });
    const names = await indexes();
    assert.ok(names.includes('profiles_computed_last_seen_day'), names.join());
    assert.ok(!names.includes('profiles_computed_last_seen'), names.join());
  });

  it('moves the day only when the last activity moves to another day', async () => {
    await activity('prf_before', '2026-10-01T12:00:00.000Z');
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-01T23:59:59.000Z', last_seen_day: '2026-10-01', event_count: 4 });
    await activity('prf_before', '2026-10-02T00:00:01.000Z', '2026-10-02T09:30:00.000Z');
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-02T09:30:00.000Z', last_seen_day: '2026-10-02', event_count: 6 });
    // An older event (a late arrival, an import) leaves the last activity, and so its day, alone.
    await activity('prf_before', '2026-09-01T09:30:00.000Z');
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-02T09:30:00.000Z', last_seen_day: '2026-10-02', event_count: 7 });
    await activity('prf_new', '2026-10-05T17:00:00.000Z');
    assert.deepEqual(await seen('prf_new'), { last_seen_at: '2026-10-05T17:00:00.000Z', last_seen_day: '2026-10-05', event_count: 1 });
  });

  it('counts a person inactive by the instant of their last activity, also on the cutoff day itself', async () => {
    // Yesterday at 08:00 and at 16:00; the cutoff falls between them, on the same day.
    const day = new Date(Date.now() - DAY).toISOString().slice(0, 10);
    for (const [userId, time] of [['u-morning', '08:00'], ['u-afternoon', '16:00']] as const) {
      const [r] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      await ctx.kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
      const [stored] = await ctx.kernel.collect.ingest([{ raw: { type: 'track', userId, messageId: `${userId}-1`, timestamp: `${day}T${time}:00.000Z`, event: 'Product Viewed', properties: { product_id: 'p1' } }, bytes: 200 }], undefined, {
        source: 'web',
        gpc: false,
        receivedAt: Date.now(),
        actor: CLI_ACTOR,
      });
      assert.equal(stored?.status, 'stored');
    }
    // The policy is 24 months of inactivity: the cutoff is yesterday at noon.
    const now = new Date(`${day}T12:00:00.000Z`);
    now.setUTCMonth(now.getUTCMonth() + 24);
    const report = await ctx.kernel.retention.sweep({ now, dryRun: true, batchSize: 1 });
    const people = report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
    // prf_before and prf_new have no person (no identity) behind them; of the two people only the morning one counts.
    assert.equal(people, 1);
  });
});
