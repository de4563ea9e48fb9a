import assert from 'node:assert/strict';
import { diskWithRoom } from '../../test/support/full-disk.ts';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appendFileDurably, appendWhole, writeAll, writeFileAtomic } from './durable-write.ts';
import { isCandorError } from './errors.ts';


describe('durable writes', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'candor-durable-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('write every byte across short writes, and fail with ENOSPC on a write that makes no progress', () => {
    const path = join(dir, 'all');
    const fd = openSync(path, 'w');
    try {
      writeAll(fd, 'x'.repeat(10_000), (f, buffer, offset, length) => writeSync(f, buffer, offset, Math.min(length, 333)));
      assert.throws(() => writeAll(fd, 'more', () => 0), (e) => (e as NodeJS.ErrnoException).code === 'ENOSPC');
    } finally {
      closeSync(fd);
    }
    assert.equal(readFileSync(path, 'utf8'), 'x'.repeat(10_000));
  });

  it('replace a file whole or not at all, leaving no temporary file', () => {
    const path = join(dir, 'atomic');
    writeFileSync(path, 'before');
    const temporary = `${path}.tmp`;
    assert.throws(
      () => writeFileAtomic(path, 'y'.repeat(5000), { code: 'CRYPTO_KEYFILE_WRITE_FAILED', temporary, write: diskWithRoom(4096) }),
      (e) => isCandorError(e, 'CRYPTO_KEYFILE_WRITE_FAILED') && e.details?.reason === 'ENOSPC' && e.details?.file === path,
    );
    assert.equal(readFileSync(path, 'utf8'), 'before');
    assert.equal(existsSync(temporary), false);
    writeFileAtomic(path, 'after', { code: 'CRYPTO_KEYFILE_WRITE_FAILED', temporary });
    assert.equal(readFileSync(path, 'utf8'), 'after');
  });

  it('append whole or cut the file back to its length, to an open file or by path', () => {
    const path = join(dir, 'append');
    writeFileSync(path, 'line 1\n');
    const fd = openSync(path, 'a');
    try {
      assert.throws(() => appendWhole(fd, path, 'line 2\nline 3\n', { code: 'IMPORT_REPORT_WRITE_FAILED', write: diskWithRoom(9) }), (e) => isCandorError(e, 'IMPORT_REPORT_WRITE_FAILED'));
      assert.equal(readFileSync(path, 'utf8'), 'line 1\n');
      appendWhole(fd, path, 'line 2\n', { code: 'IMPORT_REPORT_WRITE_FAILED' });
    } finally {
      closeSync(fd);
    }
    assert.throws(() => appendFileDurably(path, 'line 3\n', { code: 'RIGHTS_LEDGER_WRITE_FAILED', write: diskWithRoom(3) }), (e) => isCandorError(e, 'RIGHTS_LEDGER_WRITE_FAILED'));
    assert.equal(readFileSync(path, 'utf8'), 'line 1\nline 2\n');
    appendFileDurably(path, 'line 3\n', { code: 'RIGHTS_LEDGER_WRITE_FAILED' });
    assert.equal(readFileSync(path, 'utf8'), 'line 1\nline 2\nline 3\n');
  });
});
