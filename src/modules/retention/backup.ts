// Backups of the database and their restore. SQLite: node:sqlite's online backup API, restore checked first (header,
// integrity check, a Candor schema) and swapped in atomically with the server stopped. PostgreSQL: pg_dump -Fc and
// pg_restore (checked with --list first; its script run by psql into the emptied schema, in one transaction). Before
// either swap the backup's applied migrations are checked against the ones this code knows (a newer release's backup
// could not be opened once restored) and its master key registrations against the key file, as a start would check
// them, so a backup the key file cannot open (another deployment's, or one whose master key version was pruned) is
// refused with the live database untouched. The deletion ledger file lives outside the
// database and is never part of a backup: opening the kernel after a restore replays the erasures it lists. Both are
// audited: a backup with the audit head it holds, a restore with the head of the log it discarded (the entries written
// after the backup are gone from the database, and this entry is what puts that on record).
import { spawn } from 'node:child_process';
import { accessSync, chmodSync, closeSync, constants, copyFileSync, createReadStream, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { backup as sqliteBackup, DatabaseSync } from 'node:sqlite';
import { createHash, randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import type { Actor } from '../../shared/actor.ts';
import { writeFileAtomic } from '../../shared/durable-write.ts';
import { CandorError, isCandorError, type ErrorDetails } from '../../shared/errors.ts';
import { lockFile } from '../../shared/file-lock.ts';
import { openStorage, SQLITE_FILE, type ModuleMigration } from '../../storage/index.ts';
import { revokedCredentials, type AccessControl, type SubjectSessions } from '../access/index.ts';
import { AuditLog, type AuditEvent } from '../audit/index.ts';
import { restrictiveConsentStates, type Consent, type ReappliedAfterRestore, type RestrictiveConsentStates } from '../consent/index.ts';
import { checkKeyFile, readKeyFile, type RegisteredKey } from '../crypto/index.ts';

/** Where the database lives: the same two settings storage opens it with. */
export interface DatabaseTarget {
  databaseUrl: string;
  dataDir: string;
}

/** What a restore works on: the database, and the key file the restored database is opened with. */
export interface RestoreTarget extends DatabaseTarget {
  keyFile: string;
}

/** The newest entry of an audit log: its sequence number, hash and time. */
export interface AuditHead {
  seq: number;
  hash: string;
  at: string;
}

export interface BackupResult {
  dialect: 'sqlite' | 'postgres';
  file: string;
  bytes: number;
  /** SHA-256 of the file, as recorded in the audit log. */
  sha256: string;
  /** The audit head the backup holds (null: its log is empty). */
  auditHead: AuditHead | null;
}

export interface RestoreResult {
  dialect: 'sqlite' | 'postgres';
  /** The head of the audit log the restore replaced: `none` when there was no database, `unreadable` when damaged. */
  discarded: AuditHead | 'none' | 'unreadable';
  /** The head of the restored audit log, that the `retention.restore` entry follows. */
  restored: AuditHead | null;
  /** When the backup was made: pg_dump's archive time on PostgreSQL, the file's modification time on SQLite. */
  backupTakenAt: string;
  /**
   * The credentials (API tokens, write keys) the replaced database had revoked, to be revoked again in the restored
   * one (`AccessControl.revokeAgainAfterRestore`; the CLI does it once the kernel is open); `none` when there was no
   * database, `unreadable` when it could not be read. Also in the `retention.restore` entry (`revokedInReplaced`).
   */
  revokedInReplaced: string[] | 'none' | 'unreadable';
  /**
   * The restrictive consent states the replaced database held (refusals, withdrawals and GPC opt-outs; restrictions and
   * objections in force), to be written again where the restored one is less restrictive (`Consent.reapplyAfterRestore`;
   * the CLI does it once the kernel is open); `none` when there was no database (or no consent tables), `unreadable`
   * when it could not be read. Counted in the `retention.restore` entry (`consentInReplaced` and the counts after it).
   */
  consentInReplaced: RestrictiveConsentStates | 'none' | 'unreadable';
}

/** The file a running server keeps locked in its data directory (an empty SQLite database). */
export const SERVER_LOCK_FILE = 'server.lock';
/** Where the holder of the lock writes its process id, for messages only. */
export const SERVER_PID_FILE = 'server.pid';
const SQLITE_HEADER = 'SQLite format 3\u0000';
/** Tables every Candor database has from its first migrations on. */
const CANDOR_TABLES = ['storage_migrations', 'audit_log', 'crypto_master_keys', 'crypto_subject_keys'];

const isPostgres = (target: DatabaseTarget) => /^postgres(ql)?:\/\//.test(target.databaseUrl);
const AUDIT_PURPOSE = 'essential.service.security';
const HEAD_SQL = 'SELECT seq, hash, at FROM audit_log ORDER BY seq DESC LIMIT 1';

/** `SEQ:HASH`, as `audit verify` prints a head and `--expect-head` takes it. */
const headText = (head: AuditHead | null): string | null => (head ? `${head.seq}:${head.hash}` : null);

/**
 * The audit head of a SQLite database file (null: no entry, or no audit table). `immutable` for a file nobody writes
 * (a backup): read without a -wal or -shm file appearing next to it.
 */
function sqliteAuditHead(file: string, immutable = false): AuditHead | null {
  const url = pathToFileURL(resolve(file));
  if (immutable) url.searchParams.set('immutable', '1');
  const db = new DatabaseSync(url, { readOnly: true });
  try {
    const table = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'").get();
    if (!table) return null;
    const row = db.prepare(HEAD_SQL).get() as { seq: number | bigint; hash: string; at: string } | undefined;
    return row ? { seq: Number(row.seq), hash: row.hash, at: row.at } : null;
  } finally {
    db.close();
  }
}

/** The audit head of a PostgreSQL database, read through `client` (in its transaction's snapshot, if any). */
async function postgresAuditHead(client: Client): Promise<AuditHead | null> {
  const present = await client.query<{ present: boolean }>("SELECT to_regclass('audit_log') IS NOT NULL AS present");
  if (!present.rows[0]?.present) return null;
  const row = (await client.query<{ seq: string; hash: string; at: string }>(HEAD_SQL)).rows[0];
  return row ? { seq: Number(row.seq), hash: row.hash, at: row.at } : null;
}

/** A connected client of the database (pg is loaded only when PostgreSQL is used). */
async function postgresClient(databaseUrl: string): Promise<Client> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  return client;
}

/** A database read through plain SQL: its rows, and which tables it has (an older release's may lack some). */
interface DatabaseReader {
  all(text: string): Promise<readonly Record<string, unknown>[]>;
  has(table: string): boolean;
}

/**
 * Reads the configured database (the one a restore is about to replace, or has just put in place) on one connection:
 * `none` when there is no database, `unreadable` when it cannot be read (a damaged database is a reason to restore: it
 * must not stand in the way). SQLite is opened read-only.
 */
async function readDatabase<T>(target: DatabaseTarget, read: (db: DatabaseReader) => Promise<T>): Promise<T | 'none' | 'unreadable'> {
  try {
    if (isPostgres(target)) {
      const client = await postgresClient(target.databaseUrl);
      try {
        const tables = new Set((await client.query<{ name: string }>('SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()')).rows.map((r) => r.name));
        return await read({ all: async (text) => (await client.query(text)).rows, has: (table) => tables.has(table) });
      } finally {
        await client.end();
      }
    }
    const path = join(target.dataDir, SQLITE_FILE);
    if (!existsSync(path)) return 'none';
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      const tables = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
      return await read({ all: async (text) => db.prepare(text).all(), has: (table) => tables.has(table) });
    } finally {
      db.close();
    }
  } catch {
    return 'unreadable';
  }
}

