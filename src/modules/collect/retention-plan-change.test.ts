import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';
import { EVENT_DATA_CONTEXT } from './collect.repo.ts';

const DAY = 86_400_000;

/** A field of `Promo Viewed`, kept for reporting. */
const text = (retention: string, personal = false) => ({ type: 'string', 'x-candor': { category: 'user.behavior.browsing_history', purposes: ['analytics.reporting'], retention, personal } });

/** The default plan with the event `Promo Viewed`: `slot` kept P13M, and `properties`. */
function promoViewedPlan(properties: Record<string, unknown> = {}): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN) as unknown as { events: Record<string, unknown> };
  plan.events['Promo Viewed'] = { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { slot: text('P13M'), ...properties } } };
  return plan as unknown as PlanDocument;
}

/** `Promo Viewed` with, unless `removed`, `promo` and the personal `voucher` kept P30D. */
const promoPlan = (removed = false) => promoViewedPlan(removed ? {} : { promo: text('P30D'), voucher: text('P30D', true) });

describeEachDialect('field retention after a plan change', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');

  it('removes a field that joins an existing period from events stored before the last sweep', async () => {
    const kernel = ctx.kernel;
    const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-campaign' }], source: 'web', at: new Date().toISOString() }]));
    await kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const now = new Date();
    const timestamp = new Date(now.getTime() - 50 * DAY).toISOString();
    const message = { type: 'track', userId: 'u-campaign', messageId: 'campaign-1', timestamp, event: 'Product Viewed', properties: { product_id: 'p1' }, context: { campaign: { name: 'spring' } } };
    const [stored] = await kernel.collect.ingest([{ raw: message, bytes: JSON.stringify(message).length }], undefined, { source: 'web', gpc: false, receivedAt: now.getTime(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored');
    const campaign = async () => {
      const [row] = await kernel.storage.raw.all<{ data: string }>(`select data from collect_events where message_id = ${p(1)}`, ['campaign-1']);
      return (JSON.parse(row?.data ?? '{}') as { context?: { campaign?: { name?: string } } }).context?.campaign?.name;
    };
    // Stored an hour before the sweep (ids sort by storage time; a sweep's late pass looks again only at the last minute's).
    const hourAgo = `evt_${(now.getTime() - 3_600_000).toString(36).padStart(9, '0')}${'0'.repeat(16)}`;
    await kernel.storage.raw.run(`update collect_events set id = ${p(1)} where message_id = ${p(2)}`, [hourAgo, 'campaign-1']);
    // A sweep under the plan that keeps the campaign 13 months: the 30-day context rule (precise location) has a mark.
    await kernel.retention.sweep({ now, dryRun: false, batchSize: 100 });
    assert.equal(await campaign(), 'spring');
    // The campaign name is now kept 30 days, the period that rule already has.
    const { plan } = await kernel.catalog.plan();
    const doc = structuredClone(plan) as unknown as { context: { properties: { campaign: { properties: { name: { 'x-candor': { retention: string } } } } } } };
    doc.context.properties.campaign.properties.name['x-candor'].retention = 'P30D';
    await kernel.catalog.publish(doc, CLI_ACTOR);
    const report = await kernel.retention.sweep({ now: new Date(now.getTime() + 1000), dryRun: false, batchSize: 100 });
    assert.equal(await campaign(), undefined, 'the 50-day-old event lost the field');
    assert.ok(report.counts.some((c) => c.rule === 'collect.events.fields:context:P30D' && c.count >= 1), JSON.stringify(report.counts));
  });

  it('removes a field the plan no longer declares by the period of the latest version that declared it', async () => {
    const kernel = ctx.kernel;
    const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-promo' }], source: 'web', at: new Date().toISOString() }]));
    await kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    await kernel.catalog.publish(promoPlan(), CLI_ACTOR);
    const now = new Date();
    const timestamp = new Date(now.getTime() - 10 * DAY).toISOString();
    const message = { type: 'track', userId: 'u-promo', messageId: 'promo-1', timestamp, event: 'Promo Viewed', properties: { slot: 'top', promo: 'spring', voucher: 'V-7731' } };
    const [stored] = await kernel.collect.ingest([{ raw: message, bytes: JSON.stringify(message).length }], undefined, { source: 'web', gpc: false, receivedAt: now.getTime(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored');
    const properties = async () => {
      const [row] = await kernel.storage.raw.all<{ data: string; data_enc: string | null }>(`select data, data_enc from collect_events where message_id = ${p(1)}`, ['promo-1']);
      const sealed = row?.data_enc ? (JSON.parse(await kernel.keyring.decrypt(row.data_enc, EVENT_DATA_CONTEXT)) as { properties?: object }) : {};
      return { ...(JSON.parse(row?.data ?? '{}') as { properties?: object }).properties, ...sealed.properties };
    };
    // The fields go from the plan; the stored event keeps them for their 30 days.
    await kernel.catalog.publish(promoPlan(true), CLI_ACTOR);
    const rule = 'collect.events.fields:track:Promo Viewed:P30D';
    await kernel.retention.sweep({ now, batchSize: 100 });
    await kernel.retention.sweep({ now: new Date(now.getTime() + 19 * DAY), batchSize: 100 });
    assert.deepEqual(await properties(), { slot: 'top', promo: 'spring', voucher: 'V-7731' }, '29 days old: kept');
    const report = await kernel.retention.sweep({ now: new Date(now.getTime() + 21 * DAY), batchSize: 100 });
    assert.deepEqual(await properties(), { slot: 'top' }, '31 days old: gone from the plain and the sealed part');
    assert.equal(report.counts.filter((c) => c.rule === rule).reduce((n, c) => n + c.count, 0), 1, JSON.stringify(report.counts));
    assert.match((await kernel.retention.policies()).find((x) => x.id === rule)?.description ?? '', /no longer declared.*properties\.promo \(plan version/);
  });

  it('counts an old order imported late once: deleted, not also reduced in the same sweep', async () => {
    const kernel = ctx.kernel;
    const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-old-order' }], source: 'web', at: new Date().toISOString() }]));
    await kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const now = new Date();
    await kernel.retention.sweep({ now, dryRun: false, batchSize: 100 });
    // An order history imported after that sweep, with an order from eight years ago (past the seven of the legal obligation).
    const timestamp = new Date(now.getTime() - 8 * 366 * DAY).toISOString();
    const order = { type: 'track', userId: 'u-old-order', messageId: 'old-order-1', timestamp, event: 'Order Completed', properties: { order_id: 'o-2018', total: 10, currency: 'EUR' } };
    const [stored] = await kernel.collect.ingest([{ raw: order, bytes: JSON.stringify(order).length }], undefined, { source: 'web', gpc: false, receivedAt: now.getTime(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored');
    const report = await kernel.retention.sweep({ now: new Date(now.getTime() + 1000), dryRun: false, batchSize: 100 });
    const counted = (rule: string) => report.counts.filter((c) => c.rule === rule).reduce((n, c) => n + c.count, 0);
    assert.equal(counted('collect.events.orders'), 1);
    assert.equal(counted('collect.events.orders.reduce'), 0, JSON.stringify(report.counts));
  });
});

/** `Promo Viewed` with `promo` a text kept P30D, or an object whose `code` is kept P1Y. */
const promoAsObjectPlan = (asObject: boolean) => promoViewedPlan({ promo: asObject ? { type: 'object', properties: { code: text('P1Y') } } : text('P30D') });

// A field once a text, since declared an object whose fields are kept longer: its rule removes the old texts, never the
// objects, which hold fields their own rules decide.
describeEachDialect('event fields: a field retired where the plan in force now declares fields inside it', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');

  it('removes a 40-day-old promo text (P30D) and keeps the declared promo.code (P1Y) of an event as old', async () => {
    const kernel = ctx.kernel;
    const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-promo-object' }], source: 'web', at: new Date().toISOString() }]));
    await kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const now = new Date();
    const send = async (messageId: string, promo: unknown) => {
      const message = { type: 'track', userId: 'u-promo-object', messageId, timestamp: new Date(now.getTime() - 40 * DAY).toISOString(), event: 'Promo Viewed', properties: { slot: 'top', promo } };
      const [stored] = await kernel.collect.ingest([{ raw: message, bytes: JSON.stringify(message).length }], undefined, { source: 'web', gpc: false, receivedAt: now.getTime(), actor: CLI_ACTOR });
      assert.equal(stored?.status, 'stored');
    };
    await kernel.catalog.publish(promoAsObjectPlan(false), CLI_ACTOR);
    await send('promo-text-1', 'SPRING');
    await kernel.catalog.publish(promoAsObjectPlan(true), CLI_ACTOR);
    await send('promo-object-1', { code: 'SUMMER' });
    await kernel.retention.sweep({ now, batchSize: 100 });
    const properties = async (messageId: string) => JSON.parse((await kernel.storage.raw.all<{ data: string }>(`select data from collect_events where message_id = ${p(1)}`, [messageId]))[0]?.data ?? '{}').properties;
    assert.deepEqual(await properties('promo-text-1'), { slot: 'top' });
    assert.deepEqual(await properties('promo-object-1'), { slot: 'top', promo: { code: 'SUMMER' } });
  });

  it('keeps promo.code (P1Y) once the object is removed too, although the text before it was kept P30D', async () => {
    const kernel = ctx.kernel;
    const now = new Date();
    await kernel.catalog.publish(promoAsObjectPlan(false), CLI_ACTOR);
    await kernel.catalog.publish(promoAsObjectPlan(true), CLI_ACTOR);
    const message = { type: 'track', userId: 'u-promo-object', messageId: 'promo-object-2', timestamp: new Date(now.getTime() - 40 * DAY).toISOString(), event: 'Promo Viewed', properties: { slot: 'top', promo: { code: 'AUTUMN' } } };
    const [stored] = await kernel.collect.ingest([{ raw: message, bytes: JSON.stringify(message).length }], undefined, { source: 'web', gpc: false, receivedAt: now.getTime(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored');
    // Both promo (a text, P30D, version n) and promo.code (P1Y, version n+1) are no longer declared.
    await kernel.catalog.publish(promoPlan(true), CLI_ACTOR);
    await kernel.retention.sweep({ now, batchSize: 100 });
    const [row] = await kernel.storage.raw.all<{ data: string }>(`select data from collect_events where message_id = ${p(1)}`, ['promo-object-2']);
    assert.deepEqual(JSON.parse(row?.data ?? '{}').properties, { slot: 'top', promo: { code: 'AUTUMN' } });
  });
});

/** `Promo Viewed` with `voucher` kept P30D, personal or not, or removed. */
const voucherPlan = (personal: boolean, removed = false) => promoViewedPlan(removed ? {} : { voucher: text('P30D', personal) });

// A value stored sealed while its field was declared personal stays sealed when a later version declares it not
// personal (or removes it): the field's rule opens the sealed part as long as any stored version declared it personal.
describeEachDialect('event fields: a field declared personal once, not personal (or removed) since', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');

  for (const removed of [false, true]) {
    it(`removes a 40-day-old sealed voucher (P30D) once a version ${removed ? 'removed it' : 'declared it not personal'}`, async () => {
      const kernel = ctx.kernel;
      const userId = `u-flip-${removed}`;
      const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      await kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
      await kernel.catalog.publish(voucherPlan(true), CLI_ACTOR);
      const now = new Date();
      const messageId = `flip-${removed}`;
      const message = { type: 'track', userId, messageId, timestamp: new Date(now.getTime() - 40 * DAY).toISOString(), event: 'Promo Viewed', properties: { slot: 'top', voucher: 'V-7731' } };
      const [stored] = await kernel.collect.ingest([{ raw: message, bytes: JSON.stringify(message).length }], undefined, { source: 'web', gpc: false, receivedAt: now.getTime(), actor: CLI_ACTOR });
      assert.equal(stored?.status, 'stored');
      await kernel.catalog.publish(voucherPlan(false), CLI_ACTOR);
      if (removed) await kernel.catalog.publish(voucherPlan(false, true), CLI_ACTOR);
      await kernel.retention.sweep({ now, batchSize: 100 });
      const [row] = await kernel.storage.raw.all<{ data: string; data_enc: string | null }>(`select data, data_enc from collect_events where message_id = ${p(1)}`, [messageId]);
      const sealed = row?.data_enc ? (JSON.parse(await kernel.keyring.decrypt(row.data_enc, EVENT_DATA_CONTEXT)) as { properties?: Record<string, unknown> } | null) : null;
      assert.equal(sealed?.properties?.voucher, undefined);
      assert.deepEqual(JSON.parse(row?.data ?? '{}').properties, { slot: 'top' });
    });
  }
});
