import { makeRoom } from '../../shared/make-room.ts';
import type { Current, SubjectFlags } from './decide.ts';

/** What this process knows of one subject: its pseudonym and latest entry per purpose. */
export interface SubjectState {
  readonly pseudonym: string;
  readonly purposes: ReadonlyMap<string, Current>;
  /** Restriction and objection to direct marketing in force. */
  readonly flags: SubjectFlags;
  /** The write epoch this state is known to be current at (see Consent#epoch). */
  readonly freshAsOf: number;
  /** When it was read from the database or written, epoch milliseconds. */
  readonly loadedAt: number;
}

/** A bounded map of subject states; setting a subject makes it the newest, the oldest are dropped first. */
export class SubjectCache {
  readonly #limit: number;
  readonly #map = new Map<string, SubjectState>();
  #version = 0;

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  /** The state of a subject, without changing its position (the hot path). */
  peek(subjectId: string): SubjectState | undefined {
    return this.#map.get(subjectId);
  }

  /** Counts every state set or dropped: a decision made at one version holds as long as it has not moved. */
  get version(): number {
    return this.#version;
  }

  set(subjectId: string, state: SubjectState): void {
    this.#version++;
    this.#map.delete(subjectId);
    makeRoom(this.#map, this.#limit);
    this.#map.set(subjectId, state);
  }

  /** Moves a subject to the newest position. */
  touch(subjectId: string): void {
    const state = this.#map.get(subjectId);
    if (state === undefined) return;
    this.#map.delete(subjectId);
    this.#map.set(subjectId, state);
  }

  delete(subjectId: string): void {
    this.#version++;
    this.#map.delete(subjectId);
  }

  get size(): number {
    return this.#map.size;
  }

  entries(): IterableIterator<[string, SubjectState]> {
    return this.#map.entries();
  }
}

/** Serialises work per key within this process; several keys are taken in sorted order so two callers never deadlock. */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  async acquire(keys: readonly string[]): Promise<() => void> {
    const releases: (() => void)[] = [];
    for (const key of [...new Set(keys)].sort()) releases.push(await this.#one(key));
    return () => {
      for (const release of releases) release();
    };
  }

  async #one(key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release: () => void = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    return () => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}