/** The newest audit entry a database holds (null: no entry, or no audit table). */
async function auditHeadOf(db: DatabaseReader): Promise<AuditHead | null> {
  if (!db.has('audit_log')) return null;
  const row = (await db.all(HEAD_SQL))[0] as { seq: number | bigint | string; hash: string; at: string } | undefined;
  return row ? { seq: Number(row.seq), hash: row.hash, at: row.at } : null;
}

/** The audit head of the configured database, or why there is none. */
async function currentAuditHead(target: DatabaseTarget): Promise<RestoreResult['discarded']> {
  const head = await readDatabase(target, auditHeadOf);
  return head ?? 'none';
}

/**
 * What a restore must know of the database it is about to replace, read in one go: its audit head, the credentials
 * it revoked, and its restrictive consent states. A revocation, withdrawal, GPC opt-out, restriction or objection
 * recorded after the backup was taken would otherwise be undone by the restore (a leaked key would work again,
 * processing would resume).
 */
async function replacedDatabase(target: DatabaseTarget): Promise<Pick<RestoreResult, 'discarded' | 'revokedInReplaced' | 'consentInReplaced'>> {
  const read = await readDatabase(target, async (db) => ({
    discarded: (await auditHeadOf(db)) ?? ('none' as const),
    revokedInReplaced: db.has('access_tokens') ? (await revokedCredentials((text) => db.all(text))).map((c) => c.id) : ('none' as const),
    consentInReplaced: db.has('consent_current') && db.has('consent_restrictions') ? await restrictiveConsentStates((text) => db.all(text)) : ('none' as const),
  }));
  return typeof read === 'string' ? { discarded: read, revokedInReplaced: read, consentInReplaced: read } : read;
}

/** The file, in the data directory, of what a restore carries over and the kernel has not applied yet. */
export const RESTORE_PENDING_FILE = 'restore-pending.json';
const PENDING_FORMAT = 'candor-restore-pending';

/**
 * What a restore carries over from the replaced database: credential ids and consent states (pseudonyms, purposes,
 * times: no personal values); `unknown` names what could not be read from it (a damaged database).
 */
export interface PendingRestore {
  backup: string;
  revoked: string[];
  consent: RestrictiveConsentStates;
  unknown: ('credentials' | 'consent')[];
  /** Privacy-center sessions still to be ended (files of earlier versions lack it: ended all the same). */
  sessions?: boolean;
}

function readPending(path: string): PendingRestore | null {
  if (!existsSync(path)) return null;
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as PendingRestore & { format?: string };
  if (parsed.format !== PENDING_FORMAT) throw new CandorError('BACKUP_CORRUPT', { reason: `${RESTORE_PENDING_FILE} is not a pending restore`, file: RESTORE_PENDING_FILE });
  return { backup: parsed.backup, revoked: parsed.revoked, consent: parsed.consent, unknown: parsed.unknown, sessions: parsed.sessions !== false };
}

function writePending(path: string, pending: PendingRestore): void {
  writeFileAtomic(path, JSON.stringify({ format: PENDING_FORMAT, ...pending }), { temporary: `${path}.${randomBytes(6).toString('hex')}.tmp`, mode: 0o600, code: 'BACKUP_FAILED' });
}

/**
 * Writes (0600, fsynced) what the restore carries over, added to what an earlier restore left unapplied (its kernel
 * never opened); returns a function that puts the file back as it was, for a restore that fails before its swap.
 */
function savePendingRestore(dataDir: string, backup: string, revoked: RestoreResult['revokedInReplaced'], consent: RestoreResult['consentInReplaced']): () => void {
  const path = join(dataDir, RESTORE_PENDING_FILE);
  // Written for every restore: the restored database's privacy-center sessions are ended whatever else is carried.
  const earlier = readPending(path);
  const pending: PendingRestore = {
    backup,
    revoked: [...new Set([...(earlier?.revoked ?? []), ...(Array.isArray(revoked) ? revoked : [])])],
    consent: {
      optOuts: [...(earlier?.consent.optOuts ?? []), ...(typeof consent === 'object' ? consent.optOuts : [])],
      restrictions: [...(earlier?.consent.restrictions ?? []), ...(typeof consent === 'object' ? consent.restrictions : [])],
    },
    unknown: [...new Set([...(earlier?.unknown ?? []), ...(revoked === 'unreadable' ? ['credentials' as const] : []), ...(consent === 'unreadable' ? ['consent' as const] : [])])],
    sessions: true,
  };
  writePending(path, pending);
  return () => (earlier ? writePending(path, earlier) : rmSync(path, { force: true }));
}

