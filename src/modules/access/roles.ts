/** Staff roles of API tokens. */
export const STAFF_ROLES = ['owner', 'privacy_officer', 'marketer', 'analyst', 'developer'] as const;
export type StaffRole = (typeof STAFF_ROLES)[number];

/** The role carried by write keys: they can only send data to the ingest endpoints. */
export const INGEST_ROLE = 'ingest';

export function isStaffRole(value: string): value is StaffRole {
  return (STAFF_ROLES as readonly string[]).includes(value);
}
