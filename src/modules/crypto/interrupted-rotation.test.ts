import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CryptoRepo } from './crypto.repo.ts';
import { keyCheckValue } from './envelope.ts';
import { newKey, readKeyFile, writeKeyFile } from './key-file.ts';

/** The kernel's `crypto.master_key.rotate` entries: actor, resource and details. */
async function rotateEntries(kernel: Kernel): Promise<{ actor: string; resource: string | null; details: Record<string, unknown> }[]> {
  const entries = await kernel.audit.list({ action: 'crypto.master_key.rotate', limit: 100 });
  return entries.map((e) => ({ actor: e.actor, resource: e.resource, details: JSON.parse(e.details ?? '{}') as Record<string, unknown> }));
}

const total = (counts: Record<number, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

// A rotation cut short after it wrote the new key (key file written, version registered, older ones not yet retired)
// is finished by the next start as a rotation would: the older versions retired, then every data key re-wrapped; no new
// key is then stored under an older version, which a prune could remove. The completion is audited as the rotation's end.
describeEachDialect('a rotation cut short', (dialect) => {
  const ctx = useKernel(dialect);

  it('is finished at the next start with the older version retired, so no key is stored under it afterwards', async () => {
    const { keyring, storage } = ctx.kernel;
    const text = await keyring.encrypt('cut-short', 'kept value', 'f');
    const dataKeys = await keyring.dataKeysByMasterVersion();
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
      assert.deepEqual(await rotateEntries(restarted), [{ actor: 'system', resource: `master_key:${next.version}`, details: { phase: 'finished', version: next.version, rewrapped: total(dataKeys), resumed: true } }]);
    } finally {
      await restarted.close();
    }
  });

  it('is finished and audited by the next start when cut short before the new version was registered', async () => {
    const { keyring } = ctx.kernel;
    await keyring.prepare(['before-register-1', 'before-register-2']);
    const dataKeys = await keyring.dataKeysByMasterVersion();
    const path = ctx.env.config.keyFile;
    const current = readKeyFile(path);
    const next = newKey(Math.max(...current.masterKeys.map((k) => k.version)) + 1);
    // Killed the moment the key file was replaced: nothing of the rotation is in the database yet.
    writeKeyFile(path, { ...current, masterKeys: [...current.masterKeys, next] });

    const restarted = await openKernel(ctx.env.config);
    try {
      assert.deepEqual(Object.keys(await restarted.keyring.dataKeysByMasterVersion()), [String(next.version)]);
      const [, resumed] = await rotateEntries(restarted);
      assert.deepEqual(resumed, { actor: 'system', resource: `master_key:${next.version}`, details: { phase: 'finished', version: next.version, rewrapped: total(dataKeys), resumed: true } });
      // A later start finds nothing left to do and audits nothing more.
      const again = await openKernel(ctx.env.config);
      await again.close();
      assert.equal((await rotateEntries(restarted)).length, 2);
    } finally {
      await restarted.close();
    }
  });
});

describeEachDialect('a rotation in the audit log', (dialect) => {
  const ctx = useKernel(dialect);

  it('records who started it, and which version, before the key file changes, and its end after the re-wrap', async () => {
    const { keyring, audit } = ctx.kernel;
    await keyring.prepare(['someone']);
    const dataKeys = await keyring.dataKeysByMasterVersion();
    const keyFile = ctx.env.config.keyFile;
    // What the key file held as each entry was written: a rotation cut short after its first write leaves an entry.
    const seen: unknown[] = [];
    const append = audit.append.bind(audit);
    audit.append = (event) => {
      seen.push([event.details?.phase, readKeyFile(keyFile).masterKeys.map((k) => k.version)]);
      return append(event);
    };
    try {
      assert.equal((await keyring.rotateMasterKey(CLI_ACTOR)).version, 2);
    } finally {
      audit.append = append;
    }
    assert.deepEqual(seen, [
      ['started', [1]],
      ['finished', [1, 2]],
    ]);
    const [started, finished] = await rotateEntries(ctx.kernel);
    assert.deepEqual(started, { actor: 'cli', resource: 'master_key:2', details: { phase: 'started', version: 2 } });
    assert.equal(finished?.actor, 'cli');
    assert.equal(finished?.details.rewrapped, total(dataKeys));
  });
});
