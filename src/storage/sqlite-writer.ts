import type { SQLInputValue } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { CandorError } from '../shared/errors.ts';
import type { DiskFullState } from './disk-full.ts';
import { codedSqliteError, toSqliteValues } from './sqlite-driver.ts';
import type { SqlExecutor } from './storage.ts';

/** One write of a deferred transaction, as sent to the writer thread. */
export interface DeferredStatement {
  sql: string;
  /** Values as bound on the main connection (toSqliteValue), so both connections store the same. */
  params: readonly SQLInputValue[];
  /** When set, the statement must change exactly this many rows, or the whole transaction is rolled back. */
  expect?: number;
}

type Unsent = { op: 'begin' } | { op: 'exec'; statements: DeferredStatement[] } | { op: 'commit' } | { op: 'release' } | { op: 'rollback' } | { op: 'close' };
export type WriterRequest = Unsent & { id: number };

export interface WriterReply {
  id: number;
  ok: boolean;
  error?: { message: string; code?: string | undefined; errcode?: number | undefined };
  conflict?: { statement: number; expected: number; changes: number };
  /**
   * After a commit: whether another connection may have committed between this commit and the moment the writer took
   * the write lock again (true also when it could not take it at once); the writer then holds the lock until `release`.
   */
  othersMayHaveCommitted?: boolean;
  relocked?: boolean;
}

/** A write of a deferred transaction changed another number of rows than it expected: nothing of it was stored. */
export class DeferredConflict extends Error {
  readonly statement: number;
  constructor(conflict: { statement: number; expected: number; changes: number }) {
    super(
      conflict.statement < 0
        ? 'another connection committed while the deferred transaction was prepared; nothing was written'
        : `deferred write ${conflict.statement} changed ${conflict.changes} rows, expected ${conflict.expected}; the transaction was rolled back`,
    );
    this.name = 'DeferredConflict';
    this.statement = conflict.statement;
  }
}

/**
 * SQLite's writer thread ended (it failed, or was stopped) before it answered: STORAGE_UNAVAILABLE, as the database
 * itself may be fine and the write may be sent again. From then on the writer is unusable and callers use the main
 * connection. `mayHaveCommitted`: the thread ended with a commit unanswered, which may have been made; when false,
 * nothing of the transaction was stored.
 */
export class WriterExited extends CandorError {
  readonly mayHaveCommitted: boolean;
  constructor(mayHaveCommitted: boolean, options?: { cause?: unknown }) {
    super('STORAGE_UNAVAILABLE', { reason: mayHaveCommitted ? 'the SQLite writer thread exited during a commit: the write may have been committed' : 'the SQLite writer thread exited: nothing of the write was committed' }, options);
    this.mayHaveCommitted = mayHaveCommitted;
  }
}

/**
 * A transaction whose reads run at once, on the main connection, while the writer thread holds SQLite's write lock
 * (so they see the latest committed state and nobody can change it), and whose writes run on the writer thread as
 * they are made (seen by nobody, these reads included, before the commit) and are committed there once the
 * transaction's function has finished.
 */
export interface DeferredTx extends SqlExecutor {
  /** Records a write that must change exactly `changes` rows; otherwise the commit fails with DeferredConflict. */
  expect(text: string, params: readonly unknown[], changes: number): void;
}

const READ = /^\s*select\b/i;

/**
 * SQLite's writer thread, seen from the main thread: a second connection on a worker thread that runs the writes of
 * deferred transactions, so that SQLite's work for a group commit (inserts, index updates, the commit's write-ahead
 * log and fsync) overlaps with the main thread's work on the next requests instead of blocking it.
 */
export class SqliteWriter {
  readonly #path: string;
  readonly #synchronous: 'FULL' | 'NORMAL';
  #worker: Worker | undefined;
  #broken: Error | undefined;
  /** Set by close(): the thread's end is then expected. */
  #closing = false;
  #next = 1;
  /** The writer took the lock again after its last commit and keeps it for a transaction that starts at once. */
  #holding = false;
  #inTransaction = false;
  /** Told of deferred transactions that fail for a full disk and of those that commit (src/storage/disk-full.ts). */
  diskFull: DiskFullState | undefined;
  /** Told once when the thread ends other than by close(), which leaves the writer unusable (for a log line). */
  exited: ((error: WriterExited) => void) | undefined;
  readonly #pending = new Map<number, { resolve: (reply: WriterReply) => void; reject: (error: Error) => void; commit: boolean }>();

  constructor(path: string, synchronous: 'FULL' | 'NORMAL') {
    this.#path = path;
    this.#synchronous = synchronous;
  }

