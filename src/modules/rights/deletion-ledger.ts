import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CandorError } from '../../shared/errors.ts';
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

/** The line an entry is written as (fields in a fixed order). */
function lineOf(e: DeletionLedgerEntry): string {
  return JSON.stringify({ seq: e.seq, requestId: e.requestId, at: e.at, profileIds: e.profileIds, identifiers: e.identifiers, prevHash: e.prevHash, hash: e.hash });
}

/** The tail of each ledger file's queue of writers in this process, by absolute path. */
const writers = new Map<string, Promise<unknown>>();

/**
 * The deletion ledger file: one JSON line per erasure, appended and fsynced, outside the database so that a restored
 * backup cannot take it back. Writers in one process take turns (`exclusive`) and append only what follows the
 * file's last entry. A line may still repeat an earlier one (two processes catching up at once, or two erasures of
 * an older version finishing together): a line identical to the entry of its sequence number is ignored, anything
 * else breaks the chain.
 */
export class DeletionLedger {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** Every entry, verified; RIGHTS_LEDGER_TAMPERED when the file was edited, truncated in the middle or reordered. */
  read(): DeletionLedgerEntry[] {
    if (!existsSync(this.path)) return [];
    const entries: DeletionLedgerEntry[] = [];
    const lines = readFileSync(this.path, 'utf8').split('\n');
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
    return entries;
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
   * now; returns how many. Call it inside `exclusive`. RIGHTS_LEDGER_TAMPERED, writing nothing, when they would not
   * link to the file's last entry.
   */
  appendMissing(authority: readonly DeletionLedgerEntry[]): number {
    const last = this.read().at(-1);
    const missing = authority.filter((e) => e.seq > (last?.seq ?? 0));
    if (missing.length === 0) return 0;
    if (missing[0]?.prevHash !== (last?.hash ?? GENESIS_HASH)) throw new CandorError('RIGHTS_LEDGER_TAMPERED', { seq: missing[0]?.seq, problem: 'file and database differ' });
    this.append(missing);
    return missing.length;
  }

  /** Appends entries as lines and waits until they are on disk. */
  append(entries: readonly DeletionLedgerEntry[]): void {
    if (entries.length === 0) return;
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const fd = openSync(this.path, 'a', 0o600);
    try {
      writeSync(fd, entries.map((e) => lineOf(e) + '\n').join(''));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
