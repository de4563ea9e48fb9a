import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toSqliteValues } from './sqlite-driver.ts';

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
