import { DatabaseSync, type StatementSync, type SQLInputValue } from 'node:sqlite';
import {
  CompiledQuery,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
} from 'kysely';
import { CandorError, isCandorError } from '../shared/errors.ts';
import { isSqliteBusy, isSqliteFull } from '../shared/sqlite-codes.ts';
import { makeRoom } from '../shared/make-room.ts';
import type { DiskFullState } from './disk-full.ts';

/** SQLite accepts DDL inside transactions, so a failed migration batch rolls back whole. */
class TransactionalSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/** One-holder async lock: SQLite has a single connection, shared by Kysely and raw statements. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => next);
    await previous;
    return release;
  }
}

export function toSqliteValue(value: unknown): SQLInputValue {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value instanceof Date) return value.toISOString();
  return value as SQLInputValue;
}

/**
 * Parameters as SQLite binds them: the same array when every value already is one (strings, numbers, null, the
 * usual case, and then no copy of a group's thousands of parameters), else a converted copy.
 */
export function toSqliteValues(params: readonly unknown[]): readonly SQLInputValue[] {
  for (let i = 0; i < params.length; i++) {
    const value = params[i];
    if (typeof value === 'string' || typeof value === 'number' || value === null) continue;
    return params.map(toSqliteValue);
  }
  return params as readonly SQLInputValue[];
}

/** How long a statement waits for a lock another connection holds before it fails busy. */
export const SQLITE_BUSY_TIMEOUT_MS = 5000;
/** The longest pause between two tries of beginImmediate() while another connection holds the write lock. */
const BEGIN_PAUSE_MS = 50;

/**
 * A SQLite error as the coded, retryable error it stands for: busy or locked as STORAGE_BUSY, database or disk full as
 * STORAGE_FULL; any other error as it is.
 */
export function codedSqliteError(error: unknown): unknown {
  if (isSqliteBusy(error)) return new CandorError('STORAGE_BUSY', { errcode: (error as { errcode: number }).errcode }, { cause: error });
  if (isSqliteFull(error)) return new CandorError('STORAGE_FULL', { errcode: (error as { errcode: number }).errcode }, { cause: error });
  return error;
}

/**
 * The most SQLite lets its write-ahead log keep after a checkpoint: the first commit after a checkpoint that copied
 * the whole log cuts the file back to this size (without it the log keeps the ~80 MB it grew to between checkpoints).
 */
export const SQLITE_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;

/** A node:sqlite database with a bounded cache of prepared statements. */
export class SqliteHandle {
  readonly db: DatabaseSync;
  /** Held while a statement runs on this connection (and for a whole transaction). */
  readonly lock = new Mutex();
  /**
   * Held by anything that may write: transactions and writes on this connection, and deferred transactions of the
   * writer thread (taken before `lock`). Plain reads take only `lock`, so they go on while the writer thread writes.
   */
  readonly writes = new Mutex();
  /** Run after `writes` is taken, before this connection writes (the writer thread lets go of its lock). */
  beforeWrites: () => Promise<void> = async () => {};
  /** Told of every write that fails for a full disk and of writes that succeed (src/storage/disk-full.ts). */
  diskFull: DiskFullState | undefined;

  /**
   * For anything that may write on this connection: takes `writes`, makes sure no other connection of this process
   * holds SQLite's write lock, then takes `lock`. Returns the release of both.
   */
  async lockForWrites(): Promise<() => void> {
    const releaseWrites = await this.writes.lock();
    try {
      await this.beforeWrites();
      const release = await this.lock.lock();
      return () => {
        release();
        releaseWrites();
      };
    } catch (error) {
      releaseWrites();
      throw error;
    }
  }
  readonly #statements = new Map<string, StatementSync>();
  #dataVersion = 0;
  #dataVersionAt = Number.NEGATIVE_INFINITY;

