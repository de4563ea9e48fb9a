import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CandorError, isCandorError } from './errors.ts';
import { GroupCommit } from './group-commit.ts';

/** A gate a flush waits at until it is opened (a database that stopped answering, until it answers again). */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

const unavailable = (error: unknown) => isCandorError(error, 'STORAGE_UNAVAILABLE');

/** Waits until `ok` holds (a flush started, say). */
async function until(ok: () => boolean): Promise<void> {
  while (!ok()) await sleep(1);
}

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

  it('rejects the submitter of a failed flush of one submission, and goes on with the next', async () => {
    let first = true;
    const flushes: number[][] = [];
    const commit = new GroupCommit<number, number>(async (items) => {
      flushes.push([...items]);
      if (first) {
        first = false;
        throw new Error('disk full');
      }
      return [...items];
    });
    await assert.rejects(commit.submit([1]), /disk full/);
    assert.deepEqual(await commit.submit([2]), [2]);
    assert.deepEqual(flushes, [[1], [2]], 'no second write of the failed one');
  });

  it('writes each submission of a failed group again on its own, rejecting only the one whose own write fails', async () => {
    const flushes: number[][] = [];
    // Fails whenever item 13 is in the group, as a statement error on one request's row would.
    const commit = new GroupCommit<number, number>(async (items) => {
      flushes.push([...items]);
      await sleep(1);
      if (items.includes(13)) throw new Error('bad row 13');
      return items.map((i) => i * 2);
    });
    const results = await Promise.allSettled([commit.submit([1, 2]), commit.submit([12, 13]), commit.submit([3])]);
    assert.deepEqual(results[0], { status: 'fulfilled', value: [2, 4] });
    assert.equal(results[1]?.status, 'rejected');
    assert.match(String((results[1] as PromiseRejectedResult).reason), /bad row 13/);
    assert.deepEqual(results[2], { status: 'fulfilled', value: [6] });
    assert.deepEqual(flushes, [[1, 2, 12, 13, 3], [1, 2], [12, 13], [3]], 'the group, then each submission once, in order');
    assert.deepEqual(await commit.submit([4]), [8]);
    assert.equal(flushes.length, 5, 'no retry once a flush succeeds');
  });

  it('rejects every submitter when every write of a failed group fails, writing each once more and no more', async () => {
    let calls = 0;
    const commit = new GroupCommit<number, number>(async () => {
      calls++;
      throw new Error('database down');
    });
    const results = await Promise.allSettled([commit.submit([1]), commit.submit([2])]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.equal(calls, 3);
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

  describe('when the store does not keep up or stops answering', () => {
    it('queues a burst of 100 concurrent submissions of 100 items on a store that keeps up, refusing none', async () => {
      // Collect's settings; each commit takes 20 ms: the burst is written in well under a second.
      const commit = new GroupCommit<number, number>(async (items) => {
        await sleep(20);
        return [...items];
      }, { maxItems: 800, gatherMs: 2 });
      const outcomes = await Promise.allSettled(Array.from({ length: 100 }, (_, c) => commit.submit(Array.from({ length: 100 }, (_, i) => c * 100 + i), {})));
      const refused = outcomes.filter((o) => o.status === 'rejected');
      assert.equal(refused.length, 0, String((refused[0] as PromiseRejectedResult | undefined)?.reason));
      assert.deepEqual(outcomes.map((o) => (o.status === 'fulfilled' ? o.value[0] : -1)), Array.from({ length: 100 }, (_, c) => c * 100));
    });

    it('refuses new submissions once the oldest waiting one has waited longer than maxQueuedMs, and takes them again once the store answers', async () => {
      const held = gate();
      const flushes: number[][] = [];
      const commit = new GroupCommit<number, number>(async (items) => {
        flushes.push([...items]);
        await held.opened;
        return [...items];
      }, { maxQueuedMs: 50 });
      const first = commit.submit([1]);
      await until(() => flushes.length === 1);
      const waiting = commit.submit([2]);
      const alsoTaken = commit.submit([3]);
      await sleep(80);
      // Refused at once: a submission taken would wait for the held flush.
      const refused = await Promise.race([commit.submit([4]).catch((error: unknown) => error), sleep(20).then(() => 'taken')]);
      assert.ok(unavailable(refused), String(refused));
      assert.match(String((refused as CandorError).details?.reason), /the database does not keep up/);
      assert.equal(commit.queued, 2, 'the refused one is not queued');
      held.open();
      assert.deepEqual(await Promise.all([first, waiting, alsoTaken]), [[1], [2], [3]]);
      assert.deepEqual(await commit.submit([5]), [5], 'nothing waits any more');
      assert.deepEqual(flushes, [[1], [2, 3], [5]]);
    });

    it('says it is failing after a flush failed for the store as a whole, until one succeeds or failingMs passes', async () => {
      let down = true;
      const commit = new GroupCommit<number, number>(async (items) => {
        if (down) throw new CandorError('STORAGE_UNAVAILABLE', { reason: 'statement_timeout', sqlstate: '57014' });
        return [...items];
      }, { failingMs: 60_000 });
      assert.equal(commit.failing, false);
      await assert.rejects(commit.submit([1]), unavailable);
      assert.equal(commit.failing, true, 'the database answers pings, but writes fail');
      assert.equal(commit.stalled, false, 'submissions are still taken: the next one may go through');
      down = false;
      assert.deepEqual(await commit.submit([2]), [2]);
      assert.equal(commit.failing, false);

      const lapsing = new GroupCommit<number, number>(async () => {
        throw new CandorError('STORAGE_UNAVAILABLE', { reason: 'statement_timeout' });
      }, { failingMs: 30 });
      await assert.rejects(lapsing.submit([1]), unavailable);
      assert.equal(lapsing.failing, true);
      await sleep(50);
      assert.equal(lapsing.failing, false, 'an idle server is taken for ready again');
    });

    it('stops writing the submissions of a failed group one by one once the store as a whole fails', async () => {
      const flushes: number[][] = [];
      const commit = new GroupCommit<number, number>(async (items) => {
        flushes.push([...items]);
        await sleep(1);
        if (flushes.length === 1) throw new Error('bad row');
        throw new CandorError('STORAGE_UNAVAILABLE', { reason: 'statement_timeout' });
      });
      const results = await Promise.allSettled([commit.submit([1]), commit.submit([2]), commit.submit([3])]);
      assert.ok(results.every((r) => r.status === 'rejected' && unavailable(r.reason)), JSON.stringify(results));
      assert.deepEqual(flushes, [[1, 2, 3], [1]], 'the others would each have waited the timeout again');
      assert.equal(commit.failing, true);
    });

    it('refuses a submission beyond maxQueued with STORAGE_UNAVAILABLE, writing the ones it took', async () => {
      const held = gate();
      const flushes: number[][] = [];
      const commit = new GroupCommit<number, number>(async (items) => {
        flushes.push([...items]);
        await held.opened;
        return [...items];
      }, { maxQueued: 3 });
      const first = commit.submit([1]);
      await until(() => flushes.length === 1);
      const waiting = commit.submit([2, 3]);
      await assert.rejects(commit.submit([4, 5]), unavailable);
      assert.equal(commit.queued, 2, 'the refused one is not queued');
      const fits = commit.submit([6]);
      held.open();
      assert.deepEqual(await Promise.all([first, waiting, fits]), [[1], [2, 3], [6]]);
      assert.deepEqual(flushes, [[1], [2, 3, 6]]);
    });

    it('drops the waiting submissions of a client gone before their group started, never one whose group started', async () => {
      const held = gate();
      const flushes: number[][] = [];
      const gone = new Set<object>();
      const a = {};
      const b = {};
      const commit = new GroupCommit<number, number>(async (items) => {
        flushes.push([...items]);
        await held.opened;
        return [...items];
      }, { gone: (client) => gone.has(client) });
      const started = commit.submit([1], a);
      await until(() => flushes.length === 1);
      const waiting = commit.submit([2], b);
      const stays = commit.submit([3], a);
      gone.add(a);
      gone.add(b);
      held.open();
      assert.deepEqual(await started, [1], 'its group had started: it may commit, so it is answered');
      await assert.rejects(waiting, unavailable);
      await assert.rejects(stays, unavailable);
      assert.deepEqual(flushes, [[1]], 'nothing of theirs written');
    });

    it('fails a flush that outlives timeoutMs with STORAGE_UNAVAILABLE, refuses submissions until it settles, then writes on', async () => {
      const held = gate();
      let calls = 0;
      const commit = new GroupCommit<number, number>(async (items) => {
        calls++;
        if (calls === 1) await held.opened;
        return items.map((i) => i * 2);
      }, { timeoutMs: 50 });
      const results = await Promise.allSettled([commit.submit([1]), commit.submit([2])]);
      assert.ok(results.every((r) => r.status === 'rejected' && unavailable(r.reason)), 'never acknowledged');
      assert.equal(commit.stalled, true);
      await assert.rejects(commit.submit([3]), unavailable);
      held.open();
      await until(() => !commit.stalled);
      assert.deepEqual(await commit.submit([4]), [8]);
      assert.equal(calls, 2, 'the refused ones were not written');
    });

    it('rejects every submitter of a group that failed for the store as a whole, without writing each again', async () => {
      let calls = 0;
      const commit = new GroupCommit<number, number>(async () => {
        calls++;
        throw new CandorError('STORAGE_UNAVAILABLE', { reason: 'ECONNREFUSED' });
      });
      const results = await Promise.allSettled([commit.submit([1]), commit.submit([2]), commit.submit([3])]);
      assert.ok(results.every((r) => r.status === 'rejected' && unavailable(r.reason)));
      assert.equal(calls, 1);
    });
  });
});
