import { createHash } from 'node:crypto';

/** A stored audit entry. `details` holds ids, counts and field paths only, never personal values. */
export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  role: string;
  action: string;
  purpose: string;
  subject: string | null;
  resource: string | null;
  outcome: 'success' | 'denied' | 'failure';
  details: string | null;
  prevHash: string;
  hash: string;
}

export const GENESIS_HASH = '0'.repeat(64);

/** The hash an entry commits to: every field plus the previous entry's hash. */
export function entryHash(entry: Omit<AuditEntry, 'hash'>): string {
  const canonical = JSON.stringify([
    entry.seq, entry.at, entry.actor, entry.role, entry.action, entry.purpose,
    entry.subject, entry.resource, entry.outcome, entry.details, entry.prevHash,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

export type ChainBreak = 'altered' | 'removed' | 'reordered' | 'truncated';

export interface VerifyResult {
  ok: boolean;
  /** Entries checked. */
  entries: number;
  /**
   * Intact: the last entry. Broken: the last good entry, the last one whose successor links to it (an entry right
   * before a break is not vouched for: it may have been rewritten with a fresh hash, and its successor removed or
   * changed to hide that). Seq 0 with the genesis hash when no entry can be vouched for.
   */
  head: { seq: number; hash: string };
  /** The first entry where the chain breaks, and how. */
  firstBad?: { seq: number; problem: ChainBreak };
}

const MOVE_WINDOW = 1000;
const PENDING_LIMIT = 10_000;

/** Whether an entry whose hash fails is intact under another sequence number, that is, it was moved. */
function movedFrom(entry: AuditEntry): number | undefined {
  for (let delta = 1; delta <= MOVE_WINDOW; delta++) {
    for (const seq of [entry.seq - delta, entry.seq + delta]) {
      if (seq >= 1 && entryHash({ ...entry, seq }) === entry.hash) return seq;
    }
  }
  return undefined;
}

/**
 * Re-computes the chain over entries (in sequence order, as the database returns them, or as an export file lists
 * them) and names the first entry that was altered, removed or reordered. With an expected head (seq and hash
 * recorded earlier), a log cut short after it is caught too.
 */
export async function verifyChain(
  entries: AsyncIterable<AuditEntry> | Iterable<AuditEntry>,
  expectedHead?: { seq: number; hash: string },
): Promise<VerifyResult> {
  const genesis = { seq: 0, hash: GENESIS_HASH };
  let expectedSeq = 1;
  let count = 0;
  let headMatched = false;
  // The last entry accepted (hash and link to its predecessor check out), and that predecessor, which it vouches for.
  let last = genesis;
  let vouched = genesis;
  const pending = new Map<number, AuditEntry>();
  /** The last good entry when the chain breaks: `last` only if its successor (read now or earlier) links to it. */
  const lastGood = (current?: AuditEntry): { seq: number; hash: string } => {
    const next = current?.seq === expectedSeq ? current : pending.get(expectedSeq);
    return next !== undefined && next.prevHash === last.hash ? last : vouched;
  };
  const fail = (seq: number, problem: ChainBreak, good: { seq: number; hash: string }): VerifyResult => ({ ok: false, entries: count, head: { ...good }, firstBad: { seq, problem } });
  for await (const entry of entries) {
    count++;
    if (entryHash(entry) !== entry.hash) return fail(entry.seq, movedFrom(entry) !== undefined ? 'reordered' : 'altered', lastGood(entry));
    if (entry.seq < expectedSeq || pending.has(entry.seq)) return fail(entry.seq, 'reordered', lastGood(entry));
    if (entry.seq > expectedSeq) {
      pending.set(entry.seq, entry);
      if (pending.size > PENDING_LIMIT) return fail(expectedSeq, 'removed', lastGood());
      continue;
    }
    // The expected entry came after later ones: the order was changed.
    if (pending.size > 0) return fail(entry.seq, 'reordered', lastGood(entry));
    // Intact entry in its place whose link does not match: its predecessor was rewritten with a fresh hash.
    if (entry.prevHash !== last.hash) return fail(last.seq > 0 ? last.seq : entry.seq, 'altered', vouched);
    vouched = last;
    last = { seq: entry.seq, hash: entry.hash };
    if (expectedHead && entry.seq === expectedHead.seq) headMatched = entry.hash === expectedHead.hash;
    expectedSeq++;
  }
  if (pending.size > 0) return fail(expectedSeq, 'removed', lastGood());
  if (expectedHead && last.seq < expectedHead.seq) return fail(last.seq + 1, 'truncated', lastGood());
  // A chain recomputed as a whole is consistent in itself: nothing in it can be vouched for.
  if (expectedHead && !headMatched) return fail(expectedHead.seq, 'altered', genesis);
  return { ok: true, entries: count, head: { ...last } };
}