/** What the kernel did with a pending restore's carry-over (Kernel.restoreCarried). */
export interface RestoreCarried {
  backup: string;
  /** Credentials revoked again, and the last owner tokens kept (revoked in the replaced database). */
  revoked: string[];
  keptLastOwner: string[];
  consent: ReappliedAfterRestore;
  /** Privacy-center sessions the restored database held active, ended. */
  sessionsEnded: number;
  /** What could not be read from the replaced database: to be done again by hand. */
  unknown: ('credentials' | 'consent')[];
}

/**
 * Applies what a restore carried over (RESTORE_PENDING_FILE), when the kernel opens after it: credentials revoked again,
 * privacy-center sessions ended, restrictive consent states written again (on each person's canonical profile). The file goes once everything was
 * written; when some people's states could not be, it stays and the next open tries again. Null without a file.
 */
export async function applyPendingRestore(deps: {
  dataDir: string;
  access: Pick<AccessControl, 'revokeAgainAfterRestore'>;
  subjectSessions: Pick<SubjectSessions, 'endAllAfterRestore'>;
  consent: Pick<Consent, 'reapplyAfterRestore'>;
  people: () => AsyncIterable<{ profileId: string; members: string[] }[]>;
  actor: Actor;
}): Promise<RestoreCarried | null> {
  const path = join(deps.dataDir, RESTORE_PENDING_FILE);
  const pending = readPending(path);
  if (!pending) return null;
  const { revoked, keptLastOwner } = await deps.access.revokeAgainAfterRestore(pending.revoked, pending.backup, deps.actor);
  const sessionsEnded = pending.sessions === false ? 0 : await deps.subjectSessions.endAllAfterRestore(pending.backup, deps.actor);
  const consent = await deps.consent.reapplyAfterRestore(pending.consent, deps.people(), pending.backup, deps.actor);
  if (consent.failed.length === 0) rmSync(path, { force: true });
  else writePending(path, { ...pending, sessions: false });
  return { backup: pending.backup, revoked, keptLastOwner, consent, sessionsEnded, unknown: pending.unknown };
}

/** What the `retention.restore` entry says of the replaced database's consent states: counts only, no pseudonyms. */
function consentCounts(states: RestoreResult['consentInReplaced']): Record<string, string | number | null> {
  if (typeof states === 'string') return { consentInReplaced: states, optOutsInReplaced: null, gpcOptOutsInReplaced: null, restrictionsInReplaced: null, objectionsInReplaced: null };
  const gpc = states.optOuts.filter((o) => o.gpc).length;
  return {
    consentInReplaced: 'read',
    optOutsInReplaced: states.optOuts.length - gpc,
    gpcOptOutsInReplaced: gpc,
    restrictionsInReplaced: states.restrictions.filter((r) => r.kind === 'restriction').length,
    objectionsInReplaced: states.restrictions.filter((r) => r.kind === 'objection_marketing').length,
  };
}

/** SHA-256 of a file, read as a stream (given up with BACKUP_INTERRUPTED once `signal` aborts). */
async function sha256Of(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) {
    checkInterrupted(signal);
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** Appends one entry to the database's audit log through a connection of its own. */
async function appendAudit(target: DatabaseTarget, event: AuditEvent): Promise<void> {
  const storage = await openStorage({ databaseUrl: target.databaseUrl, dataDir: target.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
  try {
    await new AuditLog(storage).append(event);
  } finally {
    await storage.close();
  }
}

/** How long a start waits for the lock: a `restore` or `backup` only looking whether a server runs holds it briefly. */
const LOCK_WAIT_MS = 500;

/**
 * Takes the data directory's lock, `server.lock` (lockFile: an operating-system lock, so no stale lock survives a crash).
 * Returns the connection that holds it, or null when another process or connection holds it.
 */
function lockDataDir(dataDir: string, waitMs: number): DatabaseSync | null {
  return lockFile(join(dataDir, SERVER_LOCK_FILE), waitMs);
}

/** The process id the holder of the lock wrote in `server.pid` (for messages only: the lock says who holds it). */
function recordedPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, SERVER_PID_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The data directories whose lock this process holds (a second connection of its own would be refused the lock). */
const heldHere = new Set<string>();

/** Takes the lock and records this process's id beside it; null when someone else holds it. */
function holdDataDir(dataDir: string): (() => void) | null {
  // The first start of a fresh checkout has no data directory yet: it is made here, private, as storage makes it.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = lockDataDir(dataDir, LOCK_WAIT_MS);
  if (!lock) return null;
  const pidFile = join(dataDir, SERVER_PID_FILE);
  try {
    // Whole or not at all: a full disk leaves no empty pid file (a temporary one a crash left is replaced).
    rmSync(`${pidFile}.tmp`, { force: true });
    writeFileAtomic(pidFile, String(process.pid), { code: 'SERVE_DATA_DIR_NOT_WRITABLE', temporary: `${pidFile}.tmp`, mode: 0o600 });
  } catch (error) {
    lock.close();
    throw error;
  }
  const key = resolve(dataDir);
  heldHere.add(key);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    heldHere.delete(key);
    rmSync(pidFile, { force: true });
    lock.close();
  };
}

/**
 * Locks the data directory for this server process for as long as it runs; returns the release function. Throws
 * SERVE_DATA_DIR_IN_USE while another server (or a restore) holds it. The lock ends with the process that holds it,
 * so a crash leaves nothing to clean up.
 */
export function claimDataDir(dataDir: string): () => void {
  const release = holdDataDir(dataDir);
  if (!release) throw new CandorError('SERVE_DATA_DIR_IN_USE', { pid: recordedPid(dataDir) });
  return release;
}

/**
 * Runs `work` with the data directory locked as a server locks it, unless this process holds the lock already (it is
 * the server); throws SERVE_DATA_DIR_IN_USE, with `details`, while another process (a server, a restore) holds it.
 */
export async function whileHoldingDataDir<T>(dataDir: string, details: ErrorDetails, work: () => Promise<T>): Promise<T> {
  if (heldHere.has(resolve(dataDir))) return await work();
  const release = holdDataDir(dataDir);
  if (!release) throw new CandorError('SERVE_DATA_DIR_IN_USE', { pid: recordedPid(dataDir), ...details });
  try {
    return await work();
  } finally {
    release();
  }
}

/** Whether a server holds the data directory's lock, with the process id it recorded (null: none recorded); null when none does. */
export function runningServer(dataDir: string): { pid: number | null } | null {
  if (!existsSync(join(dataDir, SERVER_LOCK_FILE))) return null;
  const probe = lockDataDir(dataDir, 0);
  if (probe === null) return { pid: recordedPid(dataDir) };
  probe.close();
  return null;
}

/**
 * Runs a PostgreSQL client tool with the password in the environment (never on the command line). With `onLine`, its
 * output is handed over line by line instead of kept (a table's data can be large). When `signal` aborts, the tool is
 * stopped (SIGTERM) and waited for, and the promise rejects with BACKUP_INTERRUPTED.
 */
function pgTool(tool: string, args: readonly string[], databaseUrl: string, onLine?: (line: string) => void, signal?: AbortSignal): Promise<{ code: number; stdout: string; stderr: string }> {
  const { env, withUrl } = pgToolSetup(args, databaseUrl);
  return new Promise((resolve, reject) => {
    const child = spawn(tool, withUrl, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      if (!onLine) return;
      const lines = stdout.split('\n');
      stdout = lines.pop() as string;
      for (const line of lines) onLine(line);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const stop = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', stop, { once: true });
    if (signal?.aborted) stop();
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? new CandorError('BACKUP_TOOL_MISSING', { tool }) : error));
    child.on('close', (code) => {
      signal?.removeEventListener('abort', stop);
      // Only once the tool has exited: it writes no more into a file that is about to be removed.
      if (signal?.aborted) {
        reject(interruption(signal));
        return;
      }
      if (onLine && stdout) onLine(stdout);
      resolve({ code: code ?? 1, stdout: onLine ? '' : stdout, stderr });
    });
  });
}

/**
 * A PostgreSQL client tool's environment and arguments: this process's environment (PATH, PG* settings) with the
 * password in PGPASSWORD, never on the command line, and `{url}` in `args` replaced by the URL without it.
 */
function pgToolSetup(args: readonly string[], databaseUrl: string): { env: NodeJS.ProcessEnv; withUrl: string[] } {
  const url = new URL(databaseUrl);
  // eslint-disable-next-line no-restricted-syntax -- passed through to the child process, not read as configuration
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);
  url.password = '';
  return { env, withUrl: args.map((a) => (a === '{url}' ? url.toString() : a)) };
}

