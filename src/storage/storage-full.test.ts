import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { createEnvironment, describeEachDialect } from '../../test/support/databases.ts';
import { isCandorError } from '../shared/errors.ts';
import { codedPostgresError } from './pg-coded.ts';
import { SQLITE_JOURNAL_SIZE_LIMIT, SqliteHandle } from './sqlite-driver.ts';
import { migrateToLatest, openStorage, SQLITE_FILE, type ModuleMigration, type Storage } from './index.ts';

// A full disk made for real by the database itself: on SQLite a max_page_count at the database's size (SQLite then
// answers SQLITE_FULL, "database or disk is full", as it does for ENOSPC); on PostgreSQL a trigger that raises the
// disk_full condition (SQLSTATE 53100) a server raises when it cannot extend a file, which a test cannot bring about
// on a shared server.
const full = (error: unknown) => isCandorError(error, 'STORAGE_FULL') && error.status === 503;
const BIG = 'x'.repeat(100_000);
/** An insert of a row with one parameter, in the dialect's placeholder. */
const insert = (storage: Storage, n: number) => `INSERT INTO t (n, b) VALUES (${n}, ${storage.dialect === 'postgres' ? '$1' : '?'})`;

/** Makes writes of new rows to `t` fail for a full disk. */
async function fill(storage: Storage): Promise<void> {
  if (storage.dialect === 'sqlite') {
    const [row] = await storage.raw.all<{ page_count: number }>('PRAGMA page_count');
    await storage.raw.all(`PRAGMA max_page_count = ${Number(row?.page_count)}`);
  } else {
    await storage.raw.run(`CREATE OR REPLACE FUNCTION disk_is_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`);
    await storage.raw.run('CREATE TRIGGER disk_is_full BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION disk_is_full()');
  }
}

/** Gives the space back (on PostgreSQL from another connection, so that it is no write of this storage's). */
async function free(storage: Storage, databaseUrl: string): Promise<void> {
  if (storage.dialect === 'sqlite') {
    await storage.raw.all('PRAGMA max_page_count = 1073741823');
    return;
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('DROP TRIGGER disk_is_full ON t');
  } finally {
    await client.end();
  }
}

