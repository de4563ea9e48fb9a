/**
 * Every error Candor answers with: a stable code, a category and a public message.
 * docs/errors.md lists the same codes; a test keeps the two in step.
 */
export type ErrorCategory =
  | 'invalid_input'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'unavailable'
  | 'internal';

/** The one place where a category becomes an HTTP status. */
export const CATEGORY_STATUS: Readonly<Record<ErrorCategory, number>> = {
  invalid_input: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

export interface ErrorCodeSpec {
  readonly category: ErrorCategory;
  readonly message: string;
}

export const ERROR_CODES = {
  REQUEST_MALFORMED_JSON: { category: 'invalid_input', message: 'The request body is not valid JSON.' },
  REQUEST_VALIDATION_FAILED: { category: 'invalid_input', message: 'The request does not match the schema of this endpoint.' },
  REQUEST_UNKNOWN_FIELD: { category: 'invalid_input', message: 'The request contains a field this endpoint does not accept.' },
  REQUEST_FORBIDDEN_KEY: { category: 'invalid_input', message: 'The request body contains a forbidden key (__proto__ or constructor).' },
  REQUEST_BODY_TOO_LARGE: { category: 'payload_too_large', message: 'The request body is larger than this server accepts.' },
  REQUEST_UNSUPPORTED_MEDIA_TYPE: { category: 'unsupported_media_type', message: 'The request body has a content type this endpoint does not accept.' },
  REQUEST_INVALID: { category: 'invalid_input', message: 'The request could not be read.' },
  ROUTE_NOT_FOUND: { category: 'not_found', message: 'No endpoint matches this method and path.' },
  AUTH_CREDENTIAL_MISSING: { category: 'unauthenticated', message: 'This endpoint needs a credential and none was sent.' },
  AUTH_CREDENTIAL_INVALID: { category: 'unauthenticated', message: 'The credential is not valid.' },
  AUTH_CREDENTIAL_REVOKED: { category: 'unauthenticated', message: 'The credential has been revoked.' },
  AUTH_CREDENTIAL_WRONG_KIND: { category: 'forbidden', message: 'This kind of credential cannot be used on this endpoint.' },
  AUTH_ROLE_FORBIDDEN: { category: 'forbidden', message: 'Your role is not allowed to use this endpoint.' },
  AUTH_SUBJECT_SESSION_REQUIRED: { category: 'unauthenticated', message: 'This endpoint needs a verified customer session.' },
  AUTH_SUBJECT_SESSION_INVALID: { category: 'unauthenticated', message: 'The customer session is unknown, expired or ended.' },
  ACCESS_ROLE_UNKNOWN: { category: 'invalid_input', message: 'The role is not one of owner, privacy_officer, marketer, analyst, developer.' },
  ACCESS_SOURCE_NAME_INVALID: { category: 'invalid_input', message: 'A source name has 1 to 64 characters: letters, digits, dot, dash, underscore.' },
  ACCESS_TOKEN_NOT_FOUND: { category: 'not_found', message: 'No credential has this id.' },
  ACCESS_TOKEN_ALREADY_REVOKED: { category: 'conflict', message: 'This credential was already revoked.' },
  ACCESS_LAST_OWNER: { category: 'conflict', message: 'The last active owner token cannot be revoked.' },
  CONFIG_INVALID: { category: 'invalid_input', message: 'The configuration is not valid.' },
  CONFIG_FILE_UNREADABLE: { category: 'invalid_input', message: 'The configuration file cannot be read as JSON.' },
  CONFIG_MASTER_KEY_REQUIRED: { category: 'invalid_input', message: 'In production a master key file must be configured explicitly (CANDOR_KEY_FILE).' },
  CONSENT_PURPOSE_UNKNOWN: { category: 'invalid_input', message: 'No purpose with this key is configured.' },
  CONSENT_PURPOSE_INVALID: { category: 'invalid_input', message: 'The purpose configuration breaks a rule: see details.reason.' },
  CONSENT_BASIS_NOT_CONSENT: { category: 'conflict', message: 'This purpose rests on contract or legal obligation; it cannot be given, refused or withdrawn.' },
  CONSENT_GPC_CONFLICT: { category: 'conflict', message: 'A Global Privacy Control opt-out is in force for this purpose; an opt-in needs a separate, explicit confirmation.' },
  CONSENT_OPT_OUT_NOT_ALLOWED: { category: 'forbidden', message: 'An opt-out notice is not a lawful basis for this purpose in this jurisdiction.' },
  CONSENT_ALREADY_OPTED_OUT: { category: 'conflict', message: 'The subject opted out of this purpose; an opt-out notice cannot override that.' },
  CONSENT_NOTICE_UNKNOWN: { category: 'invalid_input', message: 'No notice with this version has been published.' },
  CONSENT_NOTICE_INVALID: { category: 'invalid_input', message: 'The notice is not valid: see details.reason.' },
  CONSENT_PURPOSE_NOT_IN_NOTICE: { category: 'invalid_input', message: 'The notice version shown does not describe this purpose, so consent to it cannot be recorded.' },
  CONSENT_CHANGE_INVALID: { category: 'invalid_input', message: 'The consent change is not valid: see details.reason.' },
  CONSENT_RECEIPT_INVALID: { category: 'invalid_input', message: 'The consent receipt does not verify against the published keys.' },
  CONSENT_RESTRICTION_NOT_FOUND: { category: 'not_found', message: 'No restriction or objection of this kind is in force for this subject.' },
  CONSENT_SUBJECT_NOT_LOADED: { category: 'internal', message: 'A consent decision was asked for a subject whose state was not loaded first.' },
  CRYPTO_KEYFILE_MISSING: { category: 'internal', message: 'The master key file does not exist.' },
  CRYPTO_KEYFILE_INVALID: { category: 'internal', message: 'The master key file is not a valid Candor key file.' },
  CRYPTO_KEYFILE_TAMPERED: { category: 'internal', message: 'The master key file does not match the keys this database was encrypted with.' },
  CRYPTO_KEYFILE_PERMISSIONS: { category: 'internal', message: 'The master key file is readable by users other than its owner.' },
  CRYPTO_KEYFILE_EXISTS: { category: 'conflict', message: 'A key file already exists at this path; it is never overwritten.' },
  CRYPTO_ROTATION_IN_PROGRESS: { category: 'conflict', message: 'Another master key rotation holds the key file lock; if none is running, remove the .lock file beside the key file.' },
  CRYPTO_MASTER_KEY_MISSING: { category: 'internal', message: 'A master key version this database uses is missing from the key file.' },
  CRYPTO_KEY_DESTROYED: { category: 'not_found', message: 'The data key for this ciphertext was destroyed; the data is unreadable.' },
  CRYPTO_KEY_UNKNOWN: { category: 'not_found', message: 'No data key has the id named in this ciphertext.' },
  CRYPTO_CIPHERTEXT_INVALID: { category: 'invalid_input', message: 'The ciphertext is not in Candor envelope format.' },
  CRYPTO_DECRYPT_FAILED: { category: 'internal', message: 'The ciphertext failed authentication: it was altered or belongs elsewhere.' },
  AUDIT_APPEND_FAILED: { category: 'internal', message: 'The audit entry could not be written.' },
  CATALOG_PLAN_INVALID: { category: 'invalid_input', message: 'The tracking plan is not valid; every problem is listed with its path.' },
  CATALOG_PLAN_VERSION_NOT_FOUND: { category: 'not_found', message: 'No tracking plan version has this number.' },
  CATALOG_PLAN_CONFLICT: { category: 'conflict', message: 'Other tracking plans were published at the same moment; publish again.' },
  CATALOG_EVENT_UNDECLARED: { category: 'invalid_input', message: 'The tracking plan does not declare this event; nothing was kept.' },
  CATALOG_EVENT_INVALID: { category: 'invalid_input', message: 'The event does not match its schema in the tracking plan; the violations are listed by path.' },
  COLLECT_MESSAGE_INVALID: { category: 'invalid_input', message: 'The message does not follow the Segment spec (a required field is missing or has the wrong shape).' },
  COLLECT_MESSAGE_TYPE_UNKNOWN: { category: 'invalid_input', message: 'The message type is not one of identify, track, page, screen, group, alias.' },
  COLLECT_IDENTITY_MISSING: { category: 'invalid_input', message: 'The message has neither userId nor anonymousId.' },
  COLLECT_TIMESTAMP_INVALID: { category: 'invalid_input', message: 'A timestamp of the message cannot be read as a date.' },
  COLLECT_TIMESTAMP_IN_FUTURE: { category: 'invalid_input', message: 'The message is dated more than five minutes in the future.' },
  COLLECT_EVENT_TOO_LARGE: { category: 'payload_too_large', message: 'The event is larger than 32 KB.' },
  COLLECT_BATCH_INVALID: { category: 'invalid_input', message: 'The batch is not an array of 1 to 2,500 messages.' },
  COLLECT_NO_LAWFUL_BASIS: { category: 'forbidden', message: 'No purpose of this event has a lawful basis for this person; nothing was stored.' },
  COLLECT_SUBJECT_SUPPRESSED: { category: 'forbidden', message: 'The person was erased; events about them are not stored again.' },
  IMPORT_FILE_UNREADABLE: { category: 'invalid_input', message: 'The import file cannot be opened or read.' },
  IMPORT_HEADER_INVALID: { category: 'invalid_input', message: 'The first row of the import file must name its columns once each, including an identity column (and for events an event, type or order_id column).' },
  IMPORT_BASIS_UNKNOWN: { category: 'invalid_input', message: 'The lawful basis of an import is one of consent, contract, legal_obligation, legitimate_interests.' },
  IMPORT_PURPOSES_REQUIRED: { category: 'invalid_input', message: 'An import on the basis of consent must name the purposes the people consented to (--purposes).' },
  IMPORT_OPTION_INVALID: { category: 'invalid_input', message: 'An option of the import has a value it does not accept, or does not apply to the basis given.' },
  IMPORT_ROW_MALFORMED: { category: 'invalid_input', message: 'The row cannot be read as CSV (a quote never closed, or a wrong number of columns); it was skipped.' },
  IMPORT_ROW_TOO_LARGE: { category: 'payload_too_large', message: 'A row of the import file is larger than the limit (usually a quote that is never closed); the file was not read past it.' },
  IMPORT_ROW_TYPE_UNSUPPORTED: { category: 'invalid_input', message: 'An events import takes rows of type track, page or screen.' },
  IMPORT_ORDER_TOO_LARGE: { category: 'invalid_input', message: 'An order has more consecutive lines than an import groups into one event; none of its lines were imported.' },
  IDENTITY_IDENTIFIER_INVALID: { category: 'invalid_input', message: 'The identifier has an unknown type, or its value is malformed or on the blocked list.' },
  IDENTITY_PROFILE_NOT_FOUND: { category: 'not_found', message: 'No profile has this id.' },
  IDENTITY_MERGE_NOT_FOUND: { category: 'not_found', message: 'No merge with this id is part of this profile.' },
  IDENTITY_MERGE_ALREADY_UNDONE: { category: 'conflict', message: 'This merge was already undone.' },
  PROFILES_NOT_PREPARED: { category: 'internal', message: 'Personal traits were written for a profile whose data key was not prepared before the transaction.' },
  PROFILES_TRAIT_UNKNOWN: { category: 'not_found', message: 'The profile has no trait with this key to correct.' },
  RIGHTS_REQUEST_INVALID: { category: 'invalid_input', message: 'The data-subject request is not valid: see details.reason.' },
  RIGHTS_REQUEST_NOT_FOUND: { category: 'not_found', message: 'No data-subject request with this id is yours to see.' },
  RIGHTS_TRANSITION_INVALID: { category: 'conflict', message: 'The request cannot move to that state from the state it is in.' },
  RIGHTS_EXTENSION_NOT_ALLOWED: { category: 'conflict', message: 'The law gives this kind of request no extension of its deadline.' },
  RIGHTS_EXTENSION_ALREADY_USED: { category: 'conflict', message: 'The deadline of this request was already extended once.' },
  RIGHTS_EXTENSION_TOO_LATE: { category: 'conflict', message: 'An extension notice must be sent before the first deadline passes; it has passed.' },
  RIGHTS_CODE_INVALID: { category: 'unauthenticated', message: 'The verification code is wrong.' },
  RIGHTS_CODE_EXPIRED: { category: 'unauthenticated', message: 'The verification code has expired; start the request again for a new one.' },
  RIGHTS_VERIFICATION_LOCKED: { category: 'rate_limited', message: 'Too many wrong codes: this verification is locked; start the request again later.' },
  RIGHTS_RATE_LIMITED: { category: 'rate_limited', message: 'Too many requests were started from here or for this address; try again later.' },
  RIGHTS_SECOND_FACTOR_REQUIRED: { category: 'unauthenticated', message: 'This request hands out personal data: a second identifier you gave us before is needed with the code.' },
  RIGHTS_SECOND_FACTOR_INVALID: { category: 'unauthenticated', message: 'The second identifier does not match the person the code was sent to.' },
  RIGHTS_DOWNLOAD_INVALID: { category: 'not_found', message: 'The download link is unknown or has expired.' },
  RIGHTS_MAIL_FAILED: { category: 'unavailable', message: 'The message to the data subject could not be sent.' },
  RIGHTS_SUBJECT_ERASED: { category: 'conflict', message: 'This subject was already erased; nothing was done.' },
  RIGHTS_ERASURE_REQUEST_USED: { category: 'conflict', message: 'An erasure was already carried out under this request id.' },
  RIGHTS_LEDGER_TAMPERED: { category: 'internal', message: 'The deletion ledger does not verify (edited, reordered or out of step with the database); nothing was replayed.' },
  SCORING_PROTECTED_FEATURE: { category: 'invalid_input', message: 'A special category or protected attribute can never be a model feature or segment rule.' },
  RETENTION_SWEEP_RUNNING: { category: 'conflict', message: 'A retention sweep is already running in this process; try again when it has finished.' },
  BACKUP_FILE_EXISTS: { category: 'conflict', message: 'A file already exists where the backup was to be written; nothing was overwritten.' },
  BACKUP_FAILED: { category: 'internal', message: 'The backup or restore tool failed; see details (the database was left as it was).' },
  BACKUP_TOOL_MISSING: { category: 'unavailable', message: 'The PostgreSQL client tool (pg_dump or pg_restore) is not installed or not on the PATH.' },
  BACKUP_CORRUPT: { category: 'invalid_input', message: 'The backup file is damaged or not a database backup; nothing was changed.' },
  BACKUP_NOT_CANDOR: { category: 'invalid_input', message: 'The backup is a readable database but not a Candor database; nothing was changed.' },
  BACKUP_SERVER_RUNNING: { category: 'conflict', message: 'A Candor server is using this data directory; stop it before restoring.' },
  STORAGE_MIGRATION_FAILED: { category: 'internal', message: 'A database migration failed; the database was left as it was.' },
  STORAGE_UNAVAILABLE: { category: 'unavailable', message: 'The database cannot be reached.' },
  STORAGE_NOT_MIGRATED: { category: 'unavailable', message: 'The database has migrations that are not applied yet.' },
  TAXONOMY_KIND_UNKNOWN: { category: 'not_found', message: 'The taxonomy has no list of this kind.' },
  TAXONOMY_KEY_INVALID: { category: 'invalid_input', message: 'A taxonomy key is lower-case words joined by dots, each word letters, digits or underscores.' },
  TAXONOMY_KEY_EXISTS: { category: 'conflict', message: 'The taxonomy already has an entry with this key.' },
  TAXONOMY_PARENT_UNKNOWN: { category: 'invalid_input', message: 'The parent key of this taxonomy entry does not exist.' },
  INTERNAL_ERROR: { category: 'internal', message: 'Something went wrong on our side; the request was not completed.' },
} as const satisfies Record<string, ErrorCodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;
