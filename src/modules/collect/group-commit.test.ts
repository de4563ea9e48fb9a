import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GroupCommit } from './group-commit.ts';

/** A group commit whose flushes are recorded (items of each) and answer each item doubled. */
function recorded(options: ConstructorParameters<typeof GroupCommit<number, number>>[1] = {}) {
  const flushes: { items: number[]; at: number }[] = [];
  const commit = new GroupCommit<number, number>(async (items) => {
    flushes.push({ items: [...items], at: performance.now() });
    await sleep(1);
    return items.map((i) => i * 2);
  }, options);
  return { commit, flushes };
}

describe('group commit', () => {
  it('writes submissions of the same moment in one flush and answers each submitter its own results', async () => {
    const { commit, flushes } = recorded();
    const [a, b] = await Promise.all([commit.submit([1, 2]), commit.submit([3])]);
    assert.deepEqual(a, [2, 4]);
    assert.deepEqual(b, [6]);
    assert.deepEqual(flushes.map((f) => f.items), [[1, 2, 3]]);
  });

  it('splits at maxItems, never a submission', async () => {
    const { commit, flushes } = recorded({ maxItems: 3 });
    await Promise.all([commit.submit([1, 2]), commit.submit([3, 4]), commit.submit([5])]);
    assert.deepEqual(flushes.map((f) => f.items), [[1, 2], [3, 4, 5]]);
  });

  it('rejects every submitter of a failed flush, and goes on with the next', async () => {
    let first = true;
    const commit = new GroupCommit<number, number>(async (items) => {
      if (first) {
        first = false;
        throw new Error('disk full');
      }
      return [...items];
    });
    const results = await Promise.allSettled([commit.submit([1]), commit.submit([2])]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.deepEqual(await commit.submit([3]), [3]);
  });

  describe('gathering (gatherMs)', () => {
    const a = {};
    const b = {};

    it('waits for a client active a moment ago, so that one flush serves both', async () => {
      const { commit, flushes } = recorded({ gatherMs: 50 });
      await Promise.all([commit.submit([1], a), commit.submit([2], b)]);
      assert.equal(flushes.length, 1);
      // a's next submission waits for b's, which comes 10 ms later (its answer took that long, say).
      const next = commit.submit([3], a);
      await sleep(10);
      await Promise.all([next, commit.submit([4], b)]);
      assert.deepEqual(flushes.map((f) => f.items), [[1, 2], [3, 4]]);
    });

    it('starts as soon as every active client has a submission queued, and waits at most gatherMs for one that is not', async () => {
      const { commit, flushes } = recorded({ gatherMs: 200 });
      await Promise.all([commit.submit([1], a), commit.submit([2], b)]);
      let started = performance.now();
      await Promise.all([commit.submit([3], a), commit.submit([4], b)]);
      assert.ok((flushes[1]?.at ?? Infinity) - started < 100, 'both were there: no wait');
      started = performance.now();
      await commit.submit([5], a);
      const waited = (flushes[2]?.at ?? 0) - started;
      assert.ok(waited >= 150 && waited < 1000, `b never came: waited ${waited.toFixed(0)} ms`);
    });

    it('does not wait for a lone client, nor for one quiet for a while', async () => {
      const { commit, flushes } = recorded({ gatherMs: 500 });
      let started = performance.now();
      await commit.submit([1], a);
      await commit.submit([2], a);
      assert.ok((flushes[1]?.at ?? Infinity) - started < 100, 'only a is active');
      await Promise.all([commit.submit([3], a), commit.submit([4], b)]);
      await sleep(30);
      started = performance.now();
      await commit.submit([5], a);
      assert.ok((flushes[3]?.at ?? Infinity) - started < 100, 'b has been quiet for longer than a client counts as active');
    });

    it('lets go of clients once they are quiet, traffic or not', async () => {
      const { commit } = recorded({ gatherMs: 50 });
      await Promise.all([commit.submit([1], a), commit.submit([2], b)]);
      assert.equal(commit.activeClients, 2);
      await sleep(60);
      assert.equal(commit.activeClients, 0);
    });

    it('never waits without gatherMs', async () => {
      const { commit, flushes } = recorded();
      await Promise.all([commit.submit([1], a), commit.submit([2], b)]);
      const started = performance.now();
      await commit.submit([3], a);
      assert.ok((flushes[1]?.at ?? Infinity) - started < 100);
    });
  });
});
