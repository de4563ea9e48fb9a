import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { compress, fitBgNbd, summarize } from '../modules/scoring/index.ts';
import { DEFAULT_SHOP, generateShop } from './shop.ts';

describe('synthetic shop', () => {
  it('is deterministic for a seed', () => {
    const a = [...generateShop({ customers: 50, seed: 5 })];
    const b = [...generateShop({ customers: 50, seed: 5 })];
    const c = [...generateShop({ customers: 50, seed: 6 })];
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('has buying that the BG/NBD model recovers: fitted parameters within 10% of the true ones', () => {
    const transactions: { customerId: string; day: number; value: number }[] = [];
    let refusing = 0;
    for (const customer of generateShop({ customers: 20_000, seed: 7 })) {
      for (const order of customer.orders) transactions.push({ customerId: customer.id, day: order.day, value: order.total });
      if (!customer.consent.profiling) refusing++;
    }
    const fit = fitBgNbd(compress(summarize(transactions, { endDay: DEFAULT_SHOP.weeks * 7 - 1 })));
    const truth = DEFAULT_SHOP.bgnbd;
    for (const key of ['r', 'alpha', 'a', 'b'] as const) {
      assert.ok(Math.abs(fit.params[key] / truth[key] - 1) < 0.1, `${key}: fitted ${fit.params[key]}, true ${truth[key]}`);
    }
    assert.ok(refusing > 2_000 && refusing < 4_000, `about 15% refuse profiling (${refusing})`);
  });
});
