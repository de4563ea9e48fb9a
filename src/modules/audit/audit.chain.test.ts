import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { entryHash, GENESIS_HASH, verifyChain, type AuditEntry } from './audit.chain.ts';

function chain(n: number): AuditEntry[] {
  const out: AuditEntry[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const partial = { seq, at: '2026-01-01T00:00:00.000Z', actor: 'a', role: 'owner', action: `act.${seq}`, purpose: 'p', subject: null, resource: null, outcome: 'success' as const, details: null, prevHash };
    const entry = { ...partial, hash: entryHash(partial) };
    out.push(entry);
    prevHash = entry.hash;
  }
  return out;
}

describe('audit hash chain', () => {
  it('accepts an intact chain and reports its head', async () => {
    const entries = chain(5);
    const result = await verifyChain(entries);
    assert.equal(result.ok, true);
    assert.equal(result.entries, 5);
    assert.deepEqual(result.head, { seq: 5, hash: entries[4]?.hash });
  });

  it('names an altered entry', async () => {
    const entries = chain(5);
    entries[2] = { ...(entries[2] as AuditEntry), actor: 'someone else' };
    assert.deepEqual((await verifyChain(entries)).firstBad, { seq: 3, problem: 'altered' });
  });

  it('names the predecessor when an entry was rewritten with a fresh hash', async () => {
    const entries = chain(5);
    const forged = { ...(entries[1] as AuditEntry), actor: 'forger' };
    entries[1] = { ...forged, hash: entryHash(forged) };
    assert.deepEqual((await verifyChain(entries)).firstBad, { seq: 2, problem: 'altered' });
  });

  it('names the position of a removed entry', async () => {
    const entries = chain(5);
    entries.splice(2, 1);
    assert.deepEqual((await verifyChain(entries)).firstBad, { seq: 3, problem: 'removed' });
  });

  it('detects entries swapped in an export file', async () => {
    const entries = chain(5);
    const [third, fourth] = [entries[2] as AuditEntry, entries[3] as AuditEntry];
    entries[2] = fourth;
    entries[3] = third;
    assert.deepEqual((await verifyChain(entries)).firstBad, { seq: 3, problem: 'reordered' });
  });

  it('detects entries renumbered to change their order', async () => {
    const entries = chain(5);
    const [third, fourth] = [entries[2] as AuditEntry, entries[3] as AuditEntry];
    entries[2] = { ...fourth, seq: 3 };
    entries[3] = { ...third, seq: 4 };
    assert.deepEqual((await verifyChain(entries)).firstBad, { seq: 3, problem: 'reordered' });
  });

  it('detects a log cut short after a recorded head', async () => {
    const entries = chain(5);
    const recorded = { seq: 5, hash: (entries[4] as AuditEntry).hash };
    assert.equal((await verifyChain(entries, recorded)).ok, true);
    assert.deepEqual((await verifyChain(entries.slice(0, 3), recorded)).firstBad, { seq: 4, problem: 'truncated' });
  });

  it('detects a whole chain recomputed after a recorded head', async () => {
    const entries = chain(5);
    const recorded = { seq: 4, hash: 'f'.repeat(64) };
    assert.deepEqual((await verifyChain(entries, recorded)).firstBad, { seq: 4, problem: 'altered' });
  });
});

