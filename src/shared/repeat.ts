/** The longest delay a Node.js timer takes: a longer one is cut to 1 ms (with a TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A task run on a schedule by `repeat`. */
export interface Repeating {
  /** Whether a run is under way. */
  readonly running: boolean;
  /** Runs nothing more; resolves once a run under way has finished and its error gone to `onError` (at once when none is). */
  stop(): Promise<void>;
}

/**
 * Runs `task` every `intervalMs` milliseconds, however long the interval: waits longer than a timer can hold (~24.8
 * days) are made of several timers. The next wait starts once a run has finished, so runs never overlap (a run that
 * takes longer than the interval delays the next). Its timers do not keep the process alive; a run that throws is
 * given to `onError` and the schedule goes on.
 */
export function repeat(intervalMs: number, task: () => Promise<unknown> | unknown, onError: (error: unknown) => void): Repeating {
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) throw new RangeError(`repeat: the interval must be a positive number of milliseconds, not ${intervalMs}`);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  // The run under way, settled once its error (if any) has been handed to onError.
  let running: Promise<void> | undefined;
  const wait = (remaining: number) => {
    if (stopped) return;
    const step = Math.min(remaining, MAX_TIMER_MS);
    timer = setTimeout(() => {
      if (remaining > step) wait(remaining - step);
      else void run();
    }, step);
    timer.unref();
  };
  const run = async () => {
    running = (async () => {
      try {
        await task();
      } catch (error) {
        onError(error);
      }
    })();
    try {
      await running;
    } finally {
      running = undefined;
    }
    wait(intervalMs);
  };
  wait(intervalMs);
  return {
    get running() {
      return running !== undefined;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      // A stop waits for the run, not for onError's own failure (which reaches the process as before).
      return running?.then(
        () => {},
        () => {},
      ) ?? Promise.resolve();
    },
  };
}
