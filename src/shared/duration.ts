/** ISO-8601 durations (`P13M`, `P7Y`, `P30D`, `PT12H`) as retention periods, counted back from a moment in UTC. */

const DURATION = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

/**
 * The earliest moment subtractDuration answers (0001-01-01T00:00:00Z): a period that reaches back further counts from
 * here. Its ISO text keeps a four-digit year, so it compares correctly as text and as a timestamp on both databases.
 */
export const EARLIEST_CUTOFF = new Date('0001-01-01T00:00:00.000Z');

export interface Duration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

/** The parts of an ISO-8601 duration longer than zero, or undefined when it is not one. */
export function parseDuration(value: string): Duration | undefined {
  const match = DURATION.exec(value);
  if (!match || value === 'P' || value.endsWith('T')) return undefined;
  const [years, months, weeks, days, hours, minutes, seconds] = match.slice(1).map((part) => Number(part ?? 0)) as [number, number, number, number, number, number, number];
  const d = { years, months, weeks, days, hours, minutes, seconds };
  return Object.values(d).some((n) => n > 0) ? d : undefined;
}

/** The time `d` before `at` in milliseconds; NaN when it lies outside what a Date can hold. */
function reachBack(at: Date, d: Duration): number {
  const out = new Date(at.getTime());
  const totalMonths = d.years * 12 + d.months;
  if (totalMonths > 0) {
    const day = out.getUTCDate();
    out.setUTCDate(1);
    out.setUTCMonth(out.getUTCMonth() - totalMonths);
    const lastDay = new Date(Date.UTC(out.getUTCFullYear(), out.getUTCMonth() + 1, 0)).getUTCDate();
    out.setUTCDate(Math.min(day, lastDay));
  }
  out.setUTCDate(out.getUTCDate() - d.weeks * 7 - d.days);
  out.setTime(out.getTime() - ((d.hours * 60 + d.minutes) * 60 + d.seconds) * 1000);
  return out.getTime();
}

function parsed(value: string): Duration {
  const d = parseDuration(value);
  if (!d) throw new RangeError(`not an ISO-8601 duration longer than zero: ${value}`);
  return d;
}

/**
 * The moment `duration` before `at`, on the calendar (P1M before 31 March is 28 or 29 February, not 3 March):
 * rows whose clock is before it have outlived the period. Never earlier than EARLIEST_CUTOFF, so that a period too
 * long for the calendar (`P300000Y`) means "nothing has expired" instead of an invalid date.
 */
export function subtractDuration(at: Date, value: string): Date {
  const time = reachBack(at, parsed(value));
  // NaN (out of a Date's range) fails the comparison too.
  return new Date(time >= EARLIEST_CUTOFF.getTime() ? time : EARLIEST_CUTOFF.getTime());
}

/** Orders durations by the moment they reach back to from a fixed date (months have no fixed length). */
export function compareDurations(a: string, b: string): number {
  const ref = new Date(Date.UTC(2000, 0, 1));
  // Beyond a Date's range counts as the longest, and all such periods as equally long.
  const reach = (value: string) => {
    const time = reachBack(ref, parsed(value));
    return Number.isNaN(time) ? -Infinity : time;
  };
  const ta = reach(a);
  const tb = reach(b);
  return ta === tb ? 0 : tb > ta ? 1 : -1;
}
