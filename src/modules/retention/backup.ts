// Backups of the database and their restore. SQLite: node:sqlite's online backup API, restore checked first (header,
// integrity check, a Candor schema) and swapped in atomically with the server stopped. PostgreSQL: pg_dump -Fc and
// pg_restore (checked with --list first, restored in one transaction). The deletion ledger file lives outside the
// database and is never part of a backup: opening the kernel after a restore replays the erasures it lists.
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { backup as sqliteBackup, DatabaseSync } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { CandorError } from '../../shared/errors.ts';
import { SQLITE_FILE } from '../../storage/index.ts';

/** Where the database lives: the same two settings storage opens it with. */
export interface DatabaseTarget {
  databaseUrl: string;
  dataDir: string;
}

export interface BackupResult {
  dialect: 'sqlite' | 'postgres';
  file: string;
  bytes: number;
}

/** The file a running server holds in its data directory: its process id. */
export const SERVER_LOCK_FILE = 'server.pid';
const SQLITE_HEADER = 'SQLite format 3\u0000';
/** Tables every Candor database has from its first migrations on. */
const CANDOR_TABLES = ['storage_migrations', 'audit_log', 'crypto_subject_keys'];

const isPostgres = (target: DatabaseTarget) => /^postgres(ql)?:\/\//.test(target.databaseUrl);

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

/** Writes a consistent copy of the database to `file` (not overwriting an existing file); the server may be running. */
export async function backupDatabase(target: DatabaseTarget, file: string): Promise<BackupResult> {
  if (existsSync(file)) throw new CandorError('BACKUP_FILE_EXISTS', { file: basename(file) });
  const partial = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.partial`);
  try {
    // The copy holds every table: it is made readable by its owner only from the first byte, whatever the umask
    // (pg_dump and SQLite write into the existing file and keep its mode; the rename keeps it too).
    const created = openSync(partial, 'wx', 0o600);
    try {
      fchmodSync(created, 0o600);
    } finally {
      closeSync(created);
    }
    if (isPostgres(target)) {
      const result = await pgTool('pg_dump', ['--format=custom', '--no-owner', '--file', partial, '--dbname', '{url}'], target.databaseUrl);
      if (result.code !== 0) throw new CandorError('BACKUP_FAILED', { tool: 'pg_dump', message: toolMessage(result.stderr) });
    } else {
      const source = join(target.dataDir, SQLITE_FILE);
      if (!existsSync(source)) throw new CandorError('BACKUP_FAILED', { reason: 'no database in the data directory' });
      const db = new DatabaseSync(source, { readOnly: true });
      try {
        await sqliteBackup(db, partial);
      } finally {
        db.close();
      }
    }
    const fd = openSync(partial, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(partial, file);
  } finally {
    rmSync(partial, { force: true });
  }
  return { dialect: isPostgres(target) ? 'postgres' : 'sqlite', file, bytes: statSync(file).size };
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

/** Checks a pg_dump archive without changing anything: readable by pg_restore, and a Candor schema. */
export async function checkPostgresBackup(file: string, databaseUrl: string): Promise<void> {
  if (!existsSync(file)) throw new CandorError('BACKUP_CORRUPT', { reason: 'no such file' });
  const list = await pgTool('pg_restore', ['--list', file], databaseUrl);
  if (list.code !== 0) throw new CandorError('BACKUP_CORRUPT', { reason: 'pg_restore cannot read the archive', message: toolMessage(list.stderr) });
  const missing = CANDOR_TABLES.filter((t) => !new RegExp(`TABLE (DATA )?\\S+ ${t} `).test(list.stdout));
  if (missing.length > 0) throw new CandorError('BACKUP_NOT_CANDOR', { missing });
}

/**
 * Replaces the database with a backup, after checking it; nothing is changed when the check fails. SQLite: refused
 * while a server uses the data directory; the file is swapped in with one rename and the old -wal and -shm files
 * (which belong to the replaced database) are removed first. PostgreSQL: pg_restore --clean in one transaction.
 */
export async function restoreDatabase(target: DatabaseTarget, file: string): Promise<{ dialect: 'sqlite' | 'postgres' }> {
  const pid = runningServer(target.dataDir);
  if (pid !== null) throw new CandorError('BACKUP_SERVER_RUNNING', { pid });
  if (isPostgres(target)) {
    await checkPostgresBackup(file, target.databaseUrl);
    const result = await pgTool('pg_restore', ['--clean', '--if-exists', '--no-owner', '--single-transaction', '--exit-on-error', '--dbname', '{url}', file], target.databaseUrl);
    if (result.code !== 0) throw new CandorError('BACKUP_FAILED', { tool: 'pg_restore', message: toolMessage(result.stderr) });
    return { dialect: 'postgres' };
  }
  checkSqliteBackup(file);
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
  return { dialect: 'sqlite' };
}
