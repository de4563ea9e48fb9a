import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { churnRisk } from './churn.ts';
import { fourFifths } from './fairness.ts';

const params = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

describe('churn risk for non-contractual buyers', () => {
  it('rises as the last order recedes, and says why in words', () => {
    const recent = churnRisk(params, { x: 2, tx: 8.6, T: 9, orders: 3, daysSinceLast: 3, firstDay: 0, lastDay: 60 });
    const lapsed = churnRisk(params, { x: 2, tx: 8.6, T: 35.7, orders: 3, daysSinceLast: 190, firstDay: 0, lastDay: 60 });
    assert.ok(lapsed.risk > recent.risk);
    assert.equal(lapsed.band, 'high');
    assert.equal(lapsed.reason, 'At risk: 3 orders, the last 190 days ago; you usually order every 30 days — that is 6.3 times your usual gap.');
    assert.match(recent.reason, /still within your usual gap/);
    const once = churnRisk(params, { x: 0, tx: 0, T: 20, orders: 1, daysSinceLast: 140, firstDay: 0, lastDay: 0 });
    assert.equal(once.pAlive, 1);
    assert.equal(once.usualGapDays, null);
  });
});

describe('four-fifths rule', () => {
  it('flags a group selected at under 80% of the most-selected group', () => {
    const members = [
      ...Array.from({ length: 100 }, (_, i) => ({ group: 'A', selected: i < 50 })),
      ...Array.from({ length: 100 }, (_, i) => ({ group: 'B', selected: i < 35 })),
      ...Array.from({ length: 100 }, (_, i) => ({ group: 'C', selected: i < 45 })),
      ...Array.from({ length: 5 }, () => ({ group: null, selected: true })),
    ];
    const report = fourFifths('segment:At risk', 'age band', members);
    assert.deepEqual(report.groups.map((g) => [g.group, g.rate, Number(g.ratio.toFixed(2)), g.flagged]), [
      ['A', 0.5, 1, false],
      ['B', 0.35, 0.7, true],
      ['C', 0.45, 0.9, false],
    ]);
    assert.equal(report.passes, false);
    assert.equal(report.unknown, 5);
  });

  it('pools groups too small to report on their own', () => {
    const members = [
      ...Array.from({ length: 50 }, (_, i) => ({ group: 'A', selected: i < 25 })),
      ...Array.from({ length: 6 }, () => ({ group: 'B', selected: true })),
      ...Array.from({ length: 6 }, () => ({ group: 'C', selected: false })),
    ];
    const report = fourFifths('audience', 'region', members);
    assert.deepEqual(report.groups.map((g) => g.group), ['A', 'other']);
    assert.equal(report.groups.find((g) => g.group === 'other')?.members, 12);
    assert.equal(report.passes, true);
  });
});
