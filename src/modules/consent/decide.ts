import { isDataUseUnder, type DataUseLookup } from '../taxonomy/index.ts';
import type { ConsentMechanism, ConsentState, Decision, LawfulBasis, PurposeConfig } from './consent.types.ts';

/** A subject's latest ledger entry for one purpose, as the hot path needs it. */
export interface Current {
  readonly entryId: string;
  readonly state: ConsentState;
  readonly basis: LawfulBasis;
  readonly mechanism: ConsentMechanism;
  readonly noticeVersion: number | null;
  readonly jurisdiction: string | null;
  readonly gpc: boolean;
  readonly gpcOverride: boolean;
  readonly at: string;
  /** When a given consent stops counting (expiry months after `at`), in epoch milliseconds. */
  readonly expiresAtMs: number;
}

/**
 * Per-subject flags that override every purpose decision: a restriction of processing (GDPR Art. 18) blocks every
 * purpose but those resting on a legal obligation; an objection to direct marketing (Art. 21(2)–(3)) blocks every
 * `marketing.*` purpose whatever its basis.
 */
export interface SubjectFlags {
  readonly restricted: boolean;
  readonly objectedMarketing: boolean;
}

export const NO_FLAGS: SubjectFlags = Object.freeze({ restricted: false, objectedMarketing: false });

/** The flags of both: a restriction or objection of either binds. */
export function unionFlags(a: SubjectFlags, b: SubjectFlags): SubjectFlags {
  if ((a.restricted || !b.restricted) && (a.objectedMarketing || !b.objectedMarketing)) return a;
  return Object.freeze({ restricted: a.restricted || b.restricted, objectedMarketing: a.objectedMarketing || b.objectedMarketing });
}

/**
 * Direct marketing: the `marketing` data use and everything under it, by the taxonomy's parent chain when given (a
 * custom use under `marketing.advertising` is marketing too), else by the key.
 */
export function isDirectMarketing(purposeKey: string, uses?: DataUseLookup): boolean {
  return uses ? isDataUseUnder(uses, purposeKey, ['marketing']) : purposeKey === 'marketing' || purposeKey.startsWith('marketing.');
}

/** A configured purpose with what decide() needs precomputed. */
export interface PurposeRuntime {
  readonly config: Readonly<PurposeConfig>;
  readonly optOut: ReadonlySet<string>;
  /** Consents given under a notice older than this version must be renewed (0: none). */
  readonly renewalFrom: number;
  /** An explicit purpose: the time from which consents given count as explicit (ISO 8601; earlier ones must be renewed). */
  readonly explicitSince: string;
  /** isDirectMarketing by the taxonomy, worked out when the runtime is built; absent: by the key. */
  readonly directMarketing?: boolean;
}

const decision = (allowed: boolean, basis: LawfulBasis | null, reason: Decision['reason'], explicit = false): Decision =>
  Object.freeze({ allowed, basis, reason, explicit });

// Shared, frozen answers: decide() allocates nothing.
export const UNKNOWN_PURPOSE = decision(false, null, 'unknown_purpose');
const NO_RECORD = decision(false, null, 'no_record');
const REFUSED = decision(false, null, 'refused');
const WITHDRAWN = decision(false, null, 'withdrawn');
const EXPIRED = decision(false, null, 'expired');
const RENEWAL_REQUIRED = decision(false, null, 'renewal_required');
const OBJECTED = decision(false, null, 'objected');
const RESTRICTED = decision(false, null, 'restricted');
const JURISDICTION_NOT_OPT_OUT = decision(false, null, 'jurisdiction_not_opt_out');
const GIVEN = decision(true, 'consent', 'given');
const GIVEN_EXPLICIT = decision(true, 'consent', 'given', true);
const OPT_OUT_NOTICE = decision(true, 'opt_out_notice', 'opt_out_notice');
const CONTRACT = decision(true, 'contract', 'contract');
const LEGAL_OBLIGATION = decision(true, 'legal_obligation', 'legal_obligation');
const LEGITIMATE_INTERESTS = decision(true, 'legitimate_interests', 'legitimate_interests');

/** Whether an entry is an opt-out or objection. */
export function isOptOut(current: Current | undefined): boolean {
  return current !== undefined && (current.state === 'refused' || current.state === 'withdrawn');
}

/**
 * The lawful basis for processing a subject's data for a purpose at a time, from the subject's latest entry for it.
 * Default deny: a consent-based purpose needs a current, unexpired `given` entry under a notice that still covers it.
 * The subject's flags come first: a restriction or an objection to direct marketing overrides any basis.
 */
export function decideFor(purpose: PurposeRuntime, current: Current | undefined, atMs: number, flags: SubjectFlags = NO_FLAGS): Decision {
  if (flags.restricted && purpose.config.basis !== 'legal_obligation') return RESTRICTED;
  if (flags.objectedMarketing && (purpose.directMarketing ?? isDirectMarketing(purpose.config.key))) return OBJECTED;
  switch (purpose.config.basis) {
    case 'contract':
      return CONTRACT;
    case 'legal_obligation':
      return LEGAL_OBLIGATION;
    case 'legitimate_interests':
      return isOptOut(current) ? OBJECTED : LEGITIMATE_INTERESTS;
    case 'consent':
      break;
  }
  if (current === undefined) return NO_RECORD;
  switch (current.state) {
    case 'refused':
      return REFUSED;
    case 'withdrawn':
      return WITHDRAWN;
    case 'expired':
      return EXPIRED;
    case 'given':
      break;
  }
  const renewal = (current.noticeVersion ?? 0) < purpose.renewalFrom;
  if (current.basis === 'opt_out_notice') {
    if (current.jurisdiction === null || !purpose.optOut.has(current.jurisdiction)) return JURISDICTION_NOT_OPT_OUT;
    return renewal ? RENEWAL_REQUIRED : OPT_OUT_NOTICE;
  }
  // A `given` recorded under another basis (the purpose was re-based since) is not a consent.
  if (current.basis !== 'consent') return NO_RECORD;
  if (atMs >= current.expiresAtMs) return EXPIRED;
  if (renewal) return RENEWAL_REQUIRED;
  if (!purpose.config.explicit) return GIVEN;
  // Given before the purpose asked for explicit consent: the person never gave it explicitly, and must be asked again.
  return current.at >= purpose.explicitSince ? GIVEN_EXPLICIT : RENEWAL_REQUIRED;
}

/** `ms` plus whole calendar months, clamped to the last day of the target month (31 Jan + 1 month = 28/29 Feb). */
export function addMonths(ms: number, months: number): number {
  const d = new Date(ms);
  const day = d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + months);
  const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, last));
  return d.getTime();
}