describeEachDialect('storage on a full disk', (dialect) => {
  it('fails raw.run, raw.transaction and Kysely writes with the coded, retryable STORAGE_FULL, storing nothing', async () => {
    const env = await createEnvironment(dialect);
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL' });
    try {
      await storage.raw.run('CREATE TABLE t (n INTEGER, b TEXT)');
      await fill(storage);
      await assert.rejects(storage.raw.run(insert(storage, 1), [BIG]), full);
      await assert.rejects(storage.raw.transaction((tx) => tx.run(insert(storage, 2), [BIG])), full);
      await assert.rejects(sql`INSERT INTO t (n, b) VALUES (3, ${BIG})`.execute(storage.db), full);
      await assert.rejects(storage.db.transaction().execute((trx) => sql`INSERT INTO t (n, b) VALUES (4, ${BIG})`.execute(trx)), full);
      assert.deepEqual(await storage.raw.all('SELECT n FROM t'), []);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });

  it('reports the disk full from a failed write until a later write succeeds', async () => {
    const env = await createEnvironment(dialect);
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL' });
    try {
      await storage.raw.run('CREATE TABLE t (n INTEGER, b TEXT)');
      assert.equal(storage.diskFull, false);
      await fill(storage);
      await assert.rejects(storage.raw.transaction((tx) => tx.run(insert(storage, 1), [BIG])), full);
      assert.equal(storage.diskFull, true);
      // Reads go on, and do not count as a write that went through.
      await storage.raw.all('SELECT n FROM t');
      await storage.ping();
      assert.equal(storage.diskFull, true);
      await free(storage, env.databaseUrl);
      await storage.raw.transaction((tx) => tx.run(insert(storage, 2), [BIG]));
      assert.equal(storage.diskFull, false);
      await fill(storage);
      await assert.rejects(sql`INSERT INTO t (n, b) VALUES (3, ${BIG})`.execute(storage.db), full);
      assert.equal(storage.diskFull, true);
      await free(storage, env.databaseUrl);
      await sql`INSERT INTO t (n, b) VALUES (4, ${BIG})`.execute(storage.db);
      assert.equal(storage.diskFull, false);
      assert.deepEqual((await storage.raw.all<{ n: number }>('SELECT n FROM t ORDER BY n')).map((r) => Number(r.n)), [2, 4]);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });

  it('fails a migration on a full disk with STORAGE_FULL naming the migration, and applies it once there is space', async () => {
    const env = await createEnvironment(dialect);
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL' });
    const migration: ModuleMigration = {
      name: '0001_fill',
      async up(db) {
        await sql`INSERT INTO t (n, b) VALUES (1, ${BIG})`.execute(db);
      },
    };
    try {
      await storage.raw.run('CREATE TABLE t (n INTEGER, b TEXT)');
      // The migrator's own tables first, so that the migration itself is what meets the full disk.
      await migrateToLatest(storage, []);
      await fill(storage);
      await assert.rejects(migrateToLatest(storage, [migration]), (error) => full(error) && isCandorError(error) && error.details?.migration === '0001_fill');
      await free(storage, env.databaseUrl);
      assert.deepEqual(await migrateToLatest(storage, [migration]), ['0001_fill']);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });
});

describe('SQLite on a full disk', () => {
  it('codes SQLITE_FULL of a statement, in and outside a transaction, as STORAGE_FULL with the errcode', () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-full-'));
    const handle = new SqliteHandle(join(dir, SQLITE_FILE), 'FULL');
    try {
      handle.exec('CREATE TABLE t (b TEXT)');
      handle.all('PRAGMA max_page_count = 1', []);
      const sqliteFull = (error: unknown) => full(error) && isCandorError(error) && error.details?.errcode === 13;
      assert.throws(() => handle.run('INSERT INTO t (b) VALUES (?)', [BIG]), sqliteFull);
      assert.throws(() => handle.all('INSERT INTO t (b) VALUES (?) RETURNING b', [BIG]), sqliteFull);
      handle.exec('BEGIN IMMEDIATE');
      assert.throws(() => handle.exec(`INSERT INTO t (b) VALUES ('${BIG}')`), sqliteFull);
      // SQLite rolled the transaction back itself.
      assert.equal(handle.db.isTransaction, false);
    } finally {
      handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails a deferred transaction of the writer thread with STORAGE_FULL when its writes do not fit, storing nothing", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-full-'));
    const storage = await openStorage({ databaseUrl: '', dataDir: dir, sqliteSynchronous: 'FULL' });
    try {
      await storage.raw.run('CREATE TABLE t (n INTEGER, b TEXT)');
      const deferred = storage.deferred;
      assert.ok(deferred);
      const [row] = await storage.raw.all<{ page_count: number }>('PRAGMA page_count');
      // The writer thread's connection is limited by a statement of the transaction itself.
      await assert.rejects(
        deferred.transaction(async (tx) => {
          await tx.run(`PRAGMA max_page_count = ${Number(row?.page_count)}`);
          await tx.run(insert(storage, 1), [BIG]);
        }),
        full,
      );
      assert.equal(storage.diskFull, true);
      await deferred.transaction(async (tx) => {
        await tx.run('PRAGMA max_page_count = 1073741823');
        await tx.run(insert(storage, 2), [BIG]);
      });
      assert.equal(storage.diskFull, false);
      assert.deepEqual((await storage.raw.all<{ n: number }>('SELECT n FROM t')).map((r) => r.n), [2]);
    } finally {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cuts the write-ahead log back to the journal size limit after a checkpoint instead of keeping it at its largest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-wal-'));
    const path = join(dir, SQLITE_FILE);
    const handle = new SqliteHandle(path, 'NORMAL');
    try {
      handle.exec('CREATE TABLE t (b BLOB)');
      // One transaction whose pages outgrow the limit (below the automatic checkpoint's 20,000 pages).
      handle.exec('BEGIN IMMEDIATE');
      const pages = Math.ceil((SQLITE_JOURNAL_SIZE_LIMIT * 1.1) / 4096);
      handle.run('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) INSERT INTO t (b) SELECT zeroblob(3000) FROM n', [pages]);
      handle.exec('COMMIT');
      assert.ok(statSync(`${path}-wal`).size > SQLITE_JOURNAL_SIZE_LIMIT);
      // The automatic checkpoint is passive: it copies the log into the database; the next commit starts the log
      // over, and it is then that SQLite cuts the file back.
      handle.all('PRAGMA wal_checkpoint(PASSIVE)', []);
      handle.run('INSERT INTO t (b) VALUES (zeroblob(10))', []);
      assert.ok(statSync(`${path}-wal`).size <= SQLITE_JOURNAL_SIZE_LIMIT, `${statSync(`${path}-wal`).size} bytes`);
    } finally {
      handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PostgreSQL errors', () => {
  it('codes disk_full (SQLSTATE 53100) as STORAGE_FULL and leaves other errors as they are', () => {
    const diskFull = Object.assign(new Error('could not extend file "base/16384/16385": No space left on device'), { code: '53100' });
    const coded = codedPostgresError(diskFull);
    assert.ok(full(coded));
    assert.ok(isCandorError(coded) && coded.details?.sqlstate === '53100' && coded.cause === diskFull);
    const other = Object.assign(new Error('deadlock detected'), { code: '40P01' });
    assert.equal(codedPostgresError(other), other);
  });
});
