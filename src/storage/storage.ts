import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, PostgresDialect, sql, type PostgresPool, type PostgresPoolClient } from 'kysely';
import type { ClientBase, ClientConfig, Pool, PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { CandorError, isCandorError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { DiskFullState } from './disk-full.ts';
import { codedPostgresError, codedStatements, isConnectionLost, type RunStatement } from './pg-coded.ts';
import { CommitListener, installCommitNotices, sessionName, tablesWithoutNotices } from './pg-commit-notices.ts';
import { NodeSqliteDialect, SQLITE_BUSY_TIMEOUT_MS, SqliteHandle } from './sqlite-driver.ts';
import { SqliteWriter, WriterExited, type DeferredTx } from './sqlite-writer.ts';

export type DialectName = 'sqlite' | 'postgres';

/** A place to run hand-written hot-path SQL (compiled once by Kysely, then reused). */
export interface SqlExecutor {
  all<R>(text: string, params?: readonly unknown[]): Promise<R[]>;
  run(text: string, params?: readonly unknown[]): Promise<number>;
}

export interface RawSql extends SqlExecutor {
  /** Runs fn in one write transaction; commits if it resolves, rolls back if it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
}

export interface StorageOptions {
  /** `postgres://…` selects PostgreSQL; empty selects SQLite in dataDir. */
  databaseUrl: string;
  dataDir: string;
  sqliteSynchronous: 'FULL' | 'NORMAL';
  /** SQLite: run deferred transactions (group commits of ingestion) on a writer thread (default on). */
  sqliteWriterThread?: 'on' | 'off';
  /**
   * PostgreSQL: how long a statement may run (statement_timeout; the client gives up POSTGRES_REPLY_GRACE_MS later, at
   * most twice this, when no answer comes at all), twice that for a transaction left idle; 0: no timeouts. Default
   * POSTGRES_TIMEOUT_MS.
   */
  postgresTimeoutMs?: number;
  /** Where a failure the process works around is told (SQLite's writer thread exited). */
  logger?: Logger | undefined;
}

/** Default of StorageOptions.postgresTimeoutMs (CANDOR_POSTGRES_TIMEOUT_MS). */
export const POSTGRES_TIMEOUT_MS = 30_000;
/** How much longer than statement_timeout the client waits for an answer before it takes the connection for lost. */
export const POSTGRES_REPLY_GRACE_MS = 5_000;
/** Longest wait for a new connection to PostgreSQL (TCP, TLS and authentication). */
const POSTGRES_CONNECT_TIMEOUT_MS = 10_000;
/** Idle time after which the operating system starts probing a PostgreSQL connection (TCP keepalive). */
const POSTGRES_KEEPALIVE_DELAY_MS = 10_000;

/**
 * Transactions whose reads run at once and whose writes are committed together on SQLite's writer thread, so the
 * main thread goes on with other work while SQLite writes (see sqlite-writer.ts).
 */
export interface DeferredWrites {
  /**
   * Runs `fn`: its SELECTs run at once on the main connection while the writer thread holds the write lock (so they
   * see the latest committed state and nothing can change it); its writes run on the writer thread as they are made
   * and are committed after `fn` resolved; the promise settles once they are durable. If `fn` throws or a write
   * fails, nothing is written. A write whose expected row count is not met rolls everything back with
   * DeferredConflict. `dispatched` is called when the writes
   * have been handed to the writer thread (the caller may then answer earlier work while they are written). If the
   * thread ends first, the promise rejects with WriterExited: `mayHaveCommitted` is false when nothing was stored
   * (the commit was not sent, or nobody committed since the thread took the write lock), and true when it may have
   * been (the caller then writes again in a way that finds what is stored).
   */
  transaction<T>(fn: (tx: DeferredTx) => Promise<T>, dispatched?: () => void): Promise<T>;
  /** False once the writer thread has failed: callers then use raw.transaction. */
  readonly usable: boolean;
}

/** The one storage handle: a typed Kysely instance plus a prepared-statement path for hot paths. */
export interface Storage {
  readonly dialect: DialectName;
  readonly db: Kysely<object>;
  readonly raw: RawSql;
  /** Where the data lives, with any password removed. */
  readonly location: string;
  ping(): Promise<void>;
  /**
   * Moves everything from SQLite's write-ahead log into the database file and truncates the log, so deleted content
   * survives in neither (after an erasure); resolves only once SQLite answered that it did and the log is empty.
   * Another connection's read transaction (another process: a CLI command, a backup, Litestream, a sqlite3 shell)
   * keeps the log from being truncated: it is tried again for up to `waitMs` (CHECKPOINT_WAIT_MS), this process's
   * writes going on in between, then STORAGE_CHECKPOINT_BUSY is thrown. This process's own connections never stand in
   * the way. A no-op on PostgreSQL, whose dumps are logical.
   */
  checkpoint(options?: { waitMs?: number }): Promise<void>;
  /**
   * A number that changes whenever another connection (another process: the CLI, a second server) has committed to
   * the database since the last call, so in-process caches can tell that they may be stale without reading what
   * they cache. Writes through this handle do not change it. On SQLite it is read from data_version; on PostgreSQL it
   * counts commit notices of other sessions (src/storage/pg-commit-notices.ts) and is undefined while they cannot be
   * heard (the listening connection is down, or a table has no trigger to send them), when caches fall back to
   * refreshing by age. With `tables`, PostgreSQL counts only commits that wrote one of them (a cache of consent is
   * not refreshed because another server stored events); SQLite cannot tell tables apart and counts every commit.
   */
  externalWrites(tables?: readonly string[]): number | undefined;
  /**
   * Run by migrateToLatest once the schema is current (PostgreSQL: gives new tables their commit-notice trigger), on
   * `db`: the connection the migrations ran on (withoutTimeouts), or by default this storage's.
   */
  afterMigrations(db?: Kysely<object>): Promise<void>;
  /**
   * Runs `fn` with a Kysely instance on one connection that PostgreSQL's timeouts do not bound (no statement_timeout,
   * idle_in_transaction_session_timeout or client-side reply timeout), opened for it and closed after it; its errors
   * are coded as this storage's are. For migrations: an index built on a large table may take longer than a request
   * may. SQLite, and PostgreSQL with its timeouts off: `fn(db)`.
   */
  withoutTimeouts<T>(fn: (db: Kysely<object>) => Promise<T>): Promise<T>;
  /**
   * PostgreSQL: runs ANALYZE on each table whose planner statistics are missing or stale by autovacuum's own rule
   * (never analyzed, or more than 50 + 10% of its rows changed since), and returns their names. Where autovacuum runs
   * this finds nothing; where it is off (some managed or hand-tuned servers) a table never analyzed is planned as if it
   * were empty, and every look-up scans it whole. SQLite: nothing (its plans here need no statistics), `[]`.
   */
  refreshStatistics(): Promise<string[]>;
  /**
   * After rows were deleted from these tables (an erasure, a retention sweep): planner statistics that hold sample
   * values of their rows are taken again from the rows left, so the deleted values leave them; returns the tables
   * renewed. PostgreSQL: ANALYZE of each that is a table of the current schema (other names are skipped), which reads
   * a sample of live rows only and takes no lock that blocks reads or writes; a call made while the same table's
   * ANALYZE runs waits for it and then has its own, shared with the calls made meanwhile. What pg_statistic held
   * before stays in that catalog's file until PostgreSQL vacuums it. SQLite: node:sqlite is built without STAT4 and
   * Candor runs no ANALYZE there, so only a sqlite_stat4 (or stat3) table another SQLite build wrote can hold values
   * (samples of index keys): its rows of these tables are deleted (secure_delete overwrites them).
   */
  renewStatistics(tables: readonly string[]): Promise<string[]>;
  /** SQLite's writer thread, unless it is off or the database is PostgreSQL. */
  readonly deferred: DeferredWrites | undefined;
  /**
   * PostgreSQL: how long a write may go unanswered before it is given up (STORAGE_UNAVAILABLE; its statements' timeout
   * and the grace the client adds); undefined where writes cannot hang on a network (SQLite) or timeouts are off.
   */
  readonly writeTimeoutMs?: number;
  /**
   * Whether the last write failed with STORAGE_FULL (SQLite: database or disk is full; PostgreSQL: disk_full, 53100),
   * until a later write of this process succeeds (a commit, or a write outside a transaction): `/readyz` answers
   * STORAGE_FULL meanwhile.
   */
  readonly diskFull: boolean;
  close(): Promise<void>;
}

/**
 * Whether an error is a unique or primary-key violation on either backend. On SQLite that includes the trigger that
 * keeps an append-only table's rows from being replaced (SQLITE_CONSTRAINT_TRIGGER, same message as SQLite's own).
 */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; errcode?: unknown; message?: unknown };
  if (e.errcode === 1811) return typeof e.message === 'string' && e.message.startsWith('UNIQUE constraint failed');
  return e.code === '23505' || e.errcode === 2067 || e.errcode === 1555;
}