describe('audit hash chain: the last good entry after tampering', () => {
  const at = (entries: AuditEntry[], seq: number) => ({ seq, hash: (entries[seq - 1] as AuditEntry).hash });
  const rewrite = (entry: AuditEntry, change: Partial<AuditEntry>): AuditEntry => {
    const forged = { ...entry, ...change };
    return { ...forged, hash: entryHash(forged) };
  };

  it('an entry edited and given a recomputed hash: broken there, the entry before it is the last good one', async () => {
    const entries = chain(40);
    const original = at(entries, 40);
    entries[29] = rewrite(entries[29] as AuditEntry, { actor: 'forger' });
    const result = await verifyChain(entries);
    assert.deepEqual(result.firstBad, { seq: 30, problem: 'altered' });
    assert.deepEqual(result.head, at(chain(40), 29), 'the forged entry is not called good');
    assert.deepEqual((await verifyChain(entries, original)).head, at(chain(40), 29));
  });

  it('an entry edited without a new hash: broken there, its predecessor (which it still links to) is the last good one', async () => {
    const entries = chain(40);
    entries[29] = { ...(entries[29] as AuditEntry), details: '{"rows":0}' };
    const result = await verifyChain(entries);
    assert.deepEqual(result.firstBad, { seq: 30, problem: 'altered' });
    assert.deepEqual(result.head, at(entries, 29));
  });

  it('an edited entry whose predecessor was rewritten too does not vouch for that predecessor', async () => {
    const entries = chain(40);
    entries[28] = rewrite(entries[28] as AuditEntry, { actor: 'forger' });
    entries[29] = { ...(entries[29] as AuditEntry), actor: 'forger' };
    const result = await verifyChain(entries);
    assert.deepEqual(result.firstBad, { seq: 30, problem: 'altered' });
    assert.deepEqual(result.head, at(entries, 28));
  });

  it('an entry deleted: removed there; its predecessor has no successor to vouch for it', async () => {
    const entries = chain(40);
    entries.splice(29, 1);
    const result = await verifyChain(entries);
    assert.deepEqual(result.firstBad, { seq: 30, problem: 'removed' });
    assert.deepEqual(result.head, at(entries, 28));
  });

  it('two entries swapped in the file: reordered, the entry the late one links to is the last good one', async () => {
    const entries = chain(40);
    [entries[29], entries[30]] = [entries[30] as AuditEntry, entries[29] as AuditEntry];
    const result = await verifyChain(entries);
    assert.deepEqual(result.firstBad, { seq: 30, problem: 'reordered' });
    assert.deepEqual(result.head, at(entries, 29));
  });

  it('two entries swapped and renumbered: reordered, and the entry before them is not vouched for', async () => {
    const entries = chain(40);
    const [a, b] = [entries[29] as AuditEntry, entries[30] as AuditEntry];
    entries[29] = { ...b, seq: 30 };
    entries[30] = { ...a, seq: 31 };
    const result = await verifyChain(entries);
    assert.deepEqual(result.firstBad, { seq: 30, problem: 'reordered' });
    assert.deepEqual(result.head, at(entries, 28));
  });

  it('a log cut short after a recorded head: truncated after the last entry left, which is not vouched for', async () => {
    const entries = chain(40);
    const recorded = at(entries, 40);
    const result = await verifyChain(entries.slice(0, 35), recorded);
    assert.deepEqual(result.firstBad, { seq: 36, problem: 'truncated' });
    assert.deepEqual(result.head, at(entries, 34));
  });

  it('a log cut short and its last entry rewritten: still truncated, the rewritten entry not called good', async () => {
    const entries = chain(40);
    const recorded = at(entries, 40);
    const cut = entries.slice(0, 35);
    cut[34] = rewrite(cut[34] as AuditEntry, { action: 'nothing.to.see' });
    const result = await verifyChain(cut, recorded);
    assert.deepEqual(result.firstBad, { seq: 36, problem: 'truncated' });
    assert.deepEqual(result.head, at(entries, 34));
  });

  it('a chain recomputed from an edited entry on: the recorded head catches it and nothing is vouched for', async () => {
    const entries = chain(40);
    const recorded = at(entries, 40);
    let prevHash = (entries[28] as AuditEntry).hash;
    for (let i = 29; i < 40; i++) {
      entries[i] = rewrite(entries[i] as AuditEntry, { prevHash, ...(i === 29 ? { actor: 'forger' } : {}) });
      prevHash = (entries[i] as AuditEntry).hash;
    }
    assert.equal((await verifyChain(entries)).ok, true, 'consistent in itself');
    const result = await verifyChain(entries, recorded);
    assert.deepEqual(result.firstBad, { seq: 40, problem: 'altered' });
    assert.deepEqual(result.head, { seq: 0, hash: GENESIS_HASH });
  });
});