  constructor(path: string, synchronous: 'FULL' | 'NORMAL') {
    this.db = new DatabaseSync(path, { enableForeignKeyConstraints: true, timeout: SQLITE_BUSY_TIMEOUT_MS });
    try {
      this.#configure(synchronous);
    } catch (error) {
      // Switching to WAL writes the database header: on a full disk this is the first statement to fail.
      this.db.close();
      throw codedSqliteError(error);
    }
  }

  #configure(synchronous: 'FULL' | 'NORMAL'): void {
    this.db.exec('PRAGMA journal_mode = WAL');
    this.db.exec(`PRAGMA synchronous = ${synchronous}`);
    // Deleted content is overwritten with zeros, so an erased subject does not linger in free pages of the file.
    this.db.exec('PRAGMA secure_delete = ON');
    // A page cache of up to 64 MB (allocated as used) keeps the event table's indexes in memory, and a checkpoint
    // every 20,000 WAL pages (~80 MB) writes a page changed by many commits back once instead of at every 1,000th
    // page: ingestion's writer thread went from ~7,800 to ~10,100 events/s (docs/performance.md). Durability is
    // unchanged (every commit still syncs the WAL); an erasure checkpoints at once, whatever this says.
    this.db.exec('PRAGMA cache_size = -65536');
    this.db.exec('PRAGMA wal_autocheckpoint = 20000');
    // ...and once a checkpoint has copied the whole log, the log is cut back to 64 MB rather than kept at its largest.
    this.db.exec(`PRAGMA journal_size_limit = ${SQLITE_JOURNAL_SIZE_LIMIT}`);
    // Statement journals and temporary tables stay in memory: SQLite would otherwise write them to unlinked files in
    // the system's temporary directory, where old page images (pseudonyms, ciphertexts) outlive the statement in free
    // disk blocks that no erasure can reach; it also saves a file created and unlinked per ingestion commit and ~5 page
    // writes per single event (strace, bench/support/thread-cpu.ts).
    this.db.exec('PRAGMA temp_store = MEMORY');
  }

  prepare(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      makeRoom(this.#statements, 500);
      stmt = this.db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  all<R>(sql: string, params: readonly unknown[]): R[] {
    try {
      const rows = this.prepare(sql).all(...toSqliteValues(params)) as R[];
      this.#succeeded(sql);
      return rows;
    } catch (error) {
      throw this.#coded(error);
    }
  }

  run(sql: string, params: readonly unknown[]): { changes: number } {
    try {
      const result = this.prepare(sql).run(...toSqliteValues(params));
      this.#succeeded(sql);
      return { changes: Number(result.changes) };
    } catch (error) {
      throw this.#coded(error);
    }
  }

  /**
   * Begins a write transaction (BEGIN IMMEDIATE) without SQLite's busy handler, which would block this thread (every
   * request) while another process holds the write lock: tried at once, then again after growing pauses for as long as
   * the connection's busy timeout (SQLITE_BUSY_TIMEOUT_MS), then STORAGE_BUSY as the handler would give. The caller
   * holds `lockForWrites()`.
   */
  async beginImmediate(): Promise<void> {
    // Prepared once each (cached statements): every write transaction of the main connection passes here.
    const timeout = Number((this.prepare('PRAGMA busy_timeout').get() as { timeout: number }).timeout);
    this.prepare('PRAGMA busy_timeout = 0').run();
    try {
      try {
        this.exec('BEGIN IMMEDIATE');
        return;
      } catch (error) {
        if (!isCandorError(error, 'STORAGE_BUSY')) throw error;
      }
      const deadline = performance.now() + timeout;
      let pause = 1;
      for (;;) {
        const left = deadline - performance.now();
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(pause, left))));
        pause = Math.min(pause * 2, BEGIN_PAUSE_MS);
        try {
          this.exec('BEGIN IMMEDIATE');
          return;
        } catch (error) {
          if (!isCandorError(error, 'STORAGE_BUSY') || performance.now() >= deadline) throw error;
        }
      }
    } finally {
      this.prepare(`PRAGMA busy_timeout = ${timeout}`).run();
    }
  }

  /** Runs SQL without parameters (BEGIN IMMEDIATE, COMMIT) on this connection. */
  exec(sql: string): void {
    try {
      this.db.exec(sql);
      this.#succeeded(sql);
    } catch (error) {
      throw this.#coded(error);
    }
  }

  /** Tells the disk-full state of a statement that succeeded (only while it is set: the hot path pays nothing). */
  #succeeded(sql: string): void {
    if (this.diskFull?.full) this.diskFull.succeeded(sql, this.db.isTransaction);
  }

  #coded(error: unknown): unknown {
    const coded = codedSqliteError(error);
    this.diskFull?.failed(coded);
    return coded;
  }

  /**
   * SQLite's data_version: it changes when another connection has committed since the last look. Read at most once
   * a millisecond (several caches ask for it per request; a write by another process is seen a millisecond later).
   */
  dataVersion(fresh = false): number {
    const now = performance.now();
    if (fresh || now - this.#dataVersionAt >= 1) {
      try {
        this.#dataVersion = Number((this.prepare('PRAGMA data_version').get() as { data_version: number }).data_version);
      } catch (error) {
        // The first read of a connection maps the WAL's shared memory: on a full disk it cannot be extended.
        throw this.#coded(error);
      }
      this.#dataVersionAt = now;
    }
    return this.#dataVersion;
  }

  isReader(sql: string): boolean {
    try {
      return this.prepare(sql).columns().length > 0;
    } catch (error) {
      throw this.#coded(error);
    }
  }

  close(): void {
    this.#statements.clear();
    if (this.db.isOpen) this.db.close();
  }
}

