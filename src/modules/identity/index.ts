/**
 * Identity: the identity graph over anonymous ids, user ids, e-mail addresses, phone numbers and custom
 * identifiers (stored only as keyed pseudonyms), with merge rules (blocked values, limits per type, a priority
 * order), virtual merges with provenance, unmerge, and the suppression list of erased subjects' identifiers.
 */
export { Identity, type ResolveItem, type MergeRecordWithProvenance, type IdentifierView, type MergeListener, type MergedInListener, type IdentityDeps } from './identity.service.ts';
export { DEFAULT_IDENTITY_RULES, isIdentifierType, type Identifier, type IdentityRules } from './identity.rules.ts';
export type { MergeRecord, Resolution, IgnoredReason } from './identity.resolve.ts';
export type { PendingSource } from './identity.pending.ts';
export { IDENTITY_MIGRATIONS } from './identity.repo.ts';
export { IdentitySubjectData } from './identity.subject-data.ts';
