import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// The profile view of messages as a client library sends them: out of order, and split across a device and an account.
describeEachDialect('profiles of ingested messages', (dialect) => {
  const ctx = useKernel(dialect);
  const { result, consent, profileOf } = useIngestServer(ctx);
  const send = async (url: string, payload: Record<string, unknown>) => assert.equal((await result(url, payload))?.status, 'stored');
  const view = async (userId: string) => {
    const id = await profileOf('user_id', userId);
    assert.ok(id);
    return ctx.kernel.profiles.get(await ctx.kernel.identity.members(id), { decrypt: true });
  };

  it('shows the value of the newest message by event time when an older one arrives last', async () => {
    await consent('ooo-ann', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    await send('/v1/identify', { userId: 'ooo-ann', messageId: 'n1', timestamp: '2026-01-01T10:00:00Z', traits: { first_name: 'Ann' } });
    await send('/v1/identify', { userId: 'ooo-ann', messageId: 'n2', timestamp: '2026-01-01T12:00:00Z', traits: { first_name: 'Ann' } });
    await send('/v1/identify', { userId: 'ooo-ann', messageId: 'n3', timestamp: '2026-01-01T11:00:00Z', traits: { first_name: 'Bob' } });
    const { traits, profileIds } = await view('ooo-ann');
    assert.deepEqual(traits.map((t) => [t.key, t.value, t.updatedAt, t.messageId]), [['first_name', 'Ann', '2026-01-01T12:00:00.000Z', 'n2']]);
    const history = await ctx.kernel.profiles.traitHistory(profileIds, 'first_name', { decrypt: true });
    assert.deepEqual(history.map((h) => [h.value, h.messageId]), [['Ann', 'n1']]);
  });

  it('totals the orders of a device merged into an account as if they had all been the account\'s', async () => {
    const orders = (ids: { one: Record<string, string>; rest: Record<string, string> }, prefix: string) => [
      { ...ids.one, messageId: `${prefix}1`, event: 'Order Completed', properties: { order_id: 'o1', revenue: 100, currency: 'EUR' } },
      { ...ids.rest, messageId: `${prefix}2`, event: 'Order Completed', properties: { order_id: 'o2', revenue: 5, currency: 'USD' } },
      { ...ids.rest, messageId: `${prefix}3`, event: 'Order Completed', properties: { order_id: 'o3' } },
    ];
    await consent('orders-single', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    await consent('orders-merged', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    for (const message of orders({ one: { userId: 'orders-single' }, rest: { userId: 'orders-single' } }, 's')) await send('/v1/track', message);
    for (const message of orders({ one: { anonymousId: 'orders-device' }, rest: { userId: 'orders-merged' } }, 'm')) await send('/v1/track', message);
    await send('/v1/identify', { userId: 'orders-merged', anonymousId: 'orders-device', messageId: 'm4' });
    assert.equal(await profileOf('anonymous_id', 'orders-device'), await profileOf('user_id', 'orders-merged'));
    const single = (await view('orders-single')).computed;
    const merged = (await view('orders-merged')).computed;
    assert.deepEqual([single.orderCount, single.totalOrderValue, single.averageOrderValue, single.currency], [3, 100, 100, 'EUR']);
    assert.deepEqual([merged.orderCount, merged.totalOrderValue, merged.averageOrderValue, merged.currency], [3, 100, 100, 'EUR']);
  });
});
