/** The one configuration schema: every setting with its default, description and sensitivity. */
export interface ConfigEntry {
  readonly env: string;
  readonly type: 'string' | 'integer' | 'enum';
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
  logLevel: {
    env: 'CANDOR_LOG_LEVEL', type: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], sensitive: false,
    description: 'Least severe log level written.',
  },
  sqliteSynchronous: {
    env: 'CANDOR_SQLITE_SYNCHRONOUS', type: 'enum', default: 'FULL', values: ['FULL', 'NORMAL'], sensitive: false,
    description: 'SQLite durability: FULL syncs the WAL on every commit (survives power loss); NORMAL survives process crashes only.',
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
    description: 'Address of the privacy notice people are shown, linked from every consent receipt.',
  },
  consentExpiryMonths: {
    env: 'CANDOR_CONSENT_EXPIRY_MONTHS', type: 'integer', default: 13, min: 1, max: 120, sensitive: false,
    description: 'A given consent stops counting this many calendar months after it was given; the subject must be asked again.',
  },
} as const satisfies Record<string, ConfigEntry>;

export type ConfigKey = keyof typeof CONFIG_SCHEMA;
