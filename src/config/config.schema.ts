/** The one configuration schema: every setting with its default, description and sensitivity. */
export interface ConfigEntry {
  readonly env: string;
  readonly type: 'string' | 'integer' | 'enum' | 'json';
  readonly default: string | number;
  readonly description: string;
  readonly sensitive: boolean;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
}

export const CONFIG_SCHEMA = {
  env: {
    env: 'NODE_ENV', type: 'enum', default: 'development', values: ['development', 'test', 'production'], sensitive: false,
    description: 'Runtime mode. In production no secret is ever generated: the master key file must be configured.',
  },
  host: {
    env: 'CANDOR_HOST', type: 'string', default: '127.0.0.1', sensitive: false,
    description: 'Interface the HTTP server listens on.',
  },
  port: {
    env: 'CANDOR_PORT', type: 'integer', default: 8080, min: 0, max: 65535, sensitive: false,
    description: 'TCP port of the HTTP server (0 picks a free one).',
  },
  dataDir: {
    env: 'CANDOR_DATA_DIR', type: 'string', default: './.candor', sensitive: false,
    description: 'Data directory: the SQLite database, the key file and local outboxes live here.',
  },
  databaseUrl: {
    env: 'CANDOR_DATABASE_URL', type: 'string', default: '', sensitive: true,
    description: 'postgres://… to use PostgreSQL; empty for the embedded SQLite database in the data directory.',
  },
  keyFile: {
    env: 'CANDOR_KEY_FILE', type: 'string', default: '', sensitive: false,
    description: 'Path of the master key file; empty means master.key in the data directory (generated on first start outside production).',
  },
  bodyLimit: {
    env: 'CANDOR_BODY_LIMIT', type: 'integer', default: 1_048_576, min: 1024, max: 104_857_600, sensitive: false,
    description: 'Largest request body accepted, in bytes.',
  },
  shutdownTimeoutMs: {
    env: 'CANDOR_SHUTDOWN_TIMEOUT_MS', type: 'integer', default: 10_000, min: 0, max: 600_000, sensitive: false,
    description: 'On SIGTERM or SIGINT the server answers the requests in flight for at most this many milliseconds, then closes the connections still open and stops.',
  },
  logLevel: {
    env: 'CANDOR_LOG_LEVEL', type: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], sensitive: false,
    description: 'Least severe log level written.',
  },
  sqliteSynchronous: {
    env: 'CANDOR_SQLITE_SYNCHRONOUS', type: 'enum', default: 'FULL', values: ['FULL', 'NORMAL'], sensitive: false,
    description: 'SQLite durability: FULL syncs the WAL on every commit (survives power loss); NORMAL survives process crashes only.',
  },
  sqliteWriterThread: {
    env: 'CANDOR_SQLITE_WRITER_THREAD', type: 'enum', default: 'on', values: ['on', 'off'], sensitive: false,
    description: 'SQLite: write ingestion group commits from a second connection on a writer thread, so the server prepares the next group while one is written.',
  },
  postgresTimeoutMs: {
    env: 'CANDOR_POSTGRES_TIMEOUT_MS', type: 'integer', default: 30_000, min: 0, max: 86_400_000, sensitive: false,
    description: 'PostgreSQL: longest a statement may run (statement_timeout) and, with a grace of up to 5 s, wait for an answer before its connection is taken for lost (STORAGE_UNAVAILABLE); a transaction left idle is ended after twice this. 0 turns these timeouts off.',
  },
  publicUrl: {
    env: 'CANDOR_PUBLIC_URL', type: 'string', default: '', sensitive: false,
    description: 'Base URL people use to reach the server; empty means http://HOST:PORT.',
  },
  controllerName: {
    env: 'CANDOR_CONTROLLER_NAME', type: 'string', default: 'Candor deployment', sensitive: false,
    description: 'The data controller (the business running Candor), named in every consent receipt.',
  },
  privacyPolicyUrl: {
    env: 'CANDOR_PRIVACY_POLICY_URL', type: 'string', default: '', sensitive: false,
    description: 'Address of the privacy notice people are shown, an https:// URL, linked from every consent receipt; empty gives none.',
  },
  controllerContact: {
    env: 'CANDOR_CONTROLLER_CONTACT', type: 'string', default: '', sensitive: false,
    description: 'Where people ask the controller about privacy: an e-mail address or an https:// URL, given in every consent receipt; empty gives none.',
  },
  consentExpiryMonths: {
    env: 'CANDOR_CONSENT_EXPIRY_MONTHS', type: 'integer', default: 13, min: 1, max: 120, sensitive: false,
    description: 'A given consent stops counting this many calendar months after it was given; the subject must be asked again.',
  },
  retentionRawEvents: {
    env: 'CANDOR_RETENTION_RAW_EVENTS', type: 'string', default: 'P13M', sensitive: false,
    description: 'Stored events are deleted this long (ISO-8601 duration) after they happened; orders are reduced instead (see retentionOrders).',
  },
  retentionInactiveProfiles: {
    env: 'CANDOR_RETENTION_INACTIVE_PROFILES', type: 'string', default: 'P24M', sensitive: false,
    description: 'A profile with no activity for this long (ISO-8601 duration) is deleted with all its data and data key; its identifiers are not suppressed.',
  },
  retentionOrders: {
    env: 'CANDOR_RETENTION_ORDERS', type: 'string', default: 'P7Y', sensitive: false,
    description: 'Order records (Order Completed events) are kept this long (ISO-8601 duration) under legal obligation, reduced to retentionOrderFields once the raw-event period ends.',
  },
  retentionOrderFields: {
    env: 'CANDOR_RETENTION_ORDER_FIELDS', type: 'string', default: 'order_id,total,currency', sensitive: false,
    description: 'Comma-separated properties of an order the legal obligation needs (with its time); every other field is removed when the raw-event period ends.',
  },
  retentionSweepMinutes: {
    env: 'CANDOR_RETENTION_SWEEP_MINUTES', type: 'integer', default: 60, min: 0, max: 10_080, sensitive: false,
    description: 'The server runs the retention sweeper this often (and once at start); 0 leaves it to `candor retention sweep`.',
  },
  scoringIntervalHours: {
    env: 'CANDOR_SCORING_INTERVAL_HOURS', type: 'integer', default: 24, min: 0, max: 8_760, sensitive: false,
    description: 'The server refits the models and rescores everyone who allows profiling this often; 0 leaves it to `candor score`.',
  },
  retentionBatchSize: {
    env: 'CANDOR_RETENTION_BATCH_SIZE', type: 'integer', default: 5000, min: 10, max: 100_000, sensitive: false,
    description: 'Rows the sweeper deletes per transaction, so that ingestion is never held up for long.',
  },
  smtpUrl: {
    env: 'CANDOR_SMTP_URL', type: 'string', default: '', sensitive: true,
    description: 'smtp:// or smtps:// URL (with credentials) for mail to data subjects; empty writes .eml files to <dataDir>/outbox/ instead.',
  },
  mailFrom: {
    env: 'CANDOR_MAIL_FROM', type: 'string', default: 'privacy@localhost', sensitive: false,
    description: 'Sender address of mail to data subjects (verification codes, extension notices, download links).',
  },
  trustProxy: {
    env: 'CANDOR_TRUST_PROXY', type: 'string', default: '', sensitive: false,
    description: 'Proxies whose X-Forwarded-For is believed, for the client address the rights rate limit counts: empty (none) or a comma-separated list of their addresses or CIDR ranges (loopback, 10.0.0.0/8, …); never a hop count, which would let a client that reaches the server directly name any address.',
  },
  rightsJurisdiction: {
    env: 'CANDOR_RIGHTS_JURISDICTION', type: 'enum', default: 'gdpr', values: ['gdpr', 'ccpa'], sensitive: false,
    description: 'Legal clock of a data-subject request that names no jurisdiction: gdpr (one month) or ccpa (45 days).',
  },
  identityRules: {
    env: 'CANDOR_IDENTITY_RULES', type: 'json', default: '', sensitive: false,
    description: 'Changes to the identity merge rules: blocked values and patterns per type (added to the built-in ones), limits per type, priority order, defaultPhoneRegion (ISO 3166-1 alpha-2, e.g. US: the region of phone numbers written without + or 00; without it they are ignored). An object in the file; JSON text or the path of a JSON file.',
  },
} as const satisfies Record<string, ConfigEntry>;

export type ConfigKey = keyof typeof CONFIG_SCHEMA;
