import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SqliteHandle, toSqliteValues } from './sqlite-driver.ts';

describe('SQLite parameters', () => {
  it('binds parameters that already are SQLite values as they are, without a copy', () => {
    const params = ['evt_1', 42, null, 'web'];
    assert.equal(toSqliteValues(params), params);
  });

  it('converts what SQLite cannot bind (undefined, booleans, dates) in a copy and leaves the caller\'s array alone', () => {
    const at = new Date('2026-12-03T10:00:00.000Z');
    const params = ['evt_1', undefined, true, false, at, 7];
    const bound = toSqliteValues(params);
    assert.notEqual(bound, params);
    assert.deepEqual(bound, ['evt_1', null, 1, 0, '2026-12-03T10:00:00.000Z', 7]);
    assert.deepEqual(params, ['evt_1', undefined, true, false, at, 7]);
  });
});

describe('SQLite connection settings', () => {
  it('keeps statement journals and temporary tables in memory, never in files outside the data directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-sqlite-settings-'));
    const handle = new SqliteHandle(join(dir, 'candor.sqlite'), 'FULL');
    try {
      // 2 = MEMORY: old page images of a multi-row statement would otherwise go to an unlinked temporary file.
      assert.equal(handle.all<{ temp_store: number }>('PRAGMA temp_store', [])[0]?.temp_store, 2);
      assert.equal(handle.all<{ secure_delete: number }>('PRAGMA secure_delete', [])[0]?.secure_delete, 1);
    } finally {
      handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
