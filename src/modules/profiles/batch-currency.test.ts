import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { ActivityInput } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const receivedAt = '2026-03-01T10:00:00.000Z';
const order = (profileId: string, revenue: number, currency: string, position?: number): ActivityInput => ({
  profileId,
  at: '2026-03-01T09:00:00.000Z',
  receivedAt,
  kind: 'track',
  event: 'Order Completed',
  revenue,
  currency,
  ...(position === undefined ? {} : { position }),
});

// The messages of one request are received at one time: the first of them in the request is the first received, as
// when they are sent one request after the other, whatever the ids of the profiles they land on.
describeEachDialect('a merged person\'s currency from orders received in one batch', (dialect) => {
  const ctx = useKernel(dialect);
  const record = (items: ActivityInput[]) => ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, items));
  const computed = async (profileIds: string[]) => {
    const { orderCount, totalOrderValue, currency } = (await ctx.kernel.profiles.get(profileIds, { decrypt: false })).computed;
    return { orderCount, totalOrderValue, currency };
  };

  it('takes the currency of the member whose order came first in the batch, with the lower profile id or the higher', async () => {
    for (const firstHasLowerId of [true, false]) {
      const [low, high] = [profileId(), profileId()].sort() as [string, string];
      const [first, second] = firstHasLowerId ? [low, high] : [high, low];
      await record([order(first, 25, 'EUR'), order(second, 32.1, 'USD')]);
      assert.deepEqual(await computed([low, high]), { orderCount: 2, totalOrderValue: 25, currency: 'EUR' }, `first order on the ${firstHasLowerId ? 'lower' : 'higher'} id`);
    }
  });

  it('goes by the position given among messages received at one time, not by the order of the batch', async () => {
    const [low, high] = [profileId(), profileId()].sort() as [string, string];
    // The batch lists the lower id's order first, but it was the second message of its request.
    await record([order(low, 32.1, 'USD', 1), order(high, 25, 'EUR', 0)]);
    assert.deepEqual(await computed([low, high]), { orderCount: 2, totalOrderValue: 25, currency: 'EUR' });
    // One profile's own currency too: its first order in the request, EUR; the USD one is not added.
    const single = profileId();
    await record([order(single, 32.1, 'USD', 1), order(single, 25, 'EUR', 0)]);
    assert.deepEqual(await computed([single]), { orderCount: 2, totalOrderValue: 25, currency: 'EUR' });
  });
});

describeEachDialect('a merged person\'s currency from one ingested batch', (dialect) => {
  const ctx = useKernel(dialect);
  const { send } = useIngestServer(ctx);
  const post = async (url: string, payload: unknown) => {
    const response = await send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results?: { status: string }[] }).results ?? [];
  };
  const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };

  it('is that of the batch\'s first order, also when it lands on the member with the higher profile id', async () => {
    const [user, device] = ['batch-cur-user', 'batch-cur-device'];
    await post('/v1/consent', { mechanism: 'banner_save', userId: user, purposes });
    await post('/v1/consent', { mechanism: 'banner_save', anonymousId: device, purposes });
    await post('/v1/identify', { userId: user, anonymousId: device, messageId: 'bc-0', timestamp: '2026-03-01T00:00:00Z' });
    const [canonical] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: user }], source: 'web', at: new Date().toISOString() }]);
    assert.ok(canonical);
    const members = await ctx.kernel.identity.members(canonical);
    assert.equal(members.length, 2);
    // The first order goes to whichever identifier's profile has the higher id (a tie by profile id would pick the other).
    const holders = await ctx.kernel.identity.identifiersOf(canonical);
    const holderOf = (type: string) => holders.find((h) => h.type === type)?.profileId as string;
    const [first, second] = holderOf('user_id') > holderOf('anonymous_id') ? [{ userId: user }, { anonymousId: device }] : [{ anonymousId: device }, { userId: user }];
    const results = await post('/v1/batch', {
      batch: [
        { type: 'track', ...first, event: 'Order Completed', messageId: 'bc-1', timestamp: '2026-03-02T00:00:00Z', properties: { order_id: 'o-1', revenue: 25, currency: 'EUR' } },
        { type: 'track', ...second, event: 'Order Completed', messageId: 'bc-2', timestamp: '2026-03-03T00:00:00Z', properties: { order_id: 'o-2', revenue: 32.1, currency: 'USD' } },
      ],
    });
    assert.deepEqual(results.map((r) => r.status), ['stored', 'stored']);
    const { currency, totalOrderValue, orderCount } = (await ctx.kernel.profiles.get(members, { decrypt: false })).computed;
    assert.deepEqual({ currency, totalOrderValue, orderCount }, { currency: 'EUR', totalOrderValue: 25, orderCount: 2 });
  });
});
