// PostgreSQL's statement timeout (CANDOR_POSTGRES_TIMEOUT_MS) bounds the server's requests, not migrations nor CLI
// commands: a migration or a command that waits or runs longer than it still completes. Most tests make a statement
// wait on a lock held by another session for longer than a 50 ms timeout. Migrations run on a connection of the
// storage's own without the timeouts, not on a second storage (a second pool and listening connection).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { createEnvironment, DIALECTS, type TestEnvironment } from '../../test/support/databases.ts';
import { useUpgradedKernel } from '../../test/support/kernel.ts';
import { main } from '../cli/main.ts';
import { MIGRATIONS, openKernel } from '../kernel.ts';
import { migrateToLatest, openStorage, type ModuleMigration } from './index.ts';

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

  it('applies a migration whose statement runs, and whose transaction idles, longer than the timeouts allow', { timeout: 60_000 }, async () => {
    const fresh = await createEnvironment('postgres');
    // 200 ms: statements end after 200 ms, the client gives up on an answer after 400 ms, an idle transaction after 400 ms.
    const storage = await openStorage({ databaseUrl: fresh.databaseUrl, dataDir: fresh.dataDir, sqliteSynchronous: 'FULL', postgresTimeoutMs: 200 });
    const slow: ModuleMigration = {
      name: '0001_slow',
      async up(db) {
        await sql`SELECT pg_sleep(0.6)`.execute(db);
        await sleep(600);
        await sql`CREATE TABLE slow_done (id integer)`.execute(db);
      },
    };
    try {
      assert.deepEqual(await migrateToLatest(storage, [slow]), ['0001_slow']);
      assert.deepEqual(await storage.raw.all('SELECT id FROM slow_done'), []);
    } finally {
      await storage.close();
      await fresh.cleanup();
    }
  });

  it('migrates without a second pool or listening connection', { timeout: 60_000 }, async () => {
    const fresh = await createEnvironment('postgres');
    // Advisory locks belong to a database: this one's migrator lock is held from a session on it.
    const locker = new pg.Client({ connectionString: fresh.databaseUrl });
    await locker.connect();
    const sessions = async () =>
      (await locker.query<{ name: string; waiting: boolean }>(
        `SELECT application_name AS name, wait_event = 'advisory' AS waiting FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'candor-%'`,
      )).rows;
    await locker.query(`SELECT pg_advisory_lock(${KYSELY_MIGRATION_LOCK})`);
    let locked = true;
    try {
      let settled = false;
      const opening = openKernel(fresh.config).finally(() => (settled = true));
      opening.catch(() => undefined);
      // The migration waits for the migrator's lock: every connection it needs is open.
      let seen = await sessions();
      while (!seen.some((s) => s.waiting)) {
        assert.equal(settled, false, 'the kernel opened without waiting for the migrator lock');
        await sleep(20);
        seen = await sessions();
      }
      await locker.query(`SELECT pg_advisory_unlock(${KYSELY_MIGRATION_LOCK})`);
      locked = false;
      const kernel = await opening;
      await kernel.close();
      const names = seen.map((s) => s.name);
      assert.equal(names.filter((n) => n.endsWith('-listen')).length, 1, names.join(' '));
      assert.equal(new Set(names.map((n) => n.replace(/-listen$/, ''))).size, 1, names.join(' '));
    } finally {
      if (locked) await locker.query(`SELECT pg_advisory_unlock(${KYSELY_MIGRATION_LOCK})`);
      await locker.end();
      await fresh.cleanup();
    }
  });
});

describe('commit notices after migrations at start', { skip: !DIALECTS.includes('postgres') }, () => {
  const last = MIGRATIONS.at(-1)?.name ?? '';
  // A table of the older release without its trigger: notices cannot be heard from it until migrations install it.
  const ctx = useUpgradedKernel('postgres', last, async (db) => {
    await sql`DROP TRIGGER candor_commit_notice ON audit_log`.execute(db);
  });

  it("counts other processes' commits once the migrations at start gave every table its trigger", () => {
    assert.deepEqual(ctx.kernel.migrationsApplied, [last]);
    assert.equal(typeof ctx.kernel.storage.externalWrites(), 'number');
  });
});
