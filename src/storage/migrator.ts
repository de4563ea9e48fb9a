import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { CandorError } from '../shared/errors.ts';
import { redact } from '../shared/logger.ts';
import { isRetryableStorageError, type DialectName, type Storage } from './storage.ts';

/**
 * A forward-only schema change owned by one module. Names sort in the order they apply; one added later with a name
 * that sorts before migrations a database already has is applied after them, so it must not need a later-named one.
 */
export interface ModuleMigration {
  readonly name: string;
  // Schema changes address tables that the typed schema does not know yet.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  up(db: Kysely<any>, dialect: DialectName): Promise<void>;
}

class ListProvider implements MigrationProvider {
  readonly #migrations: readonly ModuleMigration[];
  readonly #dialect: DialectName;
  constructor(migrations: readonly ModuleMigration[], dialect: DialectName) {
    this.#migrations = migrations;
    this.#dialect = dialect;
  }
  async getMigrations(): Promise<Record<string, Migration>> {
    const out: Record<string, Migration> = {};
    for (const m of this.#migrations) {
      if (out[m.name]) throw new Error(`duplicate migration name ${m.name}`);
      out[m.name] = { up: (db) => m.up(db, this.#dialect) };
    }
    return out;
  }
}

function migrator(db: Kysely<object>, dialect: DialectName, migrations: readonly ModuleMigration[]): Migrator {
  return new Migrator({
    db,
    provider: new ListProvider(migrations, dialect),
    migrationTableName: 'storage_migrations',
    migrationLockTableName: 'storage_migration_lock',
    // Some migrations were added with numbers below ones already released: a database that has the later ones gets
    // the missing earlier ones, in name order, instead of being refused.
    allowUnorderedMigrations: true,
  });
}

/** Names of the migrations the database records as applied (none before its first migration). */
async function executedMigrations(storage: Storage): Promise<string[]> {
  const present =
    storage.dialect === 'postgres'
      ? (await sql<{ present: boolean }>`SELECT to_regclass('storage_migrations') IS NOT NULL AS present`.execute(storage.db)).rows[0]?.present === true
      : (await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'storage_migrations'`.execute(storage.db)).rows.length > 0;
  if (!present) return [];
  return (await sql<{ name: string }>`SELECT name FROM storage_migrations ORDER BY name`.execute(storage.db)).rows.map((r) => r.name);
}

/** Of the names of applied migrations, those not in `migrations`. */
function notIn(migrations: readonly ModuleMigration[], executed: readonly string[]): string[] {
  const known = new Set(migrations.map((m) => m.name));
  return executed.filter((name) => !known.has(name));
}

/** Names of the migrations the database records that are not in `migrations` (a newer release applied them). */
export async function unknownMigrations(storage: Storage, migrations: readonly ModuleMigration[]): Promise<string[]> {
  return notIn(migrations, await executedMigrations(storage));
}

/**
 * Refuses a database written by a newer release (it records migrations this code does not know) with
 * STORAGE_NEWER_THAN_CODE, naming them, before anything is changed. Returns the names of the migrations it records.
 */
async function refuseNewerDatabase(storage: Storage, migrations: readonly ModuleMigration[]): Promise<string[]> {
  const executed = await executedMigrations(storage);
  const unknown = notIn(migrations, executed);
  if (unknown.length > 0) throw new CandorError('STORAGE_NEWER_THAN_CODE', { unknownMigrations: unknown });
  return executed;
}

/** Names of the migrations not yet applied. */
export async function pendingMigrations(storage: Storage, migrations: readonly ModuleMigration[]): Promise<string[]> {
  await refuseNewerDatabase(storage, migrations);
  const infos = await migrator(storage.db, storage.dialect, migrations).getMigrations();
  return infos.filter((info) => info.executedAt === undefined).map((info) => info.name);
}

/**
 * Applies every pending migration in one transaction: either all apply or the database is left as it was. A database
 * written by a newer release is refused first (STORAGE_NEWER_THAN_CODE). Pending migrations run on a connection that
 * PostgreSQL's timeouts do not bound (storage.withoutTimeouts): a migration may run longer than a request may. A
 * failure is STORAGE_MIGRATION_FAILED with the migration that failed (when one did) and the reason; one the storage
 * layer coded as retryable (STORAGE_FULL, STORAGE_BUSY) keeps its code, with the migration added to its details.
 */
export async function migrateToLatest(storage: Storage, migrations: readonly ModuleMigration[]): Promise<string[]> {
  const executed = new Set(await refuseNewerDatabase(storage, migrations));
  const migrate = async (db: Kysely<object>) => {
    const outcome = await migrator(db, storage.dialect, migrations).migrateToLatest();
    // Tables only appear through migrations: on PostgreSQL each gets its commit-notice trigger now.
    if (outcome.error === undefined) await storage.afterMigrations(db);
    return outcome;
  };
  // With nothing pending the migrator only reads (and creates its own tables once): no connection of its own for that.
  const { error, results } = migrations.some((m) => !executed.has(m.name)) ? await storage.withoutTimeouts(migrate) : await migrate(storage.db);
  if (error !== undefined) {
    // Without results the migrator failed before running any migration (its bookkeeping, the list of migrations).
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? null;
    // A coded, retryable storage failure (STORAGE_FULL: the disk is full; STORAGE_BUSY; STORAGE_UNAVAILABLE) keeps its code.
    if (isRetryableStorageError(error)) throw new CandorError(error.code, { ...error.details, migration: failed }, { cause: error });
    const reason = redact(error instanceof Error ? error.message : String(error));
    throw new CandorError('STORAGE_MIGRATION_FAILED', { migration: failed, reason }, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
