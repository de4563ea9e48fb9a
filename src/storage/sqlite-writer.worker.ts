// SQLite's writer thread: a second connection to the same database file, on its own thread, that runs the writes of a
// deferred transaction (see sqlite-writer.ts). The main thread takes the write lock here first (begin), reads what it
// needs on its own connection while this thread holds the lock, sending each write here as it is made (exec, run at
// once, unanswered), and finally asks for the commit, whose answer reports the first failed write if there was one.
import { parentPort, workerData } from 'node:worker_threads';
import { isCandorError } from '../shared/errors.ts';
import { SqliteHandle } from './sqlite-driver.ts';
import type { DeferredStatement, WriterReply, WriterRequest } from './sqlite-writer.ts';

const { path, synchronous } = workerData as { path: string; synchronous: 'FULL' | 'NORMAL' };
// The same connection settings and statement cache as the main connection.
const connection = new SqliteHandle(path, synchronous);
const db = connection.db;

function failure(error: unknown): WriterReply['error'] {
  // A statement's error coded by the connection (STORAGE_BUSY, STORAGE_FULL) is sent as SQLite's, for the main thread
  // to code again (a CandorError does not cross threads as one).
  const e = (isCandorError(error) && error.cause !== undefined ? error.cause : error) as { message?: unknown; code?: unknown; errcode?: unknown };
  return { message: String(e.message ?? error), code: typeof e.code === 'string' ? e.code : undefined, errcode: typeof e.errcode === 'number' ? e.errcode : undefined };
}

function rollback(): void {
  if (db.isTransaction) db.exec('ROLLBACK');
}

const dataVersion = () => connection.dataVersion(true);
/** data_version when the open transaction began: it moves only when another connection commits. */
let versionAtBegin = 0;

/** The lock taken again after a commit is let go by itself if no transaction follows soon (others may be waiting). */
const HOLD_MS = 50;
let holdTimer: ReturnType<typeof setTimeout> | undefined;
/** Whether the lock kept after the last commit was let go by the timer: the next commit must take it back. */
let holdLapsed = false;

/** Takes the write lock again right after a commit, without waiting: whether someone else committed in between. */
function relock(): { othersMayHaveCommitted: boolean; relocked: boolean } {
  db.exec('PRAGMA busy_timeout = 0');
  try {
    db.exec('BEGIN IMMEDIATE');
    const version = dataVersion();
    const othersMayHaveCommitted = version !== versionAtBegin;
    versionAtBegin = version;
    holdTimer = setTimeout(() => {
      holdTimer = undefined;
      rollback();
      holdLapsed = true;
    }, HOLD_MS);
    return { othersMayHaveCommitted, relocked: true };
  } catch {
    return { othersMayHaveCommitted: true, relocked: false };
  } finally {
    db.exec('PRAGMA busy_timeout = 5000');
  }
}

/** Statements of the open transaction run so far (their index names a conflict), and its first failure. */
let ran = 0;
let failed: WriterReply | undefined;

/** Ends the open transaction without keeping anything, and forgets its state. */
function discard(): void {
  ran = 0;
  failed = undefined;
  rollback();
}

/**
 * Makes sure the deferred transaction holds the lock before its writes run: false (with the conflict recorded) when
 * the lock kept after the last commit lapsed while the main thread was reading and somebody committed meanwhile.
 */
function inTransaction(id: number, lapsed: boolean): boolean {
  if (db.isTransaction) return true;
  if (!lapsed) {
    failed = { id, ok: false, error: { message: 'no deferred transaction is open on the writer thread' } };
    return false;
  }
  // The kept lock lapsed while the main thread was reading: valid only if nobody committed since.
  db.exec('BEGIN IMMEDIATE');
  if (dataVersion() !== versionAtBegin) {
    rollback();
    failed = { id, ok: false, conflict: { statement: -1, expected: 0, changes: 0 } };
    return false;
  }
  return true;
}

/** Runs writes of the open transaction, unless it already failed; the first failure is kept for the commit. */
function execute(id: number, list: readonly DeferredStatement[], lapsed: boolean): void {
  if (failed || !inTransaction(id, lapsed)) return;
  for (const s of list) {
    const index = ran++;
    const { changes } = connection.run(s.sql, s.params);
    if (s.expect !== undefined && changes !== s.expect) {
      rollback();
      failed = { id, ok: false, conflict: { statement: index, expected: s.expect, changes } };
      return;
    }
  }
}

function answer(request: WriterRequest): WriterReply | undefined {
  if (holdTimer !== undefined) clearTimeout(holdTimer);
  holdTimer = undefined;
  const lapsed = holdLapsed;
  holdLapsed = false;
  try {
    switch (request.op) {
      case 'begin':
        discard();
        db.exec('BEGIN IMMEDIATE');
        versionAtBegin = dataVersion();
        return { id: request.id, ok: true };
      case 'exec':
        // Writes sent while the main thread still prepares the rest of the transaction: no answer, the commit tells.
        execute(request.id, request.statements, lapsed);
        return undefined;
      case 'commit': {
        if (!failed) inTransaction(request.id, lapsed);
        if (failed) {
          const reply = { ...failed, id: request.id };
          discard();
          return reply;
        }
        ran = 0;
        db.exec('COMMIT');
        return { id: request.id, ok: true, ...relock() };
      }
      case 'release':
      case 'rollback':
        discard();
        return { id: request.id, ok: true };
      case 'close':
        discard();
        connection.close();
        return { id: request.id, ok: true };
    }
  } catch (error) {
    try {
      discard();
    } catch {
      // The connection is unusable; the main thread sees the first error.
    }
    if (request.op === 'exec') {
      failed = { id: request.id, ok: false, error: failure(error) };
      return undefined;
    }
    return { id: request.id, ok: false, error: failure(error) };
  }
}

parentPort?.on('message', (request: WriterRequest) => {
  const reply = answer(request);
  if (reply) parentPort?.postMessage(reply);
  if (request.op === 'close') parentPort?.close();
});
