import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeRoom } from './make-room.ts';

describe('makeRoom', () => {
  it('does nothing below the limit', () => {
    const map = new Map([['a', 1], ['b', 2]]);
    makeRoom(map, 3);
    assert.deepEqual([...map.keys()], ['a', 'b']);
  });

  it('lets the oldest eighth go at once when the map is full, in order', () => {
    const map = new Map(Array.from({ length: 64 }, (_, i) => [`k${i}`, i] as const));
    makeRoom(map, 64);
    assert.equal(map.size, 56);
    assert.deepEqual([...map.keys()].slice(0, 2), ['k8', 'k9']);
  });

  it('lets at least one go, and brings a map over its limit back under it', () => {
    const small = new Map([['a', 1], ['b', 2], ['c', 3]]);
    makeRoom(small, 3);
    assert.deepEqual([...small.keys()], ['b', 'c']);
    const over = new Map(Array.from({ length: 20 }, (_, i) => [i, i] as const));
    makeRoom(over, 16);
    assert.equal(over.size, 14);
    assert.equal([...over.keys()][0], 6);
  });

  it('removes through the given function, with each entry', () => {
    const map = new Map([['a', 'x'], ['b', 'y'], ['c', 'z']]);
    const removed: string[] = [];
    makeRoom(map, 2, (key, value) => {
      removed.push(`${key}=${value}`);
      map.delete(key);
    });
    assert.deepEqual(removed, ['a=x', 'b=y']);
    assert.deepEqual([...map.keys()], ['c']);
  });

  it('keeps a cache that is filled for ever at or under its limit', () => {
    const map = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      makeRoom(map, 1000);
      map.set(i, i);
      assert.ok(map.size <= 1000);
    }
    assert.equal([...map.keys()].at(-1), 9999);
  });
});
