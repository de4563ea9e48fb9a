import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { OTHER } from './catalog.stats.ts';
import { Catalog, DEFAULT_PLAN, MAX_DROPPED_LISTED, planHash, type PlanDocument } from './index.ts';

/** Events of the wide plan whose compile must be sliced (a plan holds at most 2,000 events). */
const WIDE_EVENTS = 1000;
const coupon: PlanDocument = {
  ...structuredClone(DEFAULT_PLAN),
  events: {
    ...structuredClone(DEFAULT_PLAN.events),
    'Coupon Applied': {
      purposes: ['analytics.reporting'],
      properties: {
        type: 'object',
        properties: { coupon: { type: 'string', 'x-candor': { category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], retention: 'P13M', personal: false } } },
      },
    },
  },
};

describeEachDialect('catalog', (dialect) => {
  const ctx = useKernel(dialect);
  const second = () => Catalog.open({ storage: ctx.kernel.storage, audit: ctx.kernel.audit, taxonomy: ctx.kernel.taxonomy });

  it('installs the default shop plan as version 1 on first open, audited', async () => {
    const catalog = ctx.kernel.catalog;
    assert.equal(catalog.version(), 1);
    const published = await catalog.plan();
    assert.equal(published.plan.name, 'Online shop');
    assert.equal(published.publishedBy, 'system');
    assert.equal(published.hash, planHash(DEFAULT_PLAN));
    assert.deepEqual(published.plan, JSON.parse(JSON.stringify(DEFAULT_PLAN)));
    const entries = await ctx.kernel.audit.list({ action: 'catalog.plan.publish', limit: 10 });
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.actor, 'system');
    assert.equal(entries[0]?.resource, 'catalog:plan:1');
    assert.equal((await second()).version(), 1, 'a second open does not install it again');
    assert.equal((await catalog.versions()).length, 1);
  });

  it('refuses an invalid plan with every problem and stores nothing', async () => {
    const broken = { ...structuredClone(coupon), colour: 'blue', traits: { type: 'object', properties: { email: { type: 'string' } } } };
    await assert.rejects(ctx.kernel.catalog.publish(broken, CLI_ACTOR), (error) => {
      assert.ok(isCandorError(error, 'CATALOG_PLAN_INVALID'));
      const problems = (error.details?.problems ?? []) as { path: string }[];
      assert.deepEqual(problems.map((p) => p.path).sort(), ['/colour', '/traits/properties/email']);
      return true;
    });
    assert.equal(ctx.kernel.catalog.version(), 1);
    assert.equal((await ctx.kernel.catalog.versions()).length, 1);
    assert.deepEqual(await ctx.kernel.catalog.validatePlan(coupon), { ok: true, problems: [] });
  });

  it('publishes a new version that is in force at once, audited with its hash', async () => {
    const catalog = ctx.kernel.catalog;
    assert.equal(catalog.process('track', 'Coupon Applied', { properties: { coupon: 'X' } }, 'web').code, 'CATALOG_EVENT_UNDECLARED');
    const { version, hash } = await catalog.publish(coupon, { id: 'tok_1', role: 'privacy_officer' });
    assert.equal(version, 2);
    assert.equal(hash, planHash(coupon));
    assert.equal(catalog.version(), 2);
    assert.equal(catalog.process('track', 'Coupon Applied', { properties: { coupon: 'X' } }, 'web').ok, true);
    const entry = (await ctx.kernel.audit.list({ action: 'catalog.plan.publish', limit: 10 })).at(-1);
    assert.equal(entry?.actor, 'tok_1');
    assert.equal(entry?.role, 'privacy_officer');
    assert.equal(JSON.parse(entry?.details ?? '{}').hash, hash);
  });

  it('hashes the canonical JSON, so key order does not make a new version', async () => {
    const reordered = Object.fromEntries(Object.entries(structuredClone(coupon)).reverse());
    assert.equal(planHash(reordered), planHash(coupon));
    assert.notEqual(JSON.stringify(reordered), JSON.stringify(coupon));
    const again = await ctx.kernel.catalog.publish(reordered, CLI_ACTOR);
    assert.deepEqual(again, { version: 2, hash: planHash(coupon), unchanged: true });
    assert.equal((await ctx.kernel.catalog.versions()).length, 2);
    const canonical = createHash('sha256').update('{"a":[1,{"b":2,"c":3}],"d":"e"}').digest('hex');
    assert.equal(planHash({ d: 'e', a: [1, { c: 3, b: 2 }] }), canonical);
  });

  it('keeps every version readable and answers an unknown one with CATALOG_PLAN_VERSION_NOT_FOUND', async () => {
    const versions = await ctx.kernel.catalog.versions();
    assert.deepEqual(versions.map((v) => [v.version, v.publishedBy]), [[1, 'system'], [2, 'tok_1']]);
    assert.equal((await ctx.kernel.catalog.plan(1)).plan.events['Coupon Applied'], undefined);
    assert.ok((await ctx.kernel.catalog.plan(2)).plan.events['Coupon Applied']);
    await assert.rejects(ctx.kernel.catalog.plan(99), (error) => isCandorError(error, 'CATALOG_PLAN_VERSION_NOT_FOUND'));
    const outline = await ctx.kernel.catalog.outline(1);
    assert.ok(!outline.some((s) => s.event === 'Coupon Applied'));
  });

  it('lets another instance see the published version after open, or after refresh', async () => {
    const other = await second();
    assert.equal(other.version(), 2);
    const withMore = structuredClone(coupon);
    withMore.description = 'third';
    assert.equal((await ctx.kernel.catalog.publish(withMore, CLI_ACTOR)).version, 3);
    assert.equal(other.version(), 2);
    assert.equal(await other.refresh(), 3);
    assert.equal((await other.plan()).plan.description, 'third');
  });

  it('puts in force with refreshIfChanged a version another process published', async () => {
    // Another process: its own connection, so its commit counts as another's write (data_version, commit notices).
    const other = await openKernel(ctx.env.config);
    const before = ctx.kernel.catalog.version();
    try {
      await ctx.kernel.catalog.refreshIfChanged();
      const withMore = structuredClone(coupon);
      withMore.description = 'from another process';
      assert.equal((await other.catalog.publish(withMore, CLI_ACTOR)).version, before + 1);
    } finally {
      await other.close();
    }
    // PostgreSQL's notice arrives a moment after the commit.
    const deadline = Date.now() + 3000;
    while ((await ctx.kernel.catalog.refreshIfChanged()) === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(ctx.kernel.catalog.version(), before + 1);
    assert.equal((await ctx.kernel.catalog.plan()).plan.description, 'from another process');
  });

  it('compiles a large version picked up by refresh in slices, so the event loop keeps turning', async () => {
    const wide = structuredClone(coupon);
    const note = { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P1Y', personal: false };
    // Large enough that its compile lasts many 10 ms slices also when the machine is fast (800 events of two properties
    // took 9 turns once).
    for (let e = 0; e < WIDE_EVENTS; e++) {
      const more = Object.fromEntries(['c', 'd', 'e', 'f', 'g', 'h'].map((key) => [key, { type: 'string', 'x-candor': note }]));
      wide.events[`Wide ${e}`] = { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { a: { type: 'string', 'x-candor': note }, b: { type: 'number', 'x-candor': note }, ...more } } };
    }
    const other = await second();
    const { version } = await other.publish(wide, CLI_ACTOR);
    // Turns of the event loop while the version compiles: a few (the reads) if it compiled in one piece, one per slice
    // if it lets the loop run between slices. Counted, not timed: the suite keeps timing out of its assertions.
    let turns = 0;
    let compiling = true;
    const spin = () => {
      turns++;
      if (compiling) setImmediate(spin);
    };
    setImmediate(spin);
    try {
      assert.equal(await ctx.kernel.catalog.refresh(), version);
    } finally {
      compiling = false;
    }
    assert.ok(turns >= 10, `the event loop turned ${turns} times while ${WIDE_EVENTS} events compiled`);
    assert.equal(ctx.kernel.catalog.process('track', `Wide ${WIDE_EVENTS - 1}`, { properties: { a: 'x', b: 'y' } }, 'wide').violations[0]?.path, 'properties.b');
  });

  it('counts per source and event, including counts not flushed yet', async () => {
    const catalog = await second();
    catalog.process('track', 'Order Completed', { properties: { order_id: 'o1', gift: 'x' } }, 'web');
    catalog.process('track', 'Order Completed', { properties: { order_id: 2 } }, 'web');
    catalog.process('track', 'Made Up', {}, 'web');
    catalog.process('identify', undefined, { traits: { email: 'a@example.com', password: 'p' } }, 'ios');
    const web = await catalog.stats({ source: 'web' });
    const order = web.find((r) => r.event === 'Order Completed');
    assert.equal(order?.accepted, 1);
    assert.deepEqual(order?.refused, { CATALOG_EVENT_UNDECLARED: 0, CATALOG_EVENT_INVALID: 1 });
    assert.deepEqual(order?.dropped, [{ path: 'properties.gift', count: 1 }]);
    assert.deepEqual(order?.violations, [{ path: 'properties.order_id', rule: 'type', count: 1 }]);
    assert.equal(web.find((r) => r.event === 'Made Up')?.refused.CATALOG_EVENT_UNDECLARED, 1);
    assert.deepEqual((await catalog.stats({ source: 'ios' })).map((r) => [r.kind, r.event, r.accepted]), [['identify', '', 1]]);
    assert.equal((await catalog.stats({ event: 'Order Completed' })).length, 1);

    await catalog.flushStats();
    await catalog.flushStats();
    const reader = await second();
    const stored = (await reader.stats({ source: 'web', event: 'Order Completed' }))[0];
    assert.equal(stored?.accepted, 1, 'a second flush adds nothing');
    assert.deepEqual(stored?.dropped, [{ path: 'properties.gift', count: 1 }]);
    assert.deepEqual(await catalog.stats({ source: 'web', event: 'Order Completed' }), await reader.stats({ source: 'web', event: 'Order Completed' }));

    catalog.process('track', 'Order Completed', { properties: { order_id: 'o3', gift: 'y' } }, 'web');
    reader.process('track', 'Order Completed', { properties: { order_id: 'o4' } }, 'web');
    await Promise.all([catalog.flushStats(), reader.flushStats()]);
    const added = (await reader.stats({ source: 'web', event: 'Order Completed' }))[0];
    assert.equal(added?.accepted, 3, 'flushes add to the stored counts');
    assert.deepEqual(added?.dropped, [{ path: 'properties.gift', count: 2 }]);
    assert.equal(added?.refused.CATALOG_EVENT_INVALID, 1);
  });

  it('counts a violation once per message and path, and a flat key with dots as a sender key, stored alike', async () => {
    const catalog = await second();
    const products = [{ product_id: 'p1', price: 'x' }, { product_id: 'p2', price: 'y' }, { product_id: 'p3', price: 'z' }];
    const result = catalog.process('track', 'Order Completed', { properties: { order_id: 'o1', products }, context: { 'page.url': 'https://shop.example/?email=a@b.co', page: { path: '/' } } }, 'flat');
    assert.equal(result.violations.length, 3, 'the answer lists each element');
    assert.deepEqual(result.dropped, ['context["page.url"]']);
    catalog.process('track', 'Order Completed', { properties: { order_id: 'o2', products: products.slice(0, 2) } }, 'flat');
    const expected = { dropped: [{ path: 'context.*', count: 1 }], violations: [{ path: 'properties.products[].price', rule: 'type', count: 2 }] };
    const pick = (row: { dropped: unknown; violations: unknown } | undefined) => ({ dropped: row?.dropped, violations: row?.violations });
    assert.deepEqual(pick((await catalog.stats({ source: 'flat' }))[0]), expected);
    await catalog.flushStats();
    assert.deepEqual(pick((await (await second()).stats({ source: 'flat' }))[0]), expected);
  });

  it(`answers the first ${MAX_DROPPED_LISTED} dropped paths of a message and the number of the others, and counts the message for every one`, async () => {
    const catalog = await second();
    const context = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`k${i}`, 1]));
    const result = catalog.process('track', 'Order Completed', { properties: { order_id: 'o1' }, context }, 'wide-context');
    const paths = Object.keys(context).map((k) => `context.${k}`);
    assert.deepEqual(result.dropped, paths.slice(0, MAX_DROPPED_LISTED));
    assert.equal(result.droppedUnlisted, 150 - MAX_DROPPED_LISTED);
    assert.deepEqual(catalog.check('track', 'Order Completed', { properties: { order_id: 'o1' }, context }), result, 'check answers alike');
    const few = catalog.process('track', 'Order Completed', { properties: { order_id: 'o2' }, context: { k0: 1 } }, 'wide-context');
    assert.deepEqual(few.dropped, ['context.k0']);
    assert.equal(few.droppedUnlisted, undefined);
    // 100 paths by name (a row's bound), the other 50 under *other*, which counts the one message that had them.
    const expected = new Map([['context.k0', 2], ...paths.slice(1, 100).map((path) => [path, 1] as const), [OTHER, 1]]);
    const counts = (rows: { dropped: { path: string; count: number }[] }[]) => new Map(rows[0]?.dropped.map((d) => [d.path, d.count]));
    assert.deepEqual(counts(await catalog.stats({ source: 'wide-context' })), expected);
    await catalog.flushStats();
    assert.deepEqual(counts(await (await second()).stats({ source: 'wide-context' })), expected);
  });

  it('never counts twice when stats are read during a flush', async () => {
    const catalog = await second();
    for (let i = 0; i < 50; i++) catalog.process('track', 'Product Viewed', { properties: { product_id: `p${i}` } }, 'race');
    const [, during] = await Promise.all([catalog.flushStats(), catalog.stats({ source: 'race' })]);
    const after = await catalog.stats({ source: 'race' });
    assert.equal(during[0]?.accepted, 50);
    assert.equal(after[0]?.accepted, 50);
    const flushes: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      catalog.process('track', 'Product Viewed', { properties: { product_id: `q${i}` } }, 'race');
      flushes.push(catalog.flushStats());
    }
    assert.ok(new Set(flushes).size <= 2, 'waiting flushes are shared');
    await Promise.all(flushes);
    assert.equal((await (await second()).stats({ source: 'race' }))[0]?.accepted, 60);
  });
});
