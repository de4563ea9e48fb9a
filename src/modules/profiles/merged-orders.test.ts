import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel, useUpgradedKernel } from '../../../test/support/kernel.ts';
import type { ActivityInput } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 10, minute)).toISOString();
const order = (profileId: string, minute: number, revenue?: number, currency?: string): ActivityInput => ({
  profileId,
  at: at(minute),
  receivedAt: at(minute),
  kind: 'track',
  event: 'Order Completed',
  ...(revenue === undefined ? {} : { revenue }),
  ...(currency === undefined ? {} : { currency }),
});

// Readers never see whether a person's orders went to one profile or to several merged ones.
describeEachDialect('a merged person has the order totals of one profile with all their orders', (dialect) => {
  const ctx = useKernel(dialect);
  const record = async (...batches: ActivityInput[][]) => {
    for (const batch of batches) await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, batch));
  };
  const computed = async (profileIds: string[]) => {
    const { orderCount, totalOrderValue, averageOrderValue, currency } = (await ctx.kernel.profiles.get(profileIds, { decrypt: false })).computed;
    return { orderCount, totalOrderValue, averageOrderValue, currency };
  };

  it('takes the currency of the first priced order across the members, not that of the member with most orders', async () => {
    const [single, device, user] = [profileId(), profileId(), profileId()];
    await record([order(single, 1, 100, 'EUR')], [order(single, 2, 5, 'USD')], [order(single, 3)]);
    await record([order(device, 1, 100, 'EUR')], [order(user, 2, 5, 'USD')], [order(user, 3)]);
    const alone = await computed([single]);
    assert.deepEqual(alone, { orderCount: 3, totalOrderValue: 100, averageOrderValue: 100, currency: 'EUR' });
    assert.deepEqual(await computed([user, device]), alone);
    assert.deepEqual(await computed([device, user]), alone);
  });

  it('goes by when the orders were received, whatever the profile ids', async () => {
    const [first, second] = [profileId(), profileId()].sort();
    // The member sorting second got the first priced order; the first has more orders in another currency.
    await record([order(second as string, 1, 30, 'GBP')], [order(first as string, 2, 10, 'USD'), order(first as string, 3, 20, 'USD'), order(first as string, 4, 30, 'USD')]);
    assert.deepEqual(await computed([first as string, second as string]), { orderCount: 4, totalOrderValue: 30, averageOrderValue: 30, currency: 'GBP' });
  });

  it('adds the totals of members priced in the same currency', async () => {
    const [device, user] = [profileId(), profileId()];
    await record([order(device, 1, 100, 'EUR')], [order(user, 2, 50, 'eur'), order(user, 3)]);
    assert.deepEqual(await computed([user, device]), { orderCount: 3, totalOrderValue: 150, averageOrderValue: 75, currency: 'EUR' });
  });

  it('counts the orders of a member with unpriced orders only, and leaves the total and average as they are', async () => {
    const [device, user] = [profileId(), profileId()];
    await record([order(device, 1)], [order(device, 2)], [order(user, 3, 40, 'USD')]);
    assert.deepEqual(await computed([user, device]), { orderCount: 3, totalOrderValue: 40, averageOrderValue: 40, currency: 'USD' });
  });

  it('adds revenue naming no currency of a member without one', async () => {
    const [device, user] = [profileId(), profileId()];
    await record([order(device, 1, 20)], [order(user, 2, 40, 'USD')]);
    assert.deepEqual(await computed([user, device]), { orderCount: 2, totalOrderValue: 60, averageOrderValue: 30, currency: 'USD' });
  });

  it('keeps the receipt of the first priced order naming a currency, not of revenue naming none or of later currencies', async () => {
    const [device, user] = [profileId(), profileId()];
    // The user's first order names no currency, then in one batch USD then EUR: its currency is USD, from minute 3.
    await record([order(user, 1, 10)], [order(user, 3, 5, 'USD'), order(user, 4, 7, 'EUR')], [order(device, 2, 100, 'EUR')]);
    assert.deepEqual(await computed([user]), { orderCount: 3, totalOrderValue: 15, averageOrderValue: 7.5, currency: 'USD' });
    assert.deepEqual(await computed([user, device]), { orderCount: 4, totalOrderValue: 100, averageOrderValue: 100, currency: 'EUR' });
  });
});

describeEachDialect('merged currency of profiles stored before migration 0111', (dialect) => {
  // Computed traits as the release before the change left them: no time for the currency.
  const ctx = useUpgradedKernel(dialect, '0111', async (db) => {
    await sql`INSERT INTO profiles_computed (profile_id, first_seen_at, last_seen_at, last_received_at, last_active_day, event_count, order_count, priced_order_count, total_order_value, currency) VALUES
      ('prf_old_usd', '2026-01-05T10:00:00.000Z', '2026-01-06T10:00:00.000Z', '2026-01-06T10:00:00.000Z', '2026-01-06', 3, 3, 3, 30, 'USD'),
      ('prf_old_eur', '2026-01-01T10:00:00.000Z', '2026-01-02T10:00:00.000Z', '2026-01-02T10:00:00.000Z', '2026-01-02', 1, 1, 1, 100, 'EUR'),
      ('prf_old_none', '2026-01-01T10:00:00.000Z', '2026-01-02T10:00:00.000Z', '2026-01-02T10:00:00.000Z', '2026-01-02', 2, 1, 0, 0, NULL)`.execute(db);
  });
  const computed = async (profileIds: string[]) => {
    const { orderCount, totalOrderValue, averageOrderValue, currency } = (await ctx.kernel.profiles.get(profileIds, { decrypt: false })).computed;
    return { orderCount, totalOrderValue, averageOrderValue, currency };
  };

  it('counts a stored currency from its profile first seen time', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0111_profiles_computed_currency_at'));
    assert.deepEqual(await computed(['prf_old_usd', 'prf_old_eur']), { orderCount: 4, totalOrderValue: 100, averageOrderValue: 100, currency: 'EUR' });
  });

  it('records when a stored profile without a currency gets one, and only then', async () => {
    const fresh = profileId();
    await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.profiles.recordActivityBatch(tx, [
        { profileId: fresh, at: '2026-02-01T10:00:00.000Z', receivedAt: '2026-02-01T10:00:00.000Z', kind: 'track', event: 'Order Completed', revenue: 5, currency: 'GBP' },
        { profileId: 'prf_old_none', at: '2026-02-02T10:00:00.000Z', receivedAt: '2026-02-02T10:00:00.000Z', kind: 'track', event: 'Order Completed', revenue: 8, currency: 'CHF' },
        { profileId: 'prf_old_eur', at: '2026-02-02T10:00:00.000Z', receivedAt: '2026-02-02T10:00:00.000Z', kind: 'track', event: 'Order Completed', revenue: 8, currency: 'EUR' },
      ]),
    );
    // The old profile's CHF came after the new one's GBP; the old EUR one keeps its first seen time (January).
    assert.deepEqual(await computed(['prf_old_none', fresh]), { orderCount: 3, totalOrderValue: 5, averageOrderValue: 5, currency: 'GBP' });
    assert.deepEqual(await computed(['prf_old_eur', fresh]), { orderCount: 3, totalOrderValue: 108, averageOrderValue: 54, currency: 'EUR' });
  });
});
