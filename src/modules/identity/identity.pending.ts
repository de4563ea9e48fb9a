import { Freshness, type Storage } from '../../storage/index.ts';

/** A profile whose opt-outs bind another while the consent propagation of a merge or unmerge between them is pending. */
export interface PendingSource {
  readonly profileId: string;
  /** Only what it recorded from then on (an unmerge's split: from when the two were one person); all of it when absent. */
  readonly since?: string;
}

/** A merge or unmerge committed whose listeners have not all run: the canonical profile decided on meanwhile, and its sources. */
export interface PendingEntry {
  /** `merge:<id>` or `unmerge:<id>`. */
  readonly key: string;
  readonly subject: string;
  readonly sources: readonly PendingSource[];
}

interface Held extends PendingEntry {
  /** When this process first knew of it (epoch ms): another process's is left to that process for a moment. */
  readonly seenAt: number;
  /** The version at which this process held it. */
  readonly heldAt: number;
}

/** Whether two entries bind the same profile by the same sources. */
function sameEntry(a: PendingEntry | undefined, b: PendingEntry): boolean {
  return a !== undefined && a.subject === b.subject && a.sources.length === b.sources.length && a.sources.every((s, i) => s.profileId === b.sources[i]?.profileId && s.since === b.sources[i]?.since);
}

/** Where another process's writes cannot be told (PostgreSQL without commit notices): the stored list is read again at most this often. */
const UNTRACKED_READ_MS = 1000;
const MIN_RETRY_DELAY_MS = 1000;
const MAX_RETRY_DELAY_MS = 60_000;

/**
 * The merges and unmerges whose propagation is pending, by the canonical profile decided on meanwhile, in memory: what
 * this process committed (held at once), and what the database lists, read again only when another process wrote
 * identity_merges (the database tells: SQLite's data_version, PostgreSQL's commit notices) or this process moved the
 * graph while some were held. Nothing held and nothing written elsewhere (the usual case): no query.
 */
export class PendingPropagation {
  readonly #freshness: Freshness;
  readonly #entries = new Map<string, Held>();
  #bySubject = new Map<string, PendingSource[]>();
  #version = 0;
  /** Let go of during a read (their propagation ran and was marked): the read may still list them. */
  readonly #released = new Set<string>();
  #reading = false;
  #readAgain = true;
  #readAt = 0;
  #readGeneration = -1;
  #inFlight: Promise<void> | undefined;
  /** A retry that failed waits this long before the next (doubling up to MAX_RETRY_DELAY_MS), so that a failing one does not run every second. */
  #retryDelay = 0;
  #retryAfter = 0;

  constructor(storage: Storage) {
    this.#freshness = new Freshness(storage, ['identity_merges']);
  }

  /** Moves whenever sourcesOf may answer otherwise. */
  get version(): number {
    return this.#version;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The sources binding a canonical profile while propagations to it are pending; undefined when none. */
  sourcesOf(subject: string): readonly PendingSource[] | undefined {
    return this.#bySubject.size === 0 ? undefined : this.#bySubject.get(subject);
  }

  /** Holds a propagation this process knows is pending (committed, its listeners not all run); with `unlessHeld`, only if it is not held yet. */
  hold(entry: PendingEntry, options: { unlessHeld?: boolean } = {}, now = Date.now()): void {
    const held = this.#entries.get(entry.key);
    if (held !== undefined && options.unlessHeld) return;
    const seenAt = held?.seenAt ?? now;
    this.#released.delete(entry.key);
    this.#entries.set(entry.key, { ...entry, seenAt, heldAt: ++this.#version });
    this.#index();
  }

  /** Lets go of a propagation once it ran and is marked in the database. */
  release(key: string): void {
    if (this.#reading) this.#released.add(key);
    if (!this.#entries.delete(key)) return;
    this.#version++;
    this.#index();
  }

  /** The graph moved here (a merge, an unmerge): the profiles held entries are decided on may have changed. */
  graphChanged(): void {
    if (this.#entries.size > 0) this.#readAgain = true;
  }

  /** Reads the stored list at the next refresh (after a retry, which may have found some gone). */
  readAgain(): void {
    this.#readAgain = true;
  }

  /** Whether to retry now: one was known here for `graceMs`, and the wait after a failed retry is over. */
  retryDue(graceMs: number, now = Date.now()): boolean {
    if (now < this.#retryAfter) return false;
    for (const entry of this.#entries.values()) if (entry.seenAt <= now - graceMs) return true;
    return false;
  }

  /** A retry ended: after a failure the next waits longer, after a success not at all. */
  retried(failed: boolean, now = Date.now()): void {
    this.#retryDelay = failed ? Math.min(MAX_RETRY_DELAY_MS, Math.max(MIN_RETRY_DELAY_MS, this.#retryDelay * 2)) : 0;
    this.#retryAfter = now + this.#retryDelay;
  }

  /**
   * Brings the entries up to date with the database (`read`: every pending propagation stored) when another process
   * may have written since the last read, or this one asked for it; undefined when there is nothing to read.
   */
  refresh(read: () => Promise<PendingEntry[]>): Promise<void> | undefined {
    if (this.#inFlight !== undefined) {
      // A change noticed after that read started is read again after it.
      this.#freshness.check();
      if (!this.#readAgain && this.#freshness.generation === this.#readGeneration) return this.#inFlight;
      return this.#inFlight.catch(() => undefined).then(() => this.refresh(read));
    }
    const now = Date.now();
    const external = this.#freshness.lookAgain();
    if (!this.#readAgain && (!external || (!this.#freshness.tracked && now - this.#readAt < UNTRACKED_READ_MS))) return undefined;
    const since = this.#version;
    this.#reading = true;
    this.#readAgain = false;
    this.#readAt = now;
    this.#readGeneration = this.#freshness.generation;
    const reading = read().then(
      (entries) => this.#replace(entries, since, now),
      (error: unknown) => {
        this.#readAgain = true;
        throw error;
      },
    );
    this.#inFlight = reading.finally(() => {
      this.#reading = false;
      this.#released.clear();
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /** The stored list as read, but for what was let go of meanwhile, with what was held meanwhile. */
  #replace(stored: readonly PendingEntry[], since: number, now: number): void {
    const next = new Map<string, Held>();
    for (const entry of stored) {
      if (this.#released.has(entry.key)) continue;
      next.set(entry.key, { ...entry, seenAt: this.#entries.get(entry.key)?.seenAt ?? now, heldAt: since });
    }
    for (const [key, entry] of this.#entries) if (entry.heldAt > since && !next.has(key)) next.set(key, entry);
    if (next.size === this.#entries.size && [...next].every(([key, entry]) => sameEntry(this.#entries.get(key), entry))) return;
    this.#entries.clear();
    for (const [key, entry] of next) this.#entries.set(key, entry);
    this.#version++;
    this.#index();
  }

  #index(): void {
    const bySubject = new Map<string, PendingSource[]>();
    for (const entry of this.#entries.values()) {
      const list = bySubject.get(entry.subject);
      if (list === undefined) bySubject.set(entry.subject, [...entry.sources]);
      else list.push(...entry.sources);
    }
    this.#bySubject = bySubject;
  }
}
