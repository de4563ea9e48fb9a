import type { QueryConfig, QueryResult, QueryResultRow } from 'pg';
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
 * SQLSTATEs of a connection the server refused for its settings, not for a moment: invalid_catalog_name (3D000, the
 * database does not exist), invalid_authorization_specification (28000, no such role, or pg_hba.conf refuses it) and
 * invalid_password (28P01). STORAGE_CONNECTION_REFUSED, with the reason (never the names, which are in the URL).
 */
const REFUSED: ReadonlyMap<string, string> = new Map([
  ['3D000', 'the database does not exist'],
  ['28000', 'the role does not exist or may not connect'],
  ['28P01', 'the password was refused'],
]);

/**
 * A PostgreSQL error as the coded, retryable error it stands for (disk_full as STORAGE_FULL; a lost connection and a
 * statement ended at its timeout as STORAGE_UNAVAILABLE), a connection refused for its settings as
 * STORAGE_CONNECTION_REFUSED; any other as it is.
 */
export function codedPostgresError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === DISK_FULL) return new CandorError('STORAGE_FULL', { sqlstate: DISK_FULL }, { cause: error });
  if (isCandorError(error)) return error;
  const timedOut = typeof code === 'string' ? TIMED_OUT.get(code) : undefined;
  if (timedOut !== undefined) return new CandorError('STORAGE_UNAVAILABLE', { reason: timedOut, sqlstate: code }, { cause: error });
  if (isConnectionLost(error)) return new CandorError('STORAGE_UNAVAILABLE', { reason: connectionLostReason(error) }, { cause: error });
  const refused = typeof code === 'string' ? REFUSED.get(code) : undefined;
  if (refused !== undefined) return new CandorError('STORAGE_CONNECTION_REFUSED', { reason: refused, sqlstate: code }, { cause: error });
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

/** Where statements are sent: a connection (pooled or one of its own) or the pool itself (autocommit). */
export type SendStatement = (config: QueryConfig) => Promise<QueryResult>;

/** Runs one statement: its rows typed as the caller expects them. */
export type RunStatement = <R extends QueryResultRow>(config: QueryConfig) => Promise<QueryResult<R>>;

/**
 * Runs statements through `send`, and is the one place where the errors of PostgreSQL statements are coded: every
 * failure as codedPostgresError codes it, told to the disk-full state (STORAGE_FULL sets it); every success told to it
 * with whether a transaction is open (a write outside one, or a COMMIT, clears it). Whether one is open is followed
 * from the statements themselves (BEGIN … COMMIT or ROLLBACK), whoever sends them: raw.transaction or Kysely.
 */
export function codedStatements(send: SendStatement, diskFull: DiskFullState): RunStatement {
  let inTransaction = false;
  return async <R extends QueryResultRow>(config: QueryConfig) => {
    try {
      const result = await send(config);
      if (BEGIN.test(config.text)) inTransaction = true;
      else if (END.test(config.text)) inTransaction = false;
      diskFull.succeeded(config.text, inTransaction);
      return result as QueryResult<R>;
    } catch (error) {
      if (END.test(config.text)) inTransaction = false;
      throw diskFull.failed(codedPostgresError(error));
    }
  };
}
