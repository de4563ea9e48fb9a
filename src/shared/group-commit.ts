import { CandorError, isCandorError } from './errors.ts';

interface Waiting<T, R> {
  items: readonly T[];
  resolve: (results: R[]) => void;
  reject: (error: unknown) => void;
  client: object | undefined;
  /** When it was queued (performance.now()). */
  at: number;
}

/**
 * Group commit: work submitted while a flush is running is gathered and written by the next flush in one go, so
 * concurrent requests share transactions; each submitter gets its own results back once they are durable.
 */
export interface GroupCommitOptions {
  /** Most items written in one flush. */
  maxItems?: number;
  /** While this says more work is on its way (requests still being checked), a flush waits for it… */
  moreComing?: () => boolean;
  /** …but never longer than this many milliseconds. */
  maxWaitMs?: number;
  /**
   * When several clients submitted lately, a flush also waits up to this many milliseconds (default 0: never) for each
   * of them to have a submission queued: a client just answered is likely to send again at once, and one commit then
   * serves them all instead of two commits serving half each.
   */
  gatherMs?: number;
  /**
   * How long the oldest waiting submission may have waited for its flush (default: timeoutMs when given, else
   * DEFAULT_MAX_QUEUED_MS) before new submissions are refused at once with STORAGE_UNAVAILABLE: the store does not keep
   * up (or stopped answering). A burst that the store writes in time is never refused, however large (up to maxQueued).
   */
  maxQueuedMs?: number;
  /**
   * Most items waiting for a flush (the one running not counted; default DEFAULT_MAX_QUEUED): a bound on memory only,
   * far above what concurrent clients queue on a healthy store; a submission beyond it is refused at once with
   * STORAGE_UNAVAILABLE. A submission larger than the bound is taken while nothing waits.
   */
  maxQueued?: number;
  /**
   * How long after a flush failed for the store as a whole `failing` stays true unless a flush succeeds first (default:
   * the larger of timeoutMs and DEFAULT_FAILING_MS), so that an idle server is taken for ready again in the end.
   */
  failingMs?: number;
  /**
   * A flush that has not settled after this many milliseconds (default: never given up) fails its submitters with
   * STORAGE_UNAVAILABLE, never acknowledging them (it may still commit: they may send again, as after any failure), and
   * so are the submissions waiting behind it and those made until it settles (see `stalled`).
   */
  timeoutMs?: number;
  /**
   * Whether a client (as given to submit) has gone away, such as a closed connection: its submissions still waiting
   * when their group is formed are dropped (rejected, never written: nobody would learn their outcome). A submission
   * whose group has started is never dropped, as it may commit.
   */
  gone?: (client: object) => boolean;
}

const noop = () => {};

/** Default of GroupCommitOptions.maxQueuedMs without a timeoutMs. */
export const DEFAULT_MAX_QUEUED_MS = 10_000;
/** Default of GroupCommitOptions.maxQueued: 80 batches of 2,500 events, say (a memory bound, not a load bound). */
export const DEFAULT_MAX_QUEUED = 200_000;
/** Least default of GroupCommitOptions.failingMs. */
export const DEFAULT_FAILING_MS = 10_000;

/** A client counts as active for gathering while it submitted within this many milliseconds. */
const ACTIVE_MS = 10;

/**
 * Whether a failed flush failed for the store as a whole (it cannot be reached, did not answer in time, or ended the
 * statement at its timeout), not for one submission's data: writing each submission again on its own would only fail
 * (or wait the whole timeout again) once per submission.
 */
const storeFailed = (error: unknown) => isCandorError(error, 'STORAGE_UNAVAILABLE');

/**
 * Writes one group. A flush that hands its writes to another thread calls `handedOver` then: the previous group's
 * submitters are answered only from that moment, so that this thread prepares the next group before it goes on with
 * the requests of the answered ones, and the writer thread never waits for it. A flush that fails must have stored
 * none of the items' results (nothing a second write of the same items would store again): a failed group of several
 * submissions is written again one submission at a time.
 */
export type Flush<T, R> = (items: readonly T[], handedOver: () => void) => Promise<R[]>;

export class GroupCommit<T, R> {
  readonly #flush: Flush<T, R>;
  readonly #maxItems: number;
  readonly #moreComing: () => boolean;
  readonly #maxWaitMs: number;
  readonly #gatherMs: number;
  readonly #maxQueued: number;
  readonly #maxQueuedMs: number;
  readonly #failingMs: number;
  readonly #timeoutMs: number | undefined;
  readonly #gone: ((client: object) => boolean) | undefined;
  #queue: Waiting<T, R>[] = [];
  /** Items in the queue. */
  #queued = 0;
  /** Set while a flush that outlived timeoutMs has not settled yet. */
  #stalled = false;
  /** When the last flush failed for the store as a whole (storeFailed); cleared by a flush that succeeds. */
  #storeFailedAt: number | undefined;
  #running = false;
  #scheduled = false;
  /** When each client (a connection) last submitted; clients quiet for ACTIVE_MS are dropped. */
  readonly #clients = new Map<object, number>();
  #sweep: ReturnType<typeof setTimeout> | undefined;
  /** A flush waiting for more clients to gather (see gatherMs); started early once each has a submission queued. */
  #gather: { timer: ReturnType<typeof setTimeout>; target: number } | undefined;

