import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import { CsvImporter, type RowReport } from './index.ts';

// A CSV import beside a server: a batch whose write finds SQLite's write lock held by another process past the busy
// timeout fails STORAGE_BUSY. The batch is written again (its message ids make that safe), and when it still fails the
// import stops with that error, with every row read accounted for.
describeEachDialect('CSV import on a busy database', (dialect) => {
  const ctx = useKernel(dialect);

  /** Runs an events import of `rows` rows (batches of 10) while the Collector's ingest is replaced by `ingest`. */
  async function run(prefix: string, rows: number, ingest: (original: () => ReturnType<typeof ctx.kernel.collect.ingest>, call: number) => ReturnType<typeof ctx.kernel.collect.ingest>) {
    const text = ['order_id,anonymous_id,total,message_id', ...Array.from({ length: rows }, (_, i) => `${prefix}-o${i},${prefix}-anon,5,${prefix}-m${i}`)].join('\n');
    const collect = ctx.kernel.collect;
    const original = collect.ingest.bind(collect);
    let calls = 0;
    collect.ingest = (...args) => ingest(() => original(...args), ++calls);
    const reports: RowReport[] = [];
    try {
      const summary = await new CsvImporter(ctx.kernel).run(Readable.from([text]), { kind: 'events', source: 'files', basis: 'contract', actor: CLI_ACTOR, batchSize: 10 }, { onRows: (r) => void reports.push(...r) });
      return { summary, reports, calls };
    } finally {
      collect.ingest = original;
    }
  }

  const storedEvents = async (prefix: string) =>
    Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE source = 'files' AND message_id LIKE ${`${prefix}-m%`}`.execute(ctx.kernel.storage.db)).rows[0]?.n);

  it('writes a batch again after STORAGE_BUSY, storing each row once', async () => {
    // The second batch's first write is stored, then answered busy (as when a later statement of the write failed).
    const { summary, reports, calls } = await run('bz1', 25, async (write, call) => {
      const results = await write();
      if (call === 2) throw new CandorError('STORAGE_BUSY');
      return results;
    });
    assert.equal(summary.complete, true, String(summary.error));
    assert.equal(calls, 4);
    assert.equal(summary.rows, 25);
    assert.equal(summary.stored + summary.duplicate + summary.refused + summary.invalid + summary.suppressed + summary.notProcessed, 25);
    assert.deepEqual([summary.stored, summary.duplicate, summary.notProcessed], [15, 10, 0]);
    assert.deepEqual(reports.map((r) => r.status), Array(10).fill('duplicate'));
    assert.equal(await storedEvents('bz1'), 25);
  });

  it('stops with STORAGE_BUSY when a batch stays busy, reporting the rows read but not written as not processed', async () => {
    const { summary, reports, calls } = await run('bz2', 35, async (write, call) => {
      if (call >= 2) throw new CandorError('STORAGE_BUSY');
      return write();
    });
    assert.equal(summary.complete, false);
    assert.ok(isCandorError(summary.error, 'STORAGE_BUSY'), String(summary.error));
    // The first batch, then the second one tried a few times; nothing after it.
    assert.ok(calls > 2 && calls < 10, String(calls));
    const handled = summary.stored + summary.duplicate + summary.refused + summary.invalid + summary.suppressed;
    assert.equal(handled, 10);
    assert.equal(handled + summary.notProcessed, summary.rows);
    assert.equal(summary.notProcessed, 11);
    const notProcessed = reports.filter((r) => r.status === 'not_processed');
    assert.equal(notProcessed.length, summary.notProcessed);
    assert.ok(notProcessed.every((r) => r.code === 'STORAGE_BUSY'));
    // Rows 12 to 21 are the second batch (the header is row 1); the row read when it was sent is not processed either.
    assert.deepEqual(notProcessed.map((r) => r.row), Array.from({ length: summary.notProcessed }, (_, i) => 12 + i));
    assert.equal(await storedEvents('bz2'), summary.stored);
  });
});
