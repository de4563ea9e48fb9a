import { isCandorError } from '../shared/errors.ts';

/** A statement that changes the database (or ends a transaction): its success shows that writes go through again. */
const WRITE = /^\s*(insert|update|delete|replace|create|drop|alter|commit|end)\b/i;

/**
 * How long a failed write keeps `/readyz` at not ready without a later write: a load balancer that stops sending
 * traffic on the 503 would otherwise keep a server out for good once space is back (no write would come to clear it).
 * After it the server reads as ready again, and the next write that fails for a full disk sets the state anew.
 */
export const DISK_FULL_LAPSE_MS = 30_000;

/**
 * Whether the last write failed because the database or its disk is full (STORAGE_FULL), until a later write
 * succeeds (a commit, or a write outside a transaction) or DISK_FULL_LAPSE_MS have passed without one. `/readyz`
 * answers not ready meanwhile.
 */
export class DiskFullState {
  #full = false;
  #at = 0;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get full(): boolean {
    if (this.#full && this.#now() - this.#at >= DISK_FULL_LAPSE_MS) this.#full = false;
    return this.#full;
  }

  /** Notes a failed statement (coded already): the state is set when it failed for a full disk. Returns the error. */
  failed<E>(error: E): E {
    if (isCandorError(error, 'STORAGE_FULL')) {
      this.#full = true;
      this.#at = this.#now();
    }
    return error;
  }

  /** Notes a statement that succeeded: the state is cleared when it was a write that is now durable. */
  succeeded(sql: string, inTransaction: boolean): void {
    if (this.#full && !inTransaction && WRITE.test(sql)) this.#full = false;
  }

  /** Notes a commit that succeeded. */
  committed(): void {
    this.#full = false;
  }
}
