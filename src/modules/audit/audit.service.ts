import { isRetryableStorageError, isUniqueViolation, type SqlExecutor, type Storage } from '../../storage/index.ts';
import { CandorError } from '../../shared/errors.ts';
import { entryHash, GENESIS_HASH, verifyChain, type AuditEntry, type VerifyResult } from './audit.chain.ts';
import { AuditRepo, type AuditQuery } from './audit.repo.ts';

/** What happened, by whom, for which purpose. `subject` is always a pseudonym, never a plaintext id. */
export interface AuditEvent {
  actor: string;
  role: string;
  action: string;
  purpose: string;
  subject?: string | null;
  resource?: string | null;
  outcome?: AuditEntry['outcome'];
  /** Ids, counts, field paths: never personal values. */
  details?: Readonly<Record<string, string | number | boolean | null | readonly string[]>>;
}

interface Pending {
  event: AuditEvent;
  resolve: (entry: AuditEntry) => void;
  reject: (error: unknown) => void;
}

/**
 * The hash-chained audit log. Appends are queued and written in order; appends that arrive while a write is in
 * flight go out together in the next one (group commit), so each call resolves only once its entry is durable.
 */
export class AuditLog {
  readonly #repo: AuditRepo;
  #queue: Pending[] = [];
  #writing = false;
  #scheduled = false;

  constructor(storage: Storage) {
    this.#repo = new AuditRepo(storage);
  }

  /** Appends one entry; resolves when it is committed. */
  append(event: AuditEvent): Promise<AuditEntry> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ event, resolve, reject });
      this.#schedule();
    });
  }

  /** Appends several entries in one transaction. */
  appendBatch(events: readonly AuditEvent[]): Promise<AuditEntry[]> {
    return Promise.all(events.map((event) => this.append(event)));
  }

  /**
   * Appends entries inside the caller's transaction, so that they commit with the change they record or not at all.
   * Chained after the head the transaction reads; a number taken meanwhile by another writer is chained after anew.
   */
  async appendIn(tx: SqlExecutor, events: readonly AuditEvent[]): Promise<AuditEntry[]> {
    if (events.length === 0) return [];
    await this.#repo.lockIn(tx);
    for (let attempt = 0; ; attempt++) {
      const head = (await this.#repo.headIn(tx)) ?? { seq: 0, hash: GENESIS_HASH };
      const entries = this.#chain(events, head);
      const inserted = await this.#repo.insertIn(tx, entries);
      if (inserted) return entries;
      if (attempt >= 50) throw new CandorError('AUDIT_APPEND_FAILED');
    }
  }

  /** Starts a write once the current tick has queued everything it is going to (so they share one commit). */
  #schedule(): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        await this.#write(batch);
      }
    } finally {
      this.#writing = false;
    }
  }

  async #write(batch: Pending[]): Promise<void> {
    const events = batch.map((p) => p.event);
    for (let attempt = 0; ; attempt++) {
      try {
        // The head is read in the same transaction as the insert, under the append lock: no other appender can take
        // the number in between (a transaction of another module appending its own entries, another process).
        const entries = await this.#repo.appendChained((head) => this.#chain(events, head ?? { seq: 0, hash: GENESIS_HASH }));
        batch.forEach((p, i) => p.resolve(entries[i] as AuditEntry));
        return;
      } catch (error) {
        // A process of an older release appends without the lock (or, on SQLite, between statements): chain again.
        if (isUniqueViolation(error) && attempt < 50) {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2 ** attempt, 50)));
          continue;
        }
        // A storage failure that is coded and retryable (STORAGE_FULL, STORAGE_BUSY, STORAGE_UNAVAILABLE) keeps its code.
        const failure = isRetryableStorageError(error) ? error : new CandorError('AUDIT_APPEND_FAILED', undefined, { cause: error });
        for (const p of batch) p.reject(failure);
        return;
      }
    }
  }

  #chain(events: readonly AuditEvent[], head: { seq: number; hash: string }): AuditEntry[] {
    let prevHash = head.hash;
    let seq = head.seq;
    const at = new Date().toISOString();
    return events.map((event) => {
      seq++;
      const partial = {
        seq,
        at,
        actor: event.actor,
        role: event.role,
        action: event.action,
        purpose: event.purpose,
        subject: event.subject ?? null,
        resource: event.resource ?? null,
        outcome: event.outcome ?? 'success',
        details: event.details ? JSON.stringify(event.details) : null,
        prevHash,
      };
      const entry = { ...partial, hash: entryHash(partial) };
      prevHash = entry.hash;
      return entry;
    });
  }

  /** Entries in sequence order, filtered. */
  list(query: AuditQuery): Promise<AuditEntry[]> {
    return this.#repo.list(query);
  }

  /** Every entry in sequence order. */
  scan(): AsyncGenerator<AuditEntry> {
    return this.#repo.scan();
  }

  /** Re-computes the whole chain from the database. */
  verify(expectedHead?: { seq: number; hash: string }): Promise<VerifyResult> {
    return verifyChain(this.#repo.scan(), expectedHead);
  }
}
