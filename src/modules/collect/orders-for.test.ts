import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';

// Purpose-bound reads see only the fields declared for the purpose: an order stored for profiling (the event serves
// it) whose total the plan version it was stored under declares for reporting only gives scoring no total.
describeEachDialect('collect: orders read for a purpose, field by field', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const send = async (url: string, payload: unknown) => {
    const response = await server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as { results?: { status: string }[] };
  };
  const order = (userId: string, orderId: string, total: number) => ({ type: 'track', userId, event: 'Order Completed', messageId: orderId, properties: { order_id: orderId, total, revenue: total, currency: 'EUR' } });

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('reads an order total only when the plan version the order was stored under declares it for the purpose asked', async () => {
    const user = uniqueId('buyer');
    await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    const first = await send('/v1/batch', { batch: [order(user, `${user}-1`, 40)] });
    assert.deepEqual(first.results?.map((r) => r.status), ['stored']);

    // A plan version that declares total and revenue for reporting only (the event still serves profiling).
    const plan = structuredClone(DEFAULT_PLAN) as PlanDocument & { events: Record<string, { properties: { properties: Record<string, { 'x-candor': { purposes: string[] } }> } }> };
    const fields = plan.events['Order Completed']?.properties.properties;
    assert.ok(fields?.total && fields.revenue);
    fields.total['x-candor'].purposes = ['analytics.reporting'];
    fields.revenue['x-candor'].purposes = ['analytics.reporting'];
    const published = await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    assert.ok(published.version > 1);
    const second = await send('/v1/batch', { batch: [order(user, `${user}-2`, 75)] });
    assert.deepEqual(second.results?.map((r) => r.status), ['stored']);

    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: user }], source: 'web', at: new Date().toISOString() }]);
    assert.ok(profileId);
    const totals = async (purpose: string) => (await ctx.kernel.collect.ordersFor([profileId], purpose)).map((o) => o.total).sort((a, b) => (a ?? -1) - (b ?? -1));
    // Both orders are stored for profiling; only the one stored under the default plan shows its total to it.
    assert.deepEqual(await totals('personalize.profiling'), [null, 40]);
    assert.deepEqual(await totals('analytics.reporting'), [40, 75]);
    await ctx.kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
  });

  it('reads no order for a purpose once the notice describes neither the purchase nor a field of it for that purpose', async () => {
    const user = uniqueId('buyer');
    await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.deepEqual((await send('/v1/batch', { batch: [order(user, `${user}-1`, 40)] })).results?.map((r) => r.status), ['stored']);
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: user }], source: 'web', at: new Date().toISOString() }]);
    assert.ok(profileId);
    assert.deepEqual((await ctx.kernel.collect.ordersFor([profileId], 'personalize.profiling')).map((o) => o.total), [40]);
    // A narrower notice (not material): profiling now describes browsing history only, not purchases.
    const current = ctx.kernel.consent.currentNotice();
    const purposes = current.purposes.map((p) => (p.purpose === 'personalize.profiling' ? { ...p, categories: ['user.behavior.browsing_history'] } : p));
    await ctx.kernel.consent.publishNotice({ text: `${current.text}\n\nNarrower.`, purposes }, CLI_ACTOR);
    assert.deepEqual(await ctx.kernel.collect.ordersFor([profileId], 'personalize.profiling'), []);
    assert.deepEqual((await ctx.kernel.collect.ordersFor([profileId], 'analytics.reporting')).map((o) => o.total), [40], 'still described for reporting');
  });
});
