/**
 * Whether an error is SQLite's SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included (the low byte): another
 * connection held a lock longer than the wait allowed.
 */
export function isSqliteBusy(error: unknown): boolean {
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  return typeof errcode === 'number' && ((errcode & 0xff) === 5 || (errcode & 0xff) === 6);
}