  constructor(flush: Flush<T, R>, options: GroupCommitOptions = {}) {
    this.#flush = flush;
    this.#maxItems = options.maxItems ?? 5000;
    this.#moreComing = options.moreComing ?? (() => false);
    this.#maxWaitMs = options.maxWaitMs ?? 5;
    this.#gatherMs = options.gatherMs ?? 0;
    this.#maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.#timeoutMs = options.timeoutMs;
    this.#maxQueuedMs = options.maxQueuedMs ?? this.#timeoutMs ?? DEFAULT_MAX_QUEUED_MS;
    this.#failingMs = options.failingMs ?? Math.max(this.#timeoutMs ?? 0, DEFAULT_FAILING_MS);
    this.#gone = options.gone;
  }

  /** Whether a flush has outlived timeoutMs and not settled yet: submissions are refused meanwhile (for readiness). */
  get stalled(): boolean {
    return this.#stalled;
  }

  /**
   * Whether writes fail for the store as a whole (for readiness): a flush is stalled (see `stalled`), or the last one
   * failed with STORAGE_UNAVAILABLE (such as a statement ended by its timeout while the database answers pings) less
   * than failingMs ago.
   */
  get failing(): boolean {
    return this.#stalled || (this.#storeFailedAt !== undefined && performance.now() - this.#storeFailedAt < this.#failingMs);
  }

  /** Items waiting for a flush (for tests and metrics). */
  get queued(): number {
    return this.#queued;
  }

