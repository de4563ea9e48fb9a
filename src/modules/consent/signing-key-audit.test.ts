import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { MIGRATIONS } from '../../kernel.ts';
import { migrateToLatest, openStorage } from '../../storage/index.ts';
import { AuditLog } from '../audit/index.ts';
import { Keyring } from '../crypto/index.ts';
import { Taxonomy } from '../taxonomy/index.ts';
import { Consent } from './index.ts';

describeEachDialect('consent: the receipt signing key is audited when it is made', (dialect) => {
  it('stores no signing key whose audit entry cannot be written; the key made next has exactly one entry', async () => {
    const env = await createEnvironment(dialect);
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      await migrateToLatest(storage, MIGRATIONS);
      const audit = new AuditLog(storage);
      const { keyring } = await Keyring.open(storage, audit, { keyFile: env.config.keyFile, allowGenerate: true });
      const taxonomy = await Taxonomy.open(storage, audit);
      const open = () => Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13 });
      const keys = async () => storage.raw.all<{ kid: string }>('select kid from consent_signing_keys');
      const entries = () => audit.list({ action: 'crypto.signing_key.create', limit: 100 });

      await failsWhileAuditFails(audit, open, 'crypto.signing_key.create');
      assert.deepEqual(await keys(), [], 'no key stored');
      assert.deepEqual(await entries(), []);

      const consent = await open();
      const [key, ...moreKeys] = await keys();
      assert.equal(moreKeys.length, 0);
      assert.equal((await consent.jwks()).keys[0]?.kid, key?.kid);
      const [entry, ...more] = await entries();
      assert.equal(more.length, 0);
      assert.deepEqual([entry?.actor, entry?.resource, entry?.purpose], ['system', `signing_key:${key?.kid}`, 'essential.service.security']);

      await open();
      assert.equal((await keys()).length, 1, 'a later open uses the stored key');
      assert.equal((await entries()).length, 1);
      assert.equal((await audit.verify()).ok, true);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });
});
