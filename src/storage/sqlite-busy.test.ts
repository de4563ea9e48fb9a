import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { isCandorError } from '../shared/errors.ts';
import { SqliteHandle } from './sqlite-driver.ts';
import { openStorage, SQLITE_FILE } from './storage.ts';

// SQLite only: SQLITE_BUSY is its answer when another connection (another process: the CLI beside a server) holds the
// write lock longer than the busy timeout. PostgreSQL waits for row locks instead and has no such failure.
describe('SQLite write lock held by another connection', () => {
  const busy = (error: unknown) => isCandorError(error, 'STORAGE_BUSY') && error.status === 503;

  it('fails a statement and a transaction with the coded, retryable STORAGE_BUSY, and works again once the lock is let go', () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-busy-'));
    const handle = new SqliteHandle(join(dir, SQLITE_FILE), 'FULL');
    const other = new DatabaseSync(join(dir, SQLITE_FILE));
    try {
      handle.exec('CREATE TABLE t (n INTEGER)');
      handle.exec('PRAGMA busy_timeout = 20');
      other.exec('BEGIN IMMEDIATE');
      assert.throws(() => handle.run('INSERT INTO t (n) VALUES (?)', [1]), busy);
      assert.throws(() => handle.exec('BEGIN IMMEDIATE'), busy);
      other.exec('ROLLBACK');
      handle.run('INSERT INTO t (n) VALUES (?)', [1]);
      assert.equal(handle.all<{ n: number }>('SELECT n FROM t', [])[0]?.n, 1);
    } finally {
      other.close();
      handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails raw.transaction and a deferred transaction of the writer thread with STORAGE_BUSY, storing nothing', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-busy-'));
    const storage = await openStorage({ databaseUrl: '', dataDir: dir, sqliteSynchronous: 'FULL' });
    const other = new DatabaseSync(join(dir, SQLITE_FILE));
    try {
      await storage.raw.run('CREATE TABLE t (n INTEGER)');
      // The main connection waits briefly; the writer thread waits its full busy timeout (no timing is asserted).
      await storage.raw.run('PRAGMA busy_timeout = 20');
      other.exec('BEGIN IMMEDIATE');
      await assert.rejects(storage.raw.transaction((tx) => tx.run('INSERT INTO t (n) VALUES (1)')), busy);
      const deferred = storage.deferred;
      assert.ok(deferred);
      await assert.rejects(deferred.transaction(async (tx) => tx.run('INSERT INTO t (n) VALUES (2)')), busy);
      other.exec('ROLLBACK');
      assert.deepEqual(await storage.raw.all('SELECT n FROM t'), []);
    } finally {
      other.close();
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite write lock held by another process for a while', () => {
  it('lets this process answer other work while a transaction waits for the lock, then writes once it is let go', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-busy-'));
    const storage = await openStorage({ databaseUrl: '', dataDir: dir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    const other = new DatabaseSync(join(dir, SQLITE_FILE));
    let letGo: NodeJS.Timeout | undefined;
    try {
      await storage.raw.transaction((tx) => tx.run('CREATE TABLE t (n INTEGER)'));
      other.exec('BEGIN IMMEDIATE');
      const held = 800;
      letGo = setTimeout(() => other.isTransaction && other.exec('ROLLBACK'), held);
      // The event loop turns while the transaction waits (SQLite's busy handler would block it the whole time).
      let ticks = 0;
      const ticking = setInterval(() => ticks++, 10);
      const started = performance.now();
      await storage.raw.transaction((tx) => tx.run('INSERT INTO t (n) VALUES (1)'));
      const waited = performance.now() - started;
      clearInterval(ticking);
      assert.ok(waited >= held - 50, `waited ${waited.toFixed(0)} ms for the lock`);
      assert.ok(ticks >= 20, `the event loop turned ${ticks} times in ${waited.toFixed(0)} ms`);
      assert.deepEqual((await storage.raw.all<{ n: number }>('SELECT n FROM t')).map((r) => r.n), [1]);
      // A read of this process answers at once meanwhile: only writes wait.
      other.exec('BEGIN IMMEDIATE');
      const read = performance.now();
      await storage.raw.all('SELECT n FROM t');
      assert.ok(performance.now() - read < 200);
      other.exec('ROLLBACK');
      // The connection's busy timeout is as it was.
      assert.deepEqual((await storage.raw.all<{ timeout: number }>('PRAGMA busy_timeout')).map((r) => r.timeout), [5000]);
    } finally {
      clearTimeout(letGo);
      if (other.isTransaction) other.exec('ROLLBACK');
      other.close();
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
