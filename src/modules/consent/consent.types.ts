/** The lawful bases a purpose can rest on; `opt_out_notice` is recorded per subject, never configured. */
export type LawfulBasis = 'consent' | 'contract' | 'legal_obligation' | 'legitimate_interests' | 'opt_out_notice';

/** The state of one subject's consent (or objection) for one purpose, as written in the ledger. */
export type ConsentState = 'given' | 'refused' | 'withdrawn' | 'expired';

/** How a ledger entry came about. The last four are written by Candor itself, never by a caller of record(). */
export type ConsentMechanism =
  | 'banner_accept'
  | 'banner_reject'
  | 'banner_save'
  | 'privacy_center'
  | 'api'
  | 'import'
  | 'gpc'
  | 'notice_opt_out'
  | 'merge'
  | 'expiry';

export const CONSENT_MECHANISMS: readonly ConsentMechanism[] = [
  'banner_accept', 'banner_reject', 'banner_save', 'privacy_center', 'api', 'import', 'gpc', 'notice_opt_out', 'merge', 'expiry',
];

/** Mechanisms a caller may name in record() and withdrawAll(). */
export const CALLER_MECHANISMS = ['banner_accept', 'banner_reject', 'banner_save', 'privacy_center', 'api', 'import'] as const;
export type CallerMechanism = (typeof CALLER_MECHANISMS)[number];

export type ConfiguredBasis = Exclude<LawfulBasis, 'opt_out_notice'>;
export const CONFIGURED_BASES: readonly ConfiguredBasis[] = ['consent', 'contract', 'legal_obligation', 'legitimate_interests'];

/** A purpose (a data use of the taxonomy) and the lawful basis it rests on in this deployment. */
export interface PurposeConfig {
  /** A data use key known to the taxonomy. */
  key: string;
  basis: ConfiguredBasis;
  /** Counts as sale or sharing under the CCPA (a GPC signal opts out of it). */
  saleOrSharing: boolean;
  /** Targeted advertising (a GPC signal opts out of it too). */
  targetedAdvertising: boolean;
  /** Explicit consent (GDPR Art. 9(2)(a)): needed before special-category or precise-location fields may serve it. */
  explicit: boolean;
  /** Jurisdictions (ISO 3166 codes such as `US-CA`) where an opt-out notice is a lawful basis for it. */
  optOutJurisdictions: string[];
  description: string;
}

/** Why a decision came out as it did. */
export type DecisionReason =
  | 'given'
  | 'opt_out_notice'
  | 'contract'
  | 'legal_obligation'
  | 'legitimate_interests'
  | 'no_record'
  | 'refused'
  | 'withdrawn'
  | 'expired'
  | 'renewal_required'
  | 'objected'
  | 'jurisdiction_not_opt_out'
  | 'restricted'
  | 'unknown_purpose';

/** Whether data of a subject may be processed for a purpose now, on which basis, and why. */
export interface Decision {
  allowed: boolean;
  basis: LawfulBasis | null;
  reason: DecisionReason;
  /** Explicit consent is on record (the purpose asks for it and the subject gave it). */
  explicit: boolean;
}

/** One row of the append-only consent ledger. `subject` is the subject's pseudonym, never the plain id. */
export interface LedgerEntry {
  id: string;
  subject: string;
  purpose: string;
  state: ConsentState;
  basis: LawfulBasis;
  noticeVersion: number | null;
  noticeHash: string | null;
  mechanism: ConsentMechanism;
  jurisdiction: string | null;
  source: string | null;
  /** The entry is an opt-out caused by a Global Privacy Control signal. */
  gpc: boolean;
  /** The entry is a consent explicitly confirmed over an earlier GPC opt-out. */
  gpcOverride: boolean;
  receiptId: string | null;
  at: string;
}

/** What a notice describes: for each purpose, the data categories it uses. */
export interface NoticePurpose {
  purpose: string;
  categories: string[];
}

/** A published version of the privacy notice. */
export interface Notice {
  version: number;
  hash: string;
  text: string;
  purposes: NoticePurpose[];
  publishedAt: string;
  /** It added a purpose or widened a purpose's categories compared with the version before. */
  material: boolean;
  /** Purposes whose earlier consents must be given again under this version. */
  renewalRequired: string[];
}

/** Context of a consent change. */
export interface RecordMeta {
  mechanism: CallerMechanism;
  /** The notice version shown; the current one when omitted. */
  noticeVersion?: number | undefined;
  /** ISO 3166 code of the subject's jurisdiction, e.g. `DE` or `US-CA`. */
  jurisdiction?: string | undefined;
  /** The property or URL where the choice was made. */
  source?: string | undefined;
  /** The request carried a Global Privacy Control signal (`Sec-GPC: 1`). */
  gpc?: boolean | undefined;
  /** The subject explicitly and separately confirmed an opt-in that conflicts with their GPC opt-out. */
  confirmOverGpc?: boolean | undefined;
  /**
   * Write only the changes whose purpose has no entry for the subject yet, decided under the subject's lock (an
   * import's consent, recorded "for people with no record yet": two imports at once record it once). When nothing is
   * left to write, record() answers no entries and an empty receipt instead of failing.
   */
  onlyUnrecorded?: boolean | undefined;
  /**
   * The profile holding the strongest id of the request that made the change (a device's own profile), when the
   * change is written for the person it belongs to: should an unmerge split it off meanwhile, the change's opt-outs
   * follow it there (see Consent.#followMerges).
   */
  holder?: string | undefined;
}

