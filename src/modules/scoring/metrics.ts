/** Quality measures of probabilistic classifiers: ROC AUC, Brier score and a reliability table. */

/** Area under the ROC curve (the Mann–Whitney statistic, ties counted half). */
export function auc(scores: ArrayLike<number>, y: ArrayLike<number>): number {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => (scores[a] as number) - (scores[b] as number));
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1] as number] === scores[order[i] as number]) j++;
    const rank = (i + j) / 2 + 1; // average rank of the tie group, 1-based
    for (let t = i; t <= j; t++) {
      if (y[order[t] as number] === 1) {
        positives++;
        rankSum += rank;
      }
    }
    i = j + 1;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) return Number.NaN;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Mean squared difference between predicted probabilities and outcomes (lower is better). */
export function brier(p: ArrayLike<number>, y: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < p.length; i++) sum += ((p[i] as number) - (y[i] as number)) ** 2;
  return sum / p.length;
}

export interface ReliabilityBin {
  from: number;
  to: number;
  count: number;
  meanPredicted: number;
  observedRate: number;
}

/** Predicted against observed rates in equal-width probability bins (empty bins left out). */
export function reliability(p: ArrayLike<number>, y: ArrayLike<number>, bins = 10): ReliabilityBin[] {
  const count = new Array<number>(bins).fill(0);
  const predicted = new Array<number>(bins).fill(0);
  const observed = new Array<number>(bins).fill(0);
  for (let i = 0; i < p.length; i++) {
    const b = Math.min(bins - 1, Math.floor((p[i] as number) * bins));
    count[b] = (count[b] as number) + 1;
    predicted[b] = (predicted[b] as number) + (p[i] as number);
    observed[b] = (observed[b] as number) + (y[i] as number);
  }
  const out: ReliabilityBin[] = [];
  for (let b = 0; b < bins; b++) {
    const c = count[b] as number;
    if (c > 0) out.push({ from: b / bins, to: (b + 1) / bins, count: c, meanPredicted: (predicted[b] as number) / c, observedRate: (observed[b] as number) / c });
  }
  return out;
}
