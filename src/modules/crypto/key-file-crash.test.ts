import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { keyFileLockPath, newKey, readKeyFile, writeKeyFile } from './key-file.ts';

const FILE_LOCK = pathToFileURL(join(import.meta.dirname, '../../shared/file-lock.ts')).href;

/** Another process holding the key file lock, as a rotation in progress does; resolves once it holds it. */
async function holdLockElsewhere(keyFile: string): Promise<ChildProcess> {
  // The lock's connection is kept referenced: a garbage-collected connection is closed, and its lock with it.
  const code = `import { lockFile } from ${JSON.stringify(FILE_LOCK)}; globalThis.held = lockFile(process.argv[1], 0); console.log(globalThis.held ? 'locked' : 'busy'); setInterval(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, keyFileLockPath(keyFile)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  assert.equal(line.toString().trim(), 'locked');
  return child;
}

async function killHard(child: ChildProcess): Promise<void> {
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

const wrapVersions = async (kernel: Kernel) =>
  (await sql<{ version: number }>`SELECT version FROM crypto_master_keys WHERE purpose = 'wrap' ORDER BY version`.execute(kernel.storage.db)).rows.map((r) => Number(r.version));

describeEachDialect('the key file lock after a crash', (dialect) => {
  const ctx = useKernel(dialect);

  it('is not held by a process killed while holding it; while its holder lives, rotations and prunes are refused and a start leaves a cut-short rotation to it', async () => {
    const { keyring } = ctx.kernel;
    const keyFile = ctx.env.config.keyFile;
    await keyring.prepare(['locked-out']);
    const holder = await holdLockElsewhere(keyFile);
    try {
      await assert.rejects(keyring.rotateMasterKey(CLI_ACTOR), (e) => isCandorError(e, 'CRYPTO_ROTATION_IN_PROGRESS'));
      await assert.rejects(keyring.pruneMasterKeys(CLI_ACTOR), (e) => isCandorError(e, 'CRYPTO_ROTATION_IN_PROGRESS'));
      // The holder's rotation has written the new key and not registered it yet: a start leaves that to the holder.
      const current = readKeyFile(keyFile);
      writeKeyFile(keyFile, { ...current, masterKeys: [...current.masterKeys, newKey(2)] });
      const meanwhile = await openKernel(ctx.env.config);
      try {
        assert.deepEqual(await wrapVersions(meanwhile), [1]);
        assert.deepEqual(Object.keys(await meanwhile.keyring.dataKeysByMasterVersion()), ['1']);
      } finally {
        await meanwhile.close();
      }
    } finally {
      await killHard(holder);
    }
    assert.ok(existsSync(keyFileLockPath(keyFile)), 'the killed holder left its lock file');

    const restarted = await openKernel(ctx.env.config);
    try {
      assert.deepEqual(await wrapVersions(restarted), [1, 2], 'the start completed the rotation');
      assert.deepEqual(Object.keys(await restarted.keyring.dataKeysByMasterVersion()), ['2']);
      assert.equal((await restarted.keyring.rotateMasterKey(CLI_ACTOR)).version, 3);
      assert.deepEqual(await restarted.keyring.pruneMasterKeys(CLI_ACTOR), { removed: [1, 2], active: 3 });
    } finally {
      await restarted.close();
    }
  });

  it('is not held by the plain lock file an earlier release left, naming a process that is gone, which is removed', async () => {
    const keyFile = ctx.env.config.keyFile;
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'exit');
    writeFileSync(`${keyFile}.lock`, String(gone.pid), { mode: 0o600 });
    const restarted = await openKernel(ctx.env.config);
    try {
      assert.equal((await restarted.keyring.rotateMasterKey(CLI_ACTOR)).version, 4);
    } finally {
      await restarted.close();
    }
    assert.equal(existsSync(`${keyFile}.lock`), false);
  });
});

describeEachDialect('temporary key files a killed write left', (dialect) => {
  const ctx = useKernel(dialect);
  /** Plants what a write killed before its rename leaves: a temporary file holding every version of the key file. */
  const plant = (keyFile: string, id: string) => {
    const stray = `${keyFile}.${id}.tmp`;
    copyFileSync(keyFile, stray);
    return stray;
  };

  it('are removed by a prune, so that no file beside the key file holds a removed version; files of other names stay', async () => {
    const { keyring } = ctx.kernel;
    const keyFile = ctx.env.config.keyFile;
    await keyring.prepare(['strayed']);
    assert.equal((await keyring.rotateMasterKey(CLI_ACTOR)).version, 2);
    const removedKey = readKeyFile(keyFile).masterKeys.find((k) => k.version === 1)?.key.toString('base64');
    assert.ok(removedKey);
    const stray = plant(keyFile, '9ed135febfd4');
    const others = [`${keyFile}.9ed135febfd4.tmp.keep`, `${keyFile}.9ed1.tmp`, `${keyFile}.notes.tmp`];
    for (const file of others) writeFileSync(file, 'not a key file', { mode: 0o600 });

    assert.deepEqual(await keyring.pruneMasterKeys(CLI_ACTOR), { removed: [1], active: 2 });
    assert.equal(existsSync(stray), false);
    for (const file of others) assert.ok(existsSync(file), file);
    const dir = dirname(keyFile);
    const holding = readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isFile() && readFileSync(join(dir, entry.name)).includes(removedKey))
      .map((entry) => entry.name);
    assert.deepEqual(holding, [], 'no file in the directory holds the pruned version');
    for (const file of others) rmSync(file);
  });

  it('are removed by a rotation and by a start', async () => {
    const keyFile = ctx.env.config.keyFile;
    const beforeRotation = plant(keyFile, '000000abcdef');
    assert.equal((await ctx.kernel.keyring.rotateMasterKey(CLI_ACTOR)).version, 3);
    assert.equal(existsSync(beforeRotation), false);

    const beforeStart = plant(keyFile, 'abcdef000000');
    const restarted = await openKernel(ctx.env.config);
    await restarted.close();
    assert.equal(existsSync(beforeStart), false);
  });
});

describe('writing the key file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'candor-key-file-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('leaves no temporary file holding the keys when the rename fails', () => {
    const keyFile = join(dir, 'master.key');
    // A directory where the key file should be: the temporary file is written, its rename refused.
    mkdirSync(join(keyFile, 'occupied'), { recursive: true });
    assert.throws(() => writeKeyFile(keyFile, { masterKeys: [newKey(1)], pseudonymKey: newKey(1) }));
    assert.deepEqual(readdirSync(dir), ['master.key']);
  });
});