/**
 * Whether an error is a storage failure the storage layer coded as retryable — STORAGE_FULL (the disk is full),
 * STORAGE_BUSY (a lock held too long), STORAGE_UNAVAILABLE (the database away or slow): callers keep its code.
 */
export function isRetryableStorageError(error: unknown): error is CandorError {
  return isCandorError(error, 'STORAGE_FULL') || isCandorError(error, 'STORAGE_BUSY') || isCandorError(error, 'STORAGE_UNAVAILABLE');
}

/**
 * PostgreSQL's deadlock_detected (40P01) and serialization_failure (40001): the transaction was rolled back whole and
 * may simply be run again.
 */
export function isTransientFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/**
 * Whether an error says that a table or column a statement names does not exist: PostgreSQL's undefined_table (42P01)
 * and undefined_column (42703), SQLite's `no such table`, `no such column` and `has no column named`. Candor's own
 * statements fail so only on a schema they were not written for.
 */
export function isMissingTableOrColumn(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; message?: unknown };
  if (e.code === '42P01' || e.code === '42703') return true;
  return typeof e.message === 'string' && /no such (table|column): |has no column named /.test(e.message);
}

/** The file name of the SQLite database inside a data directory. */
export const SQLITE_FILE = 'candor.db';

/** How long checkpoint() keeps trying while another connection reads (as long as a statement waits for a lock). */
export const CHECKPOINT_WAIT_MS = SQLITE_BUSY_TIMEOUT_MS;
/** The longest pause between two tries of a checkpoint. */
const CHECKPOINT_PAUSE_MS = 250;

