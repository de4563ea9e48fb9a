import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel, useUpgradedKernel } from '../../../test/support/kernel.ts';
import type { Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { Catalog, DEFAULT_PLAN, planHash } from './index.ts';
import { isPlainEventName } from './catalog.stats.ts';

const PERSONAL = ['ada.lovelace@example.org', 'jane doe +49 170 1234567'];

async function ingest(kernel: Kernel, messages: Record<string, unknown>[], source = 'web') {
  return kernel.collect.ingest(
    messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })),
    undefined,
    { source, gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR },
  );
}

/** Every text catalog_stats holds, as stored. */
async function storedTexts(kernel: Kernel): Promise<string[]> {
  const rows = await kernel.storage.db.withTables<{ catalog_stats: { event: string; item: string; rule: string } }>().selectFrom('catalog_stats').select(['event', 'item', 'rule']).execute();
  return rows.flatMap((r) => [r.event, r.item, r.rule]);
}

/** The dropped paths catalog_stats holds for a source and event, with their counts. */
async function storedDropped(kernel: Kernel, source: string, event: string): Promise<Map<string, number>> {
  const rows = await kernel.storage.db
    .withTables<{ catalog_stats: { source: string; event: string; metric: string; item: string; count: number } }>()
    .selectFrom('catalog_stats')
    .select(['item', 'count'])
    .where('source', '=', source)
    .where('event', '=', event)
    .where('metric', '=', 'dropped')
    .execute();
  return new Map(rows.map((r) => [r.item, Number(r.count)]));
}

