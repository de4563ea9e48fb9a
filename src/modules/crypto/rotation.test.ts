import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { CryptoRepo } from './crypto.repo.ts';

const versionsInFile = (path: string) => (JSON.parse(readFileSync(path, 'utf8')) as { masterKeys: { version: number }[] }).masterKeys.map((k) => k.version);

describeEachDialect('keyring rotation with a damaged data key, and pruning', (dialect) => {
  const ctx = useKernel(dialect);
  let damagedKeyId = '';
  const texts = new Map<string, string>();

  it('re-wraps every other data key when one cannot be unwrapped, reports it by key id, and later starts still open', async () => {
    const { keyring, storage } = ctx.kernel;
    // More than one page of 500, the damaged key in the first: a failure must not cost the rest of its page.
    const subjects = Array.from({ length: 520 }, (_, i) => `rot-${String(i).padStart(3, '0')}`);
    await keyring.prepare(subjects);
    for (const id of subjects) texts.set(id, keyring.encryptPrepared(id, `value of ${id}`, 'f'));
    const row = (await sql<{ key_id: string; wrapped_key: string }>`SELECT key_id, wrapped_key FROM crypto_subject_keys WHERE subject_id = 'rot-007'`.execute(storage.db)).rows[0];
    assert.ok(row);
    damagedKeyId = row.key_id;
    const bytes = Buffer.from(row.wrapped_key, 'base64');
    bytes[20] = (bytes[20] as number) ^ 1;
    await sql`UPDATE crypto_subject_keys SET wrapped_key = ${bytes.toString('base64')} WHERE subject_id = 'rot-007'`.execute(storage.db);

    const rotated = await keyring.rotateMasterKey(CLI_ACTOR);
    assert.equal(rotated.version, 2);
    assert.deepEqual(rotated.skipped, [{ keyId: damagedKeyId, masterVersion: 1 }]);
    const counts = await keyring.dataKeysByMasterVersion();
    assert.equal(counts[1], 1, 'the damaged key stays on its version');
    assert.equal(counts[2], rotated.rewrapped);
    assert.ok(rotated.rewrapped >= 519);
    const entries = await ctx.kernel.audit.list({ action: 'crypto.master_key.rotate', limit: 5 });
    assert.deepEqual(entries.map((e) => JSON.parse(e.details ?? '{}').phase), ['started', 'finished']);
    const details = JSON.parse(entries[1]?.details ?? '{}') as { skipped?: number; skippedKeyIds?: string[] };
    assert.equal(details.skipped, 1);
    assert.deepEqual(details.skippedKeyIds, [damagedKeyId]);

    // A later start (every command, the server) re-tries the key, leaves it where it is and opens.
    const warnings: unknown[] = [];
    const logger = Object.assign(Object.create(ctx.kernel.logger) as typeof ctx.kernel.logger, {
      warn: (fields: unknown, message?: string) => {
        if (message?.includes('cannot be unwrapped')) warnings.push(fields);
      },
    });
    const second = await openKernel(ctx.env.config, { logger });
    try {
      assert.equal(await second.keyring.decrypt(texts.get('rot-519') as string, 'f'), 'value of rot-519');
      assert.equal(await second.keyring.decrypt(texts.get('rot-006') as string, 'f'), 'value of rot-006');
      await assert.rejects(second.keyring.decrypt(texts.get('rot-007') as string, 'f'), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
    } finally {
      await second.close();
    }
    assert.deepEqual(warnings, [{ skipped: 1, keyIds: [damagedKeyId] }]);
  });

  it('refuses to prune a version a data key still uses, as a whole, and prunes an unused one named alone', async () => {
    const { keyring } = ctx.kernel;
    const keyFile = ctx.env.config.keyFile;
    assert.equal((await keyring.rotateMasterKey(CLI_ACTOR)).version, 3);
    assert.deepEqual(versionsInFile(keyFile), [1, 2, 3]);
    // Version 1 still wraps the damaged key: nothing is removed, version 2 neither.
    await assert.rejects(keyring.pruneMasterKeys(CLI_ACTOR), (e) => isCandorError(e, 'CRYPTO_MASTER_KEY_IN_USE') && JSON.stringify(e.details) === JSON.stringify({ versions: [{ version: 1, dataKeys: 1 }] }));
    await assert.rejects(keyring.pruneMasterKeys(CLI_ACTOR, { version: 1 }), (e) => isCandorError(e, 'CRYPTO_MASTER_KEY_IN_USE'));
    await assert.rejects(keyring.pruneMasterKeys(CLI_ACTOR, { version: 3 }), (e) => isCandorError(e, 'CRYPTO_MASTER_KEY_IN_USE'), 'the active version');
    await assert.rejects(keyring.pruneMasterKeys(CLI_ACTOR, { version: 9 }), (e) => isCandorError(e, 'CRYPTO_MASTER_KEY_UNKNOWN'));
    assert.deepEqual(versionsInFile(keyFile), [1, 2, 3]);
    assert.equal((await ctx.kernel.audit.list({ action: 'crypto.master_key.prune', limit: 5 })).length, 0);

    assert.deepEqual(await keyring.pruneMasterKeys(CLI_ACTOR, { version: 2 }), { removed: [2], active: 3 });
    assert.deepEqual(versionsInFile(keyFile), [1, 3]);
    const registered = (await sql<{ version: number }>`SELECT version FROM crypto_master_keys WHERE purpose = 'wrap' ORDER BY version`.execute(ctx.kernel.storage.db)).rows.map((r) => Number(r.version));
    assert.deepEqual(registered, [1, 3]);
    const [entry] = await ctx.kernel.audit.list({ action: 'crypto.master_key.prune', limit: 1 });
    assert.equal(entry?.actor, 'cli');
    assert.equal(entry?.resource, 'master_key:2');
    assert.deepEqual(JSON.parse(entry?.details ?? '{}'), { versions: ['2'], active: 3, reason: 'pruned' });

    // The database and the pruned key file still open together, and every other value reads.
    const second = await openKernel(ctx.env.config);
    try {
      assert.equal(await second.keyring.decrypt(texts.get('rot-300') as string, 'f'), 'value of rot-300');
    } finally {
      await second.close();
    }
  });

  it('prunes every retired version once no data key uses one', async () => {
    const { keyring, storage } = ctx.kernel;
    // The damaged key's person is erased: the key goes, and with it the last use of version 1.
    assert.equal(await keyring.destroySubjectKey('rot-007', CLI_ACTOR, 'essential.legal_obligation'), true);
    assert.equal((await keyring.rotateMasterKey(CLI_ACTOR)).skipped.length, 0);
    assert.deepEqual(await keyring.pruneMasterKeys(CLI_ACTOR), { removed: [1, 3], active: 4 });
    assert.deepEqual(versionsInFile(ctx.env.config.keyFile), [4]);
    const registered = (await sql<{ version: number }>`SELECT version FROM crypto_master_keys WHERE purpose = 'wrap'`.execute(storage.db)).rows.map((r) => Number(r.version));
    assert.deepEqual(registered, [4]);
    assert.deepEqual(await keyring.pruneMasterKeys(CLI_ACTOR), { removed: [], active: 4 });
    assert.equal(await keyring.decrypt(texts.get('rot-519') as string, 'f'), 'value of rot-519');
  });

  it('stores no new data key under a version a rotation retired, even from a process that has not seen the rotation', async () => {
    const { keyring, storage } = ctx.kernel;
    const repo = new CryptoRepo(storage);
    const row = (subject: string, version: number) => ({ subject_id: subject, key_id: `k-${subject}`, key_version: 1, master_version: version, wrapped_key: 'AA==', created_at: new Date().toISOString() });
    // Version 4 is active; a fifth made by a rotation elsewhere retires it.
    await keyring.rotateMasterKey(CLI_ACTOR);
    const keysOf = async (subject: string) => (await sql<{ master_version: number }>`SELECT master_version FROM crypto_subject_keys WHERE subject_id = ${subject}`.execute(storage.db)).rows;
    assert.equal(await repo.insertSubjectKeys([row('late-old', 4)], 4), undefined, 'a key wrapped with the retired version is refused');
    assert.deepEqual(await keysOf('late-old'), [], 'and nothing of it is stored');
    assert.deepEqual(await repo.insertSubjectKeys([row('late-new', 5)], 5), new Set(['late-new']));
    await sql`DELETE FROM crypto_subject_keys WHERE subject_id = 'late-new'`.execute(storage.db);
    // The keyring wraps a new person's key with the version in force, and reads it.
    const text = await keyring.encrypt('late-person', 'late value', 'f');
    assert.deepEqual((await keysOf('late-person')).map((r) => Number(r.master_version)), [5]);
    assert.equal(await keyring.decrypt(text, 'f'), 'late value');
  });
});