/** What `PRAGMA wal_checkpoint(TRUNCATE)` answers: busy 1 when it could not finish, and the log's frames and how many were copied. */
interface CheckpointAnswer {
  busy: number;
  log: number;
  checkpointed: number;
}

/** Opens SQLite (default) or PostgreSQL, according to the options. */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  if (options.databaseUrl.startsWith('postgres://') || options.databaseUrl.startsWith('postgresql://')) {
    return openPostgres(options.databaseUrl, options.postgresTimeoutMs ?? POSTGRES_TIMEOUT_MS);
  }
  return openSqlite(options);
}

function openSqlite(options: StorageOptions): Storage {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const path = join(options.dataDir, SQLITE_FILE);
  // Owner-only from the start; SQLite gives its -wal and -shm files the same mode.
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  const handle = new SqliteHandle(path, options.sqliteSynchronous);
  const diskFull = new DiskFullState();
  handle.diskFull = diskFull;
  const db = new Kysely<object>({ dialect: new NodeSqliteDialect(handle) });
  const writer = options.sqliteWriterThread === 'off' ? undefined : new SqliteWriter(path, options.sqliteSynchronous);
  // Anything that may write on the main connection (handle.lockForWrites) first has the writer thread let go of a lock it kept.
  if (writer) handle.beforeWrites = () => writer.release();
  if (writer) writer.diskFull = diskFull;
  if (writer) writer.exited = (error) => options.logger?.warn({ err: error.cause }, "SQLite's writer thread exited: ingestion writes on the main connection from now on");
  // Commits by other connections, counted. The writer thread is another connection too: its own commits are
  // absorbed while it holds the write lock again right after them, so only other processes' commits count.
  let seenVersion = handle.dataVersion(true);
  let externalCommits = 0;
  let writerCommitting = false;
  const lookForExternalCommits = (fresh: boolean) => {
    const version = handle.dataVersion(fresh);
    if (version !== seenVersion) {
      seenVersion = version;
      externalCommits++;
    }
  };
  const direct: SqlExecutor = {
    all: async <R>(text: string, params: readonly unknown[] = []) => handle.all<R>(text, params),
    run: async (text: string, params: readonly unknown[] = []) => handle.run(text, params).changes,
  };
  const raw: RawSql = {
    async all<R>(text: string, params: readonly unknown[] = []) {
      const release = await handle.lock.lock();
      try {
        return handle.all<R>(text, params);
      } finally {
        release();
      }
    },
    async run(text: string, params: readonly unknown[] = []) {
      const release = await handle.lockForWrites();
      try {
        return handle.run(text, params).changes;
      } finally {
        release();
      }
    },
    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      const release = await handle.lockForWrites();
      try {
        await handle.beginImmediate();
        try {
          const result = await fn(direct);
          handle.exec('COMMIT');
          return result;
        } catch (error) {
          if (handle.db.isTransaction) handle.db.exec('ROLLBACK');
          throw error;
        }
      } finally {
        release();
      }
    },
  };
  return {
    dialect: 'sqlite',
    db,
    raw,
    location: path,
    async ping() {
      await raw.all('SELECT 1');
    },
    async refreshStatistics() {
      return [];
    },
    async renewStatistics(tables) {
      const stat = await raw.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('sqlite_stat4', 'sqlite_stat3')");
      if (stat.length === 0 || tables.length === 0) return [];
      const wanted = [...new Set(tables)];
      const placeholders = wanted.map(() => '?').join(', ');
      const renewed = new Set<string>();
      for (const { name } of stat) {
        for (const r of await raw.all<{ tbl: string }>(`SELECT DISTINCT tbl FROM ${name} WHERE tbl IN (${placeholders})`, wanted)) renewed.add(r.tbl);
        await raw.run(`DELETE FROM ${name} WHERE tbl IN (${placeholders})`, wanted);
      }
      return [...renewed].sort();
    },
    externalWrites() {
      // While the writer thread commits, a change seen here may be its own; other commits are caught after it.
      if (!writerCommitting) lookForExternalCommits(false);
      return externalCommits;
    },
    async afterMigrations() {
      // data_version sees every writer: nothing to set up.
    },
    withoutTimeouts: (fn) => fn(db),
    get diskFull() {
      return diskFull.full;
    },
    deferred: writer && {
      get usable() {
        return writer.usable;
      },
      async transaction<T>(fn: (tx: DeferredTx) => Promise<T>, dispatched?: () => void): Promise<T> {
        const releaseWrites = await handle.writes.lock();
        let versionLocked: number | undefined;
        try {
          return await writer.transaction((text, params) => handle.all(text, params), fn, {
            locked() {
              // Nobody can commit now: whatever changed since the last look was another connection.
              lookForExternalCommits(true);
              versionLocked = seenVersion;
              writerCommitting = true;
            },
            committed(othersMayHaveCommitted) {
              writerCommitting = false;
              seenVersion = handle.dataVersion(true);
              if (othersMayHaveCommitted) externalCommits++;
            },
            dispatched,
          });
        } catch (error) {
          // The thread ended with its commit unanswered. Nobody else could commit while it held the write lock, so if
          // nobody has since, it did not commit; a commit seen may also be another process's after the thread ended,
          // and is taken for the thread's (the caller writes again; nothing acknowledged goes missing).
          if (error instanceof WriterExited && error.mayHaveCommitted && handle.dataVersion(true) === versionLocked) throw new WriterExited(false, { cause: error.cause });
          throw error;
        } finally {
          writerCommitting = false;
          releaseWrites();
        }
      },
    },
    async checkpoint(options: { waitMs?: number } = {}) {
      const deadline = performance.now() + (options.waitMs ?? CHECKPOINT_WAIT_MS);
      // Under the write lock of this process: the writer thread has let go of the lock it may keep after a commit and
      // no statement of the main connection is open, so only other processes can hold a read transaction.
      const attempt = async (): Promise<CheckpointAnswer & { walBytes: number }> => {
        const release = await handle.lockForWrites();
        try {
          // Tried without SQLite's busy handler, which would block this thread (every request) while it waits.
          handle.db.exec('PRAGMA busy_timeout = 0');
          try {
            const [answer] = handle.all<CheckpointAnswer>('PRAGMA wal_checkpoint(TRUNCATE)', []);
            const walBytes = statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
            return { busy: Number(answer?.busy), log: Number(answer?.log), checkpointed: Number(answer?.checkpointed), walBytes };
          } finally {
            handle.db.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
          }
        } finally {
          release();
        }
      };
      let pause = 10;
      for (;;) {
        const { busy, log, checkpointed, walBytes } = await attempt();
        if (busy === 0 && log === checkpointed && walBytes === 0) return;
        const left = deadline - performance.now();
        if (left <= 0) throw new CandorError('STORAGE_CHECKPOINT_BUSY', { busy, log, checkpointed });
        // A reader usually ends soon; meanwhile this process writes on.
        await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
        pause = Math.min(pause * 2, CHECKPOINT_PAUSE_MS);
      }
    },
    async close() {
      await writer?.close();
      await db.destroy();
    },
  };
}

