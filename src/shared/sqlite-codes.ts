/**
 * Whether an error is SQLite's SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included (the low byte): another
 * connection held a lock longer than the wait allowed.
 */
export function isSqliteBusy(error: unknown): boolean {
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  return typeof errcode === 'number' && ((errcode & 0xff) === 5 || (errcode & 0xff) === 6);
}

/**
 * Whether an error is SQLite's SQLITE_FULL (13: "database or disk is full", from ENOSPC on a write or the database's
 * max_page_count) or SQLITE_IOERR_SHMSIZE (4874: the WAL's shared-memory file could not be extended, which on a local
 * disk means ENOSPC or a quota).
 */
export function isSqliteFull(error: unknown): boolean {
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  return typeof errcode === 'number' && ((errcode & 0xff) === 13 || errcode === 4874);
}
