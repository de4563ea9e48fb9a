import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBytesPooled, randomHexPooled, sortableId } from './random.ts';

describe('pooled randomness', () => {
  it('hands out every pooled byte once, across refills of the pool, as bytes or as hex', () => {
    const seen = new Set<string>();
    // 40,000 × 8 bytes is about twenty refills of the 16 KB pool.
    for (let i = 0; i < 20_000; i++) {
      const hex = randomHexPooled(8);
      assert.match(hex, /^[0-9a-f]{16}$/);
      seen.add(hex);
      const bytes = randomBytesPooled(8);
      assert.equal(bytes.length, 8);
      seen.add(bytes.toString('hex'));
    }
    assert.equal(seen.size, 40_000);
  });

  it('gives a buffer of its own, not a view that a later refill overwrites', () => {
    const first = randomBytesPooled(16);
    const copy = Buffer.from(first);
    for (let i = 0; i < 2_000; i++) randomHexPooled(16);
    assert.deepEqual(first, copy);
  });

  it('makes ids that sort in the order they were made', () => {
    const ids = Array.from({ length: 5_000 }, () => sortableId('evt_'));
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
  });
});