  /** Starts a flush once the current turn of the event loop is over and no more work is about to join. */
  #schedule(since: number): void {
    setImmediate(() => {
      const queued = this.#queued;
      if (queued < this.#maxItems && this.#moreComing() && performance.now() - since < this.#maxWaitMs) {
        this.#schedule(since);
        return;
      }
      // Fewer submissions queued than clients active lately: give the others a moment (no busy wait: a timer, cut
      // short by submit() once each has one queued).
      const now = performance.now();
      this.#forgetQuiet(now);
      const target = this.#clients.size;
      const remaining = this.#gatherMs - (now - since);
      if (queued < this.#maxItems && target > 1 && this.#queue.length < target && remaining > 0) {
        this.#gather = { target, timer: setTimeout(() => this.#startGathered(), remaining) };
        return;
      }
      this.#scheduled = false;
      void this.#drain();
    });
  }

  /** Notes a client's submission; the map stays in order of last submission, so quiet clients are at its front. */
  #active(client: object): void {
    const now = performance.now();
    this.#clients.delete(client);
    this.#clients.set(client, now);
    this.#forgetQuiet(now);
    this.#armSweep();
  }

  /** Once traffic stops nothing else would drop the last clients (closed connections among them): a timer does. */
  #armSweep(): void {
    if (this.#sweep || this.#clients.size === 0) return;
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined;
      this.#forgetQuiet(performance.now());
      this.#armSweep();
    }, ACTIVE_MS * 2);
    this.#sweep.unref();
  }

  #forgetQuiet(now: number): void {
    for (const [client, at] of this.#clients) {
      if (now - at <= ACTIVE_MS) break;
      this.#clients.delete(client);
    }
  }

  #startGathered(): void {
    if (!this.#gather) return;
    clearTimeout(this.#gather.timer);
    this.#gather = undefined;
    this.#scheduled = false;
    void this.#drain();
  }

  /** Clients counted as active for gathering (for tests and metrics). */
  get activeClients(): number {
    return this.#clients.size;
  }

  /** Queues items for the next flush; `client` (a connection, say) identifies who submits, for gathering. */
  submit(items: readonly T[], client?: object): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    if (this.#stalled) return Promise.reject(new CandorError('STORAGE_UNAVAILABLE', { reason: `a write has not completed within ${this.#timeoutMs} ms` }));
    const oldest = this.#queue[0];
    const now = performance.now();
    if (oldest !== undefined && now - oldest.at > this.#maxQueuedMs) {
      const waited = Math.round(now - oldest.at);
      return Promise.reject(new CandorError('STORAGE_UNAVAILABLE', { reason: `writes have waited ${waited} ms (more than ${this.#maxQueuedMs} ms): the database does not keep up` }));
    }
    if (this.#queued > 0 && this.#queued + items.length > this.#maxQueued) {
      return Promise.reject(new CandorError('STORAGE_UNAVAILABLE', { reason: `too many writes waiting (${this.#queued} items)` }));
    }
    if (client !== undefined && this.#gatherMs > 0) this.#active(client);
    return new Promise((resolve, reject) => {
      this.#queue.push({ items, resolve, reject, client, at: now });
      this.#queued += items.length;
      if (this.#gather && (this.#queue.length >= this.#gather.target || this.#queued >= this.#maxItems)) {
        this.#startGathered();
        return;
      }
      if (!this.#running && !this.#scheduled) {
        this.#scheduled = true;
        // Not a microtask: requests whose bytes already arrived get checked and join this commit.
        this.#schedule(performance.now());
      }
    });
  }

  async #drain(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    /** Answers the last group written, once the next one was handed over (or there is none). */
    let answer: (() => void) | undefined;
    const answerPrevious = () => {
      const pending = answer;
      answer = undefined;
      pending?.();
    };
    try {
      while (this.#queue.length > 0) {
        this.#dropGone();
        const group: Waiting<T, R>[] = [];
        let count = 0;
        while (this.#queue.length > 0 && (group.length === 0 || count + (this.#queue[0] as Waiting<T, R>).items.length <= this.#maxItems)) {
          const next = this.#queue.shift() as Waiting<T, R>;
          group.push(next);
          count += next.items.length;
        }
        this.#queued -= count;
        if (group.length === 0) break;
        const deadline = this.#deadline(group, answerPrevious);
        try {
          const results = await this.#flush(
            group.flatMap((w) => w.items),
            answerPrevious,
          );
          if (deadline.passed()) continue;
          this.#storeFailedAt = undefined;
          answerPrevious();
          answer = () => {
            let offset = 0;
            for (const w of group) {
              w.resolve(results.slice(offset, offset + w.items.length));
              offset += w.items.length;
            }
          };
        } catch (error) {
          if (deadline.passed()) continue;
          answerPrevious();
          if (storeFailed(error)) this.#storeFailedAt = performance.now();
          if (group.length === 1 || storeFailed(error)) {
            answer = () => {
              for (const w of group) w.reject(error);
            };
            continue;
          }
          // One submission's bad data must not fail the others: each is written again on its own (the failed flush
          // stored nothing, see Flush), once and in order, and only those whose own write fails are rejected.
          const settled: (() => void)[] = [];
          for (const [i, w] of group.entries()) {
            // Past the deadline, this one and those after it have failed (STORAGE_UNAVAILABLE); those before stand.
            const alone = this.#deadline(group.slice(i), noop);
            try {
              const results = await this.#flush(w.items, noop);
              if (alone.passed()) break;
              this.#storeFailedAt = undefined;
              settled.push(() => w.resolve(results));
            } catch (own) {
              if (alone.passed()) break;
              if (storeFailed(own)) {
                // The store as a whole failed meanwhile: the rest would each fail (or wait the timeout) the same way.
                this.#storeFailedAt = performance.now();
                const rest = group.slice(i);
                settled.push(() => {
                  for (const r of rest) r.reject(own);
                });
                break;
              }
              settled.push(() => w.reject(own));
            }
          }
          answer = () => {
            for (const settle of settled) settle();
          };
        }
      }
    } finally {
      this.#running = false;
      answerPrevious();
    }
  }

  /** Drops the waiting submissions of clients that have gone away (see GroupCommit.gone). */
  #dropGone(): void {
    const gone = this.#gone;
    if (!gone) return;
    const kept: Waiting<T, R>[] = [];
    for (const w of this.#queue) {
      if (w.client !== undefined && gone(w.client)) {
        this.#queued -= w.items.length;
        w.reject(new CandorError('STORAGE_UNAVAILABLE', { reason: 'the request went away before its write started: nothing was written' }));
      } else kept.push(w);
    }
    this.#queue = kept;
  }

  /**
   * Arms timeoutMs for a group's flush: when it passes first, the group (and everything waiting) fails with
   * STORAGE_UNAVAILABLE and submissions are refused until the flush settles; `passed()` then says its outcome is to be
   * ignored.
   */
  #deadline(group: readonly Waiting<T, R>[], answerPrevious: () => void): { passed(): boolean } {
    if (this.#timeoutMs === undefined) return { passed: () => false };
    let passed = false;
    const timer = setTimeout(() => {
      passed = true;
      this.#stalled = true;
      // The previous group committed: its answer stands.
      answerPrevious();
      const error = new CandorError('STORAGE_UNAVAILABLE', { reason: `a write has not completed within ${this.#timeoutMs} ms` });
      const waiting = this.#queue;
      this.#queue = [];
      this.#queued = 0;
      for (const w of [...group, ...waiting]) w.reject(error);
    }, this.#timeoutMs);
    return {
      passed: () => {
        clearTimeout(timer);
        this.#stalled = false;
        return passed;
      },
    };
  }
}