/** Context of a GPC signal recorded on its own (recordGpc, recordGpcEach). */
export interface GpcMeta {
  /** The property or URL the signal came from. */
  source?: string | undefined;
  /** ISO 3166 code of the subject's jurisdiction. */
  jurisdiction?: string | undefined;
  /**
   * Per subject, the profiles holding the strongest id of the requests that carried the signal (devices merged into
   * the subject): one an unmerge split off meanwhile is covered too (see Consent.#followMerges).
   */
  holders?: ReadonlyMap<string, Iterable<string>> | undefined;
}

/** A signed consent receipt (compact JWS) and its id. */
export interface Receipt {
  receipt: string;
  receiptId: string;
}

/** Why record() did not write one change (an error code, as the whole request would have failed with it). */
export type RejectedChangeCode =
  | 'CONSENT_PURPOSE_UNKNOWN'
  | 'CONSENT_BASIS_NOT_CONSENT'
  | 'CONSENT_PURPOSE_NOT_IN_NOTICE'
  | 'CONSENT_NOTICE_OUTDATED'
  | 'CONSENT_GPC_CONFLICT';

/** A change that record() did not write, with the code saying why. */
export interface RejectedChange {
  purpose: string;
  code: RejectedChangeCode;
}

export interface RecordResult extends Receipt {
  gpcHonoured: boolean;
  entries: LedgerEntry[];
  rejected: RejectedChange[];
}

/** A consent the person gave that still counts, which an opt-out notice leaves standing. */
export interface KeptConsent {
  purpose: string;
  state: 'given';
  basis: 'consent';
  at: string;
}

/**
 * What recordOptOutNotice() did: the entry it wrote, with its receipt; or nothing (`entries` empty, no receipt) when
 * the person's own consent to the purpose is in force, which `kept` then lists.
 */
export interface OptOutNoticeResult {
  receipt: string | null;
  receiptId: string | null;
  gpcHonoured: boolean;
  entries: LedgerEntry[];
  kept: KeptConsent[];
}

/** One purpose in a subject's current state. */
export interface PurposeState {
  state: ConsentState | 'none';
  /** The basis on record for the subject, else the one the purpose rests on (`consent` for one never answered). */
  basis: LawfulBasis;
  mechanism: string | null;
  noticeVersion: number | null;
  at: string | null;
  needsRenewal: boolean;
  /** What decide() answers now. */
  allowed: boolean;
  reason: DecisionReason;
  /** When a given consent expires (ISO-8601), if it rests on consent. */
  expiresAt: string | null;
  /** The current entry is an opt-out by a GPC signal. */
  gpc: boolean;
}

/**
 * The restrictive states a database holds (`restrictiveConsentStates`): a restore reads them from the database it is
 * about to replace and writes them again where the restored one is less restrictive (`Consent.reapplyAfterRestore`).
 * Subjects are pseudonyms.
 */
export interface RestrictiveConsentStates {
  /** Current refusals and withdrawals (objections, for a purpose on legitimate interests); `gpc`: a GPC opt-out. */
  optOuts: { subject: string; purpose: string; state: 'refused' | 'withdrawn'; gpc: boolean; at: string }[];
  /** Restrictions of processing and objections to direct marketing in force (not lifted). */
  restrictions: { subject: string; kind: 'restriction' | 'objection_marketing'; since: string }[];
}

/** What `Consent.reapplyAfterRestore` wrote again, and what it left. */
export interface ReappliedAfterRestore {
  /** Refusals and withdrawals written again (GPC opt-outs not counted). */
  optOuts: number;
  /** GPC opt-outs written again. */
  gpcOptOuts: number;
  /** Restrictions of processing put in force again. */
  restrictions: number;
  /** Objections to direct marketing put in force again. */
  objections: number;
  /** People with at least one of the above. */
  people: number;
  /** Left as restored: the restored database holds a later entry for the purpose, or lifted the restriction later. */
  keptLater: number;
  /** Opt-outs of purposes the restored configuration does not have, or does not base on consent or legitimate interests. */
  purposeNotConfigured: number;
  /** People of the replaced database the restored one does not know (profiles created after the backup, or erased). */
  notInRestored: number;
  /** People whose states could not be written, by error code (nothing is written for such a person). */
  failed: { code: string; people: number }[];
}
