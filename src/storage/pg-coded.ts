import { PostgresDialect, PostgresDriver, type CompiledQuery, type DatabaseConnection, type Driver, type PostgresDialectConfig, type QueryResult } from 'kysely';
import { CandorError, isCandorError } from '../shared/errors.ts';
import type { DiskFullState } from './disk-full.ts';

/** PostgreSQL's disk_full: the server could not extend a file (a table, an index, the WAL) for want of space. */
const DISK_FULL = '53100';

/**
 * SQLSTATEs of a statement the server ended because it waited or ran too long: query_canceled (57014, statement_timeout,
 * such as a write waiting on a lock another session holds) and lock_not_available (55P03, lock_timeout or NOWAIT). The
 * connection stays usable (unlike isConnectionLost), but the database did not do the work in time: STORAGE_UNAVAILABLE.
 */
const TIMED_OUT: ReadonlyMap<string, string> = new Map([
  ['57014', 'statement_timeout'],
  ['55P03', 'lock_not_available'],
]);

/**
 * A PostgreSQL error as the coded, retryable error it stands for (disk_full as STORAGE_FULL; a lost connection and a
 * statement ended at its timeout as STORAGE_UNAVAILABLE); any other as it is.
 */
export function codedPostgresError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === DISK_FULL) return new CandorError('STORAGE_FULL', { sqlstate: DISK_FULL }, { cause: error });
  if (isCandorError(error)) return error;
  const timedOut = typeof code === 'string' ? TIMED_OUT.get(code) : undefined;
  if (timedOut !== undefined) return new CandorError('STORAGE_UNAVAILABLE', { reason: timedOut, sqlstate: code }, { cause: error });
  if (isConnectionLost(error)) return new CandorError('STORAGE_UNAVAILABLE', { reason: connectionLostReason(error) }, { cause: error });
  return error;
}

/** Socket errors of a connection to PostgreSQL that was refused, reset or timed out. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** pg's own errors for a connection that ended, timed out or broke earlier, and pg-pool's for a connect that timed out. */
const LOST_MESSAGES = /^(Connection terminated|Query read timeout|Client has encountered a connection error|Client was closed|timeout exceeded when trying to connect)/;

/**
 * Whether an error says that the connection to PostgreSQL is lost or cannot be made (the statement's outcome unknown,
 * the connection unusable): a socket error, SQLSTATE class 08 (connection exception), 57P01–57P03 (the server ended
 * the session or is starting or stopping), pg's "Connection terminated…" and its client-side statement timeout
 * (query_timeout), or pg-pool's connect timeout. Answered STORAGE_UNAVAILABLE.
 */
export function isConnectionLost(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (isCandorError(error, 'STORAGE_UNAVAILABLE')) return true;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (SOCKET_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03')) return true;
  return typeof message === 'string' && LOST_MESSAGES.test(message);
}

/** What the details of STORAGE_UNAVAILABLE say about a lost connection: a code (no message: it may name the host). */
function connectionLostReason(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string') return code;
  return typeof message === 'string' && message.startsWith('Query read timeout') ? 'statement timed out (no answer)' : 'connection lost';
}

const BEGIN = /^\s*(begin|start\s+transaction)\b/i;
const END = /^\s*(commit|rollback|end|abort)\b/i;

/** A pooled connection whose errors are coded and whose writes are told to the disk-full state. */
class CodedConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  readonly #diskFull: DiskFullState;
  #inTransaction = false;

  constructor(inner: DatabaseConnection, diskFull: DiskFullState) {
    this.inner = inner;
    this.#diskFull = diskFull;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    try {
      const result = await this.inner.executeQuery<R>(compiled);
      if (BEGIN.test(compiled.sql)) this.#inTransaction = true;
      else if (END.test(compiled.sql)) this.#inTransaction = false;
      this.#diskFull.succeeded(compiled.sql, this.#inTransaction);
      return result;
    } catch (error) {
      if (END.test(compiled.sql)) this.#inTransaction = false;
      throw this.#diskFull.failed(codedPostgresError(error));
    }
  }

  streamQuery<R>(compiled: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(compiled, chunkSize);
  }
}

class CodedPostgresDriver extends PostgresDriver {
  readonly #diskFull: DiskFullState;

  constructor(config: PostgresDialectConfig, diskFull: DiskFullState) {
    super(config);
    this.#diskFull = diskFull;
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    return new CodedConnection(await super.acquireConnection(), this.#diskFull);
  }

  // Transactions and savepoints run through the connection's executeQuery; only the release needs the pooled one.
  override async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await super.releaseConnection((connection as CodedConnection).inner as Parameters<PostgresDriver['releaseConnection']>[0]);
  }
}

/** Kysely's PostgreSQL dialect, with errors coded as on the raw path (a full disk: STORAGE_FULL). */
export class CodedPostgresDialect extends PostgresDialect {
  readonly #config: PostgresDialectConfig;
  readonly #diskFull: DiskFullState;

  constructor(config: PostgresDialectConfig, diskFull: DiskFullState) {
    super(config);
    this.#config = config;
    this.#diskFull = diskFull;
  }

  override createDriver(): Driver {
    return new CodedPostgresDriver(this.#config, this.#diskFull);
  }
}
