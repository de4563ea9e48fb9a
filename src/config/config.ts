import { readFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDuration } from '../shared/duration.ts';
import { CandorError } from '../shared/errors.ts';
import { CONFIG_SCHEMA, type ConfigEntry, type ConfigKey } from './config.schema.ts';
import { parseIdentityRules, type IdentityRulesSetting } from './identity-rules.ts';

export type ConfigSource = 'default' | 'file' | 'env' | 'flag';

export interface Config {
  readonly env: 'development' | 'test' | 'production';
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly databaseUrl: string;
  readonly keyFile: string;
  readonly bodyLimit: number;
  /** How long a stopping server answers the requests in flight before it closes the connections still open. */
  readonly shutdownTimeoutMs: number;
  readonly logLevel: string;
  readonly sqliteSynchronous: 'FULL' | 'NORMAL';
  readonly sqliteWriterThread: 'on' | 'off';
  /** PostgreSQL: statement timeout in milliseconds (0: none); see StorageOptions.postgresTimeoutMs. */
  readonly postgresTimeoutMs: number;
  readonly publicUrl: string;
  readonly consentExpiryMonths: number;
  readonly controllerName: string;
  readonly privacyPolicyUrl: string;
  /** An e-mail address or https:// URL for privacy questions; empty when none is configured. */
  readonly controllerContact: string;
  /** Mail to data subjects: SMTP URL (empty: the outbox directory) and sender; the default jurisdiction of requests. */
  readonly smtpUrl: string;
  readonly mailFrom: string;
  readonly rightsJurisdiction: 'gdpr' | 'ccpa';
  /** Proxies trusted for X-Forwarded-For (Fastify's trustProxy): false, or their addresses and ranges. */
  readonly trustProxy: false | string;
  /** Retention policies (ISO-8601 durations) and the sweeper's schedule and batch size. */
  readonly retentionRawEvents: string;
  readonly retentionInactiveProfiles: string;
  readonly retentionOrders: string;
  readonly retentionOrderFields: readonly string[];
  readonly retentionSweepMinutes: number;
  readonly scoringIntervalHours: number;
  readonly retentionBatchSize: number;
  /** Changes to the identity merge rules; the kernel applies them over the identity module's defaults. */
  readonly identityRules: IdentityRulesSetting;
  /** Where each value came from. */
  readonly sources: Readonly<Record<ConfigKey, ConfigSource>>;
  /** The configuration file that was read, if any. */
  readonly file: string | undefined;
}

export interface ConfigInput {
  /** Values given on the command line; they win over everything else. */
  flags?: Partial<Record<ConfigKey, string | number | undefined>>;
  /** An explicit configuration file (--config or CANDOR_CONFIG_FILE). */
  configFile?: string | undefined;
  /** The environment; process.env is read here and nowhere else. */
  environment?: Readonly<Record<string, string | undefined>>;
}

interface Problem {
  key: string;
  problem: string;
  /** Inside a structured setting: where, and a stable code for the kind of problem. */
  path?: string;
  code?: string;
}

/** An https:// URL with a dotted host and no whitespace: the privacy policy's address, or the controller's contact. */
const HTTPS_URL = /^https:\/\/[^\s/]+\.[^\s]+$/;

function coerce(key: string, entry: ConfigEntry, raw: unknown, problems: Problem[]): unknown {
  if (entry.type === 'json') return readJson(key, raw, problems);
  if (entry.type === 'integer') {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n)) {
      problems.push({ key, problem: 'must be a whole number' });
      return undefined;
    }
    if ((entry.min !== undefined && n < entry.min) || (entry.max !== undefined && n > entry.max)) {
      problems.push({ key, problem: `must be between ${entry.min} and ${entry.max}` });
      return undefined;
    }
    return n;
  }
  if (typeof raw !== 'string') {
    problems.push({ key, problem: 'must be a string' });
    return undefined;
  }
  if (entry.type === 'enum' && !(entry.values ?? []).includes(raw)) {
    problems.push({ key, problem: `must be one of ${(entry.values ?? []).join(', ')}` });
    return undefined;
  }
  return raw;
}

