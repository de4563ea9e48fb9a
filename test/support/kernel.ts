import { after, before } from 'node:test';
import type { Kysely } from 'kysely';
import { MIGRATIONS, openKernel, type Kernel } from '../../src/kernel.ts';
import { migrateToLatest, openStorage, type DialectName } from '../../src/storage/index.ts';
import { createEnvironment, type TestEnvironment } from './databases.ts';

/**
 * A kernel on a fresh database of the dialect (`database`: as createEnvironment takes it), opened before the suite's
 * tests and closed after.
 */
export function useKernel(dialect: DialectName, database: { icuLocale?: string } = {}): { readonly kernel: Kernel; readonly env: TestEnvironment } {
  const holder = {} as { kernel: Kernel; env: TestEnvironment };
  before(async () => {
    holder.env = await createEnvironment(dialect, database);
    holder.kernel = await openKernel(holder.env.config);
  });
  after(async () => {
    await holder.kernel?.close();
    await holder.env?.cleanup();
  });
  return holder;
}

/**
 * A kernel opened on a database an older release left: migrated up to (not including) migration `beforeMigration`, with rows
 * written by `seed`; opening the kernel applies it and the later migrations. Closed after the suite.
 */
export function useUpgradedKernel(dialect: DialectName, beforeMigration: string, seed: (db: Kysely<object>) => Promise<void>): { readonly kernel: Kernel; readonly env: TestEnvironment } {
  const holder = {} as { kernel: Kernel; env: TestEnvironment };
  before(async () => {
    holder.env = await createEnvironment(dialect);
    const storage = await openStorage({ dataDir: holder.env.dataDir, databaseUrl: holder.env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      await migrateToLatest(storage, MIGRATIONS.filter((m) => m.name < beforeMigration));
      await seed(storage.db);
    } finally {
      await storage.close();
    }
    holder.kernel = await openKernel(holder.env.config);
  });
  after(async () => {
    await holder.kernel?.close();
    await holder.env?.cleanup();
  });
  return holder;
}
