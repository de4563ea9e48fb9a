import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, before, it } from 'node:test';
import { DatabaseSync } from 'node:sqlite';
import { promisify } from 'node:util';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { MIGRATIONS, openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { readKeyFile, unwrapDataKey } from '../crypto/index.ts';
import { backupDatabase, restoreDatabase } from './index.ts';

interface KeyRow {
  subject_id: string;
  key_id: string;
  key_version: number;
  master_version: number;
  wrapped_key: string;
}

async function seed(kernel: Kernel, userId: string): Promise<string> {
  const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  const profileId = r?.profileId as string;
  await kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  const results = await kernel.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-id`, traits: { email: `${userId}@example.com` } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
  assert.equal(results[0]?.status, 'stored');
  return profileId;
}

/** A subject's wrapped data key as a backup file holds it (SQLite: the file; PostgreSQL: the archive's table data). */
async function keyRowInBackup(dialect: string, file: string, subjectId: string): Promise<KeyRow | undefined> {
  if (dialect === 'sqlite') {
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      return db.prepare('SELECT subject_id, key_id, key_version, master_version, wrapped_key FROM crypto_subject_keys WHERE subject_id = ?').get(subjectId) as KeyRow | undefined;
    } finally {
      db.close();
    }
  }
  const { stdout } = await promisify(execFile)('pg_restore', ['--data-only', '--table=crypto_subject_keys', '--file=-', file], { maxBuffer: 64 << 20 });
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => /^COPY \S*crypto_subject_keys \(/.test(l));
  const columns = (/\(([^)]*)\)/.exec(lines[header] as string)?.[1] as string).split(', ');
  for (const line of lines.slice(header + 1)) {
    if (line === '\\.') break;
    const values = Object.fromEntries(line.split('\t').map((v, i) => [columns[i], v]));
    if (values.subject_id === subjectId) return { ...values, key_version: Number(values.key_version), master_version: Number(values.master_version) } as KeyRow;
  }
  return undefined;
}

describeEachDialect('restore checks the key file; erasures made final in copies by rotate and prune', (dialect) => {
  let env: TestEnvironment;
  let other: TestEnvironment;
  let erased = '';
  let keptText = '';
  const backups = { beforeErasure: '', afterRotation: '', otherDeployment: '' };

  before(async () => {
    env = await createEnvironment(dialect);
    const name = (label: string) => join(env.dataDir, '..', `${basename(env.dataDir)}.${label}.backup`);
    backups.beforeErasure = name('before-erasure');
    backups.afterRotation = name('after-rotation');
    const kernel = await openKernel(env.config);
    try {
      await seed(kernel, 'kept-user');
      erased = await seed(kernel, 'erased-user');
      keptText = await kernel.keyring.encrypt('kept-subject', 'still readable', 'f');
    } finally {
      await kernel.close();
    }
    await backupDatabase(env.config, backups.beforeErasure, CLI_ACTOR);
    // Another deployment: its own database, its own key file.
    other = await createEnvironment(dialect);
    const second = await openKernel(other.config);
    try {
      await seed(second, 'other-user');
    } finally {
      await second.close();
    }
    backups.otherDeployment = join(other.dataDir, '..', `${basename(other.dataDir)}.backup`);
    await backupDatabase(other.config, backups.otherDeployment, CLI_ACTOR);
  });
  after(async () => {
    await env?.cleanup();
    await other?.cleanup();
  });

  it("refuses a backup the key file cannot open with the start's code, and leaves the live database as it was", { timeout: 60_000 }, async () => {
    await assert.rejects(restoreDatabase(env.config, backups.otherDeployment, CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'CRYPTO_KEYFILE_TAMPERED') && e.details?.backup === basename(backups.otherDeployment));
    const kernel = await openKernel(env.config);
    try {
      assert.equal(await kernel.keyring.decrypt(keptText, 'f'), 'still readable');
      assert.ok(await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'kept-user' } }));
      assert.ok(!(await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'other-user' } })));
      assert.equal((await kernel.audit.list({ action: 'retention.restore', limit: 5 })).length, 0);
    } finally {
      await kernel.close();
    }
  });

  it("after an erasure, a rotation and a prune, the key file no longer unwraps the erased person's key in the earlier backup, and restore refuses it", { timeout: 60_000 }, async () => {
    const kernel = await openKernel(env.config);
    try {
      const subject = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'erased-user' } });
      assert.ok(subject);
      const certificate = await kernel.erasure.erase(subject, { requestId: 'req-keys-1' }, CLI_ACTOR);
      const line = certificate.stores.find((s) => s.store === 'crypto_subject_keys');
      assert.equal(line?.deleted, 1);
      assert.doesNotMatch(line?.detail ?? '', /backups included, is unreadable/);
      assert.match(line?.detail ?? '', /stay readable with the key file until/);
      assert.match(line?.detail ?? '', /keys prune/);
    } finally {
      await kernel.close();
    }
    const row = await keyRowInBackup(dialect, backups.beforeErasure, erased);
    assert.ok(row, 'the backup holds the wrapped data key');
    assert.equal(row.master_version, 1);
    // Until the version is pruned the live key file opens the erased person's key in the backup.
    const v1 = readKeyFile(env.config.keyFile).masterKeys.find((k) => k.version === 1);
    assert.equal(unwrapDataKey(v1?.key as Buffer, row).length, 32);

    const rotating = await openKernel(env.config);
    try {
      assert.equal((await rotating.keyring.rotateMasterKey(CLI_ACTOR)).version, 2);
    } finally {
      await rotating.close();
    }
    await backupDatabase(env.config, backups.afterRotation, CLI_ACTOR);
    const pruning = await openKernel(env.config);
    try {
      assert.deepEqual(await pruning.keyring.pruneMasterKeys(CLI_ACTOR), { removed: [1], active: 2 });
    } finally {
      await pruning.close();
    }

    const keys = readKeyFile(env.config.keyFile);
    assert.deepEqual(keys.masterKeys.map((k) => k.version), [2]);
    for (const k of keys.masterKeys) assert.throws(() => unwrapDataKey(k.key, row), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
    assert.throws(() => unwrapDataKey(keys.masterKeys[0]?.key as Buffer, { ...row, master_version: 2 }), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));

    // The backup from before the rotation is refused whole; the live database stays.
    await assert.rejects(restoreDatabase(env.config, backups.beforeErasure, CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'CRYPTO_MASTER_KEY_MISSING') && e.details?.version === 1 && e.details?.backup === basename(backups.beforeErasure));
    const after = await openKernel(env.config);
    try {
      assert.equal(await after.keyring.decrypt(keptText, 'f'), 'still readable');
      assert.equal((await after.audit.list({ action: 'retention.restore', limit: 5 })).length, 0);
    } finally {
      await after.close();
    }
  });

  it('restores a backup taken after the rotation, before the prune: its registration of the pruned version is dropped and audited', { timeout: 60_000 }, async () => {
    await restoreDatabase(env.config, backups.afterRotation, CLI_ACTOR, MIGRATIONS);
    const kernel = await openKernel(env.config);
    try {
      assert.equal(await kernel.keyring.decrypt(keptText, 'f'), 'still readable');
      assert.equal(await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'kept-user' } }).then((s) => s !== null), true);
      const [entry] = await kernel.audit.list({ action: 'crypto.master_key.prune', limit: 1 });
      assert.equal(entry?.actor, 'system');
      assert.deepEqual(JSON.parse(entry?.details ?? '{}'), { versions: ['1'], active: 2, reason: 'not in the key file and used by no data key' });
    } finally {
      await kernel.close();
    }
    // Checked again: the next start finds nothing left to drop.
    const again = await openKernel(env.config);
    try {
      assert.equal((await again.audit.list({ action: 'crypto.master_key.prune', limit: 5 })).length, 1);
      assert.deepEqual(JSON.parse(readFileSync(env.config.keyFile, 'utf8')).masterKeys.map((k: { version: number }) => k.version), [2]);
    } finally {
      await again.close();
    }
  });
});
