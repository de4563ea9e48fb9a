import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { readReference } from '../../../test/support/reference-data.ts';
import { generateShop } from '../../demo/shop.ts';
import { dayNumber, summarize } from '../scoring/index.ts';
import { assignPersona, fitPersonas, type PersonaInput } from './personas.ts';
import { explainRfm, rfmSegments, RFM_SEGMENTS, scoreRfm, segmentOf } from './rfm.ts';

describe('RFM segments', () => {
  it('maps every recency × frequency cell to one of the ten named segments', () => {
    const seen = new Set<string>();
    for (let r = 1; r <= 5; r++) for (let f = 1; f <= 5; f++) seen.add(segmentOf(r, f));
    assert.deepEqual([...seen].sort(), [...RFM_SEGMENTS].sort());
    assert.equal(segmentOf(5, 5), 'Champions');
    assert.equal(segmentOf(5, 1), 'New');
    assert.equal(segmentOf(1, 5), "Can't lose them");
    assert.equal(segmentOf(1, 1), 'Hibernating');
  });

  it('scores by thresholds on values, so equal values always share a score (CDNOW: half bought once)', () => {
    const tx = readReference('cdnow', 'CDNOW_master.txt')
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => {
        const [id, date, , value] = line.trim().split(/\s+/) as [string, string, string, string];
        return { customerId: id, day: dayNumber(date), value: Number(value) };
      });
    const summaries = summarize(tx, { endDay: dayNumber('1998-06-30') });
    assert.equal(summaries.length, 23570);
    const { results, sizes } = rfmSegments(summaries.map((s) => ({ daysSinceLast: s.daysSinceLast, orders: s.orders, total: s.total })));
    const once = summaries.filter((s) => s.orders === 1).length;
    assert.ok(once / summaries.length > 0.45, 'about half of CDNOW bought once');
    // Every one-time buyer has frequency 1: no tie is broken by rank.
    summaries.forEach((s, i) => {
      if (s.orders === 1) assert.equal(results[i]?.frequency, 1);
    });
    assert.equal(Object.values(sizes).reduce((a, b) => a + b, 0), summaries.length);
    // Most of the 1997 cohort had lapsed by mid-1998.
    assert.ok(sizes.Hibernating > sizes.Champions, JSON.stringify(sizes));
  });

  it('explains a membership with the thresholds crossed', () => {
    const thresholds = { recencyDays: [30, 90, 180, 365] as const, orders: [2, 3, 4, 6] as const, spend: [20, 50, 100, 200] as const };
    const input = { daysSinceLast: 190, orders: 3, total: 120 };
    const result = scoreRfm(input, thresholds);
    assert.deepEqual(result, { recency: 2, frequency: 3, monetary: 4, segment: 'At risk' });
    assert.equal(
      explainRfm(input, result, thresholds, { currency: '$' }),
      'In segment At risk: last order 190 days ago (recency 2 of 5: within 365 days), 3 orders (frequency 3 of 5: at least 3 orders), $120.00 spent in all (monetary 4 of 5).',
    );
    assert.equal(
      explainRfm(input, result, thresholds, { currency: '$', amounts: false }),
      'In segment At risk: last order 190 days ago (recency 2 of 5: within 365 days), 3 orders (frequency 3 of 5: at least 3 orders), monetary 4 of 5 (the amount spent is masked).',
    );
  });
});

describe('personas', () => {
  it('chooses k by silhouette and names each cluster in words from its centre', () => {
    const inputs: PersonaInput[] = [];
    for (const c of generateShop({ customers: 3000, seed: 11 })) {
      const end = 78 * 7;
      const orders = c.orders.length;
      const weekday = c.orders.filter((o) => (Math.floor(o.day) + 2) % 7 < 5).length;
      const morning = c.orders.filter((o) => (o.day % 1) * 24 < 12).length;
      inputs.push({
        orders,
        averageOrder: c.orders.reduce((s, o) => s + o.total, 0) / orders,
        daysSinceLast: end - Math.floor((c.orders[orders - 1] as { day: number }).day),
        weekdayShare: weekday / orders,
        morningShare: morning / orders,
      });
    }
    const model = fitPersonas(inputs, { kMin: 2, kMax: 6, seed: 3 });
    assert.ok(model.k >= 2 && model.k <= 6);
    assert.equal(model.tried.length, 5);
    assert.equal(model.silhouette, Math.max(...model.tried.map((t) => t.silhouette)));
    assert.equal(model.personas.reduce((s, p) => s + p.size, 0), inputs.length);
    assert.equal(new Set(model.personas.map((p) => p.name)).size, model.k, 'names are distinct');
    for (const p of model.personas) {
      assert.match(p.name, /^(Frequent|Occasional|Regular) (big|small|mid)-basket (weekday |weekend )?buyers/);
      assert.match(p.description, /buyers, .*orders of \d+ on average/);
    }
    // A new input goes to the persona whose centre is nearest; an input's own cluster is that persona.
    const first = inputs[0] as PersonaInput;
    assert.equal(assignPersona(model, first).id, model.assignments[0]);
  });
});
