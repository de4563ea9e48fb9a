import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { MAX_TIMER_MS, repeat } from './repeat.ts';

const HOUR_MS = 3_600_000;
/** A run's error fails the test. */
const unexpected = (error: unknown) => assert.fail(`unexpected error: ${String(error)}`);

describe('repeat', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());
  /** Lets the task's promise and the re-arming of the timer run. */
  const settle = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  it('waits a whole interval longer than a timer can hold before the first run (720 hours: a monthly schedule)', async () => {
    const interval = 720 * HOUR_MS;
    assert.ok(interval > MAX_TIMER_MS);
    let runs = 0;
    const job = repeat(interval, () => void runs++, unexpected);
    try {
      mock.timers.tick(MAX_TIMER_MS);
      await settle();
      assert.equal(runs, 0, 'not after a timer’s longest delay');
      mock.timers.tick(interval - MAX_TIMER_MS - 1);
      await settle();
      assert.equal(runs, 0, 'not a millisecond early');
      mock.timers.tick(1);
      await settle();
      assert.equal(runs, 1);
      // (Mock timers run a callback at the end of the tick that reaches it: each tick ends where a timer is due.)
      mock.timers.tick(MAX_TIMER_MS);
      await settle();
      mock.timers.tick(interval - MAX_TIMER_MS - 1);
      await settle();
      assert.equal(runs, 1);
      mock.timers.tick(1);
      await settle();
      assert.equal(runs, 2, 'and again one interval later');
    } finally {
      await job.stop();
    }
  });

  it('starts the next wait once a run has finished, so runs never overlap', async () => {
    let running = 0;
    let most = 0;
    let finish: () => void = () => {};
    const job = repeat(HOUR_MS, async () => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => (finish = resolve));
      running--;
    }, unexpected);
    try {
      mock.timers.tick(HOUR_MS);
      await settle();
      assert.equal(running, 1);
      mock.timers.tick(3 * HOUR_MS);
      await settle();
      assert.equal(most, 1, 'a slow run delays the next one');
      finish();
      await settle();
      mock.timers.tick(HOUR_MS);
      await settle();
      assert.equal(running, 1, 'the next run, an interval after the slow one ended');
      finish();
    } finally {
      await job.stop();
    }
  });

  it('goes on after a run that fails, telling onError', async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const job = repeat(1_000, () => {
      runs++;
      throw new Error(`run ${runs}`);
    }, (error) => errors.push(error));
    try {
      for (let i = 0; i < 3; i++) {
        mock.timers.tick(1_000);
        await settle();
      }
      assert.equal(runs, 3);
      assert.deepEqual(errors.map((e) => (e as Error).message), ['run 1', 'run 2', 'run 3']);
    } finally {
      await job.stop();
    }
  });

  it('runs nothing once stopped, and refuses an interval that is not a positive number', async () => {
    let runs = 0;
    const job = repeat(1_000, () => void runs++, unexpected);
    await job.stop();
    mock.timers.tick(5_000);
    await settle();
    assert.equal(runs, 0);
    assert.throws(() => repeat(0, () => {}, unexpected), RangeError);
    assert.throws(() => repeat(Number.NaN, () => {}, unexpected), RangeError);
  });

  it('stop resolves once the run under way has finished, its failure handed to onError first', async () => {
    const events: string[] = [];
    let finish: () => void = () => {};
    const job = repeat(1_000, async () => {
      events.push('run started');
      await new Promise<void>((resolve) => (finish = resolve));
      events.push('run finished');
      throw new Error('late failure');
    }, () => events.push('onError'));
    assert.equal(job.running, false);
    mock.timers.tick(1_000);
    await settle();
    assert.equal(job.running, true);
    const stopped = job.stop().then(() => events.push('stopped'));
    await settle();
    assert.deepEqual(events, ['run started'], 'the stop waits for the run');
    finish();
    await stopped;
    assert.deepEqual(events, ['run started', 'run finished', 'onError', 'stopped']);
    assert.equal(job.running, false);
    mock.timers.tick(5_000);
    await settle();
    assert.equal(events.filter((e) => e === 'run started').length, 1, 'and nothing runs after it');
  });

  it('stop resolves at once when no run is under way', async () => {
    let runs = 0;
    const job = repeat(1_000, () => void runs++, unexpected);
    mock.timers.tick(1_000);
    await settle();
    assert.equal(runs, 1);
    let stopped = false;
    void job.stop().then(() => (stopped = true));
    await settle();
    assert.equal(stopped, true);
  });
});
