/**
 * Rights: data-subject requests (access, portability, erasure) that can be proven. Erasure runs every module's
 * subject-data handler in one transaction, shreds the subjects' data keys, suppresses their identifiers and appends
 * a hash-chained deletion ledger kept both in the database and in a file outside it, so that a restored backup has
 * its erasures replayed; access and portability produce a zip archive annotated with GDPR Art. 15(1) metadata.
 */
export { ErasureEngine, STATISTICS_LOCK_WAIT_MS, type CompactReport, type ErasureDeps, type ErasureFileStore, type ErasureRecipient, type SubjectLookup } from './erasure.ts';
export { NO_RECIPIENTS, certificateStatus, type ErasureCertificate, type RecipientOutcome } from './certificate.ts';
export { RIGHTS_ERASURE_MIGRATIONS } from './erasure.repo.ts';
export { DeletionLedger, GENESIS_HASH, LEDGER_FILE, ledgerHash, nextLedgerEntry, verifyLedgerLines } from './deletion-ledger.ts';
export { SubjectExporter, ARCHIVE_SCHEMA_VERSION, csvCell, escapeHtml, toCsv, type ArchiveManifest, type ManifestFile, type SubjectExporterDeps } from './export-archive.ts';
// Data-subject requests: intake, verification, legal clocks, execution and the staff queue.
export { RightsRequests, TRANSITIONS, NEEDS_APPROVAL, DUPLICATE_WINDOW_MS, DOWNLOAD_TTL_MS, assertTransition, type ProposedChange, type RequestState, type RequestView, type StartInput, type StartAnswer, type VerifyAnswer, type RightsRequestsDeps } from './requests.ts';
export { plannedChanges, type RequestedChange, type RectificationProblem, type TraitPlan } from './rectification.ts';
export { RIGHTS_REQUEST_MIGRATIONS, REASON_REMOVED } from './requests.repo.ts';
export { REQUEST_TYPES, JURISDICTIONS, OPT_OUT_TYPES, deadlines, extendedDueAt, clockStatus, addBusinessDays, addCalendarMonths, type RequestType, type Jurisdiction, type Deadlines, type ClockStatus } from './clocks.ts';
export { verificationLevel, CODE_TTL_MS, MAX_CODE_ATTEMPTS, DEFAULT_RATE_LIMITS, type VerificationLevel, type RateLimits } from './verification.ts';
export { Mailer, type Mail, type MailerOptions, type OutboxMessage } from './mailer.ts';
export { MailOutbox, OUTBOX_RETENTION, OUTBOX_RULE, type MailOutboxDeps } from './outbox.ts';
// What the module holds about a person: their requests (exported, kept at erasure, the other open ones closed when the
// person goes: an erasure or retention's deletion of an inactive person) and the rate limit's start counts.
export { RightsSubjectData, RATE_EVENTS_RULE, REQUESTS_KEPT_REASON, type RightsSubjectDataDeps } from './rights.subject-data.ts';
