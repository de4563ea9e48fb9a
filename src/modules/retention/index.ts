/**
 * Retention: every module's retention rules (from the configured per-purpose policies and the tracking plan) and the
 * sweeper that enforces them in batches, with deletion evidence in the audit log; and backups of the database whose
 * restore is followed by the replay of the deletion ledger, so that an erased person never comes back.
 */
export { Retention, type RetentionDeps, type SweepReport, type SweepRequest, type EffectiveRule } from './retention.service.ts';
export { RETENTION_MIGRATIONS } from './retention.repo.ts';
export { applyPendingRestore, RESTORE_PENDING_FILE, type RestoreCarried, backupDatabase, restoreDatabase, checkSqliteBackup, checkPostgresBackup, claimDataDir, runningServer, whileHoldingDataDir, SERVER_LOCK_FILE, type BackupResult, type DatabaseTarget, type RestoreTarget } from './backup.ts';