/** A structured setting: an object as is, or a string holding JSON text (starting with `{` or `[`) or the path of a JSON file. */
function readJson(key: string, raw: unknown, problems: Problem[]): unknown {
  if (typeof raw !== 'string') return raw;
  const text = raw.trim();
  try {
    return JSON.parse(/^[{[]/.test(text) ? text : readFileSync(resolve(text), 'utf8'));
  } catch {
    problems.push({ key, code: 'CONFIG_JSON_UNREADABLE', problem: 'must be a JSON object, JSON text of one, or the path of a JSON file holding one' });
    return undefined;
  }
}

function readConfigFile(path: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (error) {
    throw new CandorError('CONFIG_FILE_UNREADABLE', { file: path }, { cause: error });
  }
}

/**
 * Builds the configuration from defaults, an optional JSON file, the environment and command-line flags
 * (later wins), validating everything at once and reporting every problem together.
 */
export function loadConfig(input: ConfigInput = {}): Config {
  const environment = input.environment ?? process.env;
  const flags = input.flags ?? {};
  const problems: Problem[] = [];
  const values: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};
  const keys = Object.keys(CONFIG_SCHEMA) as ConfigKey[];

  const layer = (source: ConfigSource, get: (key: ConfigKey, entry: ConfigEntry) => unknown) => {
    for (const key of keys) {
      const entry: ConfigEntry = CONFIG_SCHEMA[key];
      const raw = get(key, entry);
      if (raw === undefined || raw === '') continue;
      const value = coerce(key, entry, raw, problems);
      if (value !== undefined) {
        values[key] = value;
        sources[key] = source;
      }
    }
  };

  for (const key of keys) {
    values[key] = CONFIG_SCHEMA[key].default;
    sources[key] = 'default';
  }
  const dataDirHint = String(flags.dataDir ?? environment.CANDOR_DATA_DIR ?? CONFIG_SCHEMA.dataDir.default);
  const explicitFile = input.configFile ?? environment.CANDOR_CONFIG_FILE;
  const defaultFile = join(dataDirHint, 'candor.config.json');
  const file = explicitFile ? resolve(explicitFile) : existsSync(defaultFile) ? resolve(defaultFile) : undefined;
  if (file) {
    const content = readConfigFile(file);
    for (const name of Object.keys(content)) {
      if (!(name in CONFIG_SCHEMA)) problems.push({ key: name, problem: 'is not a known setting' });
    }
    layer('file', (key) => content[key]);
  }
  layer('env', (_key, entry) => environment[entry.env]);
  layer('flag', (key) => flags[key]);

  const url = String(values.databaseUrl);
  if (url !== '' && !/^postgres(ql)?:\/\/./.test(url)) problems.push({ key: 'databaseUrl', problem: 'must be empty (SQLite) or a postgres:// URL' });
  for (const key of ['retentionRawEvents', 'retentionInactiveProfiles', 'retentionOrders'] as const) {
    if (!parseDuration(String(values[key]))) problems.push({ key, problem: 'must be an ISO-8601 duration longer than zero, such as P13M or P7Y' });
  }
  // Both go into every signed receipt as given: something a person can follow, or nothing.
  const policyUrl = String(values.privacyPolicyUrl);
  if (policyUrl !== '' && !HTTPS_URL.test(policyUrl)) problems.push({ key: 'privacyPolicyUrl', problem: 'must be empty or an https:// URL' });
  const contact = String(values.controllerContact);
  if (contact !== '' && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(contact) && !HTTPS_URL.test(contact)) {
    problems.push({ key: 'controllerContact', problem: 'must be empty, an e-mail address or an https:// URL' });
  }
  const trustProxy = parseTrustProxy(String(values.trustProxy));
  if (trustProxy === undefined) problems.push({ key: 'trustProxy', problem: 'must be empty, or addresses and CIDR ranges separated by commas' });
  let identityRules: IdentityRulesSetting = {};
  if (values.identityRules !== '') {
    const parsed = parseIdentityRules(values.identityRules);
    identityRules = parsed.setting;
    for (const { path, code, problem } of parsed.problems) problems.push({ key: 'identityRules', path, code, problem });
  }
  if (problems.length > 0) throw new CandorError('CONFIG_INVALID', { problems });

  const dataDir = resolve(String(values.dataDir));
  const explicitKeyFile = String(values.keyFile);
  const config: Config = {
    env: values.env as Config['env'],
    host: String(values.host),
    port: Number(values.port),
    dataDir,
    databaseUrl: String(values.databaseUrl),
    keyFile: explicitKeyFile ? resolve(explicitKeyFile) : join(dataDir, 'master.key'),
    bodyLimit: Number(values.bodyLimit),
    shutdownTimeoutMs: Number(values.shutdownTimeoutMs),
    logLevel: String(values.logLevel),
    sqliteSynchronous: values.sqliteSynchronous as Config['sqliteSynchronous'],
    sqliteWriterThread: values.sqliteWriterThread as Config['sqliteWriterThread'],
    postgresTimeoutMs: Number(values.postgresTimeoutMs),
    publicUrl: String(values.publicUrl),
    consentExpiryMonths: Number(values.consentExpiryMonths),
    controllerName: String(values.controllerName),
    privacyPolicyUrl: policyUrl,
    controllerContact: contact,
    smtpUrl: String(values.smtpUrl),
    mailFrom: String(values.mailFrom),
    rightsJurisdiction: values.rightsJurisdiction as Config['rightsJurisdiction'],
    trustProxy: trustProxy ?? false,
    retentionRawEvents: String(values.retentionRawEvents),
    retentionInactiveProfiles: String(values.retentionInactiveProfiles),
    retentionOrders: String(values.retentionOrders),
    retentionOrderFields: String(values.retentionOrderFields).split(',').map((f) => f.trim()).filter((f) => f !== ''),
    retentionSweepMinutes: Number(values.retentionSweepMinutes),
    scoringIntervalHours: Number(values.scoringIntervalHours),
    retentionBatchSize: Number(values.retentionBatchSize),
    identityRules,
    sources: sources as Record<ConfigKey, ConfigSource>,
    file,
  };
  if (config.env === 'production' && config.sources.keyFile === 'default') {
    throw new CandorError('CONFIG_MASTER_KEY_REQUIRED');
  }
  return config;
}

export interface ConfigLine {
  key: string;
  env: string;
  value: string;
  source: ConfigSource;
  sensitive: boolean;
  description: string;
}

/** The configuration for display: sensitive values that are set are masked. */
export function describeConfig(config: Config): ConfigLine[] {
  return (Object.keys(CONFIG_SCHEMA) as ConfigKey[]).map((key) => {
    const entry: ConfigEntry = CONFIG_SCHEMA[key];
    // Shown as it is configured, so that a value copied from here is accepted back (no proxy: empty, not `false`).
    const value = entry.type === 'json' ? JSON.stringify(config[key]) : key === 'trustProxy' && config.trustProxy === false ? '' : String(config[key]);
    return {
      key,
      env: entry.env,
      value: entry.sensitive && value !== '' ? '********' : value,
      source: config.sources[key],
      sensitive: entry.sensitive,
      description: entry.description,
    };
  });
}

/** An address, a CIDR range or one of proxy-addr's names, as Fastify's trustProxy takes them. */
const PROXY_ADDRESS = /^(?:loopback|linklocal|uniquelocal|\d{1,3}(?:\.\d{1,3}){3}(?:\/\d{1,2})?|[0-9a-f]*:[0-9a-f:.]*(?:\/\d{1,3})?)$/i;

/**
 * CANDOR_TRUST_PROXY as Fastify takes it; undefined when it is none of the accepted forms. Proxies are named, never
 * counted: with a hop count, a client that reached the server directly could name any address in X-Forwarded-For.
 */
function parseTrustProxy(text: string): false | string | undefined {
  const value = text.trim();
  if (value === '') return false;
  const parts = value.split(',').map((p) => p.trim());
  return parts.every((p) => PROXY_ADDRESS.test(p)) ? parts.join(',') : undefined;
}
