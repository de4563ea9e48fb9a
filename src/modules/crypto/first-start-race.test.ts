import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { MIGRATIONS, openKernel } from '../../kernel.ts';
import { isCandorError } from '../../shared/errors.ts';
import { migrateToLatest, openStorage, type Storage } from '../../storage/index.ts';
import { AuditLog } from '../audit/index.ts';
import { createKeyFile, Keyring } from './index.ts';

// Several servers (or `candor migrate` runs) may start at once on one new database (README: several servers share a
// PostgreSQL database): each found no master key registered and inserted the key file's registrations, and all but
// one failed on the duplicate key (INTERNAL_ERROR, exit 1).
describeEachDialect('keyring: first starts at once on a new database', (dialect) => {
  let env: TestEnvironment;
  const storages: Storage[] = [];
  const openStorages = async (n: number) => {
    const opened = await Promise.all(Array.from({ length: n }, () => openStorage({ dataDir: env.dataDir, databaseUrl: env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' })));
    storages.push(...opened);
    return opened;
  };
  const registrations = async (storage: Storage) => storage.raw.all<{ purpose: string; version: number; check_value: string }>('SELECT purpose, version, check_value FROM crypto_master_keys ORDER BY purpose, version');
  /** The database as new for the keyring: no registration, no data key. */
  const forgetKeys = async (storage: Storage) => {
    await storage.raw.run('DELETE FROM crypto_master_keys');
    await storage.raw.run('DELETE FROM crypto_subject_keys');
  };

  before(async () => {
    env = await createEnvironment(dialect);
    const [first] = await openStorages(1);
    await migrateToLatest(first as Storage, MIGRATIONS);
  });
  after(async () => {
    for (const storage of storages) await storage.close();
    await env?.cleanup();
  });

  it('opens three keyrings at once with the same key file: all start, the key file is registered once', async () => {
    const keyFile = join(env.dataDir, 'shared.key');
    createKeyFile(keyFile);
    const opened = await openStorages(3);
    // Several rounds: the race is between one round's reads and inserts.
    for (let round = 0; round < 5; round++) {
      await forgetKeys(opened[0] as Storage);
      const results = await Promise.allSettled(opened.map((storage) => Keyring.open(storage, new AuditLog(storage), { keyFile, allowGenerate: false })));
      assert.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String(r.reason)), [], `round ${round}`);
      const keyrings = results.map((r) => (r as PromiseFulfilledResult<{ keyring: Keyring }>).value.keyring);
      const rows = await registrations(opened[0] as Storage);
      assert.deepEqual(rows.map((r) => `${r.purpose}:${r.version}`), ['pseudonym:1', 'wrap:1']);
      // What one encrypts the others read.
      const ciphertext = await (keyrings[0] as Keyring).encrypt(`subject-${round}`, 'value', 'f');
      for (const keyring of keyrings) assert.equal(await keyring.decrypt(ciphertext, 'f'), 'value');
    }
  });

  it('refuses a key file that does not match the keys another start registered at the same time (CRYPTO_KEYFILE_TAMPERED), never a mix of both', async () => {
    const files = [join(env.dataDir, 'one.key'), join(env.dataDir, 'two.key')];
    for (const file of files) createKeyFile(file);
    const opened = await openStorages(2);
    for (let round = 0; round < 5; round++) {
      await forgetKeys(opened[0] as Storage);
      const results = await Promise.allSettled(opened.map((storage, i) => Keyring.open(storage, new AuditLog(storage), { keyFile: files[i] as string, allowGenerate: false })));
      const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown);
      assert.equal(refused.length, 1, `round ${round}: one start is refused (${refused.map(String).join('; ')})`);
      assert.ok(isCandorError(refused[0], 'CRYPTO_KEYFILE_TAMPERED'), String(refused[0]));
      // The registrations are all of the one that started: it reopens, the other is still refused.
      const winner = results.findIndex((r) => r.status === 'fulfilled');
      await Keyring.open(opened[0] as Storage, new AuditLog(opened[0] as Storage), { keyFile: files[winner] as string, allowGenerate: false });
      await assert.rejects(Keyring.open(opened[0] as Storage, new AuditLog(opened[0] as Storage), { keyFile: files[1 - winner] as string, allowGenerate: false }), (e) => isCandorError(e, 'CRYPTO_KEYFILE_TAMPERED'));
    }
  });

  it('starts two kernels at once on a new database: both open', async () => {
    const fresh = await createEnvironment(dialect);
    try {
      createKeyFile(fresh.config.keyFile);
      const results = await Promise.allSettled([openKernel(fresh.config), openKernel(fresh.config)]);
      for (const r of results) if (r.status === 'fulfilled') await r.value.close();
      assert.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String(r.reason)), []);
    } finally {
      await fresh.cleanup();
    }
  });
});
