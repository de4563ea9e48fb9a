import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEnvironment } from '../../../test/support/databases.ts';
import { MIGRATIONS } from '../../kernel.ts';
import { migrateToLatest, openStorage } from '../../storage/index.ts';
import { AuditLog } from '../audit/index.ts';
import { Keyring } from './index.ts';

describe('the keyring\'s data-key cache at its limit', () => {
  it('keeps every key prepare() was asked for, also when the same call makes room for new ones', async () => {
    const env = await createEnvironment('sqlite');
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      await migrateToLatest(storage, MIGRATIONS);
      const { keyring } = await Keyring.open(storage, new AuditLog(storage), { keyFile: env.config.keyFile, allowGenerate: true, cacheLimit: 64 });
      await keyring.prepare(Array.from({ length: 64 }, (_, i) => `old-${i}`));
      // The oldest key in the cache, asked for again with a new person: room is made for the new key (the oldest eighth
      // goes), and the key asked for must not be among what goes.
      for (let i = 0; i < 200; i++) {
        const asked = `old-${i % 64}`;
        await keyring.prepare([asked, `new-${i}`]);
        assert.equal(keyring.holds(asked), true, `${asked} after prepare #${i}`);
        assert.ok(keyring.encryptPrepared(asked, 'x', 'test.field'));
        assert.ok(keyring.encryptPrepared(`new-${i}`, 'x', 'test.field'));
      }
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });
});