/** Fewest parameters for which a VALUES insert in a transaction is run with a generic plan (~30 event rows). */
const GENERIC_MIN_PARAMS = 400;
/** An `INSERT … VALUES (…)` with no query inside (upserts included): the same plan whatever its parameters. */
const VALUES_INSERT = /^\s*insert\s+into\s[^(]*\([^)]*\)\s*values\s*\((?![\s\S]*\bselect\b)/i;

/** Where statements run, each one's errors coded (codedStatements). */
interface Statements {
  query: RunStatement;
}

/** A connection checked out for a transaction (raw.transaction, Kysely's) or a migration (withoutTimeouts). */
interface Session {
  query<R extends QueryResultRow>(config: QueryConfig | string): Promise<QueryResult<R>>;
  /** Gives the connection back; one that was lost (or left in an unknown state) is discarded. */
  release(): void;
  /** Marks the connection unusable: release() then has it discarded. */
  discard(error: unknown): void;
}

/**
 * A connection held for as long as a transaction (or a migration) holds it, every statement's error coded
 * (codedStatements). Once a statement on it fails for a lost connection (reset, ended by the server, its answer not
 * coming within query_timeout), it is discarded on release rather than used again (a timed-out statement may still
 * be running on it), and further statements on it fail at once with that error, without waiting behind the lost one.
 * `giveBack` gets the error it was lost for, if it was.
 */
function session(client: ClientBase, diskFull: DiskFullState, giveBack: (lost: Error | undefined) => void): Session {
  let lost: Error | undefined;
  let released = false;
  const run = codedStatements(async (config) => {
    if (lost) throw lost;
    try {
      return await client.query(config);
    } catch (error) {
      if (isConnectionLost(error)) lost = error as Error;
      throw error;
    }
  }, diskFull);
  return {
    query: <R extends QueryResultRow>(config: QueryConfig | string) => run<R>(typeof config === 'string' ? { text: config } : config),
    release() {
      if (released) return;
      released = true;
      giveBack(lost);
    },
    discard(error) {
      lost ??= error instanceof Error ? error : new Error('connection discarded');
    },
  };
}

/** Checks a connection out of the pool (connect failures coded: STORAGE_UNAVAILABLE); a lost one is discarded on release. */
async function checkOut(pool: Pool, diskFull: DiskFullState): Promise<Session> {
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw codedPostgresError(error);
  }
  return session(client, diskFull, (lost) => client.release(lost));
}

