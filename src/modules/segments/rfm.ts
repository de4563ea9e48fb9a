/**
 * RFM segments: each buyer gets a recency, a frequency and a monetary score from 1 to 5 by thresholds on the
 * values themselves (configurable; ties always share a score, unlike quintiles of ranks, which split the half of
 * CDNOW's buyers who bought once arbitrarily), and a named segment from the recency and frequency scores.
 */

export interface RfmThresholds {
  /** Days since the last order: score 5 at or under the first value, 4 under the second, … 1 above the last. */
  recencyDays: readonly [number, number, number, number];
  /** Orders: score 2 from the first value, 3 from the second, … 5 from the last. */
  orders: readonly [number, number, number, number];
  /** Total spend: score 2 from the first value, … 5 from the last. Default: the 20/40/60/80% points of the values. */
  spend?: readonly [number, number, number, number];
}

export const DEFAULT_RFM: RfmThresholds = { recencyDays: [30, 90, 180, 365], orders: [2, 3, 4, 6] };

export const RFM_SEGMENTS = [
  'Champions',
  'Loyal',
  'Potential loyalists',
  'New',
  'Promising',
  'Need attention',
  'About to sleep',
  'At risk',
  "Can't lose them",
  'Hibernating',
] as const;
export type RfmSegment = (typeof RFM_SEGMENTS)[number];

export interface RfmInput {
  daysSinceLast: number;
  orders: number;
  total: number;
}

export interface RfmResult {
  recency: number;
  frequency: number;
  monetary: number;
  segment: RfmSegment;
}

/** The segment of each recency × frequency cell (the usual RFM grid). */
export function segmentOf(r: number, f: number): RfmSegment {
  if (r <= 2) return f <= 2 ? 'Hibernating' : f <= 4 ? 'At risk' : "Can't lose them";
  if (r === 3) return f <= 2 ? 'About to sleep' : f === 3 ? 'Need attention' : 'Loyal';
  if (f >= 4) return r === 5 ? 'Champions' : 'Loyal';
  if (f >= 2) return 'Potential loyalists';
  return r === 5 ? 'New' : 'Promising';
}

const atLeast = (value: number, cuts: readonly number[]) => 1 + cuts.filter((c) => value >= c).length;

/** Spend thresholds at the 20/40/60/80% points of the values (as values: equal spends always share a score). */
export function spendThresholds(totals: readonly number[]): [number, number, number, number] {
  const sorted = [...totals].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));
  return [at(0.2), at(0.4), at(0.6), at(0.8)];
}

export function scoreRfm(input: RfmInput, thresholds: RfmThresholds & { spend: readonly [number, number, number, number] }): RfmResult {
  const recency = 5 - thresholds.recencyDays.filter((c) => input.daysSinceLast > c).length;
  const frequency = atLeast(input.orders, thresholds.orders);
  const monetary = atLeast(input.total, thresholds.spend);
  return { recency, frequency, monetary, segment: segmentOf(recency, frequency) };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * The reason for a membership, in words: the thresholds the person's values crossed. With `amounts: false` the amount
 * spent is left out (for staff who may not read order totals), the monetary score kept.
 */
export function explainRfm(
  input: RfmInput,
  result: RfmResult,
  thresholds: RfmThresholds & { spend: readonly [number, number, number, number] },
  options: { currency?: string; amounts?: boolean } = {},
): string {
  const { currency = '', amounts = true } = options;
  const [r1, r2, r3, r4] = thresholds.recencyDays;
  const recencyText =
    result.recency === 5 ? `within ${r1} days` : result.recency === 4 ? `within ${r2} days` : result.recency === 3 ? `within ${r3} days` : result.recency === 2 ? `within ${r4} days` : `more than ${r4} days ago`;
  const orderCut = result.frequency > 1 ? thresholds.orders[result.frequency - 2] : undefined;
  const frequencyText = orderCut === undefined ? `fewer than ${thresholds.orders[0]} orders` : `at least ${orderCut} orders`;
  const money = (v: number) => `${currency}${v.toFixed(2)}`;
  return (
    `In segment ${result.segment}: last order ${plural(Math.round(input.daysSinceLast), 'day')} ago (recency ${result.recency} of 5: ${recencyText}), ` +
    `${plural(input.orders, 'order')} (frequency ${result.frequency} of 5: ${frequencyText}), ` +
    (amounts ? `${money(input.total)} spent in all (monetary ${result.monetary} of 5).` : `monetary ${result.monetary} of 5 (the amount spent is masked).`)
  );
}

/** Scores everyone and counts each segment's size. */
export function rfmSegments(inputs: readonly RfmInput[], thresholds: RfmThresholds = DEFAULT_RFM): { results: RfmResult[]; sizes: Record<RfmSegment, number>; thresholds: RfmThresholds & { spend: readonly [number, number, number, number] } } {
  const effective = { ...thresholds, spend: thresholds.spend ?? spendThresholds(inputs.map((i) => i.total)) };
  const sizes = Object.fromEntries(RFM_SEGMENTS.map((s) => [s, 0])) as Record<RfmSegment, number>;
  const results = inputs.map((input) => {
    const result = scoreRfm(input, effective);
    sizes[result.segment]++;
    return result;
  });
  return { results, sizes, thresholds: effective };
}
