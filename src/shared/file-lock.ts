import { chmodSync, closeSync, openSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { CandorError } from './errors.ts';
import { isSqliteBusy, isSqliteFull } from './sqlite-codes.ts';

/**
 * Creates the lock file owner-only before SQLite opens it (SQLite would create it 0644), so that a lock that fails
 * (a full disk) leaves no file readable by others; the chmod after locking covers a file an earlier release created.
 * An existing file is not opened: closing a descriptor of it would drop the POSIX locks this process holds on it.
 */
function createPrivate(path: string): void {
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new CandorError('STORAGE_FULL', { file: path, reason: code }, { cause: error });
    if (code !== 'EEXIST') throw error;
  }
}

/**
 * Takes an exclusive lock on a file: an SQLite lock on an empty database (a POSIX record lock, which the operating
 * system drops when the process ends, however it ends — so no stale lock survives a crash, whatever process later gets
 * the same id). Returns the connection that holds it (closing it releases the lock), or null while another process or
 * connection holds it, after waiting up to `waitMs`.
 */
export function lockFile(path: string, waitMs: number): DatabaseSync | null {
  createPrivate(path);
  const db = new DatabaseSync(path, { timeout: waitMs });
  try {
    // Exclusive locking mode keeps the lock the first write transaction takes until the connection closes; the
    // journal in memory leaves no -journal file beside it (the file holds nothing).
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    db.exec('PRAGMA journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
  } catch (error) {
    db.close();
    if (isSqliteBusy(error)) return null;
    if (isSqliteFull(error)) throw new CandorError('STORAGE_FULL', { file: path, reason: 'the disk is full' }, { cause: error });
    throw error;
  }
  chmodSync(path, 0o600);
  return db;
}
