/**
 * Churn risk for buyers without a contract, from the fitted BG/NBD model: the probability the customer is still
 * active, and how overdue their next order is against their own usual gap. Subscriptions use the classifier
 * (logistic.ts) instead. Each risk comes with its reason in words.
 */
import { probabilityAlive, type BgNbdParams } from './bgnbd.ts';
import type { CustomerSummary } from './summary.ts';

export type RiskBand = 'low' | 'medium' | 'high';

export interface ChurnRisk {
  /** 1 − P(alive). */
  risk: number;
  pAlive: number;
  band: RiskBand;
  /** Days between orders the customer usually leaves (null after a single order). */
  usualGapDays: number | null;
  reason: string;
}

export interface ChurnOptions {
  /** Risk at or above which a customer is "At risk" (high), and the medium band's lower edge. */
  high: number;
  medium: number;
  /** Days per model time unit. */
  unitDays: number;
}

export const DEFAULT_CHURN: ChurnOptions = { high: 0.5, medium: 0.25, unitDays: 7 };

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function churnRisk(params: BgNbdParams, s: Pick<CustomerSummary, 'x' | 'tx' | 'T' | 'orders' | 'daysSinceLast' | 'firstDay' | 'lastDay'>, options: ChurnOptions = DEFAULT_CHURN): ChurnRisk {
  const pAlive = probabilityAlive(params, s);
  const risk = 1 - pAlive;
  const band: RiskBand = risk >= options.high ? 'high' : risk >= options.medium ? 'medium' : 'low';
  const usualGapDays = s.orders > 1 ? (s.lastDay - s.firstDay) / (s.orders - 1) : null;
  const history = `${plural(s.orders, 'order')}, the last ${plural(Math.round(s.daysSinceLast), 'day')} ago`;
  let reason: string;
  if (usualGapDays === null) {
    reason = `${history}; with a single order there is no usual rhythm yet, so the risk follows how long new customers typically take to come back.`;
  } else {
    const gap = Math.max(1, Math.round(usualGapDays));
    const overdue = s.daysSinceLast / gap;
    const pace =
      overdue >= 2 ? `that is ${overdue.toFixed(1)} times your usual gap` : overdue >= 1 ? 'a little longer than your usual gap' : 'still within your usual gap';
    reason = `${history}; you usually order every ${plural(gap, 'day')} — ${pace}.`;
  }
  return { risk, pAlive, band, usualGapDays, reason: `${band === 'high' ? 'At risk' : band === 'medium' ? 'Some risk' : 'Active'}: ${reason}` };
}
