import assert from 'node:assert/strict';
import { diskWithRoom } from '../../../test/support/full-disk.ts';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { WriteFunction } from '../../shared/durable-write.ts';
import { isCandorError } from '../../shared/errors.ts';
import type { DeletionLedgerEntry } from '../../shared/subject-data.ts';
import { lockFile } from '../../shared/file-lock.ts';
import { DeletionLedger, GENESIS_HASH, ledgerLockPath, nextLedgerEntry, verifyLedgerLines } from './deletion-ledger.ts';

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

  it('reads back what it appended, ignores an identical duplicate line and refuses an edited file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-ledger-'));
    try {
      const ledger = new DeletionLedger(join(dir, 'deletion-ledger.jsonl'));
      assert.deepEqual(ledger.read(), []);
      const entries = chain(3);
      await ledger.append(entries.slice(0, 2));
      await ledger.append(entries.slice(1));
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

  it('ignores a block of lines written again after later ones, and refuses another entry under a used number', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-ledger-'));
    try {
      const ledger = new DeletionLedger(join(dir, 'deletion-ledger.jsonl'));
      const entries = chain(4);
      // What two erasures of an older version finishing together wrote: 1, 2, 3, 4, 3, 4.
      await ledger.append(entries);
      await ledger.append(entries.slice(2));
      assert.deepEqual(ledger.read(), entries);
      const other = nextLedgerEntry(entries[1], { requestId: 'rX', at: '2026-02-01T00:00:00.000Z', profileIds: ['prf_x'], identifiers: [] });
      await ledger.append([other]);
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
      assert.equal(await ledger.appendMissing(entries.slice(0, 2)), 2);
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
      await assert.rejects(ledger.appendMissing([...entries.slice(0, 4), fork, sixth]), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
      assert.deepEqual(ledger.read(), entries, 'nothing written');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});


describe('deletion ledger file on a full disk', () => {
  const line = (e: DeletionLedgerEntry) => JSON.stringify({ seq: e.seq, requestId: e.requestId, at: e.at, profileIds: e.profileIds, identifiers: e.identifiers, prevHash: e.prevHash, hash: e.hash });

  /** A ledger in a fresh directory, and what it is told of torn lines cut away. */
  function ledgerIn(options: { write?: WriteFunction } = {}): { ledger: DeletionLedger; warnings: unknown[]; done(): void } {
    const dir = mkdtempSync(join(tmpdir(), 'candor-ledger-'));
    const warnings: unknown[] = [];
    const ledger = new DeletionLedger(join(dir, 'deletion-ledger.jsonl'), { ...options, logger: { warn: (fields: unknown) => void warnings.push(fields) } });
    return { ledger, warnings, done: () => rmSync(dir, { recursive: true, force: true }) };
  }

  it('appends whole lines or nothing: a short write is cut back and fails coded, and the append succeeds once there is space', async () => {
    const entries = chain(3);
    const { ledger, done } = ledgerIn();
    try {
      await ledger.append(entries.slice(0, 2));
      const before = readFileSync(ledger.path);
      // Room for part of the line only: write(2) answers a short count, then ENOSPC.
      const full = new DeletionLedger(ledger.path, { write: diskWithRoom(100) });
      await assert.rejects(full.append(entries.slice(2)), (e) => isCandorError(e, 'RIGHTS_LEDGER_WRITE_FAILED') && e.details?.reason === 'ENOSPC');
      assert.deepEqual(readFileSync(ledger.path), before, 'no torn line is left');
      assert.deepEqual(ledger.read(), entries.slice(0, 2));
      assert.equal(await ledger.appendMissing(entries), 1);
      assert.deepEqual(ledger.read(), entries);
    } finally {
      done();
    }
  });

  it('leaves a torn last line (no newline, not a whole entry) out when read, the file untouched, and the next append cuts it away', async () => {
    const entries = chain(3);
    const { ledger, warnings, done } = ledgerIn();
    try {
      await ledger.append(entries.slice(0, 2));
      const whole = readFileSync(ledger.path);
      appendFileSync(ledger.path, line(entries[2] as DeletionLedgerEntry).slice(0, 150));
      const torn = readFileSync(ledger.path);
      assert.deepEqual(ledger.read(), entries.slice(0, 2));
      assert.deepEqual(ledger.read(), entries.slice(0, 2));
      assert.deepEqual(readFileSync(ledger.path), torn, 'a read changes nothing');
      assert.deepEqual(warnings, [{ file: ledger.path, skippedBytes: 150, length: whole.length }], 'reported once');
      // What an older version left (or a crash): the next append, holding the lock, cuts it and goes on cleanly.
      warnings.length = 0;
      assert.equal(await ledger.appendMissing(entries), 1);
      assert.deepEqual(warnings, [{ file: ledger.path, cutBytes: 150, length: whole.length }]);
      assert.deepEqual(ledger.read(), entries);
      assert.equal(readFileSync(ledger.path, 'utf8').split('\n').filter((l) => l !== '').length, 3);
      // With nothing missing, catching up still cuts it.
      appendFileSync(ledger.path, '{"seq":4,"requ');
      assert.equal(await ledger.appendMissing(entries), 0);
      assert.equal(readFileSync(ledger.path, 'utf8').endsWith('\n'), true);
      assert.deepEqual(ledger.read(), entries);
      // A file that is only a torn line.
      const only = '{"seq":1,"requestId":"r0","at":"2026';
      writeFileSync(ledger.path, only);
      assert.deepEqual(ledger.read(), []);
      assert.equal(statSync(ledger.path).size, only.length);
      await ledger.append(entries.slice(0, 1));
      assert.deepEqual(ledger.read(), entries.slice(0, 1));
    } finally {
      done();
    }
  });

  it('leaves a line another writer is appending untouched when read between its two writes', async () => {
    const entries = chain(3);
    const { ledger, warnings, done } = ledgerIn();
    try {
      await ledger.append(entries.slice(0, 2));
      const reader = new DeletionLedger(ledger.path, { logger: { warn: () => undefined } });
      let seen: DeletionLedgerEntry[] | undefined;
      let during: Buffer | undefined;
      // The writer's line goes out in two writes (a multi-page write, a short write on a nearly full disk), the reader between them.
      const split: WriteFunction = (fd, buffer, offset, length) => {
        if (seen !== undefined) return writeSync(fd, buffer, offset, length);
        const written = writeSync(fd, buffer, offset, Math.min(length, 100));
        during = readFileSync(ledger.path);
        seen = reader.read();
        assert.deepEqual(readFileSync(ledger.path), during, 'the reader changed nothing');
        return written;
      };
      await new DeletionLedger(ledger.path, { write: split }).append(entries.slice(2));
      assert.deepEqual(seen, entries.slice(0, 2), 'the line in progress is left out');
      assert.deepEqual(ledger.read(), entries, 'the completed line is intact');
      assert.equal(readFileSync(ledger.path, 'utf8'), entries.map((e) => `${line(e)}\n`).join(''));
      assert.deepEqual(warnings, []);
    } finally {
      done();
    }
  });

  it('appends only holding the file\'s lock, which appends of every process take', async () => {
    const entries = chain(2);
    const { ledger, done } = ledgerIn();
    try {
      await ledger.append(entries.slice(0, 1));
      const before = readFileSync(ledger.path);
      // Another process's append in progress holds the lock (a second connection is refused it as another process is).
      const held = lockFile(ledgerLockPath(ledger.path), 0);
      assert.ok(held);
      try {
        await assert.rejects(ledger.appendMissing(entries), (e) => isCandorError(e, 'RIGHTS_LEDGER_WRITE_FAILED') && e.details?.reason === 'locked');
        assert.deepEqual(readFileSync(ledger.path), before, 'nothing written');
      } finally {
        held.close();
      }
      assert.equal(await ledger.appendMissing(entries), 1);
      assert.deepEqual(ledger.read(), entries);
    } finally {
      done();
    }
  });

  it('waits for the file\'s lock without blocking the event loop, and appends once it is released', async () => {
    const entries = chain(2);
    const { ledger, done } = ledgerIn();
    try {
      await ledger.append(entries.slice(0, 1));
      // Another process's append holds the lock (a slow fsync, a process suspended with Ctrl-Z).
      const held = lockFile(ledgerLockPath(ledger.path), 0);
      assert.ok(held);
      let settled = false;
      let appending: Promise<number>;
      try {
        appending = ledger.appendMissing(entries).finally(() => (settled = true));
        // Timers of this process keep firing while the append waits (a blocking wait would run none of them).
        let ticks = 0;
        await new Promise<void>((ready) => {
          const ticker = setInterval(() => {
            if (++ticks < 30) return;
            clearInterval(ticker);
            ready();
          }, 10);
        });
        assert.equal(settled, false, 'the append waits while the lock is held');
        assert.deepEqual(ledger.read(), entries.slice(0, 1));
      } finally {
        held.close();
      }
      assert.equal(await appending, 1, 'appended once the lock is released');
      assert.deepEqual(ledger.read(), entries);
    } finally {
      done();
    }
  });

  it('still refuses a torn line in the middle of the file, and a last line that is not the start of one entry', () => {
    const entries = chain(3);
    const { ledger, warnings, done } = ledgerIn();
    try {
      writeFileSync(ledger.path, `${line(entries[0] as DeletionLedgerEntry)}\n${line(entries[1] as DeletionLedgerEntry).slice(0, 90)}\n${line(entries[2] as DeletionLedgerEntry)}\n`);
      assert.throws(() => ledger.read(), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
      // A torn line followed by a whole one without a newline: the last line is whole, so the torn one is in the middle.
      writeFileSync(ledger.path, `${line(entries[0] as DeletionLedgerEntry)}\n${line(entries[1] as DeletionLedgerEntry).slice(0, 90)}${line(entries[1] as DeletionLedgerEntry)}`);
      assert.throws(() => ledger.read(), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
      writeFileSync(ledger.path, `${line(entries[0] as DeletionLedgerEntry)}\nnot a ledger line`);
      assert.throws(() => ledger.read(), (e) => isCandorError(e, 'RIGHTS_LEDGER_TAMPERED'));
      assert.deepEqual(warnings, []);
    } finally {
      done();
    }
  });

  it('keeps a whole last entry that lacks only its newline, and starts the next append on a line of its own', async () => {
    const entries = chain(3);
    const { ledger, warnings, done } = ledgerIn();
    try {
      writeFileSync(ledger.path, `${line(entries[0] as DeletionLedgerEntry)}\n${line(entries[1] as DeletionLedgerEntry)}`);
      assert.deepEqual(ledger.read(), entries.slice(0, 2));
      assert.equal(await ledger.appendMissing(entries), 1);
      assert.deepEqual(ledger.read(), entries);
      assert.deepEqual(warnings, []);
    } finally {
      done();
    }
  });
});
