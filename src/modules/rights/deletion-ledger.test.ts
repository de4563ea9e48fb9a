import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isCandorError } from '../../shared/errors.ts';
import type { DeletionLedgerEntry } from '../../shared/subject-data.ts';
import { DeletionLedger, GENESIS_HASH, nextLedgerEntry, verifyLedgerLines } from './deletion-ledger.ts';

function chain(n: number): DeletionLedgerEntry[] {
  const out: DeletionLedgerEntry[] = [];
  for (let i = 0; i < n; i++) {
    out.push(nextLedgerEntry(out.at(-1), { requestId: `r${i}`, at: `2026-01-0${i + 1}T00:00:00.000Z`, profileIds: [`prf_${i}`], identifiers: [{ type: 'email', valueHash: `h${i}` }] }));
  }
  return out;
}

describe('deletion ledger chain', () => {
  it('links each entry to the previous one, starting from 64 zeros', () => {
    const entries = chain(3);
    assert.equal(entries[0]?.prevHash, GENESIS_HASH);
    assert.equal(entries[1]?.prevHash, entries[0]?.hash);
    assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(verifyLedgerLines(entries), { ok: true });
  });

  it('detects an altered entry, a removed entry and a reordering', () => {
    const entries = chain(3);
    const altered = entries.map((e, i) => (i === 1 ? { ...e, profileIds: ['prf_other'] } : e));
    assert.deepEqual(verifyLedgerLines(altered), { ok: false, seq: 2, problem: 'entry altered' });
    assert.deepEqual(verifyLedgerLines([entries[0], entries[2]] as DeletionLedgerEntry[]), { ok: false, seq: 3, problem: 'sequence gap' });
    const relinked = { ...(entries[2] as DeletionLedgerEntry), seq: 2 };
    assert.equal(verifyLedgerLines([entries[0], relinked] as DeletionLedgerEntry[]).ok, false);
  });

  it('reads back what it appended, ignores an identical duplicate line and refuses an edited file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-ledger-'));
    try {
      const ledger = new DeletionLedger(join(dir, 'deletion-ledger.jsonl'));
      assert.deepEqual(ledger.read(), []);
      const entries = chain(3);
      ledger.append(entries.slice(0, 2));
      ledger.append(entries.slice(1));
      assert.deepEqual(ledger.read(), entries);
      const text = readFileSync(ledger.path, 'utf8');
      writeFileSync(ledger.path, text.replace('prf_1', 'prf_9'));
      assert.throws(() => ledger.read(), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
      writeFileSync(ledger.path, text + '{not json\n');
      assert.throws(() => ledger.read(), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
