/**
 * From transactions to each customer's RFM summary, the input of every lifetime-value model and of RFM segments.
 * The conventions are those of the published CDNOW analyses: purchases on the same day count as one transaction
 * (their values summed); frequency x counts the days with a purchase after the first; recency t_x is the time from
 * the first purchase to the last, and T from the first purchase to the end of observation, in `unitDays` units;
 * monetary m̄ is the mean value of the repeat transactions (the first is left out, as the Gamma–Gamma model wants).
 */

export interface Transaction {
  customerId: string;
  /** Day of the purchase as days since 1970-01-01 (UTC), fractional parts ignored. */
  day: number;
  value: number;
}

export interface CustomerSummary {
  customerId: string;
  /** Repeat purchase days. */
  x: number;
  /** First to last purchase, in units. */
  tx: number;
  /** First purchase to the end of observation, in units. */
  T: number;
  /** Mean value of the repeat transactions (0 without any). */
  m: number;
  /** All purchase days in the window (x + 1), their total value, and the days since the last purchase. */
  orders: number;
  total: number;
  daysSinceLast: number;
  firstDay: number;
  lastDay: number;
}

export interface SummaryOptions {
  /** Last day of observation (inclusive), as days since the epoch. Transactions after it are ignored. */
  endDay: number;
  /** Length of the time unit in days (7: weeks, the unit of the published figures). */
  unitDays?: number;
}

/** Days since 1970-01-01 UTC for a date given as `YYYYMMDD` or an ISO string. */
export function dayNumber(date: string): number {
  const iso = /^\d{8}$/.test(date) ? `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}` : date;
  return Math.floor(Date.parse(iso.length === 10 ? `${iso}T00:00:00Z` : iso) / 86_400_000);
}

/** Summaries of every customer with at least one purchase on or before `endDay`. */
export function summarize(transactions: Iterable<Transaction>, options: SummaryOptions): CustomerSummary[] {
  const unit = options.unitDays ?? 7;
  // Per customer: value per purchase day.
  const days = new Map<string, Map<number, number>>();
  for (const t of transactions) {
    const day = Math.floor(t.day);
    if (day > options.endDay) continue;
    let perDay = days.get(t.customerId);
    if (!perDay) days.set(t.customerId, (perDay = new Map()));
    perDay.set(day, (perDay.get(day) ?? 0) + t.value);
  }
  const out: CustomerSummary[] = [];
  for (const [customerId, perDay] of days) {
    const sorted = [...perDay.keys()].sort((a, b) => a - b);
    const first = sorted[0] as number;
    const last = sorted[sorted.length - 1] as number;
    let total = 0;
    let repeatTotal = 0;
    for (const [day, value] of perDay) {
      total += value;
      if (day !== first) repeatTotal += value;
    }
    const x = sorted.length - 1;
    out.push({
      customerId,
      x,
      tx: (last - first) / unit,
      T: (options.endDay - first) / unit,
      m: x > 0 ? repeatTotal / x : 0,
      orders: sorted.length,
      total,
      daysSinceLast: options.endDay - last,
      firstDay: first,
      lastDay: last,
    });
  }
  return out;
}
