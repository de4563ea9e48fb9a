import { makeRoom } from '../../shared/make-room.ts';

/**
 * Identifier → canonical profile, per process, oldest entry out first. Entries come only from committed
 * reads; a merge, unmerge or suppression in this process drops the entries it affects at once and bumps the
 * generation, so a read that overlapped the change does not re-insert what it saw. Changes made by another process
 * are seen when `stale` says an entry (read at `at`) is due to be read again: at once where the database tells that
 * another process wrote since (Freshness), else by age.
 */
export class CanonicalCache {
  readonly #limit: number;
  readonly #stale: (at: number, now: number) => boolean;
  readonly #byKey = new Map<string, { canonical: string; holder: string; at: number }>();
  readonly #byCanonical = new Map<string, Set<string>>();
  #generation = 0;

  constructor(limit: number, stale: (at: number, now: number) => boolean) {
    this.#limit = limit;
    this.#stale = stale;
  }

  /** Increases on every invalidation; a fill is applied only if the generation did not move while reading. */
  get generation(): number {
    return this.#generation;
  }

  get(key: string, now = Date.now()): string | undefined {
    const entry = this.#byKey.get(key);
    if (!entry) return undefined;
    if (this.#stale(entry.at, now)) {
      this.#delete(key, entry.canonical);
      return undefined;
    }
    return entry.canonical;
  }

  /** The profile that holds the identifier itself (a merge member, or the canonical profile); read right after get(). */
  holder(key: string): string | undefined {
    return this.#byKey.get(key)?.holder;
  }

  /**
   * Stores what a committed read saw (identifier key, its canonical profile, the profile that holds it), unless an
   * invalidation happened since `generation` was taken.
   */
  fill(entries: Iterable<readonly [string, string, string]>, generation: number, now = Date.now()): void {
    if (generation !== this.#generation) return;
    for (const [key, canonical, holder] of entries) {
      const old = this.#byKey.get(key);
      if (old) this.#delete(key, old.canonical);
      makeRoom(this.#byKey, this.#limit, (oldest, { canonical: held }) => this.#delete(oldest, held));
      this.#byKey.set(key, { canonical, holder, at: now });
      let keys = this.#byCanonical.get(canonical);
      if (!keys) this.#byCanonical.set(canonical, (keys = new Set()));
      keys.add(key);
    }
  }

  /** Forgets every identifier cached as belonging to these canonical profiles. */
  dropProfiles(canonicals: Iterable<string>): void {
    this.#generation++;
    for (const canonical of canonicals) {
      for (const key of this.#byCanonical.get(canonical) ?? []) this.#byKey.delete(key);
      this.#byCanonical.delete(canonical);
    }
  }

  dropKeys(keys: Iterable<string>): void {
    this.#generation++;
    for (const key of keys) {
      const entry = this.#byKey.get(key);
      if (entry) this.#delete(key, entry.canonical);
    }
  }

  #delete(key: string, canonical: string): void {
    this.#byKey.delete(key);
    const keys = this.#byCanonical.get(canonical);
    keys?.delete(key);
    if (keys?.size === 0) this.#byCanonical.delete(canonical);
  }
}
