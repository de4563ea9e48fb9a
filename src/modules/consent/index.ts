/**
 * Consent: the purposes a deployment processes personal data for and the lawful basis of each, versioned privacy
 * notices, the append-only consent ledger (with a current-state table and an in-memory cache for the hot path),
 * signed consent receipts (JWS, Kantara / ISO/IEC TS 27560 shape), Global Privacy Control, opt-out notices where
 * a jurisdiction allows them, expiry and renewal after material notice changes. Default deny: no record, no
 * processing for a consent-based purpose.
 */
export { Consent, type ConsentDeps, type PendingMergeSources } from './consent.service.ts';
export { CONSENT_MIGRATIONS, restrictiveConsentStates } from './consent.repo.ts';
export { GPC_LAST_UPDATE } from './gpc.ts';

export type { PublicJwk } from './receipts.ts';
export {
  CONSENT_MECHANISMS,
  CALLER_MECHANISMS,
  CONFIGURED_BASES,
  type LawfulBasis,
  type ConsentState,
  type ConsentMechanism,
  type CallerMechanism,
  type ConfiguredBasis,
  type PurposeConfig,
  type Decision,
  type DecisionReason,
  type LedgerEntry,
  type Notice,
  type NoticePurpose,
  type RecordMeta,
  type GpcMeta,
  type RecordResult,
  type RejectedChange,
  type RejectedChangeCode,
  type KeptConsent,
  type OptOutNoticeResult,
  type Receipt,
  type PurposeState,
  type RestrictiveConsentStates,
  type ReappliedAfterRestore,
} from './consent.types.ts';
export { ConsentSubjectData, LEDGER_KEPT_REASON } from './consent.subject-data.ts';
