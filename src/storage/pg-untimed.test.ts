// PostgreSQL's statement timeout (CANDOR_POSTGRES_TIMEOUT_MS) bounds the server's requests, not migrations nor CLI
// commands: a migration or a command that waits or runs longer than it still completes. Each test makes a statement
// wait on a lock held by another session for longer than a 50 ms timeout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createEnvironment, DIALECTS, type TestEnvironment } from '../../test/support/databases.ts';
import { main } from '../cli/main.ts';
import { openKernel } from '../kernel.ts';

/** The session-level advisory lock Kysely's PostgreSQL migrator takes before it migrates. */
const KYSELY_MIGRATION_LOCK = '3853314791062309107';
const HOLD_MS = 600;

describe('PostgreSQL timeouts leave migrations and CLI commands alone', { skip: !DIALECTS.includes('postgres') }, () => {
  let env: TestEnvironment;
  let holder: pg.Client;

  before(async () => {
    env = await createEnvironment('postgres');
    holder = new pg.Client({ connectionString: env.databaseUrl });
    await holder.connect();
  });
  after(async () => {
    await holder.end();
    await env.cleanup();
  });

  it('applies migrations that wait longer than the statement timeout', { timeout: 60_000 }, async () => {
    await holder.query(`SELECT pg_advisory_lock(${KYSELY_MIGRATION_LOCK})`);
    const released = new Promise((resolve) => setTimeout(resolve, HOLD_MS)).then(() => holder.query(`SELECT pg_advisory_unlock(${KYSELY_MIGRATION_LOCK})`));
    try {
      const kernel = await openKernel(env.configWith({ CANDOR_POSTGRES_TIMEOUT_MS: '50' }));
      assert.ok(kernel.migrationsApplied.length > 0);
      await kernel.close();
    } finally {
      await released;
    }
  });

  it('runs a CLI command whose statement waits longer than the statement timeout', { timeout: 60_000 }, async () => {
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE');
    const released = new Promise((resolve) => setTimeout(resolve, HOLD_MS)).then(() => holder.query('COMMIT'));
    const saved = process.env.CANDOR_POSTGRES_TIMEOUT_MS;
    process.env.CANDOR_POSTGRES_TIMEOUT_MS = '50';
    const err: string[] = [];
    try {
      const code = await main(['node', 'candor', '--data-dir', env.dataDir, '--database-url', env.databaseUrl, 'audit', 'verify'], () => {}, (line) => err.push(line));
      assert.equal(code, 0, err.join('\n'));
    } finally {
      if (saved === undefined) delete process.env.CANDOR_POSTGRES_TIMEOUT_MS;
      else process.env.CANDOR_POSTGRES_TIMEOUT_MS = saved;
      await released;
    }
  });
});
