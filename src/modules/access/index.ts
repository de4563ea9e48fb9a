/**
 * Access: API tokens for staff roles and write keys for ingestion sources, stored as the SHA-256 of their
 * secret, verified per request and revocable.
 */
export { AccessControl, type Principal, type CredentialInfo, type CredentialKind } from './access.service.ts';
export { ACCESS_MIGRATIONS, revokedCredentials } from './access.repo.ts';
export { STAFF_ROLES, TOKEN_ROLES, SESSION_ISSUER_ROLE, INGEST_ROLE, isStaffRole, type StaffRole } from './roles.ts';
export { SubjectSessions, SUBJECT_SESSION_MIGRATIONS, MAX_SUBJECT_SESSION_SECONDS, type SubjectPrincipal } from './subject-sessions.ts';
export { AccessSubjectData } from './access.subject-data.ts';
