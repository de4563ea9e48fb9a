import assert from 'node:assert/strict';
import type { Kernel } from '../../src/kernel.ts';
import { refreshConfiguration } from '../../src/modules/catalog/index.ts';
import { openStorage } from '../../src/storage/index.ts';
import type { TestEnvironment } from './databases.ts';

/**
 * Stores a custom data category as a release before TAXONOMY_PARENT_MISMATCH could (its key under another entry than
 * its parent, flags of its own), from another connection as another process would, and waits until the kernel has read
 * it, as a running server does.
 */
export async function storeLegacyCategory(kernel: Kernel, env: TestEnvironment, key: string, parentKey: string | null): Promise<void> {
  const attributes = JSON.stringify({ specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false });
  const row = { kind: 'data-categories', key, name: key, description: 'A legacy entry.', parent_key: parentKey, attributes, created_at: new Date().toISOString(), created_by: 'cli' };
  const storage = await openStorage({ dataDir: env.dataDir, databaseUrl: env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
  try {
    await storage.db.withTables<{ taxonomy_custom_entries: typeof row }>().insertInto('taxonomy_custom_entries').values(row).execute();
  } finally {
    await storage.close();
  }
  const deadline = Date.now() + 5000;
  while (!kernel.taxonomy.dataCategory(key) && Date.now() < deadline) {
    await refreshConfiguration(kernel);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(kernel.taxonomy.dataCategory(key), `${key} read`);
}