class NodeSqliteConnection implements DatabaseConnection {
  readonly #handle: SqliteHandle;

  constructor(handle: SqliteHandle) {
    this.#handle = handle;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const { sql, parameters } = compiled;
    if (this.#handle.isReader(sql)) {
      return { rows: this.#handle.all<R>(sql, parameters) };
    }
    const { changes } = this.#handle.run(sql, parameters);
    return { numAffectedRows: BigInt(changes), rows: [] };
  }

  async *streamQuery<R>(compiled: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    const stmt = this.#handle.prepare(compiled.sql);
    for (const row of stmt.iterate(...toSqliteValues(compiled.parameters))) {
      yield { rows: [row as R] };
    }
  }
}

class NodeSqliteDriver implements Driver {
  readonly #handle: SqliteHandle;
  readonly #connection: NodeSqliteConnection;
  #release: (() => void) | undefined;

  constructor(handle: SqliteHandle) {
    this.#handle = handle;
    this.#connection = new NodeSqliteConnection(handle);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    // Kysely's queries may write: they wait for the writer thread like every writer.
    this.#release = await this.#handle.lockForWrites();
    return this.#connection;
  }

  async beginTransaction(): Promise<void> {
    // IMMEDIATE takes the write lock up front, so two processes never deadlock on upgrade; waited for without blocking.
    await this.#handle.beginImmediate();
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('COMMIT'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    // SQLite may have rolled back already (a full disk, an I/O error): a ROLLBACK then fails and hides the cause.
    if (this.#handle.db.isTransaction) await connection.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }

  async releaseConnection(): Promise<void> {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  async destroy(): Promise<void> {
    this.#handle.close();
  }
}

/** Kysely dialect over node:sqlite (no native build), sharing one lock with the raw path. */
export class NodeSqliteDialect implements Dialect {
  readonly #handle: SqliteHandle;

  constructor(handle: SqliteHandle) {
    this.#handle = handle;
  }

  createDriver(): Driver {
    return new NodeSqliteDriver(this.#handle);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new TransactionalSqliteAdapter();
  }

  // Kysely's introspector is typed against Kysely<any>; the dialect contract requires it.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}
