import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { readReference } from '../../../test/support/reference-data.ts';
import { compress, expectedPurchases, expectedPurchasesNew, fitBgNbd, probabilityAlive } from './bgnbd.ts';
import { lifetimeValue } from './clv.ts';
import { expectedSpend, fitGammaGamma } from './gamma-gamma.ts';
import { dayNumber, summarize } from './summary.ts';

// CDNOW data by P. Fader and B. Hardie (brucehardie.com), as redistributed in the `lifetimes` repository.
const summaryRows = () =>
  readReference('cdnow', 'cdnow_customers_summary_with_transactions.csv')
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => {
      const [id, x, tx, T, m] = line.split(',').map(Number) as [number, number, number, number, number];
      return { id, x, tx, T, m };
    });

const transactions = () =>
  readReference('cdnow', 'CDNOW_sample.txt')
    .trim()
    .split('\n')
    .map((line) => {
      const [, id, date, , value] = line.trim().split(/\s+/) as [string, string, string, string, string];
      return { customerId: String(Number(id)), day: dayNumber(date), value: Number(value) };
    });

const near = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);

describe('BG/NBD and Gamma–Gamma on CDNOW (Fader, Hardie & Lee 2005)', () => {
  it('fits the published BG/NBD parameters and log-likelihood from the customer summary', () => {
    const fit = fitBgNbd(compress(summaryRows()));
    near(fit.params.r, 0.243, 0.01, 'r');
    near(fit.params.alpha, 4.414, 0.01, 'alpha');
    near(fit.params.a, 0.793, 0.01, 'a');
    near(fit.params.b, 2.426, 0.01, 'b');
    near(fit.logLikelihood, -9582.4, 0.1, 'log-likelihood');
    assert.equal(fit.customers, 2357);
    assert.ok(fit.converged);
  });

  it('fits the published Gamma–Gamma parameters on the 946 repeat buyers', () => {
    const fit = fitGammaGamma(summaryRows());
    assert.equal(fit.customers, 946);
    near(fit.params.p, 6.25, 0.02, 'p');
    near(fit.params.q, 3.74, 0.02, 'q');
    near(fit.params.gamma, 15.44, 0.02, 'gamma');
  });

  it('computes the same summaries and fits from the raw transactions', () => {
    const computed = summarize(transactions(), { endDay: dayNumber('1997-09-30') });
    const reference = new Map(summaryRows().map((r) => [String(r.id), r]));
    assert.equal(computed.length, reference.size);
    for (const c of computed) {
      const r = reference.get(c.customerId);
      assert.ok(r, `customer ${c.customerId} in the published summary`);
      assert.equal(c.x, r.x);
      near(c.tx, r.tx, 0.006, `t_x of ${c.customerId}`);
      near(c.T, r.T, 0.006, `T of ${c.customerId}`);
      near(c.m, r.m, 0.006, `m of ${c.customerId}`);
    }
    const bg = fitBgNbd(compress(computed));
    near(bg.params.r, 0.243, 0.01, 'r');
    near(bg.params.alpha, 4.414, 0.01, 'alpha');
    near(bg.params.a, 0.793, 0.01, 'a');
    near(bg.params.b, 2.426, 0.01, 'b');
    near(bg.logLikelihood, -9582.4, 0.1, 'log-likelihood');
    const gg = fitGammaGamma(computed);
    near(gg.params.p, 6.25, 0.02, 'p');
    near(gg.params.q, 3.74, 0.02, 'q');
    near(gg.params.gamma, 15.44, 0.02, 'gamma');
  });

  it('predicts like the paper: expected repeat purchases of a new customer and a worked example', () => {
    const params = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
    // A customer observed for no time at all is a new customer: the conditional expectation (eq. 10) reduces to E[X(t)] (eq. 9).
    near(expectedPurchases(params, { x: 0, tx: 0, T: 0 }, 78), expectedPurchasesNew(params, 78), 1e-9, 'E[Y(78)|0,0,0] = E[X(78)]');
    // The paper's example: x=2, t_x=30.43, T=38.86 expects ~1.226 purchases in the next 39 weeks.
    near(expectedPurchases(params, { x: 2, tx: 30.43, T: 38.86 }, 39), 1.226, 0.01, 'E[Y(39)]');
    assert.equal(probabilityAlive(params, { x: 0, tx: 0, T: 38.86 }), 1);
    // A buyer who stopped long ago is less likely alive than one who bought recently.
    assert.ok(probabilityAlive(params, { x: 4, tx: 5, T: 38.86 }) < probabilityAlive(params, { x: 4, tx: 37, T: 38.86 }));
  });

  it('values a customer by discounted expected purchases times expected spend', () => {
    const bg = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
    const gg = { p: 6.25, q: 3.74, gamma: 15.44 };
    const customer = { x: 2, tx: 30.43, T: 38.86, m: 22.35 };
    const clv = lifetimeValue(bg, gg, customer);
    near(clv.spend, expectedSpend(gg, customer), 1e-12, 'spend');
    assert.ok(clv.value > 0 && clv.value < clv.purchases * clv.spend, 'discounting lowers the value');
    const undiscounted = lifetimeValue(bg, gg, customer, { months: 12, annualDiscount: 0, unitDays: 7 });
    near(undiscounted.value, undiscounted.purchases * undiscounted.spend, 1e-9, 'no discount');
  });
});
