import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { ComputedTraitsView } from '../profiles/index.ts';

const pick = (c: ComputedTraitsView) => ({ orderCount: c.orderCount, totalOrderValue: c.totalOrderValue, currency: c.currency });

const DAY = 86_400_000;
const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'candor.js');

// Computed traits are derived from stored events: when retention deletes events or reduces an order, what they added
// comes out of the person's counts, order value and first seen time, in the same transaction (derived data follows
// its source). Last seen and the inactivity clock stay.
describeEachDialect('computed traits after retention deletes and reduces events', (dialect) => {
  const ctx = useKernel(dialect);
  /** A person who consented to reporting and profiling, and what they sent, received now; their profile id. */
  const buyerWith = async (userId: string, messages: Record<string, unknown>[], now: number) => {
    const { kernel } = ctx;
    const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date(now).toISOString() }]));
    const buyer = resolved?.profileId as string;
    await kernel.consent.record(buyer, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const stored = await sendAt(messages, now);
    assert.ok(stored.every((r) => r.status === 'stored'), JSON.stringify(stored));
    return buyer;
  };
  const sendAt = (messages: Record<string, unknown>[], receivedAt: number) =>
    ctx.kernel.collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt, actor: CLI_ACTOR });
  const computed = async (profileId: string) => pick((await ctx.kernel.profiles.get([profileId], { decrypt: false })).computed);
  /** A sweep that counts the person's orders again must leave what ingestion counted; returns that. */
  const sweepKeeps = async (profileId: string) => {
    const ingested = await computed(profileId);
    await ctx.kernel.retention.sweep({ batchSize: 100 });
    assert.deepEqual(await computed(profileId), ingested);
    return ingested;
  };

  it('takes deleted events out, and counts a reduced order at what is left of it', async () => {
    const { kernel } = ctx;
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const order = (messageId: string, days: number, properties: Record<string, unknown>) => ({ type: 'track', userId: 'u-kept-buyer', messageId, event: 'Order Completed', timestamp: ago(days), properties });
    const messages = [
      { type: 'page', userId: 'u-kept-buyer', messageId: 'old-page', name: 'Home', properties: { path: '/' }, timestamp: ago(500) },
      order('ancient-order', 8 * 366, { order_id: 'A-1', revenue: 1000, total: 1010, currency: 'USD' }),
      order('old-order', 700, { order_id: 'A-2', revenue: 40, total: 42.5, currency: 'USD' }),
      order('new-order', 5, { order_id: 'A-3', revenue: 10, currency: 'USD' }),
      { type: 'page', userId: 'u-kept-buyer', messageId: 'new-page', name: 'Home', properties: { path: '/' }, timestamp: ago(1) },
    ];
    const buyer = await buyerWith('u-kept-buyer', messages, now);
    const before = (await kernel.profiles.get([buyer], { decrypt: false })).computed;
    assert.equal(before.eventCount, 5);
    assert.equal(before.orderCount, 3);
    assert.equal(before.totalOrderValue, 1050);
    assert.equal(before.firstSeenAt, ago(8 * 366));

    await kernel.retention.sweep({ batchSize: 2 });
    const after = (await kernel.profiles.get([buyer], { decrypt: false })).computed;
    // The 500-day page and the 8-year order are gone; the 700-day order is reduced to its total.
    assert.equal(after.eventCount, 3);
    assert.equal(after.orderCount, 2);
    assert.equal(after.totalOrderValue, 52.5);
    assert.equal(after.averageOrderValue, 26.25);
    assert.equal(after.currency, 'USD');
    assert.equal(after.firstSeenAt, ago(700));
    assert.equal(after.lastSeenAt, ago(1));

    // Run again: nothing more comes out.
    await kernel.retention.sweep({ batchSize: 2 });
    assert.deepEqual((await kernel.profiles.get([buyer], { decrypt: false })).computed, after);
  });

  it('leaves a person whose every event went with no count, no order value and no currency', async () => {
    const { kernel } = ctx;
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const messages = [
      { type: 'page', userId: 'u-gone-buyer', messageId: 'gone-page', name: 'Home', properties: { path: '/' }, timestamp: ago(600) },
      { type: 'track', userId: 'u-gone-buyer', messageId: 'gone-order', event: 'Order Completed', timestamp: ago(9 * 366), properties: { order_id: 'G-1', total: 99, currency: 'EUR' } },
    ];
    const buyer = await buyerWith('u-gone-buyer', messages, now);
    await kernel.retention.sweep({ batchSize: 2 });
    const after = (await kernel.profiles.get([buyer], { decrypt: false })).computed;
    assert.equal(after.eventCount, 0);
    assert.equal(after.orderCount, 0);
    assert.equal(after.totalOrderValue, 0);
    assert.equal(after.averageOrderValue, null);
    assert.equal(after.currency, null);
    assert.equal(after.lastSeenAt, ago(600), 'last seen stays: the inactivity rule counts from it');
    assert.equal(after.firstSeenAt, after.lastSeenAt);
  });

  it('takes the currency of the next priced order left when the one that gave it goes', async () => {
    const { kernel } = ctx;
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const order = (messageId: string, days: number, properties: Record<string, unknown>) => ({ type: 'track', userId: 'u-two-currencies', messageId, event: 'Order Completed', timestamp: ago(days), properties });
    // The USD order comes first in the request: the profile's currency is USD, and the EUR order is not added.
    const buyer = await buyerWith('u-two-currencies', [order('usd-old', 8 * 366, { order_id: 'C-1', total: 100, currency: 'USD' }), order('eur-new', 5, { order_id: 'C-2', total: 20, currency: 'EUR' })], now);
    assert.deepEqual(pick((await kernel.profiles.get([buyer], { decrypt: false })).computed), { orderCount: 2, totalOrderValue: 100, currency: 'USD' });
    await kernel.retention.sweep({ batchSize: 2 });
    assert.deepEqual(pick((await kernel.profiles.get([buyer], { decrypt: false })).computed), { orderCount: 1, totalOrderValue: 20, currency: 'EUR' });
    const more = await kernel.collect.ingest([order('eur-later', 1, { order_id: 'C-3', total: 30, currency: 'EUR' })].map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(more[0]?.status, 'stored');
    assert.deepEqual(pick((await kernel.profiles.get([buyer], { decrypt: false })).computed), { orderCount: 2, totalOrderValue: 50, currency: 'EUR' });
  });

  it('orders two requests received in one millisecond as ingestion did, when it counts again', async () => {
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const buyer = await buyerWith('u-one-ms', [{ type: 'page', userId: 'u-one-ms', messageId: 'one-ms-old', name: 'Home', properties: { path: '/' }, timestamp: ago(600) }], now - 5000);
    const receivedAt = Date.now();
    const send = (messages: Record<string, unknown>[]) => sendAt(messages, receivedAt);
    const pages = Array.from({ length: 5 }, (_, i) => ({ type: 'page', userId: 'u-one-ms', messageId: `one-ms-a${i}`, name: 'Home', properties: { path: '/' }, timestamp: ago(1) }));
    // The EUR order is the sixth message of its request, the USD one the first of the other's.
    const first = [...pages, { type: 'track', userId: 'u-one-ms', messageId: 'one-ms-eur', event: 'Order Completed', properties: { order_id: 'M-1', revenue: 5, currency: 'EUR' }, timestamp: ago(1) }];
    const second = [{ type: 'track', userId: 'u-one-ms', messageId: 'one-ms-usd', event: 'Order Completed', properties: { order_id: 'M-2', revenue: 7, currency: 'USD' }, timestamp: ago(1) }];
    const results = await Promise.all([send(first), send(second)]);
    assert.ok(results.flat().every((r) => r.status === 'stored'));
    // Only the 600-day-old page goes: the orders are counted again, and must read as they did.
    await sweepKeeps(buyer);
  });

  it('keeps the currency of the order stored first when a request received earlier was written later', async () => {
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const order = (messageId: string, properties: Record<string, unknown>, days = 1) => ({ type: 'track', userId: 'u-late-commit', messageId, event: 'Order Completed', timestamp: ago(days), properties });
    // An unpriced order old enough to be reduced (the sweep then counts this person's orders again).
    const buyer = await buyerWith('u-late-commit', [order('late-old', { order_id: 'L-0' }, 700)], now - 10_000);
    assert.equal((await sendAt([order('late-usd', { order_id: 'L-1', revenue: 10, currency: 'USD' })], now))[0]?.status, 'stored');
    // Received 5 ms before the USD order, written after it (a request whose checks took longer).
    assert.equal((await sendAt([order('late-eur', { order_id: 'L-2', revenue: 20, currency: 'EUR' })], now - 5))[0]?.status, 'stored');
    assert.deepEqual(await sweepKeeps(buyer), { orderCount: 3, totalOrderValue: 10, currency: 'USD' });
  });

  it('keeps the currency of the order stored first when two requests share a commit in the other order than received', async () => {
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const order = (messageId: string, properties: Record<string, unknown>, days = 1) => ({ type: 'track', userId: 'u-shared-commit', messageId, event: 'Order Completed', timestamp: ago(days), properties });
    const buyer = await buyerWith('u-shared-commit', [order('shared-old', { order_id: 'SC-0' }, 700)], now - 10_000);
    // A large request keeps a commit busy; the USD order (received later) and the EUR one (received earlier) queue
    // behind it, the USD one first.
    const filler = Array.from({ length: 300 }, (_, i) => ({ type: 'track', anonymousId: `shared-filler-${i}`, messageId: `shared-filler-${i}`, event: 'Order Completed', properties: { order_id: `SF-${i}` } }));
    const results = await Promise.all([sendAt(filler, now - 20), sendAt([order('shared-usd', { order_id: 'SC-1', revenue: 10, currency: 'USD' })], now), sendAt([order('shared-eur', { order_id: 'SC-2', revenue: 20, currency: 'EUR' })], now - 5)]);
    assert.equal(results[1]?.[0]?.status, 'stored');
    assert.equal(results[2]?.[0]?.status, 'stored');
    await sweepKeeps(buyer);
  });

  it('ends with the same counts when two processes sweep at once', async () => {
    const { kernel } = ctx;
    const now = Date.now();
    const ago = (days: number) => new Date(now - days * DAY).toISOString();
    const orders = Array.from({ length: 6 }, (_, i) => ({ type: 'track', userId: 'u-two-sweeps', messageId: `two-sweeps-${i}`, event: 'Order Completed', timestamp: ago(600 + i), properties: { order_id: `S-${i}`, revenue: 40, total: 42.5, currency: 'USD' } }));
    const buyer = await buyerWith('u-two-sweeps', orders, now);
    // Two processes, as a server's sweep and `candor retention sweep`, or two nodes (in one process, SQLite's wait for
    // the write lock would hold up the event loop the other sweep needs to commit).
    const global = ['--data-dir', ctx.env.dataDir, ...(ctx.env.databaseUrl ? ['--database-url', ctx.env.databaseUrl] : [])];
    const sweep = () => promisify(execFile)(process.execPath, [BIN, ...global, 'retention', 'sweep', '--batch-size', '2'], { env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development' } });
    await Promise.all([sweep(), sweep()]);
    assert.deepEqual(pick((await kernel.profiles.get([buyer], { decrypt: false })).computed), { orderCount: 6, totalOrderValue: 255, currency: 'USD' });
  });
});
