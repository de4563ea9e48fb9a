import { chmodSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { isSqliteBusy } from './sqlite-codes.ts';

/**
 * Takes an exclusive lock on a file: an SQLite lock on an empty database (a POSIX record lock, which the operating
 * system drops when the process ends, however it ends — so no stale lock survives a crash, whatever process later gets
 * the same id). Returns the connection that holds it (closing it releases the lock), or null while another process or
 * connection holds it, after waiting up to `waitMs`.
 */
export function lockFile(path: string, waitMs: number): DatabaseSync | null {
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
    throw error;
  }
  chmodSync(path, 0o600);
  return db;
}
