import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedLock, SubjectCache, type SubjectState } from './subject-cache.ts';
import { NO_FLAGS } from './decide.ts';

const state = (pseudonym: string): SubjectState => ({ pseudonym, purposes: new Map(), flags: NO_FLAGS, freshAsOf: 0, loadedAt: 0 });

describe('consent subject cache', () => {
  it('keeps at most its limit of subjects, dropping the least recently loaded first', () => {
    const cache = new SubjectCache(2);
    cache.set('a', state('pa'));
    cache.set('b', state('pb'));
    cache.touch('a');
    cache.set('c', state('pc'));
    assert.equal(cache.size, 2);
    assert.equal(cache.peek('b'), undefined);
    assert.equal(cache.peek('a')?.pseudonym, 'pa');
  });

  it('serialises work on the same subject and lets other subjects through', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const releaseA = await lock.acquire(['s1']);
    const second = lock.acquire(['s1', 's2']).then((release) => {
      order.push('second');
      release();
    });
    const other = lock.acquire(['s3']).then((release) => {
      order.push('other');
      release();
    });
    await other;
    assert.deepEqual(order, ['other']);
    releaseA();
    await second;
    assert.deepEqual(order, ['other', 'second']);
  });
});
