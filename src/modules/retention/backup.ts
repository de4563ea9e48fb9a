// Backups of the database and their restore. SQLite: node:sqlite's online backup API, restore checked first (header,
// integrity check, a Candor schema) and swapped in atomically with the server stopped. PostgreSQL: pg_dump -Fc and
// pg_restore (checked with --list first, restored in one transaction). The deletion ledger file lives outside the
// database and is never part of a backup: opening the kernel after a restore replays the erasures it lists. Both are
// audited: a backup with the audit head it holds, a restore with the head of the log it discarded (the entries written
// after the backup are gone from the database, and this entry is what puts that on record).
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, createReadStream, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { backup as sqliteBackup, DatabaseSync } from 'node:sqlite';
import { createHash, randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import type { Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import { openStorage, SQLITE_FILE } from '../../storage/index.ts';
import { AuditLog, type AuditEvent } from '../audit/index.ts';

/** Where the database lives: the same two settings storage opens it with. */
export interface DatabaseTarget {
  databaseUrl: string;
  dataDir: string;
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
}

/** The file a running server holds in its data directory: its process id. */
export const SERVER_LOCK_FILE = 'server.pid';
const SQLITE_HEADER = 'SQLite format 3\u0000';
/** Tables every Candor database has from its first migrations on. */
const CANDOR_TABLES = ['storage_migrations', 'audit_log', 'crypto_subject_keys'];

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

/** The audit head of the database a restore is about to replace, or why there is none. */
async function currentAuditHead(target: DatabaseTarget): Promise<RestoreResult['discarded']> {
  try {
    if (isPostgres(target)) {
      const client = await postgresClient(target.databaseUrl);
      try {
        return (await postgresAuditHead(client)) ?? 'none';
      } finally {
        await client.end();
      }
    }
    const path = join(target.dataDir, SQLITE_FILE);
    return existsSync(path) ? (sqliteAuditHead(path) ?? 'none') : 'none';
  } catch {
    // A damaged database is a reason to restore: it must not stand in the way.
    return 'unreadable';
  }
}

/** SHA-256 of a file, read as a stream. */
async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Marks the data directory as used by this server process; returns the release function. A lock left by a process
 * that is gone is taken over.
 */
export function claimDataDir(dataDir: string): () => void {
  // The first start of a fresh checkout has no data directory yet: it is made here, private, as storage makes it.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SERVER_LOCK_FILE);
  const holder = runningServer(dataDir);
  if (holder !== null && holder !== process.pid) throw new CandorError('BACKUP_SERVER_RUNNING', { pid: holder });
  writeFileSync(path, String(process.pid), { mode: 0o600 });
  return () => {
    if (runningServer(dataDir) === process.pid) rmSync(path, { force: true });
  };
}

/** The process id of a live server using the data directory, or null. */
export function runningServer(dataDir: string): number | null {
  const path = join(dataDir, SERVER_LOCK_FILE);
  if (!existsSync(path)) return null;
  const pid = Number(readFileSync(path, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

/** Runs a PostgreSQL client tool with the password in the environment (never on the command line). */
function pgTool(tool: string, args: readonly string[], databaseUrl: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const url = new URL(databaseUrl);
  // The tool inherits this process's environment (PATH, PG* settings) and gets the password through it, not argv.
  // eslint-disable-next-line no-restricted-syntax -- passed through to the child process, not read as configuration
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);
  url.password = '';
  const withUrl = args.map((a) => (a === '{url}' ? url.toString() : a));
  return new Promise((resolve, reject) => {
    const child = spawn(tool, withUrl, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? new CandorError('BACKUP_TOOL_MISSING', { tool }) : error));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** First lines of a tool's error output, without anything that could carry a connection secret. */
const toolMessage = (stderr: string) => stderr.split('\n').filter(Boolean).slice(0, 3).join(' | ').replace(/postgres(ql)?:\/\/\S+/g, 'postgres://…');

/**
 * Writes a consistent copy of the database to `file` (not overwriting an existing file); the server may be running.
 * Appends `retention.backup` (file name, size, SHA-256, the audit head the copy holds) before the file appears: no
 * backup without its entry. The entry itself is not in the backup.
 */
export async function backupDatabase(target: DatabaseTarget, file: string, actor: Actor): Promise<BackupResult> {
  if (existsSync(file)) throw new CandorError('BACKUP_FILE_EXISTS', { file: basename(file) });
  const partial = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.partial`);
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
        const result = await pgTool('pg_dump', ['--format=custom', '--no-owner', `--snapshot=${snapshot}`, '--file', partial, '--dbname', '{url}'], target.databaseUrl);
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
        await sqliteBackup(db, partial);
      } finally {
        db.close();
      }
      auditHead = sqliteAuditHead(partial, true);
    }
    const fd = openSync(partial, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const bytes = statSync(partial).size;
    const sha256 = await sha256Of(partial);
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
    db = new DatabaseSync(file, { readOnly: true });
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

/**
 * Replaces the database with a backup, after checking it; nothing is changed when the check fails. SQLite: refused
 * while a server uses the data directory; the file is swapped in with one rename and the old -wal and -shm files
 * (which belong to the replaced database) are removed first. PostgreSQL: pg_restore --clean in one transaction.
 * The audit log goes back to the backup's with the rest: the head it had is read first and recorded, with the
 * restored head and the backup's time, in a `retention.restore` entry appended right after the restored head.
 */
export async function restoreDatabase(target: DatabaseTarget, file: string, actor: Actor): Promise<RestoreResult> {
  const pid = runningServer(target.dataDir);
  if (pid !== null) throw new CandorError('BACKUP_SERVER_RUNNING', { pid });
  const dialect = isPostgres(target) ? 'postgres' : 'sqlite';
  let backupTakenAt: string;
  if (dialect === 'postgres') {
    backupTakenAt = (await checkPostgresBackup(file, target.databaseUrl)) ?? statSync(file).mtime.toISOString();
  } else {
    checkSqliteBackup(file);
    backupTakenAt = statSync(file).mtime.toISOString();
  }
  const bytes = statSync(file).size;
  const sha256 = await sha256Of(file);
  const discarded = await currentAuditHead(target);
  if (dialect === 'postgres') {
    const result = await pgTool('pg_restore', ['--clean', '--if-exists', '--no-owner', '--single-transaction', '--exit-on-error', '--dbname', '{url}', file], target.databaseUrl);
    if (result.code !== 0) throw new CandorError('BACKUP_FAILED', { tool: 'pg_restore', message: toolMessage(result.stderr) });
  } else {
    swapSqlite(target, file);
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
    },
  });
  return { dialect, discarded, restored, backupTakenAt };
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
