import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

/** `n` calendar months after `at`. */
const months = (at: Date, n: number) => {
  const out = new Date(at.getTime());
  out.setUTCMonth(out.getUTCMonth() + n);
  return out;
};

// An inactivity period shorter than the raw events' one (6 against 13 months): an inactive person's orders are not
// reduced yet when the person goes. The legal obligation still needs them for the orders' period: they are reduced
// then, as collect.events.orders.reduce would reduce them later, instead of being deleted with the person.
describeEachDialect('deleting an inactive person before their orders were reduced', (dialect) => {
  let env: TestEnvironment;
  let kernel: Kernel;
  before(async () => {
    env = await createEnvironment(dialect);
    kernel = await openKernel(env.configWith({ CANDOR_RETENTION_INACTIVE_PROFILES: 'P6M' }));
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
  });
  const event = async (messageId: string) =>
    (await sql<{ profile_id: string; data: string; data_enc: string | null; purposes: string }>`SELECT profile_id, data, data_enc, purposes FROM collect_events WHERE message_id = ${messageId}`.execute(kernel.storage.db)).rows[0];

  it('keeps their orders, reduced, until collect.events.orders deletes them', async () => {
    const start = new Date();
    const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-early-buyer' }], source: 'web', at: start.toISOString() }]));
    const buyer = resolved?.profileId as string;
    await kernel.consent.record(buyer, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const messages = [
      { type: 'track', userId: 'u-early-buyer', messageId: 'early-view', event: 'Product Viewed', properties: { product_id: 'p-1' } },
      { type: 'track', userId: 'u-early-buyer', messageId: 'early-order', event: 'Order Completed', properties: { order_id: 'B-7', total: 80, currency: 'EUR', coupon: 'SPRING' } },
    ];
    const stored = await kernel.collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.ok(stored.every((r) => r.status === 'stored'), JSON.stringify(stored));

    // Seven months on: inactive for six, the person goes; thirteen months have not passed, nothing was reduced.
    const report = await kernel.retention.sweep({ now: months(start, 7), batchSize: 2 });
    assert.equal(report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0), 1);
    assert.equal(report.counts.filter((c) => c.rule === 'collect.events.orders.reduce').reduce((n, c) => n + c.count, 0), 0);
    assert.equal(await kernel.identity.canonical(buyer), null);
    assert.equal(await event('early-view'), undefined);
    const order = await event('early-order');
    assert.ok(order, 'the order the legal obligation needs is kept');
    assert.deepEqual(JSON.parse(order.data), { properties: { order_id: 'B-7', total: 80, currency: 'EUR' } });
    assert.deepEqual(JSON.parse(order.purposes), ['essential.legal_obligation']);
    assert.equal(order.data_enc, null);

    // The reduce rule later finds it as it would have left it; collect.events.orders deletes it at the end of its period.
    await kernel.retention.sweep({ now: months(start, 14), batchSize: 2 });
    assert.deepEqual(await event('early-order'), order);
    const late = await kernel.retention.sweep({ now: months(start, 12 * 10 + 1), batchSize: 2 });
    assert.equal(late.counts.filter((c) => c.rule === 'collect.events.orders').reduce((n, c) => n + c.count, 0), 1);
    assert.equal(await event('early-order'), undefined);
  });
});
