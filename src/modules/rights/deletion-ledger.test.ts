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

  it('ignores a block of lines written again after later ones, and refuses another entry under a used number', () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-ledger-'));
    try {
      const ledger = new DeletionLedger(join(dir, 'deletion-ledger.jsonl'));
      const entries = chain(4);
      // What two erasures of an older version finishing together wrote: 1, 2, 3, 4, 3, 4.
      ledger.append(entries);
      ledger.append(entries.slice(2));
      assert.deepEqual(ledger.read(), entries);
      const other = nextLedgerEntry(entries[1], { requestId: 'rX', at: '2026-02-01T00:00:00.000Z', profileIds: ['prf_x'], identifiers: [] });
      ledger.append([other]);
      assert.throws(() => ledger.read(), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('appends only what follows the file\'s last entry, one writer at a time, and nothing that would not link', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-ledger-'));
    try {
      const ledger = new DeletionLedger(join(dir, 'deletion-ledger.jsonl'));
      const entries = chain(5);
      assert.equal(ledger.appendMissing(entries.slice(0, 2)), 2);
      // Writers that each see the whole chain: the first appends the rest, the others nothing.
      let active = 0;
      let most = 0;
      const writer = (fail: boolean) => new DeletionLedger(ledger.path).exclusive(async () => {
        most = Math.max(most, ++active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
        if (fail) throw new Error('disk full');
        return ledger.appendMissing(entries);
      });
      const written = await Promise.allSettled([writer(true), writer(false), writer(false), writer(false)]);
      assert.equal(most, 1, 'one writer at a time');
      assert.deepEqual(written.map((w) => (w.status === 'fulfilled' ? w.value : 'failed')), ['failed', 3, 0, 0], 'a failed turn does not stop the next');
      assert.equal(readFileSync(ledger.path, 'utf8').trimEnd().split('\n').length, 5);
      assert.deepEqual(ledger.read(), entries);
      // A database chain that forked from the file's at entry 5: its entry 6 does not follow the file's entry 5.
      const fork = nextLedgerEntry(entries[3], { requestId: 'rX', at: '2026-03-01T00:00:00.000Z', profileIds: [], identifiers: [] });
      const sixth = nextLedgerEntry(fork, { requestId: 'r6', at: '2026-03-02T00:00:00.000Z', profileIds: [], identifiers: [] });
      assert.throws(() => ledger.appendMissing([...entries.slice(0, 4), fork, sixth]), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
      assert.deepEqual(ledger.read(), entries, 'nothing written');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
