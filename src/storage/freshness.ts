import type { Storage } from './storage.ts';

/**
 * Tells an in-process cache whether what it read at some moment may have been changed since by another connection
 * (the CLI, another server). `externalWrites` tells it (SQLite's data_version; PostgreSQL's commit notices), so a
 * cache that is also told of every change made through this process can keep its entries as long as nobody else
 * writes; while it cannot be known (PostgreSQL with its listening connection down), every entry counts as possibly
 * changed and caches refresh by age.
 */
export class Freshness {
  readonly #storage: Storage;
  readonly #tables: readonly string[] | undefined;
  #version: number | undefined;
  /** When a change by another connection was last noticed (epoch ms); entries read at or before it are suspect. */
  #changedAt = Number.POSITIVE_INFINITY;
  #generation = 0;
  /** The generation of the last lookAgain() that said to read again. */
  #lookedAt = -1;

  /** `tables`: what the cache reads; other processes' writes to other tables are ignored where that can be told. */
  constructor(storage: Storage, tables?: readonly string[]) {
    this.#storage = storage;
    this.#tables = tables;
  }

  /** Looks at the database once: call it once per batch, then ask changedSince() for each entry. */
  check(now = Date.now()): void {
    const version = this.#storage.externalWrites(this.#tables);
    if (version === undefined) {
      this.#changedAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (version !== this.#version) {
      this.#version = version;
      this.#changedAt = now;
      this.#generation++;
    }
  }

  /** Whether the database tells other connections' writes apart (SQLite); if not, every entry is always suspect. */
  get tracked(): boolean {
    return this.#changedAt !== Number.POSITIVE_INFINITY;
  }

  /** A number that moves whenever check() notices a write by another connection: what was read under the same one is current. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * For a cache read whole (a plan, purposes and notices, a list of entries): looks at the database and tells whether
   * to read it again, that is whether another connection wrote since the last time this said so; always while that
   * cannot be told.
   */
  lookAgain(): boolean {
    this.check();
    if (this.tracked && this.#generation === this.#lookedAt) return false;
    this.#lookedAt = this.#generation;
    return true;
  }

  /**
   * Whether an entry read at `at` (epoch ms) is due to be read again at `now`: once it is older than `minAgeMs`, if
   * another connection may have written since, and in any case once it is older than `maxAgeMs`.
   */
  due(at: number, now: number, minAgeMs: number, maxAgeMs: number): boolean {
    const age = now - at;
    return age > minAgeMs && (age > maxAgeMs || this.changedSince(at));
  }

  /** Whether another connection may have written since `at` (epoch ms), as of the last check(). */
  changedSince(at: number): boolean {
    return at <= this.#changedAt;
  }
}
