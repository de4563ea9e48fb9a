import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { diskWithRoom, mountSmallDisk, type SmallDisk } from '../../../test/support/full-disk.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { newKey, readKeyFile, temporaryKeyFiles, writeKeyFile, type KeyFile } from './key-file.ts';


/** A key file past one 4 KB page, as a few dozen rotations make it. */
function bigKeyFile(versions: number): KeyFile {
  return { masterKeys: Array.from({ length: versions }, (_, i) => newKey(i + 1)), pseudonymKey: newKey(1) };
}

const versionsOf = (keys: KeyFile) => keys.masterKeys.map((k) => k.version);

describe('writing the key file on a nearly full disk', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'candor-keyfile-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('goes on after short writes until the whole file is written', () => {
    const path = join(dir, 'short.key');
    const keys = bigKeyFile(40);
    // At most 1000 bytes a call, as write(2) may answer: every call made progress, so the write goes on.
    writeKeyFile(path, keys, { write: (fd, buffer, offset, length) => writeSync(fd, buffer, offset, Math.min(length, 1000)) });
    assert.ok(readFileSync(path).length > 4096);
    assert.deepEqual(readKeyFile(path), keys);
  });

  it('fails coded when the disk takes no more, and leaves the key file as it was with no temporary file', () => {
    const path = join(dir, 'full.key');
    writeKeyFile(path, bigKeyFile(30));
    const before = readFileSync(path);
    const grown = { ...readKeyFile(path), masterKeys: [...readKeyFile(path).masterKeys, newKey(31)] };
    assert.throws(
      () => writeKeyFile(path, grown, { write: diskWithRoom(4096) }),
      (e) => isCandorError(e, 'CRYPTO_KEYFILE_WRITE_FAILED') && e.details?.reason === 'ENOSPC',
    );
    assert.deepEqual(readFileSync(path), before);
    assert.deepEqual(versionsOf(readKeyFile(path)), Array.from({ length: 30 }, (_, i) => i + 1));
    assert.deepEqual(temporaryKeyFiles(path), []);
    // A write call that answers 0 bytes without an error counts as a full disk too (no endless loop).
    assert.throws(() => writeKeyFile(path, grown, { write: () => 0 }), (e) => isCandorError(e, 'CRYPTO_KEYFILE_WRITE_FAILED') && e.details?.reason === 'ENOSPC');
    assert.deepEqual(readFileSync(path), before);
  });
});

describeEachDialect('a master key rotation on a full disk', (dialect) => {
  let env: TestEnvironment;
  let disk: SmallDisk | null = null;
  let kernel: Kernel;
  let keyFile = '';

  before(async () => {
    disk = mountSmallDisk(512);
    if (!disk) return;
    env = await createEnvironment(dialect);
    keyFile = join(disk.dir, 'master.key');
    kernel = await openKernel(env.configWith({ CANDOR_KEY_FILE: keyFile }));
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
    disk?.unmount();
  });

  it('fails before any data key is re-wrapped, leaves the old keys usable, and succeeds once there is space', async (t) => {
    if (!disk) return t.skip('needs a small tmpfs of its own: root and mount');
    const { keyring } = kernel;
    const subjects = ['fd-1', 'fd-2', 'fd-3'];
    await keyring.prepare(subjects);
    const texts = subjects.map((id) => keyring.encryptPrepared(id, `value of ${id}`, 'f'));
    // Past one 4 KB page, so that on one free page the write is short (4096 bytes) before the disk is full.
    while (readFileSync(keyFile).length <= 4096) await keyring.rotateMasterKey(CLI_ACTOR);
    const active = keyring.activeMasterVersion;
    const before = readFileSync(keyFile);
    const dataKeys = await keyring.dataKeysByMasterVersion();
    assert.deepEqual(Object.keys(dataKeys), [String(active)]);
    disk.fill(1);

    await assert.rejects(keyring.rotateMasterKey(CLI_ACTOR), (e) => isCandorError(e, 'CRYPTO_KEYFILE_WRITE_FAILED') && e.details?.reason === 'ENOSPC');
    assert.deepEqual(readFileSync(keyFile), before, 'the key file is as it was');
    assert.deepEqual(readdirSync(disk.dir).filter((f) => f.endsWith('.tmp')), []);
    assert.equal(keyring.activeMasterVersion, active);
    assert.deepEqual(await keyring.dataKeysByMasterVersion(), dataKeys, 'no data key was re-wrapped');
    for (const [i, id] of subjects.entries()) assert.equal(await keyring.decrypt(texts[i] as string, 'f'), `value of ${id}`);

    // A restart reads the key file and the data as before.
    const restarted = await openKernel(env.configWith({ CANDOR_KEY_FILE: keyFile }));
    try {
      assert.equal(restarted.keyring.activeMasterVersion, active);
      for (const [i, id] of subjects.entries()) assert.equal(await restarted.keyring.decrypt(texts[i] as string, 'f'), `value of ${id}`);
    } finally {
      await restarted.close();
    }

    disk.free();
    const rotated = await keyring.rotateMasterKey(CLI_ACTOR);
    assert.deepEqual([rotated.version, rotated.rewrapped], [active + 1, dataKeys[active]]);
    assert.equal(versionsOf(readKeyFile(keyFile)).at(-1), active + 1);
    for (const [i, id] of subjects.entries()) assert.equal(await keyring.decrypt(texts[i] as string, 'f'), `value of ${id}`);
  });
});
