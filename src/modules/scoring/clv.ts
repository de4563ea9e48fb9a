/**
 * Discounted customer lifetime value from the two fitted models: expected purchases per period from BG/NBD times
 * the expected value per purchase from Gamma–Gamma, each period discounted (the method of Fader, Hardie & Lee's
 * "RFM and CLV" note, as the `lifetimes` package computes it, with monthly steps).
 */
import { expectedPurchases, type BgNbdParams, type RepeatSummary } from './bgnbd.ts';
import { expectedSpend, type GammaGammaParams } from './gamma-gamma.ts';

export interface ClvOptions {
  /** Horizon in months. */
  months: number;
  /** Annual discount rate (0.1 = 10%). */
  annualDiscount: number;
  /** Days per model time unit (7: the models were fitted in weeks). */
  unitDays: number;
}

export const DEFAULT_CLV: ClvOptions = { months: 12, annualDiscount: 0.1, unitDays: 7 };
const DAYS_PER_MONTH = 365.25 / 12;

export interface ClvResult {
  /** Expected purchases over the horizon. */
  purchases: number;
  /** Expected value of one purchase. */
  spend: number;
  /** Discounted value over the horizon. */
  value: number;
}

export function lifetimeValue(bg: BgNbdParams, gg: GammaGammaParams, s: RepeatSummary & { m: number }, options: ClvOptions = DEFAULT_CLV): ClvResult {
  const spend = expectedSpend(gg, s);
  const monthly = Math.pow(1 + options.annualDiscount, 1 / 12) - 1;
  let value = 0;
  let previous = 0;
  for (let month = 1; month <= options.months; month++) {
    const cumulative = expectedPurchases(bg, s, (month * DAYS_PER_MONTH) / options.unitDays);
    value += ((cumulative - previous) * spend) / Math.pow(1 + monthly, month);
    previous = cumulative;
  }
  return { purchases: previous, spend, value };
}
