// A storage opened on a test environment's database for one piece of work, then closed.
import { openStorage, type Storage } from '../../src/storage/index.ts';
import type { TestEnvironment } from './databases.ts';

/** Opens the environment's storage (writer thread off), runs `work` with it and closes it. */
export async function withStorage<T>(env: TestEnvironment, work: (storage: Storage) => Promise<T>): Promise<T> {
  const storage = await openStorage({ dataDir: env.dataDir, databaseUrl: env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
  try {
    return await work(storage);
  } finally {
    await storage.close();
  }
}
