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

/**
 * Re-computes the chain over entries in sequence order and names the first entry that was altered, removed or
 * reordered. With an expected head (seq and hash recorded earlier), a log cut short after it is caught too.
 */
export async function verifyChain(
  entries: AsyncIterable<AuditEntry> | Iterable<AuditEntry>,
  expectedHead?: { seq: number; hash: string },
): Promise<VerifyResult> {
  let previousHash = GENESIS_HASH;
  let expectedSeq = 1;
  let count = 0;
  const seen = new Map<string, number>();
  const head = { seq: 0, hash: GENESIS_HASH };
  const fail = (seq: number, problem: ChainBreak): VerifyResult => ({ ok: false, entries: count, head: { ...head }, firstBad: { seq, problem } });
  for await (const entry of entries) {
    count++;
    if (entryHash(entry) !== entry.hash) return fail(entry.seq, 'altered');
    if (entry.seq !== expectedSeq || entry.prevHash !== previousHash) {
      // The entry is intact but does not follow its predecessor: it moved, or something before it went missing.
      const linkedTo = seen.get(entry.prevHash);
      if (entry.seq < expectedSeq || (linkedTo !== undefined && linkedTo !== expectedSeq - 1)) return fail(entry.seq, 'reordered');
      return fail(entry.seq, 'removed');
    }
    seen.set(entry.hash, entry.seq);
    previousHash = entry.hash;
    head.seq = entry.seq;
    head.hash = entry.hash;
    expectedSeq++;
  }
  if (expectedHead && (head.seq < expectedHead.seq || seen.get(expectedHead.hash) !== expectedHead.seq)) {
    return fail(Math.min(head.seq + 1, expectedHead.seq), head.seq < expectedHead.seq ? 'truncated' : 'altered');
  }
  return { ok: true, entries: count, head };
}
