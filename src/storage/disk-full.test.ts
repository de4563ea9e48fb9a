import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CandorError } from '../shared/errors.ts';
import { DISK_FULL_LAPSE_MS, DiskFullState } from './disk-full.ts';

describe('DiskFullState', () => {
  it('is set by a write that failed for a full disk, cleared by a durable write, and lapses without one', () => {
    let now = 1_000_000;
    const state = new DiskFullState(() => now);
    state.failed(new CandorError('STORAGE_BUSY'));
    assert.equal(state.full, false, 'only a full disk sets it');
    state.failed(new CandorError('STORAGE_FULL'));
    assert.equal(state.full, true);
    state.succeeded('SELECT 1', false);
    state.succeeded('INSERT INTO t VALUES (1)', true);
    assert.equal(state.full, true, 'a read or a write inside a transaction shows nothing');
    state.succeeded('INSERT INTO t VALUES (1)', false);
    assert.equal(state.full, false, 'a write outside a transaction went through');

    state.failed(new CandorError('STORAGE_FULL'));
    now += DISK_FULL_LAPSE_MS - 1;
    assert.equal(state.full, true);
    now += 1;
    assert.equal(state.full, false, 'with no write to show it, a server out of traffic comes back to ready');
    state.failed(new CandorError('STORAGE_FULL'));
    assert.equal(state.full, true, 'the next failed write sets it again');
    state.committed();
    assert.equal(state.full, false);
  });
});
