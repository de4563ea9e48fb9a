/**
 * Times given as text, by senders (event timestamps) and operators (`candor retention sweep --now`): ISO 8601 only,
 * read the same in every time zone the process runs in, and within the years whose ISO text keeps four digits.
 */

/**
 * The earliest time Candor takes, 0001-01-01T00:00:00.000Z: the floor of retention cutoffs (EARLIEST_CUTOFF in
 * duration.ts), which an earlier event would outlive. Times are stored and compared as ISO text, and from year -1 back
 * that text has a sign and six digits (`-000001-…`), which sorts wrong.
 */
export const EARLIEST_TIME_MS = -62_135_596_800_000;
/** The latest time Candor takes, 9999-12-31T23:59:59.999Z: after it the ISO text is `+010000-…`, which sorts first. */
export const LATEST_TIME_MS = 253_402_300_799_999;

/** Whether epoch milliseconds are a time Candor takes (EARLIEST_TIME_MS to LATEST_TIME_MS); false for NaN. */
export function inTimeRange(ms: number): boolean {
  return ms >= EARLIEST_TIME_MS && ms <= LATEST_TIME_MS;
}

/**
 * ISO 8601 / RFC 3339 as senders write it: a date (a four-digit year, or a sign and six digits), optionally a time
 * (`T` or a space) with seconds and up to nine fractional digits, optionally a zone (`Z`, `±hh:mm`, `±hhmm`).
 */
const ISO_TIME = /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?$/;

/**
 * A time written as ISO 8601 text, in epoch milliseconds; without a zone it is UTC, whatever the process's time zone.
 * NaN for any other text (`May 5 2027`), a date no calendar has (30 February) or a time outside inTimeRange.
 */
export function isoTime(text: string): number {
  const m = ISO_TIME.exec(text);
  if (!m) return Number.NaN;
  const [, y, mo, d, h = '0', mi = '0', sec = '0', frac = '', , sign, zh = '0', zm = '0'] = m as unknown as string[];
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(sec);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59 || Number(zh) > 23 || Number(zm) > 59) return Number.NaN;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // Date.UTC would roll 30 February over into March: a day the month does not have is no date.
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return Number.NaN;
  date.setUTCHours(hour, minute, second, Number(frac.padEnd(3, '0').slice(0, 3)));
  const offset = sign ? (sign === '-' ? -1 : 1) * (Number(zh) * 60 + Number(zm)) * 60_000 : 0;
  const time = date.getTime() - offset;
  return inTimeRange(time) ? time : Number.NaN;
}
