import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe } from 'node:test';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config/index.ts';
import type { DialectName } from '../../src/storage/index.ts';

/** The backends every storage and integration test runs on (CANDOR_TEST_DIALECTS narrows it). */
export const DIALECTS: readonly DialectName[] = (process.env.CANDOR_TEST_DIALECTS ?? 'sqlite,postgres')
  .split(',')
  .map((d) => d.trim())
  .filter((d): d is DialectName => d === 'sqlite' || d === 'postgres');

/** The PostgreSQL server the tests use; each test environment gets a fresh database on it. */
export const TEST_PG_URL = process.env.CANDOR_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestEnvironment {
  dialect: DialectName;
  config: Config;
  dataDir: string;
  /** postgres:// URL of the fresh database, when on PostgreSQL. */
  databaseUrl: string;
  /** Configuration with overrides, same database and data directory. */
  configWith(overrides: Record<string, string>): Config;
  /** A path beside the data directory, named after it (`<dataDir>.<suffix>`: a backup file, say); cleanup removes it. */
  beside(suffix: string): string;
  cleanup(): Promise<void>;
}

let pgReachable: Promise<boolean> | undefined;

async function reachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates a fresh data directory and, on PostgreSQL, a fresh database: with `icuLocale`, one whose collation is that
 * ICU locale's (linguistic, as on most production installs) instead of the server's default.
 */
export async function createEnvironment(dialect: DialectName, options: { icuLocale?: string } = {}): Promise<TestEnvironment> {
  const dataDir = mkdtempSync(join(tmpdir(), 'candor-test-'));
  let databaseUrl = '';
  let dbName = '';
  if (dialect === 'postgres') {
    dbName = `candor_test_${process.pid}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: TEST_PG_URL });
    await admin.connect();
    try {
      const locale = options.icuLocale === undefined ? '' : ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE ${admin.escapeLiteral(options.icuLocale)}`;
      await admin.query(`CREATE DATABASE ${dbName}${locale}`);
    } finally {
      await admin.end();
    }
    const url = new URL(TEST_PG_URL);
    url.pathname = `/${dbName}`;
    databaseUrl = url.toString();
  }
  const environment = { CANDOR_DATA_DIR: dataDir, CANDOR_DATABASE_URL: databaseUrl, NODE_ENV: 'test', CANDOR_LOG_LEVEL: 'silent' };
  const configWith = (overrides: Record<string, string>) => loadConfig({ environment: { ...environment, ...overrides } });
  return {
    dialect,
    config: configWith({}),
    dataDir,
    databaseUrl,
    configWith,
    beside: (suffix) => join(dirname(dataDir), `${basename(dataDir)}.${suffix}`),
    async cleanup() {
      rmSync(dataDir, { recursive: true, force: true });
      // Files tests write beside the data directory (`beside`: backups, and their temporary files).
      const name = basename(dataDir);
      for (const entry of readdirSync(dirname(dataDir))) {
        if (entry.startsWith(`${name}.`) || entry.startsWith(`.${name}.`)) rmSync(join(dirname(dataDir), entry), { recursive: true, force: true });
      }
      if (dbName) {
        const admin = new pg.Client({ connectionString: TEST_PG_URL });
        await admin.connect();
        try {
          await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        } finally {
          await admin.end();
        }
      }
    },
  };
}

/**
 * Declares the same suite once per backend. Without PostgreSQL the postgres suite is skipped locally and fails
 * under CI (CI=true), so a green CI run always means both backends were tested.
 */
export function describeEachDialect(title: string, suite: (dialect: DialectName) => void): void {
  for (const dialect of DIALECTS) {
    describe(`${title} [${dialect}]`, async () => {
      if (dialect === 'postgres') {
        pgReachable ??= reachable();
        if (!(await pgReachable)) {
          if (process.env.CI) throw new Error(`PostgreSQL is not reachable at ${TEST_PG_URL}; CI requires it`);
          describe('PostgreSQL not reachable: skipped (set CI=true to make this fail)', { skip: true }, () => {});
          return;
        }
      }
      suite(dialect);
    });
  }
}