  /** Whether the thread failed (then callers use the main connection, as without a writer). */
  get usable(): boolean {
    return this.#broken === undefined;
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL('./sqlite-writer.worker.ts', import.meta.url), { workerData: { path: this.#path, synchronous: this.#synchronous } });
    worker.on('message', (reply: WriterReply) => {
      const waiting = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      waiting?.resolve(reply);
    });
    const fail = (cause: Error) => {
      const error = new WriterExited(false, { cause });
      if (this.#broken === undefined) {
        this.#broken = error;
        if (!this.#closing) this.exited?.(error);
      }
      this.#worker = undefined;
      // A commit sent and unanswered may have been made before the thread ended.
      for (const waiting of this.#pending.values()) waiting.reject(waiting.commit ? new WriterExited(true, { cause }) : error);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`SQLite writer thread exited (${code})`)));
    // A process with nothing else to do may exit while the thread idles (it is held only while a reply is awaited).
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  #send(request: Unsent): Promise<WriterReply> {
    if (this.#broken) return Promise.reject(this.#broken);
    const worker = this.#start();
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) worker.ref();
      this.#pending.set(id, { resolve, reject, commit: request.op === 'commit' });
      worker.postMessage({ ...request, id });
    });
  }

  /** Sends a request the writer does not answer (the writes of an open transaction; the commit reports on them). */
  #post(request: Unsent): void {
    if (this.#broken) throw this.#broken;
    this.#start().postMessage({ ...request, id: this.#next++ });
  }

  #check(reply: WriterReply): WriterReply {
    if (reply.ok) return reply;
    if (reply.conflict) throw new DeferredConflict(reply.conflict);
    const error = new Error(reply.error?.message ?? 'SQLite writer thread failed') as Error & { code?: string; errcode?: number };
    if (reply.error?.code !== undefined) error.code = reply.error.code;
    if (reply.error?.errcode !== undefined) error.errcode = reply.error.errcode;
    const coded = codedSqliteError(error);
    this.diskFull?.failed(coded);
    throw coded;
  }

  /**
   * Runs `fn` as a deferred transaction: `reads` answers SELECTs on the main connection while the writer holds the
   * write lock; every other statement runs on the writer as soon as it is made, and the writer commits after `fn`
   * resolved. If `fn` throws, or a write fails or changes another number of rows than expected, nothing is written.
   * `hooks.locked` is called once the writer holds the lock; `hooks.committed` once the writes are durable, while the
   * writer holds the lock again, with whether another connection may have committed in between.
   */
  async transaction<T>(
    reads: (text: string, params: readonly unknown[]) => unknown[],
    fn: (tx: DeferredTx) => Promise<T>,
    hooks: { locked(): void; committed(othersMayHaveCommitted: boolean): void; dispatched?: () => void },
  ): Promise<T> {
    this.#inTransaction = true;
    try {
      return await this.#transaction(reads, fn, hooks);
    } finally {
      this.#inTransaction = false;
    }
  }

  async #transaction<T>(
    reads: (text: string, params: readonly unknown[]) => unknown[],
    fn: (tx: DeferredTx) => Promise<T>,
    hooks: { locked(): void; committed(othersMayHaveCommitted: boolean): void; dispatched?: () => void },
  ): Promise<T> {
    // After a commit the writer holds the lock again: a transaction that follows at once needs no new begin.
    if (this.#holding) this.#holding = false;
    else this.#check(await this.#send({ op: 'begin' }));
    hooks.locked();
    // Each write goes to the writer at once: it runs there while this thread prepares the next ones (it is seen by
    // nobody before the commit; reads here never see it, as they would not see it at the end either).
    const write = (statement: DeferredStatement) => this.#post({ op: 'exec', statements: [statement] });
    const tx: DeferredTx = {
      async all<R>(text: string, params: readonly unknown[] = []) {
        if (!READ.test(text)) throw new Error('a deferred transaction cannot run a write that returns rows');
        return reads(text, params) as R[];
      },
      async run(text: string, params: readonly unknown[] = []) {
        write({ sql: text, params: toSqliteValues(params) });
        // Not known until the writer ran it.
        return Number.NaN;
      },
      expect(text: string, params: readonly unknown[], changes: number) {
        write({ sql: text, params: toSqliteValues(params), expect: changes });
      },
    };
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      await this.#send({ op: 'rollback' }).catch(() => undefined);
      throw error;
    }
    const sent = this.#send({ op: 'commit' });
    hooks.dispatched?.();
    const reply = this.#check(await sent);
    this.diskFull?.committed();
    hooks.committed(reply.othersMayHaveCommitted !== false);
    if (reply.relocked) {
      // Kept for a transaction that starts in this turn of the event loop (the next group commit), else released.
      this.#holding = true;
      setImmediate(() => {
        if (this.#holding && !this.#inTransaction) void this.release();
      });
    }
    return result;
  }

  /** Lets go of the write lock kept after a commit (before another connection of this process writes). */
  async release(): Promise<void> {
    if (!this.#holding) return;
    this.#holding = false;
    await this.#send({ op: 'release' }).catch(() => undefined);
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    if (!worker || this.#broken) return;
    this.#closing = true;
    await this.#send({ op: 'close' }).catch(() => undefined);
    this.#broken = new Error('SQLite writer thread closed');
    await worker.terminate();
  }
}
