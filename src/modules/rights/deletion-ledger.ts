import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { appendFileDurably, type WriteFunction } from '../../shared/durable-write.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import { lockFile } from '../../shared/file-lock.ts';
import type { Logger } from '../../shared/logger.ts';
import type { DeletionLedgerEntry, IdentifierPseudonym } from '../../shared/subject-data.ts';

/** The previous hash of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** The file name of the ledger inside the data directory. */
export const LEDGER_FILE = 'deletion-ledger.jsonl';

/** SHA-256 over the entry's fields in a fixed order, the previous hash included: editing any line breaks the chain. */
export function ledgerHash(entry: Omit<DeletionLedgerEntry, 'hash'>): string {
  const canonical = JSON.stringify([entry.seq, entry.requestId, entry.at, entry.profileIds, entry.identifiers.map((i) => [i.type, i.valueHash]), entry.prevHash]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** The entry that follows `previous` (or starts the chain). */
export function nextLedgerEntry(
  previous: DeletionLedgerEntry | undefined,
  fields: { requestId: string; at: string; profileIds: readonly string[]; identifiers: readonly IdentifierPseudonym[] },
): DeletionLedgerEntry {
  const body = {
    seq: (previous?.seq ?? 0) + 1,
    requestId: fields.requestId,
    at: fields.at,
    profileIds: [...fields.profileIds],
    identifiers: fields.identifiers.map((i) => ({ type: i.type, valueHash: i.valueHash })),
    prevHash: previous?.hash ?? GENESIS_HASH,
  };
  return { ...body, hash: ledgerHash(body) };
}

/** Checks a ledger: sequence numbers 1, 2, 3…, each entry's hash, and each link to the previous entry. */
export function verifyLedgerLines(entries: readonly DeletionLedgerEntry[]): { ok: true } | { ok: false; seq: number; problem: string } {
  let previous: DeletionLedgerEntry | undefined;
  for (const [index, entry] of entries.entries()) {
    if (entry.seq !== index + 1) return { ok: false, seq: entry.seq, problem: 'sequence gap' };
    if (entry.prevHash !== (previous?.hash ?? GENESIS_HASH)) return { ok: false, seq: entry.seq, problem: 'broken link to the previous entry' };
    const { hash, ...body } = entry;
    if (ledgerHash(body) !== hash) return { ok: false, seq: entry.seq, problem: 'entry altered' };
    previous = entry;
  }
  return { ok: true };
}

function parseLine(line: string, lineNo: number): DeletionLedgerEntry {
  try {
    const e = JSON.parse(line) as DeletionLedgerEntry;
    const shaped =
      Number.isInteger(e.seq) &&
      typeof e.requestId === 'string' &&
      typeof e.at === 'string' &&
      Array.isArray(e.profileIds) &&
      e.profileIds.every((p) => typeof p === 'string') &&
      Array.isArray(e.identifiers) &&
      e.identifiers.every((i) => typeof i?.type === 'string' && typeof i?.valueHash === 'string') &&
      typeof e.prevHash === 'string' &&
      typeof e.hash === 'string';
    if (shaped) return e;
  } catch {
    // reported below, with the line number only
  }
  throw new CandorError('RIGHTS_LEDGER_TAMPERED', { line: lineNo, problem: 'unreadable line' });
}

/** Whether a line (without its newline) is a whole, well-formed entry. */
function isEntryLine(line: string): boolean {
  try {
    parseLine(line, 0);
    return true;
  } catch {
    return false;
  }
}

/** How every line starts (lineOf): `"` is escaped inside a JSON string, so it starts an entry wherever it stands. */
const LINE_START = '{"seq":';

/**
 * Whether what follows the file's last newline is the start of one entry line cut short, as an append that never
 * completed leaves it: a prefix of an entry as written, not a whole one. Anything else there is read as a line.
 */
function isTornLine(tail: string): boolean {
  if (tail === '' || isEntryLine(tail)) return false;
  return tail.startsWith(LINE_START) ? !tail.includes(LINE_START, 1) : LINE_START.startsWith(tail);
}

/** The file's torn last line, if it ends in one. */
function tornTail(bytes: Buffer): TornTail | undefined {
  const end = bytes.lastIndexOf(0x0a) + 1;
  return isTornLine(bytes.subarray(end).toString('utf8')) ? { end, size: bytes.length } : undefined;
}

/** The line an entry is written as (fields in a fixed order). */
function lineOf(e: DeletionLedgerEntry): string {
  return JSON.stringify({ seq: e.seq, requestId: e.requestId, at: e.at, profileIds: e.profileIds, identifiers: e.identifiers, prevHash: e.prevHash, hash: e.hash });
}

/** The tail of each ledger file's queue of writers in this process, by absolute path. */
const writers = new Map<string, Promise<unknown>>();

/**
 * How long an append waits for another process's append to the same file (the lock is held for one append: a few
 * milliseconds, an fsync included).
 */
const APPEND_LOCK_WAIT_MS = 2000;

/** The pauses between tries for that lock: the first, doubled after each try up to the longest. */
const APPEND_LOCK_FIRST_PAUSE_MS = 5;
const APPEND_LOCK_MAX_PAUSE_MS = 50;

/** The lock file beside the ledger that appends from every process take (lockFile: released when its holder ends). */
export const ledgerLockPath = (path: string): string => `${path}.lock`;

/** Where a last line without its newline that is not a whole entry starts, and the file's length, when it ends in one. */
interface TornTail {
  end: number;
  size: number;
}

/** What a DeletionLedger is told to use besides its path. */
export interface DeletionLedgerOptions {
  /** Where a torn last line skipped or cut away is reported (default: a process warning, CANDOR_LEDGER_TORN_LINE). */
  logger?: Pick<Logger, 'warn'>;
  /** Replaces the write system call (tests). */
  write?: WriteFunction;
}

/**
 * The deletion ledger file: one JSON line per erasure, appended and fsynced, outside the database so that a restored
 * backup cannot take it back. Writers in one process take turns (`exclusive`); appends of every process take the file's
 * lock (`<file>.lock`) and append only what follows the file's last entry. A line may still repeat an earlier one (two
 * erasures of an older version finishing together): a line identical to the entry of its sequence number is ignored,
 * anything else breaks the chain. An append is whole or cut back; a last line without its newline that is not a whole
 * entry is an append in progress (another process's) or one that never completed (a crash, or a full disk before this
 * was fixed), never acknowledged: reading leaves it out and leaves the file as it is; the next append, holding the lock
 * (so no append is in progress), cuts it away.
 */
export class DeletionLedger {
  readonly path: string;
  readonly #options: DeletionLedgerOptions;
  /** The length of the file when its torn last line was last reported as skipped (reported once per file state). */
  #skippedAt: number | undefined;

  constructor(path: string, options: DeletionLedgerOptions = {}) {
    this.path = path;
    this.#options = options;
  }

  /**
   * Every entry, verified; RIGHTS_LEDGER_TAMPERED when the file was edited, truncated in the middle or reordered. A
   * torn last line (no newline, not a whole entry) is left out and reported; the file is never changed by a read.
   */
  read(): DeletionLedgerEntry[] {
    const { entries, torn } = this.#load();
    if (torn && this.#skippedAt !== torn.size) {
      this.#skippedAt = torn.size;
      this.#report(
        { file: this.path, skippedBytes: torn.size - torn.end, length: torn.end },
        'deletion ledger: a last line without its newline that is not a whole entry was left out (an append in progress, or one that never completed and was never acknowledged, which the next append cuts away)',
      );
    }
    return entries;
  }

  /** The file's entries, verified, and its torn last line if it ends in one (left out of the entries). */
  #load(): { entries: DeletionLedgerEntry[]; torn: TornTail | undefined } {
    if (!existsSync(this.path)) return { entries: [], torn: undefined };
    const bytes = readFileSync(this.path);
    const torn = tornTail(bytes);
    const entries: DeletionLedgerEntry[] = [];
    const lines = bytes.subarray(0, torn?.end ?? bytes.length).toString('utf8').split('\n');
    for (const [index, line] of lines.entries()) {
      if (line.trim() === '') continue;
      const entry = parseLine(line, index + 1);
      const last = entries.at(-1);
      if (last && entry.seq <= last.seq) {
        // A repeat of an entry already read adds nothing; a different entry under a used number is an edit.
        const earlier = entries[entry.seq - 1];
        if (earlier && lineOf(earlier) === lineOf(entry)) continue;
        throw new CandorError('RIGHTS_LEDGER_TAMPERED', { seq: entry.seq, problem: 'a line repeats a sequence number with other content' });
      }
      entries.push(entry);
    }
    const verdict = verifyLedgerLines(entries);
    if (!verdict.ok) throw new CandorError('RIGHTS_LEDGER_TAMPERED', { seq: verdict.seq, problem: verdict.problem });
    return { entries, torn };
  }

  #report(fields: Record<string, unknown>, message: string): void {
    if (this.#options.logger) this.#options.logger.warn(fields, message);
    else process.emitWarning(`${message} (${Object.entries(fields).map(([k, v]) => `${k}: ${String(v)}`).join(', ')})`, { code: 'CANDOR_LEDGER_TORN_LINE' });
  }

  /**
   * Runs `fn` holding the file's lock, which every append of every process takes: no other append is in progress
   * meanwhile. While another process holds it, tries again after short pauses (the event loop runs on meanwhile: a
   * blocking wait would stall the server); RIGHTS_LEDGER_WRITE_FAILED (reason `locked`) when it holds it for longer
   * than an append. `fn` runs synchronously, so appends of this process never contend for the lock among themselves.
   */
  async #locked<T>(fn: () => T): Promise<T> {
    const lockPath = ledgerLockPath(this.path);
    const deadline = performance.now() + APPEND_LOCK_WAIT_MS;
    let pauseMs = APPEND_LOCK_FIRST_PAUSE_MS;
    let lock: ReturnType<typeof lockFile>;
    for (;;) {
      try {
        mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
        lock = lockFile(lockPath, 0);
      } catch (error) {
        const full = isCandorError(error, 'STORAGE_FULL') ? (error.details?.reason === 'EDQUOT' ? 'EDQUOT' : 'ENOSPC') : undefined;
        const reason = full ?? (error as NodeJS.ErrnoException).code ?? 'lock_failed';
        throw new CandorError('RIGHTS_LEDGER_WRITE_FAILED', { file: this.path, reason }, { cause: error });
      }
      const left = deadline - performance.now();
      if (lock || left <= 0) break;
      await sleep(Math.min(pauseMs, left));
      pauseMs = Math.min(pauseMs * 2, APPEND_LOCK_MAX_PAUSE_MS);
    }
    if (!lock) throw new CandorError('RIGHTS_LEDGER_WRITE_FAILED', { file: this.path, reason: 'locked', lock: lockPath });
    try {
      return fn();
    } finally {
      lock.close();
    }
  }

  /** Cuts a torn last line away (call it holding the lock: it is then no append in progress), and reports it. */
  #cut(torn: TornTail): void {
    const fd = this.#open('r+');
    try {
      ftruncateSync(fd, torn.end);
      fsyncSync(fd);
    } catch (error) {
      throw new CandorError('RIGHTS_LEDGER_WRITE_FAILED', { file: this.path, reason: (error as NodeJS.ErrnoException).code ?? 'truncate_failed' }, { cause: error });
    } finally {
      closeSync(fd);
    }
    this.#report(
      { file: this.path, cutBytes: torn.size - torn.end, length: torn.end },
      'deletion ledger: a torn last line (no newline, not a whole entry: an append that never completed, so never acknowledged) was cut away',
    );
  }

  /** Whether the file ends inside a line (its last byte is not a newline). */
  #endsInsideLine(): boolean {
    if (!existsSync(this.path)) return false;
    const fd = this.#open('r');
    try {
      const size = fstatSync(fd).size;
      if (size === 0) return false;
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      return last[0] !== 0x0a;
    } finally {
      closeSync(fd);
    }
  }

  #open(flags: string): number {
    try {
      return openSync(this.path, flags);
    } catch (error) {
      throw new CandorError('RIGHTS_LEDGER_WRITE_FAILED', { file: this.path, reason: (error as NodeJS.ErrnoException).code ?? 'open_failed' }, { cause: error });
    }
  }

  /** Runs `fn` when every earlier call for the same file in this process has settled: one writer at a time. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const key = resolve(this.path);
    const previous = writers.get(key) ?? Promise.resolve();
    const turn = previous.then(fn, fn);
    const tail = turn.catch(() => undefined);
    writers.set(key, tail);
    try {
      return await turn;
    } finally {
      if (writers.get(key) === tail) writers.delete(key);
    }
  }

  /**
   * Appends the entries of `authority` (the database's chain, oldest first) that follow the file's last entry, read
   * now under the file's lock; returns how many. A torn last line is cut away even when nothing is missing. Call it
   * inside `exclusive`. RIGHTS_LEDGER_TAMPERED, writing nothing, when they would not link to the file's last entry.
   */
  async appendMissing(authority: readonly DeletionLedgerEntry[]): Promise<number> {
    const missingFrom = (entries: readonly DeletionLedgerEntry[]) => {
      const last = entries.at(-1);
      const missing = authority.filter((e) => e.seq > (last?.seq ?? 0));
      if (missing.length > 0 && missing[0]?.prevHash !== (last?.hash ?? GENESIS_HASH)) throw new CandorError('RIGHTS_LEDGER_TAMPERED', { seq: missing[0]?.seq, problem: 'file and database differ' });
      return missing;
    };
    // Nothing to write (the usual start): the lock is not taken, and a data directory that is not writable will do.
    const seen = this.#load();
    if (!seen.torn && missingFrom(seen.entries).length === 0) return 0;
    return this.#locked(() => {
      const { entries, torn } = this.#load();
      const missing = missingFrom(entries);
      if (torn) this.#cut(torn);
      this.#appendLocked(missing);
      return missing.length;
    });
  }

  /**
   * Appends entries as lines and waits until they are on disk: all of them or none, the file cut back to its length
   * on a failure (RIGHTS_LEDGER_WRITE_FAILED, e.g. reason ENOSPC), so that no torn line is left for later reads.
   */
  async append(entries: readonly DeletionLedgerEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.#locked(() => this.#appendLocked(entries));
  }

  /** append(), holding the lock: a torn last line is cut away; a whole entry lacking only its newline gets it first. */
  #appendLocked(entries: readonly DeletionLedgerEntry[]): void {
    if (entries.length === 0) return;
    let unterminated = false;
    if (this.#endsInsideLine()) {
      const torn = tornTail(readFileSync(this.path));
      if (torn) this.#cut(torn);
      else unterminated = true;
    }
    const lines = entries.map((e) => lineOf(e) + '\n').join('');
    appendFileDurably(this.path, (unterminated ? '\n' : '') + lines, { code: 'RIGHTS_LEDGER_WRITE_FAILED', mode: 0o600, write: this.#options.write });
  }
}