/** Starts the message of the error EMPTY_SCHEMA_SQL raises when objects of other schemas depend on Candor's. */
const DEPENDENTS_MARKER = 'candor_restore_dependents';

/**
 * Empties the schema Candor's tables live in (the session's current schema): every table, view, sequence, function,
 * procedure, aggregate and type in it, with what depends on them (triggers, indexes, constraints), except the members
 * of extensions. Sent ahead of pg_restore's script, in its transaction: what later migrations added (tables, functions,
 * the commit-notice triggers on them) goes with the rest, so the schema becomes exactly the archive's. Without the
 * timeouts a role may set, as pg_restore's script sets them (it follows a moment later); the messages of the nested
 * BEGIN the script starts with, and of each DROP … IF EXISTS, are not wanted.
 *
 * Nothing outside the schema may go with it: before dropping, with the schema's tables locked (a view or a foreign key
 * being created over one waits for the restore's end), the objects a DROP … CASCADE would take from other schemas are
 * looked for in pg_depend: the schema's objects and, recursively, what goes with them anyway (their rules, triggers,
 * constraints, defaults, indexes, TOAST tables: dependents that are not normal ones, or that belong to a relation of
 * the schema), then the normal dependents of those that belong elsewhere (a view or a table's foreign key, trigger,
 * default or column in another schema; a cast, say, in none). When there are any, the block raises an error naming
 * them (DEPENDENTS_MARKER, then JSON: the schema, the objects) and the transaction ends with nothing changed.
 */
const EMPTY_SCHEMA_SQL = `SET client_min_messages = error;
SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
BEGIN;
DO $candor_restore$
DECLARE
  item record;
  candor_schema oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = current_schema());
  tables text;
  dependents json;
BEGIN
  SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY c.oid) INTO tables
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.oid = candor_schema AND c.relkind IN ('r', 'p')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e');
  IF tables IS NOT NULL THEN
    EXECUTE 'LOCK TABLE ' || tables || ' IN ACCESS EXCLUSIVE MODE';
  END IF;
  -- What goes: the objects the loops below drop and, recursively, what goes with them anyway (indexes, TOAST tables,
  -- row types: dependents that are not normal ones) or belongs to the schema (a rule, trigger, default or policy: by
  -- its relation; a view or function of the schema over another of its objects).
  WITH RECURSIVE dropped(classid, objid) AS (
      SELECT 'pg_proc'::regclass::oid, p.oid FROM pg_proc p
        WHERE p.pronamespace = candor_schema
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
    UNION SELECT 'pg_class'::regclass::oid, c.oid FROM pg_class c
        WHERE c.relnamespace = candor_schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')
    UNION SELECT 'pg_type'::regclass::oid, t.oid FROM pg_type t
        WHERE t.typnamespace = candor_schema AND t.typtype IN ('d', 'e', 'r')
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid AND e.deptype = 'e')
    UNION SELECT x.classid, x.objid FROM pg_depend x JOIN dropped o ON o.classid = x.refclassid AND o.objid = x.refobjid
        WHERE x.deptype IN ('a', 'i', 'P', 'S')
          OR (x.deptype = 'n' AND COALESCE(
            (SELECT c.relnamespace FROM pg_class c WHERE c.oid = CASE x.classid
              WHEN 'pg_class'::regclass THEN x.objid
              WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = x.objid)
              WHEN 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = x.objid)
              WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef a WHERE a.oid = x.objid)
              WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = x.objid) END),
            (SELECT n.oid FROM pg_namespace n WHERE n.nspname = (pg_identify_object(x.classid, x.objid, 0)).schema)) = candor_schema)
  )
  -- What would go with it but is not the schema's: the other normal dependents, extension members aside.
  SELECT json_agg(name ORDER BY name COLLATE "C") INTO dependents FROM (
    SELECT DISTINCT CASE
        -- A view reads what it reads through its _RETURN rule: named as the view.
        WHEN r.rulename = '_RETURN' THEN format('%s (%s)', v.identity, v.type)
        WHEN a.oid IS NOT NULL THEN format('%s (default value)', c.identity)
        ELSE format('%s (%s)', o.identity, o.type) END AS name
      FROM pg_depend x
      JOIN dropped d ON d.classid = x.refclassid AND d.objid = x.refobjid
      LEFT JOIN pg_rewrite r ON x.classid = 'pg_rewrite'::regclass AND r.oid = x.objid
      LEFT JOIN pg_attrdef a ON x.classid = 'pg_attrdef'::regclass AND a.oid = x.objid
      CROSS JOIN LATERAL pg_identify_object(x.classid, x.objid, x.objsubid) o
      LEFT JOIN LATERAL pg_identify_object('pg_class'::regclass, r.ev_class, 0) v ON true
      LEFT JOIN LATERAL pg_identify_object('pg_class'::regclass, a.adrelid, a.adnum) c ON true
      WHERE x.deptype = 'n'
        AND NOT EXISTS (SELECT 1 FROM dropped y WHERE y.classid = x.classid AND y.objid = x.objid)
        AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = x.classid AND e.objid = x.objid AND e.deptype = 'e')
  ) found;
  IF dependents IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist', MESSAGE = '${DEPENDENTS_MARKER} ' || json_build_object('schema', current_schema(), 'dependents', dependents)::text;
  END IF;
  FOR item IN SELECT p.prokind, format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS name
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = current_schema()
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', CASE item.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, item.name);
  END LOOP;
  FOR item IN SELECT c.relkind, format('%I.%I', n.nspname, c.relname) AS name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', CASE item.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END, item.name);
  END LOOP;
  FOR item IN SELECT format('%I.%I', n.nspname, t.typname) AS name
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = current_schema() AND t.typtype IN ('d', 'e', 'r')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP TYPE IF EXISTS %s CASCADE', item.name);
  END LOOP;
END $candor_restore$;
`;

