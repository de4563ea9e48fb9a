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
