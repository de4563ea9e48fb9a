/**
 * The legal clocks of data-subject requests, as pure functions of the receipt time (no I/O, no `Date.now()`), so
 * every boundary can be tested. Days are UTC days; a period ends with the last millisecond of its last day
 * (Regulation 1182/71 Art. 3: a period in months ends on the same date of the last month, or on that month's last
 * day when it has no such date). Business days are Monday to Friday; public holidays are not modelled.
 */
import { CandorError } from '../../shared/errors.ts';

export type Jurisdiction = 'gdpr' | 'ccpa';
export const JURISDICTIONS: readonly Jurisdiction[] = ['gdpr', 'ccpa'];

export const REQUEST_TYPES = [
  'access',
  'portability',
  'rectification',
  'erasure',
  'restriction',
  'objection',
  'opt_out_sale_sharing',
  'limit_sensitive',
  'withdraw_consent',
] as const;
export type RequestType = (typeof REQUEST_TYPES)[number];

/** CCPA/CPRA opt-outs: answered within 15 business days, never extended. */
export const OPT_OUT_TYPES: ReadonlySet<RequestType> = new Set(['opt_out_sale_sharing', 'limit_sensitive']);

const DAY_MS = 86_400_000;

/** The deadlines of one request. */
export interface Deadlines {
  /** When the answer is due. */
  readonly dueAt: string;
  /** CCPA: the receipt must be acknowledged by then; null under the GDPR. */
  readonly acknowledgeBy: string | null;
  /** The latest an extension notice may be sent (the end of the first period); null when no extension is possible. */
  readonly extendableUntil: string | null;
  /** The due date once extended; null when no extension is possible. */
  readonly extendedDueAt: string | null;
}

/** Start of the UTC day of `ms`. */
function dayStart(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/** The last millisecond of the UTC day of `ms`. */
export function endOfDay(ms: number): number {
  return dayStart(ms) + DAY_MS - 1;
}

/** The same UTC date `months` calendar months later, or the last day of that month when it has no such date. */
export function addCalendarMonths(ms: number, months: number): number {
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  const month = d.getUTCMonth() + months;
  const last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return Date.UTC(year, month, Math.min(d.getUTCDate(), last), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds());
}

/** The day `days` business days (Mon–Fri) after the day of `ms`; the day of receipt itself never counts. */
export function addBusinessDays(ms: number, days: number): number {
  let at = dayStart(ms);
  let left = days;
  while (left > 0) {
    at += DAY_MS;
    const weekday = new Date(at).getUTCDay();
    if (weekday !== 0 && weekday !== 6) left--;
  }
  return at;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The deadlines of a request of `type` received at `receivedAt` under `jurisdiction`. */
export function deadlines(type: RequestType, jurisdiction: Jurisdiction, receivedAt: Date): Deadlines {
  const received = receivedAt.getTime();
  if (!Number.isFinite(received)) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'received_at' });
  if (jurisdiction === 'gdpr') {
    // Art. 12(3): one month, extendable by two further months with a notice given within the first month.
    const due = endOfDay(addCalendarMonths(received, 1));
    return { dueAt: iso(due), acknowledgeBy: null, extendableUntil: iso(due), extendedDueAt: iso(endOfDay(addCalendarMonths(received, 3))) };
  }
  if (OPT_OUT_TYPES.has(type)) {
    // CCPA regulations §7026(f), §7027(g): act on an opt-out within 15 business days.
    return { dueAt: iso(endOfDay(addBusinessDays(received, 15))), acknowledgeBy: null, extendableUntil: null, extendedDueAt: null };
  }
  // CCPA regulations §7021: confirm receipt within 10 business days, answer within 45 calendar days, extendable once by 45.
  const due = endOfDay(received + 45 * DAY_MS);
  return {
    dueAt: iso(due),
    acknowledgeBy: iso(endOfDay(addBusinessDays(received, 10))),
    extendableUntil: iso(due),
    extendedDueAt: iso(endOfDay(received + 90 * DAY_MS)),
  };
}

/**
 * The new due date when an extension notice is sent at `noticeAt`. Only once, only where the law allows one, and
 * only while the first period runs: RIGHTS_EXTENSION_NOT_ALLOWED, RIGHTS_EXTENSION_ALREADY_USED and
 * RIGHTS_EXTENSION_TOO_LATE otherwise.
 */
export function extendedDueAt(type: RequestType, jurisdiction: Jurisdiction, receivedAt: Date, noticeAt: Date, alreadyExtended: boolean): string {
  const d = deadlines(type, jurisdiction, receivedAt);
  if (d.extendableUntil === null || d.extendedDueAt === null) throw new CandorError('RIGHTS_EXTENSION_NOT_ALLOWED', { type, jurisdiction });
  if (alreadyExtended) throw new CandorError('RIGHTS_EXTENSION_ALREADY_USED');
  if (noticeAt.getTime() > Date.parse(d.extendableUntil)) throw new CandorError('RIGHTS_EXTENSION_TOO_LATE', { extendableUntil: d.extendableUntil });
  return d.extendedDueAt;
}

export type ClockStatus = 'on_time' | 'due_soon' | 'overdue';

/** Where an open request stands against its due date at `now`: overdue after it, due soon within `soonDays` of it. */
export function clockStatus(dueAt: string, now: Date, soonDays = 7): ClockStatus {
  const due = Date.parse(dueAt);
  const at = now.getTime();
  if (at > due) return 'overdue';
  if (at > due - soonDays * DAY_MS) return 'due_soon';
  return 'on_time';
}
