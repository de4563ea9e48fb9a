import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countedPath, OTHER, planPaths, StatsCounters, statsRows, StoredPaths, type StatsRecord } from './catalog.stats.ts';
import type { KeptField, PlanResult } from './plan-compiler.ts';

const result = (over: Partial<PlanResult>): PlanResult => ({ ok: true, violations: [], data: {}, fields: [], declared: new Map(), dropped: [], purposes: [], eventPurposes: [], occurrences: [], ...over });
/** The declared leaves of an event, by path (the counters only read the paths). */
const declared = (...paths: string[]): PlanResult['declared'] => new Map(paths.map((path) => [path, { path } as KeptField]));

describe('stats counters', () => {
  it('count accepted, refused by code, dropped paths and violations per source, kind and event', () => {
    const counters = new StatsCounters();
    counters.count('web', 'track', 'Order Completed', result({ dropped: ['properties.gift'] }));
    counters.count('web', 'track', 'Order Completed', result({ dropped: ['properties.gift', 'context.ip'] }));
    counters.count('web', 'track', 'Order Completed', result({ ok: false, code: 'CATALOG_EVENT_INVALID', declared: declared('properties.products[].price'), violations: [{ path: 'properties.products[3].price', rule: 'type', message: 'must be number' }] }));
    counters.count('web', 'track', 'Coupon Applied', result({ ok: false, code: 'CATALOG_EVENT_UNDECLARED' }));
    counters.count('ios', 'page', 'Home', result({}));
    const rows = statsRows(counters.records());
    assert.deepEqual(rows, [
      { source: 'ios', kind: 'page', event: '', accepted: 1, refused: { CATALOG_EVENT_UNDECLARED: 0, CATALOG_EVENT_INVALID: 0 }, dropped: [], violations: [] },
      { source: 'web', kind: 'track', event: 'Coupon Applied', accepted: 0, refused: { CATALOG_EVENT_UNDECLARED: 1, CATALOG_EVENT_INVALID: 0 }, dropped: [], violations: [] },
      {
        source: 'web',
        kind: 'track',
        event: 'Order Completed',
        accepted: 2,
        refused: { CATALOG_EVENT_UNDECLARED: 0, CATALOG_EVENT_INVALID: 1 },
        dropped: [
          { path: 'properties.gift', count: 2 },
          { path: 'context.ip', count: 1 },
        ],
        violations: [{ path: 'properties.products[].price', rule: 'type', count: 1 }],
      },
    ]);
    assert.equal(statsRows(counters.records(), { source: 'ios' }).length, 1);
    assert.equal(statsRows(counters.records(), { event: 'Order Completed' }).length, 1);
  });

  it('list rows, paths and rules in one order whatever order the records come in: count, then path and rule by code point', () => {
    const record = (source: string, metric: 'dropped' | 'violation', item: string, rule: string): StatsRecord => ({ source, kind: 'track', event: 'E', metric, item, rule, count: 1 });
    const records = [
      record('web', 'violation', 'properties.a', 'type'),
      record('web', 'violation', 'properties.a', 'minimum'),
      record('Web', 'dropped', 'properties.b', ''),
      record('web', 'dropped', 'properties.Z', ''),
      record('web', 'dropped', 'properties.a', ''),
    ];
    for (const input of [records, [...records].reverse()]) {
      const rows = statsRows(input);
      assert.deepEqual(rows.map((r) => r.source), ['Web', 'web']);
      assert.deepEqual(rows[1]?.violations.map((v) => v.rule), ['minimum', 'type']);
      assert.deepEqual(rows[1]?.dropped.map((d) => d.path), ['properties.Z', 'properties.a']);
    }
  });

  it('hand over their counts once, and take them back after a failed flush', () => {
    const counters = new StatsCounters();
    counters.count('web', 'identify', undefined, result({ dropped: ['traits.password'] }));
    const taken = counters.take();
    assert.equal(taken.length, 2);
    assert.deepEqual(counters.take(), []);
    counters.restore(taken);
    counters.count('web', 'identify', undefined, result({}));
    const rows = statsRows(counters.records());
    assert.equal(rows[0]?.accepted, 2);
    assert.deepEqual(rows[0]?.dropped, [{ path: 'traits.password', count: 1 }]);
  });

  it('stay bounded however many undeclared names and paths senders invent', () => {
    const counters = new StatsCounters();
    for (let i = 0; i < 150; i++) {
      counters.count('web', 'track', `Made Up ${i}`, result({ ok: false, code: 'CATALOG_EVENT_UNDECLARED' }));
      counters.count('web', 'track', 'Product Viewed', result({ dropped: [`properties.x${i}`] }));
    }
    counters.count('web', 'track', 'x'.repeat(300), result({ ok: false, code: 'CATALOG_EVENT_UNDECLARED' }));
    const rows = statsRows(counters.records());
    assert.equal(rows.filter((r) => r.event.startsWith('Made Up')).length, 100);
    assert.equal(rows.find((r) => r.event === OTHER)?.refused.CATALOG_EVENT_UNDECLARED, 51);
    const viewed = rows.find((r) => r.event === 'Product Viewed');
    assert.equal(viewed?.dropped.length, 101);
    assert.equal(viewed?.dropped.find((d) => d.path === OTHER)?.count, 50);
  });

  it('count a key a sender wrote by name only when it is a plain key, for every outcome', () => {
    const counters = new StatsCounters();
    const known = declared('properties.cart_id', 'properties.products[].price', 'context.page.url');
    const dropped = ['properties.ada.lovelace@example.org', 'properties.jane doe +49 170 1234567', 'properties.customer_491701234567', 'properties.colour', 'properties.products[].gift note', 'properties.products[].engraving', 'context.page.x-ref', 'context.ip'];
    counters.count('web', 'track', 'Product Added', result({ declared: known, dropped }));
    counters.count('web', 'track', 'Product Added', result({ ok: false, code: 'CATALOG_EVENT_INVALID', declared: known, dropped, violations: [{ path: 'properties.products[0].price', rule: 'type', message: 'must be number' }] }));
    counters.count('web', 'track', 'ada@example.org', result({ ok: false, code: 'CATALOG_EVENT_UNDECLARED' }));
    counters.count('web', 'track', 'Call +49 170 1234567', result({ ok: false, code: 'CATALOG_EVENT_UNDECLARED' }));
    counters.count('web', 'track', 'Coupon Applied', result({ ok: false, code: 'CATALOG_EVENT_UNDECLARED' }));
    const rows = statsRows(counters.records());
    assert.deepEqual(rows.map((r) => r.event), ['*other*', 'Coupon Applied', 'Product Added']);
    assert.deepEqual(rows[0]?.refused.CATALOG_EVENT_UNDECLARED, 2);
    assert.deepEqual(rows[2]?.dropped, [
      { path: 'context.ip', count: 2 },
      { path: 'context.page.x-ref', count: 2 },
      { path: 'properties.*', count: 2 },
      { path: 'properties.colour', count: 2 },
      { path: 'properties.products[].*', count: 2 },
      { path: 'properties.products[].engraving', count: 2 },
    ]);
    assert.deepEqual(rows[2]?.violations, [{ path: 'properties.products[].price', rule: 'type', count: 1 }]);
  });

  it('count a message once per counted path, however many of its keys count under it', () => {
    const counters = new StatsCounters();
    const known = declared('properties.product_id', 'context.page.url');
    // Bracket-quoted and other keys that are no plain keys all count as properties.*.
    counters.count('web', 'track', 'Product Added', result({ declared: known, dropped: ['properties["a.b"]', 'properties.c d', 'properties.e@f'] }));
    const wide = Array.from({ length: 3000 }, (_, i) => `context.k${i}`);
    counters.count('web', 'track', 'Product Added', result({ declared: known, dropped: wide }));
    counters.count('web', 'track', 'Product Added', result({ declared: known, dropped: wide }));
    const [row] = statsRows(counters.records());
    assert.equal(row?.dropped.find((d) => d.path === 'properties.*')?.count, 1, 'one message');
    assert.equal(row?.dropped.find((d) => d.path === OTHER)?.count, 2, 'two messages had paths beyond the bound');
    assert.equal(row?.dropped.find((d) => d.path === 'context.k0')?.count, 2);
    assert.equal(row?.dropped.length, 101);
    const broken = (i: number) => ({ path: `properties.x${i}`, rule: 'type', message: 'must be string' });
    counters.count('web', 'track', 'Order Completed', result({ ok: false, code: 'CATALOG_EVENT_INVALID', declared: known, violations: Array.from({ length: 150 }, (_, i) => broken(i)) }));
    const order = statsRows(counters.records()).find((r) => r.event === 'Order Completed');
    assert.deepEqual(order?.violations.find((v) => v.path === OTHER), { path: OTHER, rule: '*', count: 1 });
  });

  it('count a batch whose messages share a batch-level context as when its messages are counted one by one', async () => {
    // Two events whose plans count the same sender paths differently, their messages interleaved in one batch.
    const viewed = declared('properties.product_id', 'context.page.url');
    const completed = declared('properties.products[].price', 'context.extra.note');
    const long = (i: number) => `k${String(i).padStart(3, '0')}${'x'.repeat(290)}`;
    const shared = [
      ...Array.from({ length: 100 }, (_, i) => `context.${long(i)}`),
      `context[${JSON.stringify(`a.${long(0)}`)}]`,
      'context.k1 x',
      'context.order_20240',
      'context.plain_key',
      'context.extra.k y',
      'context.extra.ok',
    ];
    const batch = Array.from({ length: 300 }, (_, i) => {
      const own = [`properties.own_${i}`, `properties.own ${i % 3}`];
      return i % 2 === 0
        ? { name: 'Product Viewed', result: result({ declared: viewed, dropped: [...own, ...shared] }) }
        : { name: 'Order Completed', result: result({ ok: false, code: 'CATALOG_EVENT_INVALID', declared: completed, dropped: [...shared, ...own], violations: [{ path: 'properties.products[0].price', rule: 'type', message: 'must be number' }] }) };
    });
    const together = new StatsCounters();
    for (const m of batch) together.count('web', 'track', m.name, m.result);
    const oneByOne = new StatsCounters();
    for (const m of batch) {
      oneByOne.count('web', 'track', m.name, m.result);
      // Each message in a run of its own, as if it came in a request of its own.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const rows = statsRows(together.records());
    assert.deepEqual(rows, statsRows(oneByOne.records()));
    const dropped = (event: string) => new Map(rows.find((r) => r.event === event)?.dropped.map((d) => [d.path, d.count]));
    assert.deepEqual(
      [...dropped('Product Viewed')].filter(([path]) => path.startsWith('context')),
      [
        ['context.*', 150],
        ['context.plain_key', 150],
      ],
    );
    assert.deepEqual(
      [...dropped('Order Completed')].filter(([path]) => path.startsWith('context')),
      [
        ['context.*', 150],
        ['context.extra.*', 150],
        ['context.extra.ok', 150],
        ['context.plain_key', 150],
      ],
    );
    assert.equal(dropped('Product Viewed').get('properties.*'), 150);
    assert.equal(dropped('Product Viewed').size, 101);
    assert.equal(dropped('Product Viewed').get(OTHER), 150 - 97, 'the own paths of 97 messages fill the row with the 3 shared ones');
  });

  it('work out each path of a batch-level context once per batch', () => {
    const known = declared('properties.product_id');
    const keys = Array.from({ length: 20 }, (_, i) => `k${i} x`);
    const tested = new Map<string, number>();
    const test = RegExp.prototype.test;
    RegExp.prototype.test = function (this: RegExp, value: string) {
      if (keys.includes(value)) tested.set(value, (tested.get(value) ?? 0) + 1);
      return test.call(this, value);
    };
    try {
      const counters = new StatsCounters();
      for (let i = 0; i < 50; i++) counters.count('web', 'track', 'Product Viewed', result({ declared: known, dropped: keys.map((k) => `context.${k}`) }));
      assert.equal(statsRows(counters.records())[0]?.dropped.find((d) => d.path === 'context.*')?.count, 50);
    } finally {
      RegExp.prototype.test = test;
    }
    assert.deepEqual([...tested.values()], keys.map(() => 1));
  });

  it('look up no sender key longer than every path the plan names', () => {
    const lengths: number[] = [];
    class Looked extends Set<string> {
      override has(value: string): boolean {
        lengths.push(value.length);
        return super.has(value);
      }
    }
    const known = new Looked(planPaths(['properties.products[].price', 'context.page.url']));
    const longest = Math.max(...[...known].map((p) => p.length));
    const key = 'x'.repeat(300);
    assert.equal(countedPath(`context.${key}`, known), 'context.*');
    assert.equal(countedPath(`properties.products[].${key}`, known), 'properties.products[].*');
    assert.equal(countedPath(`properties[${JSON.stringify(`a.${key}`)}]`, known), 'properties.*');
    assert.equal(countedPath(`${key}.${key}`, known), '*');
    assert.ok(lengths.length > 0 && Math.max(...lengths) <= longest, `looked up ${Math.max(...lengths)} characters`);
  });

  it('end the plan\'s part of a path at the deepest name the plan declares, so no part of a key is kept alone', () => {
    const known = planPaths(['properties.products[].price', 'properties.tags', 'context.page.url']);
    assert.equal(countedPath('properties.products[].price', known), 'properties.products[].price');
    assert.equal(countedPath('properties.tags[]', known), 'properties.tags[]', 'elements of a declared array');
    assert.equal(countedPath('properties.ada.lovelace@example.org', known), 'properties.*');
    assert.equal(countedPath('context.page.ada.lovelace', known), 'context.page.*');
    assert.equal(countedPath('properties.products[].a.b', known), 'properties.products[].*');
    assert.equal(countedPath('properties.x'.padEnd(80, 'x'), known), 'properties.*', 'longer than 64 characters');
    assert.equal(countedPath('properties.order_2024', known), 'properties.order_2024', 'up to four digits');
    assert.equal(countedPath('properties.order_20240', known), 'properties.*');
  });

  it('count a top-level key of a message by name only if it is a plain key', () => {
    const known = planPaths(['properties.product_id']);
    assert.equal(countedPath('traits', known), 'traits', 'a section the call type does not take');
    assert.equal(countedPath('email', known), 'email');
    assert.equal(countedPath('ada@example', known), '*');
    assert.equal(countedPath('["ada.lovelace@example.org"]', known), '*');
    assert.equal(countedPath('["a.b"]', known), '*', 'a bracket-quoted key');
    assert.equal(countedPath('phone_0170123456', known), '*', 'five digits or more');
  });

  it('count a violation once per message, path and rule, however many array elements break it', () => {
    const counters = new StatsCounters();
    const missing = (i: number) => ({ path: `properties.products[${i}].product_id`, rule: 'required', message: 'must have required property' });
    const known = declared('properties.products[].product_id', 'properties.products[].price');
    counters.count('web', 'track', 'Order Completed', result({ ok: false, code: 'CATALOG_EVENT_INVALID', declared: known, violations: [missing(0), missing(1), missing(2), { path: 'properties.products[1].price', rule: 'type', message: 'must be number' }] }));
    counters.count('web', 'track', 'Order Completed', result({ ok: false, code: 'CATALOG_EVENT_INVALID', declared: known, violations: [missing(4)] }));
    assert.deepEqual(statsRows(counters.records())[0]?.violations, [
      { path: 'properties.products[].product_id', rule: 'required', count: 2 },
      { path: 'properties.products[].price', rule: 'type', count: 1 },
    ]);
  });

  it('count a bracket-quoted key (a flat key with dots) as a sender key below the declared path', () => {
    const known = planPaths(['properties.customer.email', 'properties.products[].price']);
    assert.equal(countedPath('properties["customer.email"]', known), 'properties.*');
    assert.equal(countedPath('properties.customer["a.b"]', known), 'properties.customer.*');
    assert.equal(countedPath('properties.products[]["x[0]"]', known), 'properties.products[].*');
    assert.equal(countedPath('properties.customer.email', known), 'properties.customer.email', 'the declared nested path itself');
  });

  it('fit written counts into what the stored row has room for, the rest under *other*', () => {
    const stored = new StoredPaths();
    const rec = (item: string, count = 1, metric: StatsRecord['metric'] = 'dropped', rule = ''): StatsRecord => ({ source: 'web', kind: 'track', event: 'E', metric, item, rule, count });
    const records = [rec('properties.p0', 5), rec('properties.new_a'), rec('properties.new_b', 2), rec('properties.new_c', 3), rec(OTHER, 4), rec('properties.v', 1, 'violation', 'type'), rec('', 9, 'accepted')];
    const rows = stored.unknownRows(records);
    assert.deepEqual(rows, [
      { source: 'web', kind: 'track', event: 'E', metric: 'dropped' },
      { source: 'web', kind: 'track', event: 'E', metric: 'violation' },
    ]);
    stored.learn(rows, [...Array.from({ length: 99 }, (_, i) => rec(`properties.p${i}`)), rec(OTHER)]);
    assert.deepEqual(
      stored.fit(records).map((r) => [r.metric, r.item, r.rule, r.count]),
      [
        ['dropped', 'properties.p0', '', 5],
        ['dropped', 'properties.new_a', '', 1],
        ['dropped', OTHER, '', 9],
        ['violation', 'properties.v', 'type', 1],
        ['accepted', '', '', 9],
      ],
    );
    assert.deepEqual(stored.unknownRows([rec('properties.p0')]), [], 'a path the row is known to hold needs no read');
    assert.equal(stored.unknownRows([rec('properties.new_a')]).length, 1, 'what was written is read again, not assumed');
    stored.learn(rows, Array.from({ length: 100 }, (_, i) => rec(`properties.p${i}`)));
    assert.deepEqual(stored.unknownRows([rec('properties.new_z')]), [], 'a full row needs no read: the new path counts under *other*');
    assert.deepEqual(stored.fit([rec('properties.new_z')]).map((r) => r.item), [OTHER]);
  });
});