/** A session as Kysely's PostgreSQL driver takes a pooled client. */
function kyselyClient(checkedOut: Session): PostgresPoolClient {
  return {
    // Kysely streams through a cursor only when given one in its config (it is not): statements only.
    query: ((text: string, parameters?: readonly unknown[]) => checkedOut.query({ text, values: parameters && [...parameters] })) as unknown as PostgresPoolClient['query'],
    release: () => checkedOut.release(),
  };
}

/** Tables of this schema whose statistics autovacuum would refresh: never analyzed, or changed by > 50 + 10% of rows. */
const STALE_STATISTICS_SQL = `SELECT relname AS name FROM pg_stat_user_tables
  WHERE schemaname = current_schema() AND n_live_tup + n_dead_tup + n_mod_since_analyze > 0
    AND (coalesce(last_analyze, last_autoanalyze) IS NULL OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)
  ORDER BY relname`;

/** Of these names, the tables of the current schema, by name. */
const TABLES_OF_SCHEMA_SQL = `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])
  ORDER BY c.relname`;

const analyzeSql = (table: string) => `ANALYZE "${table.replaceAll('"', '""')}"`;

/**
 * Runs `run(key)` for each call so that a run starts after the call was made; calls made while a run of the same key
 * waits to start share it, and a run waits for the one before it of the same key. So that many callers at once
 * (erasures finishing together) cause at most one run in progress and one waiting per key, not one each.
 */
