import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CryptoRepo } from './crypto.repo.ts';
import { keyCheckValue } from './envelope.ts';
import { newKey, readKeyFile, writeKeyFile } from './key-file.ts';

// A rotation cut short after it wrote the new key (key file written, version registered, older ones not yet retired)
// is finished by the next start as a rotation would: the older versions retired, then every data key re-wrapped; no new
// key is then stored under an older version, which a prune could remove.
describeEachDialect('a rotation cut short', (dialect) => {
  const ctx = useKernel(dialect);

  it('is finished at the next start with the older version retired, so no key is stored under it afterwards', async () => {
    const { keyring, storage } = ctx.kernel;
    const text = await keyring.encrypt('cut-short', 'kept value', 'f');
    const path = ctx.env.config.keyFile;
    const current = readKeyFile(path);
    const next = newKey(Math.max(...current.masterKeys.map((k) => k.version)) + 1);
    writeKeyFile(path, { ...current, masterKeys: [...current.masterKeys, next] });
    await new CryptoRepo(storage).registerKey('wrap', next.version, keyCheckValue(next.key));

    const restarted = await openKernel(ctx.env.config);
    try {
      const rows = (await sql<{ version: number; retired_at: string | null }>`SELECT version, retired_at FROM crypto_master_keys WHERE purpose = 'wrap' ORDER BY version`.execute(storage.db)).rows;
      assert.deepEqual(rows.map((r) => [Number(r.version), r.retired_at !== null]), [...current.masterKeys.map((k) => [k.version, true]), [next.version, false]]);
      assert.deepEqual(Object.keys(await restarted.keyring.dataKeysByMasterVersion()), [String(next.version)], 'every data key re-wrapped');
      const late = { subject_id: 'late', key_id: 'k-late', key_version: 1, master_version: 1, wrapped_key: 'AA==', created_at: new Date().toISOString() };
      assert.equal(await new CryptoRepo(storage).insertSubjectKeys([late], 1), undefined, 'refused under the older version');
      assert.equal(await restarted.keyring.decrypt(text, 'f'), 'kept value');
    } finally {
      await restarted.close();
    }
  });
});
