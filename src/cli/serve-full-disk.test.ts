import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountSmallDisk, type SmallDisk } from '../../test/support/full-disk.ts';
import { claimDataDir, SERVER_LOCK_FILE } from '../modules/retention/index.ts';
import { isCandorError } from '../shared/errors.ts';
import { lockFile } from '../shared/file-lock.ts';

const modeOf = (path: string) => statSync(path).mode & 0o777;

describe('a first start on a full disk', () => {
  let disk: SmallDisk | null = null;

  before(() => {
    disk = mountSmallDisk(256);
  });
  after(() => disk?.unmount());

  it('leaves a lock file that could not be taken owner-only', (t) => {
    if (!disk) return t.skip('needs a small tmpfs of its own: root and mount');
    const path = join(disk.dir, 'master.key.rotation.lock');
    disk.fill(0);
    try {
      // SQLite cannot write the lock's first page: the lock fails, and the file it was to be is not readable by others.
      assert.throws(() => lockFile(path, 0), (e) => isCandorError(e, 'STORAGE_FULL'), 'coded, not a bare SQLite error');
      assert.equal(modeOf(path), 0o600);
    } finally {
      disk.free();
    }
    const lock = lockFile(path, 0);
    assert.ok(lock);
    lock.close();
    assert.equal(modeOf(path), 0o600);
  });

  it('writes no empty server.pid when the lock fits and the pid does not, fails coded and lets go of the lock', (t) => {
    if (!disk) return t.skip('needs a small tmpfs of its own: root and mount');
    const dataDir = join(disk.dir, 'data');
    // One page: the lock's first page fits, the pid file (a page of its own) does not.
    disk.fill(1);
    try {
      assert.throws(() => claimDataDir(dataDir), (e) => isCandorError(e, 'SERVE_DATA_DIR_NOT_WRITABLE') && e.details?.reason === 'ENOSPC');
      assert.deepEqual(readdirSync(dataDir), [SERVER_LOCK_FILE], 'no server.pid, empty or temporary, is left');
      assert.equal(modeOf(join(dataDir, SERVER_LOCK_FILE)), 0o600);
    } finally {
      disk.free();
    }
    // The failed start let go of the lock: the next one takes it and records its pid.
    const release = claimDataDir(dataDir);
    try {
      assert.equal(readFileSync(join(dataDir, 'server.pid'), 'utf8'), String(process.pid));
      assert.equal(modeOf(join(dataDir, 'server.pid')), 0o600);
    } finally {
      release();
    }
    assert.equal(existsSync(join(dataDir, 'server.pid')), false);
  });
});
