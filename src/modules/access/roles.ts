/** Staff roles of API tokens. */
export const STAFF_ROLES = ['owner', 'privacy_officer', 'marketer', 'analyst', 'developer'] as const;
/**
 * The role of a business backend's API token that may only issue privacy-center sessions (POST /v1/subject-sessions)
 * for the customers it has signed in: a secret kept on a server, unlike write keys, which browsers carry.
 */
export const SESSION_ISSUER_ROLE = 'session_issuer';
/** Every role an API token can have. */
export const TOKEN_ROLES = [...STAFF_ROLES, SESSION_ISSUER_ROLE] as const;
export type StaffRole = (typeof TOKEN_ROLES)[number];

/** The role carried by write keys: they can only send data to the ingest endpoints. */
export const INGEST_ROLE = 'ingest';

export function isStaffRole(value: string): value is StaffRole {
  return (TOKEN_ROLES as readonly string[]).includes(value);
}
