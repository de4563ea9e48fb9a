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
  /** The last good entry's sequence number and hash. */
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
  let previousHash = GENESIS_HASH;
  let expectedSeq = 1;
  let count = 0;
  let headMatched = false;
  const head = { seq: 0, hash: GENESIS_HASH };
  const pending = new Map<number, AuditEntry>();
  const fail = (seq: number, problem: ChainBreak): VerifyResult => ({ ok: false, entries: count, head: { ...head }, firstBad: { seq, problem } });
  const accept = (entry: AuditEntry): VerifyResult | undefined => {
    // Intact entry in its place whose link does not match: its predecessor was rewritten with a fresh hash.
    if (entry.prevHash !== previousHash) return fail(entry.seq - 1, 'altered');
    previousHash = entry.hash;
    head.seq = entry.seq;
    head.hash = entry.hash;
    if (expectedHead && entry.seq === expectedHead.seq) headMatched = entry.hash === expectedHead.hash;
    expectedSeq++;
    return undefined;
  };
  for await (const entry of entries) {
    count++;
    if (entryHash(entry) !== entry.hash) return fail(entry.seq, movedFrom(entry) !== undefined ? 'reordered' : 'altered');
    if (entry.seq < expectedSeq || pending.has(entry.seq)) return fail(entry.seq, 'reordered');
    if (entry.seq > expectedSeq) {
      pending.set(entry.seq, entry);
      if (pending.size > PENDING_LIMIT) return fail(expectedSeq, 'removed');
      continue;
    }
    // The expected entry came after later ones: the order was changed.
    if (pending.size > 0) return fail(entry.seq, 'reordered');
    const broken = accept(entry);
    if (broken) return broken;
  }
  if (pending.size > 0) return fail(expectedSeq, 'removed');
  if (expectedHead && (head.seq < expectedHead.seq || !headMatched)) {
    return fail(Math.min(head.seq + 1, expectedHead.seq), head.seq < expectedHead.seq ? 'truncated' : 'altered');
  }
  return { ok: true, entries: count, head };
}
