/**
 * Storage: one schema on SQLite (node:sqlite, the embedded default) or PostgreSQL (pg), one typed query layer
 * (Kysely), forward-only migrations applied in one transaction.
 */
export { openStorage, isUniqueViolation, isTransientFailure, isRetryableStorageError, isMissingTableOrColumn, SQLITE_FILE, type Storage, type StorageOptions, type RawSql, type SqlExecutor, type DialectName, type DeferredWrites } from './storage.ts';
export { DeferredConflict, WriterExited, type DeferredTx } from './sqlite-writer.ts';
export { Freshness } from './freshness.ts';
export { StatementTexts } from './statement-texts.ts';
export { textOrder, compareText, type OrderModifiers } from './text-order.ts';
export { keepOutOfStatistics } from './column-statistics.ts';
export { migrateToLatest, pendingMigrations, unknownMigrations, type ModuleMigration } from './migrator.ts';