describeEachDialect('catalog: stored counts', (dialect) => {
  const ctx = useKernel(dialect);
  const open = () => Catalog.open({ storage: ctx.kernel.storage, audit: ctx.kernel.audit, taxonomy: ctx.kernel.taxonomy });

  it('keep at most 100 paths per row across group commits, the rest under *other*', async () => {
    for (let i = 0; i < 150; i++) {
      const [result] = await ingest(ctx.kernel, [{ type: 'track', event: 'Product Added', anonymousId: `a-bound-${i}`, properties: { product_id: 'p1', [`junk_${i}`]: true } }]);
      assert.deepEqual(result?.dropped, [`properties.junk_${i}`], 'the sender is still told what was dropped, by name');
      // Each request's counts are written before the next (as a group commit or the server's timer would).
      await ctx.kernel.catalog.flushStats();
    }
    const stored = await storedDropped(ctx.kernel, 'web', 'Product Added');
    assert.equal(stored.size, 101, 'the stored row holds 100 paths and *other*');
    assert.equal(stored.get('*other*'), 50);
    for (const catalog of [ctx.kernel.catalog, await open()]) {
      const [row] = await catalog.stats({ event: 'Product Added' });
      assert.equal(row?.dropped.length, 101);
      assert.equal(row?.dropped.find((d) => d.path === '*other*')?.count, 50);
      assert.equal(row?.dropped.reduce((n, d) => n + d.count, 0), 150);
    }
  });

  it('keep the bound when flushes and other processes add paths to a stored row', async () => {
    const first = await open();
    for (let i = 0; i < 60; i++) first.process('track', 'Product Viewed', { properties: { [`a_${i}`]: 1 } }, 'bound');
    await first.flushStats();
    const second = await open();
    for (let i = 0; i < 60; i++) second.process('track', 'Product Viewed', { properties: { [`b_${i}`]: 1 } }, 'bound');
    const taken = second.takeStats();
    await ctx.kernel.storage.raw.transaction((tx) => second.writeStats(tx, taken));
    for (let i = 0; i < 10; i++) first.process('track', 'Product Viewed', { properties: { [`a_${i}`]: 1, [`c_${i}`]: 1 } }, 'bound');
    const [pending] = await first.stats({ source: 'bound' });
    assert.equal(pending?.dropped.length, 101, 'counts not written yet are shown as they will be stored');
    await first.flushStats();
    const stored = await storedDropped(ctx.kernel, 'bound', 'Product Viewed');
    assert.equal(stored.size, 101);
    assert.equal(stored.get('*other*'), 30);
    const [row] = await (await open()).stats({ source: 'bound' });
    assert.deepEqual(row, pending);
    assert.equal(row?.dropped.length, 101);
    assert.equal(row?.dropped.find((d) => d.path === '*other*')?.count, 30);
    assert.equal(row?.dropped.find((d) => d.path === 'properties.a_0')?.count, 2, 'a stored path goes on counting');
  });

  it('count a message once per stored path, however many of its keys count under it', async () => {
    const event = 'Email Signed Up';
    await ingest(ctx.kernel, [{ type: 'track', event, anonymousId: 'a-once', properties: { list_id: 'l1', 'a.b': 1, 'c d': 2, 'e@f': 3 } }]);
    const context = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, 1]));
    await ingest(ctx.kernel, [
      { type: 'track', event, anonymousId: 'a-once', properties: { list_id: 'l2' }, context },
      { type: 'track', event, anonymousId: 'a-once', properties: { list_id: 'l3' }, context },
    ]);
    await ctx.kernel.catalog.flushStats();
    const stored = await storedDropped(ctx.kernel, 'web', event);
    assert.equal(stored.get('properties.*'), 1, 'one message');
    assert.equal(stored.get('*other*'), 2, 'two messages');
    const [row] = await (await open()).stats({ source: 'web', event });
    assert.equal(row?.dropped.find((d) => d.path === 'properties.*')?.count, 1, 'one message');
    assert.equal(row?.dropped.find((d) => d.path === '*other*')?.count, 2, 'two messages');
  });

  it('count each message of a batch that shares a context of long undeclared keys, keeping no key', async () => {
    const event = 'Product Viewed';
    const context = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${String(i).padStart(3, '0')}${'x'.repeat(290)}`, 1]));
    Object.assign(context, { 'k1 x': 1, plain_key: 1 });
    const messages = Array.from({ length: 60 }, (_, i) => ({ type: 'track', event, anonymousId: `a-shared-${i}`, properties: { product_id: `p${i}` }, context }));
    const results = await ingest(ctx.kernel, messages, 'shared');
    assert.equal(results[59]?.dropped?.[0], `context.${Object.keys(context)[0]}`, 'the sender is told what was dropped, as sent');
    await ctx.kernel.catalog.flushStats();
    assert.deepEqual(
      [...(await storedDropped(ctx.kernel, 'shared', event))].sort(),
      [
        ['context.*', 60],
        ['context.plain_key', 60],
      ],
    );
  });

  it('keep no key text of a refused message that could be personal data: such keys count under properties.*', async () => {
    const [result] = await ingest(ctx.kernel, [{ type: 'track', event: 'Product Viewed', anonymousId: 'a-no-consent', properties: { [PERSONAL[0] as string]: true, [PERSONAL[1] as string]: 1, colour: 'red' } }]);
    assert.equal(result?.status, 'refused');
    await ingest(ctx.kernel, [{ type: 'track', event: 'Order Completed', anonymousId: 'a-no-consent', properties: { order_id: 'o1', total: 'lots', products: [{ 'gift for jane@example.org': 1 }] } }]);
    await ingest(ctx.kernel, [{ type: 'track', event: 'mail ada@example.org', anonymousId: 'a-no-consent' }]);
    await ingest(ctx.kernel, [{ type: 'identify', anonymousId: 'a-no-consent', traits: { '+491701234567': 'x' }, context: { 'ada.lovelace': 1 } }]);
    await ctx.kernel.catalog.flushStats();
    const texts = await storedTexts(ctx.kernel);
    for (const text of texts) assert.ok(!/@|lovelace|jane|1234567/.test(text), `kept: ${text}`);
    const [viewed] = await ctx.kernel.catalog.stats({ source: 'web', event: 'Product Viewed' });
    assert.deepEqual(viewed?.dropped, [
      { path: 'properties.*', count: 1 },
      { path: 'properties.colour', count: 1 },
    ]);
    const [order] = await ctx.kernel.catalog.stats({ source: 'web', event: 'Order Completed' });
    assert.equal(order?.refused.CATALOG_EVENT_INVALID, 1);
    assert.deepEqual(order?.dropped, [{ path: 'properties.products[].*', count: 1 }]);
    assert.deepEqual(order?.violations, [{ path: 'properties.total', rule: 'type', count: 1 }]);
    const identify = (await ctx.kernel.catalog.stats({ source: 'web' })).find((r) => r.kind === 'identify');
    assert.deepEqual(identify?.dropped.map((d) => d.path).sort(), ['context.*', 'traits.*']);
    assert.equal((await ctx.kernel.catalog.stats({ source: 'web', event: '*other*' }))[0]?.refused.CATALOG_EVENT_UNDECLARED, 1);
  });
});

describeEachDialect('catalog: stored counts from before key text was bounded (migration 0098)', (dialect) => {
  const at = '2026-01-01T00:00:00.000Z';
  const stat = (event: string, metric: string, item: string, count: number, rule = '') => ({ source: 'web', kind: 'track', event, metric, item, rule, count, updated_at: at });
  const ctx = useUpgradedKernel(dialect, '0098_catalog_stats_key_text', async (db) => {
    const plan = { version: 1, name: DEFAULT_PLAN.name, hash: planHash(DEFAULT_PLAN), plan: JSON.stringify(DEFAULT_PLAN), published_at: at, published_by: 'system' };
    await db.withTables<{ catalog_plans: typeof plan }>().insertInto('catalog_plans').values(plan).execute();
    const rows = [
      stat('Product Viewed', 'refused', 'CATALOG_EVENT_INVALID', 4),
      stat('Product Viewed', 'dropped', `properties.${PERSONAL[0] as string}`, 2),
      stat('Product Viewed', 'dropped', `properties.${PERSONAL[1] as string}`, 1),
      stat('Product Viewed', 'dropped', 'properties.*', 1),
      stat('Product Viewed', 'dropped', 'properties.colour', 5),
      stat('Product Viewed', 'violation', 'properties.price', 1, 'type'),
      stat('Order Completed', 'dropped', 'properties.products[].engraving', 1),
      stat('Order Completed', 'dropped', 'properties.products[].note for jane', 1),
      stat('mail ada@example.org', 'refused', 'CATALOG_EVENT_UNDECLARED', 1),
      stat('Coupon Applied', 'refused', 'CATALOG_EVENT_UNDECLARED', 2),
      stat('*other*', 'refused', 'CATALOG_EVENT_UNDECLARED', 3),
      ...Array.from({ length: 150 }, (_, i) => stat('Product Added', 'dropped', `properties.junk_${i}`, i < 100 ? 2 : 1)),
      stat('Product Added', 'dropped', '*other*', 7),
    ];
    const table = db.withTables<{ catalog_stats: (typeof rows)[number] }>();
    for (let i = 0; i < rows.length; i += 50) await table.insertInto('catalog_stats').values(rows.slice(i, i + 50)).execute();
  });

  it('rewrites key text that could be personal data and folds paths beyond 100 per row, keeping every count', async () => {
    const texts = await storedTexts(ctx.kernel);
    for (const text of texts) assert.ok(!/@|lovelace|jane|1234567/.test(text), `kept: ${text}`);
    const rows = await ctx.kernel.catalog.stats({ source: 'web' });
    const row = (event: string) => rows.find((r) => r.event === event);
    assert.deepEqual(row('Product Viewed')?.dropped, [
      { path: 'properties.colour', count: 5 },
      { path: 'properties.*', count: 4 },
    ]);
    assert.deepEqual(row('Product Viewed')?.violations, [{ path: 'properties.price', rule: 'type', count: 1 }]);
    assert.equal(row('Product Viewed')?.refused.CATALOG_EVENT_INVALID, 4);
    assert.deepEqual(row('Order Completed')?.dropped, [
      { path: 'properties.products[].*', count: 1 },
      { path: 'properties.products[].engraving', count: 1 },
    ]);
    assert.equal(row('Coupon Applied')?.refused.CATALOG_EVENT_UNDECLARED, 2);
    assert.equal(row('*other*')?.refused.CATALOG_EVENT_UNDECLARED, 4);
    const added = row('Product Added');
    assert.equal(added?.dropped.length, 101);
    assert.ok(added?.dropped.every((d) => d.path === '*other*' || Number(d.path.slice('properties.junk_'.length)) < 100), 'the most counted paths keep their name');
    assert.equal(added?.dropped.find((d) => d.path === '*other*')?.count, 57);
    assert.equal(added?.dropped.reduce((n, d) => n + d.count, 0), 257);
  });
});

describeEachDialect('catalog: undeclared event names with digits or an at sign outside ASCII (migration 0116)', (dialect) => {
  const at = '2026-01-01T00:00:00.000Z';
  const stat = (event: string, count: number) => ({ source: 'web', kind: 'track', event, metric: 'refused', item: 'CATALOG_EVENT_UNDECLARED', rule: '', count, updated_at: at });
  const ctx = useUpgradedKernel(dialect, '0116_catalog_stats_event_names_unicode', async (db) => {
    const plan = { version: 1, name: DEFAULT_PLAN.name, hash: planHash(DEFAULT_PLAN), plan: JSON.stringify(DEFAULT_PLAN), published_at: at, published_by: 'system' };
    await db.withTables<{ catalog_plans: typeof plan }>().insertInto('catalog_plans').values(plan).execute();
    const rows = [stat('Call ＋４４ ２０ ７９４６ ００１８', 1), stat('Mail ada＠example.org', 2), stat('Ruf ٠١٢٣٤٥', 1), stat('Coupon Applied', 2), stat('*other*', 3)];
    await db.withTables<{ catalog_stats: (typeof rows)[number] }>().insertInto('catalog_stats').values(rows).execute();
  });

  it('counts them under *other* from now on and rewrites those stored, keeping every count', async () => {
    const texts = await storedTexts(ctx.kernel);
    for (const text of texts) assert.ok(!/＠|４４|٠١٢/.test(text), `kept: ${text}`);
    const rows = await ctx.kernel.catalog.stats({ source: 'web' });
    assert.deepEqual(rows.map((r) => [r.event, r.refused.CATALOG_EVENT_UNDECLARED]).sort(), [['*other*', 7], ['Coupon Applied', 2]]);
    for (const name of ['Call ＋４４ ２０ ７９４６ ００１８', 'Mail ada﹫example.org', 'Ruf ٠١٢٣٤٥']) assert.equal(isPlainEventName(name), false, name);
    assert.equal(isPlainEventName('Coupon Applied ２０２６'), true);
  });
});
