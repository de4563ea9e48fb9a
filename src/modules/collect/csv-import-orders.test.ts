import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter, type CsvImportOptions, type RowReport } from './index.ts';

const HEADER = 'user_id,order_id,timestamp,total,currency,product_id,product_price,product_quantity';

describeEachDialect('CSV import: the lines of one order', (dialect) => {
  const ctx = useKernel(dialect);

  async function run(lines: readonly string[], options: Partial<CsvImportOptions> = {}) {
    const reports: RowReport[] = [];
    const summary = await new CsvImporter(ctx.kernel).run(Readable.from([[HEADER, ...lines].join('\n')]), { kind: 'events', basis: 'consent', purposes: ['analytics.reporting'], source: 'shop', actor: CLI_ACTOR, ...options }, {
      onRows: (rows) => void reports.push(...rows),
    });
    return { summary, reports: reports.map((r) => [r.row, r.status, r.code]) };
  }

  async function person(userId: string) {
    const profile = (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'shop', at: new Date().toISOString() }]))[0];
    assert.ok(profile, userId);
    const { orderCount, totalOrderValue } = (await ctx.kernel.profiles.get([profile], { decrypt: false })).computed;
    const events = await ctx.kernel.collect.events([profile], { decrypt: true, limit: 50 });
    const products = events.map((e) => ((e.data as { properties?: { products?: { product_id: string }[] } }).properties?.products ?? []).map((p) => p.product_id));
    return { orderCount, totalOrderValue, products };
  }

  it('reports the lines of an order that come after other orders, and stores the order once, also when the file is imported again', async () => {
    const lines = [
      'n1,1001,2026-03-01T10:00:00Z,30,EUR,p1,10,1',
      'n1,1001,2026-03-01T10:00:00Z,30,EUR,p2,20,1',
      'n2,1002,2026-03-01T10:00:00Z,15.5,EUR,p3,15.5,1',
      'n1,1001,2026-03-01T10:00:00Z,30,EUR,p3,1,1',
      ',1001,,,,p4,1,1',
      'n2,1003,2026-03-02T10:00:00Z,5,EUR,p4,5,1',
    ];
    const dry = await run(lines, { dryRun: true });
    const first = await run(lines);
    const late = [
      [5, 'invalid', 'IMPORT_ORDER_NOT_CONSECUTIVE'],
      [6, 'invalid', 'IMPORT_ORDER_NOT_CONSECUTIVE'],
    ];
    assert.deepEqual(first.reports, late);
    assert.deepEqual(dry.reports, late, 'the dry run reports them alike');
    assert.equal(first.summary.stored, 4);
    assert.equal(first.summary.invalid, 2);
    assert.equal(first.summary.events, 3);
    assert.deepEqual(await person('n1'), { orderCount: 1, totalOrderValue: 30, products: [['p1', 'p2']] });
    assert.equal((await person('n2')).orderCount, 2);
    const again = await run(lines);
    assert.deepEqual(again.reports, [[2, 'duplicate', ''], [3, 'duplicate', ''], [4, 'duplicate', ''], ...late, [7, 'duplicate', '']]);
    assert.equal((await person('n1')).orderCount, 1);
  });

  it('adds to an order the lines that leave the ids blank (an export filling them on its first line only)', async () => {
    const { summary, reports } = await run([
      'b1,S-1,2026-03-01T10:00:00Z,30,EUR,p1,10,1',
      ',S-1,,,,p2,20,1',
      ',S-1,,,,p3,0,1',
      'b2,S-2,2026-03-01T11:00:00Z,5,EUR,p4,5,1',
      ',S-2,,,,p5,0,1',
      ',S-3,,,,p6,1,1',
    ]);
    assert.deepEqual(reports, [[7, 'invalid', 'COLLECT_IDENTITY_MISSING']]);
    assert.equal(summary.stored, 5);
    assert.equal(summary.events, 3);
    assert.deepEqual(await person('b1'), { orderCount: 1, totalOrderValue: 30, products: [['p1', 'p2', 'p3']] });
    assert.deepEqual(await person('b2'), { orderCount: 1, totalOrderValue: 5, products: [['p4', 'p5']] });
  });

  it('answers duplicate for lines of an order a former import stored, whatever their line items', async () => {
    await run(['l1,L-1,2026-03-01T10:00:00Z,30,EUR,p1,10,1', 'l1,L-1,2026-03-01T10:00:00Z,30,EUR,p2,20,1']);
    const later = await run(['l1,L-1,2026-03-01T10:00:00Z,30,EUR,p3,1,1', 'l2,L-1,2026-03-01T10:00:00Z,7,EUR,p3,7,1']);
    assert.deepEqual(later.reports, [[2, 'duplicate', '']]);
    assert.deepEqual(await person('l1'), { orderCount: 1, totalOrderValue: 30, products: [['p1', 'p2']] });
    // Another person's order of the same id is another order.
    assert.equal((await person('l2')).orderCount, 1);
  });
});