/**
 * Restores a pg_dump archive in one transaction of one psql session: the schema emptied first (EMPTY_SCHEMA_SQL), then
 * pg_restore's script (`--clean --if-exists --single-transaction`, read from its output as it writes it). Only the
 * script's last statement commits: a pg_restore that fails or stops partway leaves psql a script without its COMMIT, and
 * psql stops at the first failing statement (ON_ERROR_STOP), so the session ends with nothing changed. BACKUP_FAILED
 * names the tool that failed first (pg_restore, or psql); BACKUP_TOOL_MISSING when one is not installed.
 */
function pgRestoreInto(databaseUrl: string, file: string): Promise<void> {
  const restoreArgs = pgToolSetup(['--clean', '--if-exists', '--no-owner', '--single-transaction', '--file=-', file], databaseUrl);
  const psqlArgs = pgToolSetup(['--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--dbname', '{url}'], databaseUrl);
  return new Promise((resolve, reject) => {
    const psql = spawn('psql', psqlArgs.withUrl, { env: psqlArgs.env, stdio: ['pipe', 'ignore', 'pipe'] });
    const restore = spawn('pg_restore', restoreArgs.withUrl, { env: restoreArgs.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr = { psql: '', pg_restore: '' };
    let failed: CandorError | undefined;
    let running = 2;
    const fail = (error: CandorError) => {
      failed ??= error;
      // Whichever failed first is the cause; the other is stopped (psql ending without the COMMIT changes nothing).
      restore.kill('SIGTERM');
      psql.kill('SIGTERM');
    };
    const done = () => {
      if (--running > 0) return;
      if (failed) reject(failed);
      else resolve();
    };
    psql.stderr.on('data', (chunk: Buffer) => (stderr.psql += chunk.toString('utf8')));
    restore.stderr.on('data', (chunk: Buffer) => (stderr.pg_restore += chunk.toString('utf8')));
    // psql gone (failed, or not installed) while the script is still being written to it: reported by its exit below.
    psql.stdin.on('error', () => undefined);
    psql.stdin.write(EMPTY_SCHEMA_SQL);
    restore.stdout.pipe(psql.stdin);
    for (const [tool, child] of [['psql', psql], ['pg_restore', restore]] as const) {
      child.on('error', (error: NodeJS.ErrnoException) => {
        fail(error.code === 'ENOENT' ? new CandorError('BACKUP_TOOL_MISSING', { tool }) : new CandorError('BACKUP_FAILED', { tool, message: error.message }));
      });
      child.on('close', (code, signal) => {
        if (code !== 0) fail(dependentsRefusal(tool, stderr[tool]) ?? new CandorError('BACKUP_FAILED', { tool, message: toolMessage(stderr[tool]) || `exit ${code ?? signal}` }));
        done();
      });
    }
  });
}

/**
 * BACKUP_FAILED for EMPTY_SCHEMA_SQL's refusal, read from psql's error output: the schema and the objects of other
 * schemas that depend on it (`reporting.daily_refusals (view)`), with what to do; undefined for any other failure.
 */
function dependentsRefusal(tool: string, stderr: string): CandorError | undefined {
  if (tool !== 'psql') return undefined;
  const found = new RegExp(`${DEPENDENTS_MARKER} (\\{.*\\})$`, 'm').exec(stderr);
  if (!found) return undefined;
  const { schema, dependents } = JSON.parse(found[1] as string) as { schema: string; dependents: string[] };
  return new CandorError('BACKUP_FAILED', {
    tool,
    reason: `objects in other schemas depend on objects of schema ${schema}, which the restore empties, and would be dropped with them: drop or move them first (nothing was changed)`,
    schema,
    dependents,
  });
}

/** BACKUP_INTERRUPTED, naming the signal the command got (the abort reason). */
function interruption(signal: AbortSignal): CandorError {
  return new CandorError('BACKUP_INTERRUPTED', { signal: typeof signal.reason === 'string' ? signal.reason : 'abort' });
}

/** Throws BACKUP_INTERRUPTED once `signal` has aborted. */
function checkInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interruption(signal);
}

/** First lines of a tool's error output, without anything that could carry a connection secret. */
const toolMessage = (stderr: string) => stderr.split('\n').filter(Boolean).slice(0, 3).join(' | ').replace(/postgres(ql)?:\/\/\S+/g, 'postgres://…');

/** Pages per backup step: all of them (node:sqlite takes no -1). */
const ONE_STEP = 0x7fffffff;
/** A partial copy of an earlier release (no process id in its name) untouched this long belongs to a killed backup. */
const STALE_PARTIAL_MS = 10 * 60 * 1000;
/** `.NAME.PID-8 hex digits.partial` (this release) or `.NAME.8 hex digits.partial` (earlier ones), and their journals. */
const PARTIAL_NAME = /^\..+\.(?:(\d+)-)?[0-9a-f]{8}\.partial(-journal)?$/;

/** Whether a process with this id is running (a signal 0 is refused for a live process of another user: it lives). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what killed backups left in the target's directory (partial copies and SQLite's journals of them), whatever
 * file they were for: copies of the database pages, wrapped data keys included, that nothing else would ever delete.
 * A partial copy is a killed backup's when the process named in it is gone — not by its age: a live pg_dump waiting for
 * a lock (a `candor compact` rewriting a table) writes nothing for as long as it waits. Partial copies of earlier
 * releases, which name no process, go once untouched for 10 minutes.
 */
function removeStalePartials(file: string): void {
  const dir = dirname(file);
  const now = Date.now();
  for (const name of readdirSync(dir)) {
    const match = PARTIAL_NAME.exec(name);
    if (!match) continue;
    const path = join(dir, name);
    const stale = match[1] !== undefined ? !processAlive(Number(match[1])) : now - statSync(path).mtimeMs > STALE_PARTIAL_MS;
    if (stale) rmSync(path, { force: true });
  }
}

/** The backup's directory must exist and take new files: BACKUP_DIRECTORY_UNUSABLE (details.reason) otherwise. */
function checkBackupDirectory(file: string): void {
  const dir = dirname(file);
  try {
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown';
    throw new CandorError('BACKUP_DIRECTORY_UNUSABLE', { reason: code, file: basename(file) }, { cause: error });
  }
}

export interface BackupOptions {
  /**
   * Interrupts the backup (the CLI's SIGINT or SIGTERM; the reason names it): pg_dump is stopped and waited for, the
   * partial copy removed and BACKUP_INTERRUPTED thrown, unless the `retention.backup` entry was written already (the
   * backup then completes). SQLite's copy is made in one step, which is let finish first.
   */
  signal?: AbortSignal;
}

/**
 * Writes a consistent copy of the database to `file` (not overwriting an existing file); the server may be running.
 * Appends `retention.backup` (file name, size, SHA-256, the audit head the copy holds) before the file appears: no
 * backup without its entry. The entry itself is not in the backup.
 */
export async function backupDatabase(target: DatabaseTarget, file: string, actor: Actor, options: BackupOptions = {}): Promise<BackupResult> {
  const { signal } = options;
  checkInterrupted(signal);
  if (existsSync(file)) throw new CandorError('BACKUP_FILE_EXISTS', { file: basename(file) });
  checkBackupDirectory(file);
  removeStalePartials(file);
  const partial = join(dirname(file), `.${basename(file)}.${process.pid}-${randomBytes(4).toString('hex')}.partial`);
  const dialect = isPostgres(target) ? 'postgres' : 'sqlite';
  let auditHead: AuditHead | null;
  try {
    // The copy holds every table: it is made readable by its owner only from the first byte, whatever the umask
    // (pg_dump and SQLite write into the existing file and keep its mode; the rename keeps it too).
    const created = openSync(partial, 'wx', 0o600);
    try {
      fchmodSync(created, 0o600);
    } finally {
      closeSync(created);
    }
    if (dialect === 'postgres') {
      // pg_dump works in a snapshot exported by this transaction, so the audit head read here is exactly the copy's.
      const client = await postgresClient(target.databaseUrl);
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        const snapshot = (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]?.id as string;
        auditHead = await postgresAuditHead(client);
        checkInterrupted(signal);
        const result = await pgTool('pg_dump', ['--format=custom', '--no-owner', `--snapshot=${snapshot}`, '--file', partial, '--dbname', '{url}'], target.databaseUrl, undefined, signal);
        if (result.code !== 0) throw new CandorError('BACKUP_FAILED', { tool: 'pg_dump', message: toolMessage(result.stderr) });
        await client.query('COMMIT');
      } finally {
        await client.end();
      }
    } else {
      const source = join(target.dataDir, SQLITE_FILE);
      if (!existsSync(source)) throw new CandorError('BACKUP_FAILED', { reason: 'no database in the data directory' });
      const db = new DatabaseSync(source, { readOnly: true });
      try {
        // In one step: SQLite starts an online backup over whenever another connection writes between two steps, so
        // a copy made a hundred pages at a time beside a busy server never finished (it holds a read meanwhile; WAL
        // lets the writers go on).
        await sqliteBackup(db, partial, { rate: ONE_STEP });
      } finally {
        db.close();
      }
      checkInterrupted(signal);
      auditHead = sqliteAuditHead(partial, true);
    }
    const fd = openSync(partial, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const bytes = statSync(partial).size;
    const sha256 = await sha256Of(partial, signal);
    // The last moment to give up: once the entry is written, the file it records is put in place.
    checkInterrupted(signal);
    await appendAudit(target, {
      actor: actor.id,
      role: actor.role,
      action: 'retention.backup',
      purpose: AUDIT_PURPOSE,
      // The file's name only: a directory can name the person whose home it is.
      resource: `backup:${basename(file)}`,
      details: { dialect, bytes, sha256, auditHead: headText(auditHead) },
    });
    renameSync(partial, file);
    return { dialect, file, bytes, sha256, auditHead };
  } finally {
    rmSync(partial, { force: true });
  }
}

/** Checks a SQLite backup without changing anything: header, integrity check, and a Candor schema. */
export function checkSqliteBackup(file: string): void {
  if (!existsSync(file)) throw new CandorError('BACKUP_CORRUPT', { reason: 'no such file' });
  const header = Buffer.alloc(16);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  if (header.toString('latin1') !== SQLITE_HEADER) throw new CandorError('BACKUP_CORRUPT', { reason: 'not a SQLite database (header)' });
  let db: DatabaseSync | undefined;
  try {
    // Immutable: a backup in WAL mode opened read-only would still get a -wal and -shm file beside it (and could not be
    // read at all in a directory this process may not write).
    const url = pathToFileURL(resolve(file));
    url.searchParams.set('immutable', '1');
    db = new DatabaseSync(url, { readOnly: true });
    const rows = db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[];
    if (rows.length !== 1 || rows[0]?.integrity_check !== 'ok') throw new CandorError('BACKUP_CORRUPT', { reason: 'integrity check failed', problems: rows.length });
    const tables = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
    const missing = CANDOR_TABLES.filter((t) => !tables.has(t));
    if (missing.length > 0) throw new CandorError('BACKUP_NOT_CANDOR', { missing });
  } catch (error) {
    if (error instanceof CandorError) throw error;
    throw new CandorError('BACKUP_CORRUPT', { reason: 'cannot be read as a database' });
  } finally {
    db?.close();
  }
}

/**
 * Checks a pg_dump archive without changing anything: readable by pg_restore, and a Candor schema. Returns when the
 * archive was made (its header's "Archive created at"), or null when the header does not say.
 */
export async function checkPostgresBackup(file: string, databaseUrl: string): Promise<string | null> {
  if (!existsSync(file)) throw new CandorError('BACKUP_CORRUPT', { reason: 'no such file' });
  const list = await pgTool('pg_restore', ['--list', file], databaseUrl);
  if (list.code !== 0) throw new CandorError('BACKUP_CORRUPT', { reason: 'pg_restore cannot read the archive', message: toolMessage(list.stderr) });
  const missing = CANDOR_TABLES.filter((t) => !new RegExp(`TABLE (DATA )?\\S+ ${t} `).test(list.stdout));
  if (missing.length > 0) throw new CandorError('BACKUP_NOT_CANDOR', { missing });
  const created = /^; Archive created at (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) UTC$/m.exec(list.stdout);
  return created ? new Date(`${created[1]}T${created[2]}Z`).toISOString() : null;
}

/** A backup's master key registrations and the wrap versions its data keys use, read without restoring it. */
interface BackupKeys {
  registered: RegisteredKey[];
  usedWrapVersions: Set<number>;
}

/** What a restore checks in a backup before changing anything: the migrations it records as applied, and its keys. */
interface BackupContents {
  migrations: string[];
  keys: BackupKeys;
}

/** Reads what the restore checks from a SQLite backup (the file opened read-only, immutable). */
function sqliteBackupContents(file: string): BackupContents {
  const url = pathToFileURL(resolve(file));
  url.searchParams.set('immutable', '1');
  const db = new DatabaseSync(url, { readOnly: true });
  try {
    const migrations = (db.prepare('SELECT name FROM storage_migrations ORDER BY name').all() as { name: string }[]).map((r) => r.name);
    const registered = (db.prepare('SELECT purpose, version, check_value FROM crypto_master_keys ORDER BY purpose, version').all() as { purpose: string; version: number | bigint; check_value: string }[]).map((r) => ({ ...r, version: Number(r.version) }));
    const used = db.prepare('SELECT DISTINCT master_version AS v FROM crypto_subject_keys').all() as { v: number | bigint }[];
    return { migrations, keys: { registered, usedWrapVersions: new Set(used.map((r) => Number(r.v))) } };
  } finally {
    db.close();
  }
}

const COPY_ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** A COPY text field as PostgreSQL writes it (backslash escapes; `\N` is NULL, read as an empty string). */
function copyField(field: string): string {
  if (field === '\\N') return '';
  if (!field.includes('\\')) return field;
  return field.replace(/\\(.)/g, (_, c: string) => COPY_ESCAPES[c] ?? c);
}

/**
 * Reads tables' rows from a pg_dump archive without restoring anything: pg_restore writes their data as COPY text to
 * its output, handed to `onRow` line by line (a table's data can be large) with a reader of the row's columns.
 */
async function archiveRows(file: string, databaseUrl: string, tables: readonly string[], onRow: (table: string, value: (column: string) => string) => void): Promise<void> {
  const copyLine = new RegExp(`^COPY (?:\\S+\\.)?"?(${tables.join('|')})"? \\(([^)]*)\\) FROM stdin;$`);
  let copying: { table: string; columns: string[] } | null = null;
  const onLine = (line: string) => {
    if (copying === null) {
      const copy = copyLine.exec(line);
      if (copy) copying = { table: copy[1] as string, columns: (copy[2] as string).split(',').map((c) => c.trim().replace(/^"|"$/g, '')) };
      return;
    }
    if (line === '\\.') {
      copying = null;
      return;
    }
    const values = line.split('\t');
    const { table, columns } = copying as { table: string; columns: string[] };
    onRow(table, (column) => copyField(values[columns.indexOf(column)] ?? ''));
  };
  const result = await pgTool('pg_restore', ['--data-only', ...tables.map((t) => `--table=${t}`), '--file=-', file], databaseUrl, onLine);
  if (result.code !== 0) throw new CandorError('BACKUP_CORRUPT', { reason: `pg_restore cannot read ${tables.join(', ')}`, message: toolMessage(result.stderr) });
}

/** Reads what the restore checks from a pg_dump archive, in one pass of pg_restore over it (nothing is restored). */
async function postgresBackupContents(file: string, databaseUrl: string): Promise<BackupContents> {
  const contents: BackupContents = { migrations: [], keys: { registered: [], usedWrapVersions: new Set() } };
  await archiveRows(file, databaseUrl, ['storage_migrations', 'crypto_master_keys', 'crypto_subject_keys'], (table, value) => {
    if (table === 'storage_migrations') contents.migrations.push(value('name'));
    else if (table === 'crypto_master_keys') contents.keys.registered.push({ purpose: value('purpose'), version: Number(value('version')), check_value: value('check_value') });
    else contents.keys.usedWrapVersions.add(Number(value('master_version')));
  });
  contents.migrations.sort();
  contents.keys.registered.sort((a, b) => a.purpose.localeCompare(b.purpose) || a.version - b.version);
  return contents;
}

/**
 * Refuses a backup made by a newer release (it records migrations that are not in `migrations`, the ones this code
 * knows) with BACKUP_NEWER_THAN_CODE, naming them: once restored, the database could not be opened (a start refuses it
 * with STORAGE_NEWER_THAN_CODE), so the deletion ledger could not be replayed into it either.
 */
function checkBackupMigrations(file: string, contents: BackupContents, migrations: readonly ModuleMigration[]): void {
  const known = new Set(migrations.map((m) => m.name));
  const unknown = contents.migrations.filter((name) => !known.has(name));
  if (unknown.length > 0) throw new CandorError('BACKUP_NEWER_THAN_CODE', { unknownMigrations: unknown, backup: basename(file) });
}

/**
 * Checks a backup against the key file the restored database will be opened with, the way a start checks it
 * (Keyring.open): refused with the same CRYPTO_* code, naming the backup, before anything is changed.
 */
async function checkBackupKeys(target: RestoreTarget, file: string, { keys }: BackupContents): Promise<void> {
  // A database no keyring ever opened has no keys to check: the first start after the restore makes them.
  if (keys.registered.length === 0) return;
  try {
    await checkKeyFile(readKeyFile(target.keyFile), keys.registered, async () => keys.usedWrapVersions);
  } catch (error) {
    if (isCandorError(error) && error.code.startsWith('CRYPTO_')) throw new CandorError(error.code, { ...error.details, backup: basename(file) }, { cause: error });
    throw error;
  }
}

/**
 * Replaces the database with a backup, after checking it (the file, its migrations against `migrations`, the ones this
 * code knows, and its master keys against the key file); nothing is changed when a check fails. Refused while a
 * server uses the data directory, which the restore keeps locked until it is done. SQLite: the file is swapped in with
 * one rename and the old -wal and -shm files (which belong to the replaced database) are removed first. PostgreSQL: the
 * schema emptied and pg_restore's script run after it, in one transaction (pgRestoreInto): the schema becomes exactly
 * the backup's (what later migrations added goes: a backup older than the code is migrated by the next start).
 * The audit log goes back to the backup's with the rest: the head it had is read first and recorded, with the
 * restored head and the backup's time, in a `retention.restore` entry appended right after the restored head.
 */
export async function restoreDatabase(target: RestoreTarget, file: string, actor: Actor, migrations: readonly ModuleMigration[]): Promise<RestoreResult> {
  // The restore holds the server's lock itself, so no server can start on the data directory while it runs.
  const release = holdDataDir(target.dataDir);
  if (!release) throw new CandorError('BACKUP_SERVER_RUNNING', { pid: recordedPid(target.dataDir) });
  try {
    return await restoreLocked(target, file, actor, migrations);
  } finally {
    release();
  }
}

/** The restore itself, with the data directory locked. */
async function restoreLocked(target: RestoreTarget, file: string, actor: Actor, migrations: readonly ModuleMigration[]): Promise<RestoreResult> {
  const dialect = isPostgres(target) ? 'postgres' : 'sqlite';
  let backupTakenAt: string;
  if (dialect === 'postgres') {
    backupTakenAt = (await checkPostgresBackup(file, target.databaseUrl)) ?? statSync(file).mtime.toISOString();
  } else {
    checkSqliteBackup(file);
    backupTakenAt = statSync(file).mtime.toISOString();
  }
  const contents = dialect === 'postgres' ? await postgresBackupContents(file, target.databaseUrl) : sqliteBackupContents(file);
  checkBackupMigrations(file, contents, migrations);
  await checkBackupKeys(target, file, contents);
  const bytes = statSync(file).size;
  const sha256 = await sha256Of(file);
  const { discarded, revokedInReplaced, consentInReplaced } = await replacedDatabase(target);
  // Kept in a file before the swap, applied when the kernel next opens (the command's own open, or a server's start if
  // the command stopped before it): the states are not lost with the replaced database, whatever stops the restore.
  const undoPending = savePendingRestore(target.dataDir, basename(file), revokedInReplaced, consentInReplaced);
  try {
    if (dialect === 'postgres') {
      await pgRestoreInto(target.databaseUrl, file);
    } else {
      swapSqlite(target, file);
    }
  } catch (error) {
    undoPending();
    throw error;
  }
  // A restored log that cannot be read (the backup was checked, so hardly ever) also fails the append below.
  const restoredHead = await currentAuditHead(target);
  const head = (value: AuditHead | string) => (typeof value === 'string' ? null : value);
  const restored = head(restoredHead);
  await appendAudit(target, {
    actor: actor.id,
    role: actor.role,
    action: 'retention.restore',
    purpose: AUDIT_PURPOSE,
    resource: `backup:${basename(file)}`,
    details: {
      dialect,
      bytes,
      sha256,
      backupTakenAt,
      restoredHead: restoredHead === 'unreadable' ? restoredHead : headText(restored),
      restoredHeadAt: restored?.at ?? null,
      discardedHead: typeof discarded === 'string' ? discarded : headText(discarded),
      discardedHeadAt: head(discarded)?.at ?? null,
      revokedInReplaced,
      ...consentCounts(consentInReplaced),
    },
  });
  return { dialect, discarded, restored, backupTakenAt, revokedInReplaced, consentInReplaced };
}

/** SQLite: copies the backup next to the database, fsyncs it and renames it over the database. */
function swapSqlite(target: DatabaseTarget, file: string): void {
  const path = join(target.dataDir, SQLITE_FILE);
  const staging = `${path}.restore-${randomBytes(4).toString('hex')}`;
  try {
    copyFileSync(file, staging);
    chmodSync(staging, 0o600);
    const fd = openSync(staging, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // The WAL and shared memory of the database being replaced must not be applied to the restored one.
    rmSync(`${path}-wal`, { force: true });
    rmSync(`${path}-shm`, { force: true });
    renameSync(staging, path);
    const dir = openSync(target.dataDir, 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } finally {
    rmSync(staging, { force: true });
  }
}