export function coalesced(run: (key: string) => Promise<unknown>): (key: string) => Promise<void> {
  const last = new Map<string, { started: boolean; done: Promise<void> }>();
  return (key) => {
    const previous = last.get(key);
    if (previous && !previous.started) return previous.done;
    const entry = { started: false, done: Promise.resolve() };
    entry.done = (previous?.done.catch(() => undefined) ?? Promise.resolve())
      .then(async () => {
        entry.started = true;
        await run(key);
      })
      .finally(() => {
        if (last.get(key) === entry) last.delete(key);
      });
    last.set(key, entry);
    return entry.done;
  };
}

async function openPostgres(url: string, timeoutMs: number): Promise<Storage> {
  const { default: pg } = await import('pg');
  // int8 (counts, sequence numbers) as JS numbers: every such value here stays below 2^53.
  const types = {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === 20) return (value: string) => Number(value);
      return pg.types.getTypeParser(oid, format);
    },
  };
  // Plans are made per execution: a generic plan cached while a table was still empty stays slow for good. Sessions
  // carry this process's name, so that commit notices from them are told apart from other processes' (below).
  const name = sessionName();
  const connection: ClientConfig = {
    connectionString: url, types, options: '-c plan_cache_mode=force_custom_plan', application_name: name,
    connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: POSTGRES_KEEPALIVE_DELAY_MS,
  };
  // No operation waits for ever on a connection that stopped answering (a half-open one: no reset ever comes): the
  // server ends a statement after statement_timeout and a transaction left idle after twice that; the client gives up
  // on an answer POSTGRES_REPLY_GRACE_MS after statement_timeout (query_timeout) and on a connect after
  // POSTGRES_CONNECT_TIMEOUT_MS; TCP keepalive finds idle connections that died.
  const replyTimeoutMs = timeoutMs + Math.min(POSTGRES_REPLY_GRACE_MS, timeoutMs);
  const timeouts = timeoutMs > 0 ? { statement_timeout: timeoutMs, idle_in_transaction_session_timeout: 2 * timeoutMs, query_timeout: replyTimeoutMs } : {};
  const pool = new pg.Pool({ ...connection, max: 10, ...timeouts });
  pool.on('error', () => {
    // An idle client lost its connection; the pool replaces it on next use.
  });
  pool.on('connect', (client) => {
    // pg-pool listens for a client's errors only while it is idle: without a listener of its own, a connection lost
    // while a transaction holds it would be an unhandled 'error' event (the process would crash). The statement that
    // was running fails by itself and the client is discarded on release (session).
    client.on('error', () => undefined);
  });
  const diskFull = new DiskFullState();
  /** The pool as Kysely takes it: each connection checked out as by raw.transaction, its statements coded. */
  const kyselyPool: PostgresPool = {
    connect: async () => kyselyClient(await checkOut(pool, diskFull)),
    end: () => pool.end(),
  };
  const db = new Kysely<object>({ dialect: new PostgresDialect({ pool: kyselyPool }) });
  const statementName = (text: string) => 'c_' + createHash('sha1').update(text).digest('hex').slice(0, 20);
  /** Statements outside a transaction, each on a connection of the pool (autocommit), coded as a session's are. */
  const autocommit: Statements = { query: codedStatements((config) => pool.query(config), diskFull) };
  /** Runs a hot-path statement (a named prepared statement) outside a transaction or on a transaction's session. */
  const query = (client: Statements, text: string, params: readonly unknown[]) => client.query({ name: statementName(text), text, values: [...params] });
  const on = (client: Statements): SqlExecutor => ({
    async all<R>(text: string, params: readonly unknown[] = []) {
      return (await query(client, text, params)).rows as R[];
    },
    async run(text: string, params: readonly unknown[] = []) {
      return (await query(client, text, params)).rowCount ?? 0;
    },
  });
  const poolExec = on(autocommit);
  /**
   * A transaction's executor: large multi-row `INSERT … VALUES` statements (ingestion's event inserts, upserts of
   * computed traits) run with a generic plan, the rest with a plan per execution as the pool's sessions do. Planning a
   * 100-row VALUES list anew for each execution took a third of the insert's time, and such a statement has no plan
   * choice a table's size could change. The mode is switched only when the next statement needs the other one, and
   * `SET LOCAL` ends with the transaction.
   */
  const inTransaction = (client: Session): SqlExecutor => {
    const plain = on(client);
    let generic = false;
    const mode = async (text: string, params: readonly unknown[]) => {
      // Small statements plan quickly: not worth a round trip to switch for (a small insert keeps a generic mode).
      if (params.length < GENERIC_MIN_PARAMS && !generic) return;
      const wanted = VALUES_INSERT.test(text);
      if (wanted === generic) return;
      await client.query(wanted ? 'SET LOCAL plan_cache_mode = force_generic_plan' : 'SET LOCAL plan_cache_mode = force_custom_plan');
      generic = wanted;
    };
    return {
      async all<R>(text: string, params: readonly unknown[] = []) {
        await mode(text, params);
        return plain.all<R>(text, params);
      },
      async run(text: string, params: readonly unknown[] = []) {
        await mode(text, params);
        return plain.run(text, params);
      },
    };
  };
  const raw: RawSql = {
    all: poolExec.all,
    run: poolExec.run,
    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      const client = await checkOut(pool, diskFull);
      try {
        await client.query('BEGIN');
        try {
          const result = await fn(inTransaction(client));
          // Its success clears the disk-full state (codedStatements).
          await client.query('COMMIT');
          return result;
        } catch (error) {
          // On a lost connection this fails at once (the server rolls back by itself); a connection whose rollback
          // failed is not handed out again, and the transaction's own error is what the caller learns.
          await client.query('ROLLBACK').catch((rollbackError: unknown) => client.discard(rollbackError));
          throw error;
        }
      } finally {
        client.release();
      }
    },
  };
  // Other processes' commits, heard as notices (src/storage/pg-commit-notices.ts) — counted only while every table
  // sends them: until then (an older database before its migrations, triggers not allowed) caches refresh by age.
  const listener = new CommitListener({ connectionString: url }, name, (config) => new pg.Client(config));
  await listener.start();
  let everyTableNotifies = (await tablesWithoutNotices(db)).length === 0;
  const analyze = coalesced((name) => poolExec.run(analyzeSql(name)));
  const parsed = new URL(url);
  parsed.password = '';
  return {
    dialect: 'postgres',
    db,
    raw,
    location: parsed.toString(),
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async checkpoint() {
      // pg_dump reads rows, not pages: deleted tuples never reach a dump.
    },
    async refreshStatistics() {
      const stale = await poolExec.all<{ name: string }>(STALE_STATISTICS_SQL);
      for (const { name } of stale) await poolExec.run(analyzeSql(name));
      return stale.map((t) => t.name);
    },
    async renewStatistics(tables) {
      if (tables.length === 0) return [];
      const found = await poolExec.all<{ name: string }>(TABLES_OF_SCHEMA_SQL, [[...new Set(tables)]]);
      for (const { name } of found) await analyze(name);
      return found.map((t) => t.name);
    },
    externalWrites: (tables) => (listener.tracked && everyTableNotifies ? (tables ? listener.countFor(tables) : listener.count) : undefined),
    async afterMigrations(on = db) {
      everyTableNotifies = (await installCommitNotices(on)).length === 0;
    },
    async withoutTimeouts(fn) {
      if (timeoutMs === 0) return fn(db);
      // A client of its own, not one of the pool's: pg's query_timeout can be raised for a statement but not lifted.
      const client = new pg.Client(connection);
      client.on('error', () => undefined);
      try {
        await client.connect();
        // Off for this session, also where the role or the database sets a default (ALTER ROLE … SET statement_timeout).
        await client.query('SET statement_timeout = 0');
        await client.query('SET idle_in_transaction_session_timeout = 0');
      } catch (error) {
        await client.end().catch(() => undefined);
        throw codedPostgresError(error);
      }
      let handedOut = false;
      const own: PostgresPool = {
        async connect() {
          if (handedOut) throw new Error('withoutTimeouts has one connection');
          handedOut = true;
          // Ended below, whether lost or not.
          return kyselyClient(session(client, diskFull, () => undefined));
        },
        end: async () => undefined,
      };
      try {
        return await new Kysely<object>({ dialect: new PostgresDialect({ pool: own }) }).connection().execute(fn);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    deferred: undefined,
    writeTimeoutMs: timeoutMs > 0 ? replyTimeoutMs : undefined,
    get diskFull() {
      return diskFull.full;
    },
    async close() {
      await listener.close();
      await db.destroy();
    },
  };
}
