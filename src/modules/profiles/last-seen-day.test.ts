import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';

const DAY = 86_400_000;

describeEachDialect('the inactivity index holds the day of the last activity (migrations 0091, 0109)', (dialect) => {
  // A database as the release before 0091 left it: one person's computed traits, indexed by last_seen_at.
  const ctx = useUpgradedKernel(dialect, '0091', async (db) => {
    await sql`INSERT INTO profiles_computed (profile_id, first_seen_at, last_seen_at, event_count, order_count, total_order_value, currency)
      VALUES ('prf_before', '2026-09-30T10:00:00.000Z', '2026-10-01T23:59:59.000Z', 3, 0, 0, NULL)`.execute(db);
  });
  const seen = async (profileId: string) =>
    (
      await sql<{ last_seen_at: string; last_received_at: string; last_active_day: string; event_count: number }>`SELECT last_seen_at, last_received_at, last_active_day, event_count FROM profiles_computed WHERE profile_id = ${profileId}`.execute(
        ctx.kernel.storage.db,
      )
    ).rows.map((r) => ({ ...r, event_count: Number(r.event_count) }))[0];
  /** Activity received when it happened, unless `receivedAt` says otherwise. */
  const activity = (profileId: string, times: string[], receivedAt?: string) =>
    ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, times.map((at) => ({ profileId, at, receivedAt: receivedAt ?? at, kind: 'track' }))));
  const indexes = async () => {
    const rows = dialect === 'postgres'
      ? (await sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes WHERE tablename = 'profiles_computed'`.execute(ctx.kernel.storage.db)).rows
      : (await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'profiles_computed'`.execute(ctx.kernel.storage.db)).rows;
    return rows.map((r) => r.name);
  };

  it('gives stored computed traits the day of their last activity, their last seen time as receipt time, and replaces the index', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0091_profiles_computed_by_last_seen_day'));
    assert.ok(ctx.kernel.migrationsApplied.includes('0109_profiles_computed_last_received'));
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-01T23:59:59.000Z', last_received_at: '2026-10-01T23:59:59.000Z', last_active_day: '2026-10-01', event_count: 3 });
    const names = await indexes();
    assert.ok(names.includes('profiles_computed_last_active_day'), names.join());
    assert.ok(!names.includes('profiles_computed_last_seen_day'), names.join());
    assert.ok(!names.includes('profiles_computed_last_seen'), names.join());
  });

  it('moves the day only when the last activity moves to another day', async () => {
    await activity('prf_before', ['2026-10-01T12:00:00.000Z']);
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-01T23:59:59.000Z', last_received_at: '2026-10-01T23:59:59.000Z', last_active_day: '2026-10-01', event_count: 4 });
    await activity('prf_before', ['2026-10-02T00:00:01.000Z', '2026-10-02T09:30:00.000Z']);
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-02T09:30:00.000Z', last_received_at: '2026-10-02T09:30:00.000Z', last_active_day: '2026-10-02', event_count: 6 });
    // An older event received then too (a late arrival) leaves the last activity, and so its day, alone.
    await activity('prf_before', ['2026-09-01T09:30:00.000Z'], '2026-10-02T09:00:00.000Z');
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-02T09:30:00.000Z', last_received_at: '2026-10-02T09:30:00.000Z', last_active_day: '2026-10-02', event_count: 7 });
    // One received days later (an imported history, an offline queue) is activity on the day it was received; the
    // last seen time stays the sender's.
    await activity('prf_before', ['2026-09-02T09:30:00.000Z'], '2026-10-04T08:00:00.000Z');
    assert.deepEqual(await seen('prf_before'), { last_seen_at: '2026-10-02T09:30:00.000Z', last_received_at: '2026-10-04T08:00:00.000Z', last_active_day: '2026-10-04', event_count: 8 });
    await activity('prf_new', ['2026-10-05T17:00:00.000Z']);
    assert.deepEqual(await seen('prf_new'), { last_seen_at: '2026-10-05T17:00:00.000Z', last_received_at: '2026-10-05T17:00:00.000Z', last_active_day: '2026-10-05', event_count: 1 });
  });

  it('counts a person inactive by the instant of their last activity, also on the cutoff day itself', async () => {
    // Yesterday at 08:00 and at 16:00; the cutoff falls between them, on the same day.
    const day = new Date(Date.now() - DAY).toISOString().slice(0, 10);
    for (const [userId, time] of [['u-morning', '08:00'], ['u-afternoon', '16:00']] as const) {
      const [r] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      await activity(r?.profileId as string, [`${day}T${time}:00.000Z`]);
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
