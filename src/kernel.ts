import type { Config } from './config/index.ts';
import { AccessControl, ACCESS_MIGRATIONS } from './modules/access/index.ts';
import { AuditLog, AUDIT_MIGRATIONS } from './modules/audit/index.ts';
import { Keyring, CRYPTO_MIGRATIONS } from './modules/crypto/index.ts';
import { Taxonomy, TAXONOMY_MIGRATIONS } from './modules/taxonomy/index.ts';
import { CandorError } from './shared/errors.ts';
import { createLogger, type Logger } from './shared/logger.ts';
import { migrateToLatest, openStorage, pendingMigrations, type ModuleMigration, type Storage } from './storage/index.ts';

/** Every module's migrations, in the order their names sort. */
export const MIGRATIONS: readonly ModuleMigration[] = [
  ...CRYPTO_MIGRATIONS,
  ...AUDIT_MIGRATIONS,
  ...ACCESS_MIGRATIONS,
  ...TAXONOMY_MIGRATIONS,
].sort((a, b) => a.name.localeCompare(b.name));

/** The privacy kernel, wired once and shared by the HTTP server, the CLI and jobs. */
export interface Kernel {
  readonly config: Config;
  readonly logger: Logger;
  readonly storage: Storage;
  readonly audit: AuditLog;
  readonly keyring: Keyring;
  readonly access: AccessControl;
  readonly taxonomy: Taxonomy;
  /** Whether this start generated the master key file. */
  readonly keyFileGenerated: boolean;
  /** Migrations applied by this start. */
  readonly migrationsApplied: readonly string[];
  close(): Promise<void>;
}

export interface KernelOptions {
  /** Apply pending migrations (the server and CLI do); otherwise refuse to run on an old schema. */
  migrate?: boolean;
  logger?: Logger;
}

/** Opens storage, applies migrations, loads the keyring and wires every module. */
export async function openKernel(config: Config, options: KernelOptions = {}): Promise<Kernel> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, sqliteSynchronous: config.sqliteSynchronous });
  try {
    let migrationsApplied: string[] = [];
    if (options.migrate ?? true) {
      migrationsApplied = await migrateToLatest(storage, MIGRATIONS);
    } else {
      const pending = await pendingMigrations(storage, MIGRATIONS);
      if (pending.length > 0) throw new CandorError('STORAGE_NOT_MIGRATED', { pending });
    }
    const audit = new AuditLog(storage);
    const { keyring, generated } = await Keyring.open(storage, audit, {
      keyFile: config.keyFile,
      allowGenerate: config.env !== 'production',
    });
    const access = new AccessControl(storage, audit);
    const taxonomy = await Taxonomy.open(storage, audit);
    return {
      config,
      logger,
      storage,
      audit,
      keyring,
      access,
      taxonomy,
      keyFileGenerated: generated,
      migrationsApplied,
      close: () => storage.close(),
    };
  } catch (error) {
    await storage.close();
    throw error;
  }
}
