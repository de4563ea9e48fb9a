/**
 * Audit: the append-only, hash-chained log of every access to personal data, consent change, export, erasure,
 * key operation and configuration change. Verifiable from the database or offline from an export.
 */
export { AuditLog, type AuditEvent } from './audit.service.ts';
export { AUDIT_MIGRATIONS } from './audit.repo.ts';
export { verifyChain, entryHash, GENESIS_HASH, type AuditEntry, type VerifyResult, type ChainBreak } from './audit.chain.ts';
