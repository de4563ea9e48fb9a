import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';

describeEachDialect('the average order value divides by the priced orders (migration 0093)', (dialect) => {
  // Computed traits as the release before the change left them: no count of priced orders.
  const ctx = useUpgradedKernel(dialect, '0093', async (db) => {
    await sql`INSERT INTO profiles_computed (profile_id, first_seen_at, last_seen_at, event_count, order_count, total_order_value, currency, last_seen_day) VALUES
      ('prf_priced', '2026-01-01T10:00:00.000Z', '2026-01-02T10:00:00.000Z', 9, 4, 90, 'EUR', '2026-01-02'),
      ('prf_unpriced', '2026-01-01T10:00:00.000Z', '2026-01-02T10:00:00.000Z', 3, 2, 0, NULL, '2026-01-02'),
      ('prf_browsing', '2026-01-01T10:00:00.000Z', '2026-01-02T10:00:00.000Z', 5, 0, 0, NULL, '2026-01-02')`.execute(db);
  });
  const computed = async (profileId: string) => {
    const { orderCount, totalOrderValue, averageOrderValue, currency } = (await ctx.kernel.profiles.get([profileId], { decrypt: false })).computed;
    return { orderCount, totalOrderValue, averageOrderValue, currency };
  };

  it('keeps the average of stored profiles: a non-zero total over all their orders, none for a zero total', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0093_profiles_computed_priced_orders'));
    assert.deepEqual(await computed('prf_priced'), { orderCount: 4, totalOrderValue: 90, averageOrderValue: 22.5, currency: 'EUR' });
    assert.deepEqual(await computed('prf_unpriced'), { orderCount: 2, totalOrderValue: 0, averageOrderValue: null, currency: null });
    assert.deepEqual(await computed('prf_browsing'), { orderCount: 0, totalOrderValue: 0, averageOrderValue: null, currency: null });
  });

  it('counts later orders in the total only when priced in the stored currency', async () => {
    const at = '2026-02-01T10:00:00.000Z';
    await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.profiles.recordActivityBatch(tx, [
        { profileId: 'prf_priced', at, kind: 'track', event: 'Order Completed', revenue: 60, currency: 'USD' },
        { profileId: 'prf_priced', at, kind: 'track', event: 'Order Completed', revenue: 10, currency: 'EUR' },
        { profileId: 'prf_priced', at, kind: 'track', event: 'Order Completed' },
        { profileId: 'prf_unpriced', at, kind: 'track', event: 'Order Completed', revenue: 30, currency: 'GBP' },
      ]),
    );
    assert.deepEqual(await computed('prf_priced'), { orderCount: 7, totalOrderValue: 100, averageOrderValue: 20, currency: 'EUR' });
    assert.deepEqual(await computed('prf_unpriced'), { orderCount: 3, totalOrderValue: 30, averageOrderValue: 30, currency: 'GBP' });
  });
});
