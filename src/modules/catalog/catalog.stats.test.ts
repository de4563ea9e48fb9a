import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OTHER, StatsCounters, statsRows } from './catalog.stats.ts';
import type { PlanResult } from './plan-compiler.ts';

const result = (over: Partial<PlanResult>): PlanResult => ({ ok: true, violations: [], data: {}, fields: [], declared: new Map(), dropped: [], purposes: [], eventPurposes: [], ...over });

describe('stats counters', () => {
  it('count accepted, refused by code, dropped paths and violations per source, kind and event', () => {
    const counters = new StatsCounters();
    counters.count('web', 'track', 'Order Completed', result({ dropped: ['properties.gift'] }));
    counters.count('web', 'track', 'Order Completed', result({ dropped: ['properties.gift', 'context.ip'] }));
    counters.count('web', 'track', 'Order Completed', result({ ok: false, code: 'CATALOG_EVENT_INVALID', violations: [{ path: 'properties.products[3].price', rule: 'type', message: 'must be number' }] }));
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
});
