import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { Catalog } from './index.ts';

// Ingestion's lifecycle of counts: takeStats before its group's transaction, writeStats inside it, restoreStats if it fails.
describeEachDialect('catalog: counts taken by ingestion', (dialect) => {
  const ctx = useKernel(dialect);
  const open = () => Catalog.open({ storage: ctx.kernel.storage, audit: ctx.kernel.audit, taxonomy: ctx.kernel.taxonomy });
  const viewed = (catalog: Catalog, source: string, n: number) => {
    for (let i = 0; i < n; i++) catalog.process('track', 'Product Viewed', { properties: { product_id: `p${i}`, gift: 'x' } }, source);
  };
  const counts = async (catalog: Catalog, source: string) => {
    const row = (await catalog.stats({ source }))[0];
    return { accepted: row?.accepted ?? 0, dropped: row?.dropped[0]?.count ?? 0 };
  };

  it('counts taken counts once: while taken, after the commit, and after a rollback puts them back', async () => {
    const catalog = await open();
    viewed(catalog, 'taken', 3);
    const first = catalog.takeStats();
    assert.deepEqual(await counts(catalog, 'taken'), { accepted: 3, dropped: 3 }, 'taken, not yet written: still counted');
    await ctx.kernel.storage.raw.transaction((tx) => catalog.writeStats(tx, first));
    assert.deepEqual(await counts(catalog, 'taken'), { accepted: 3, dropped: 3 }, 'committed: counted from the database only');
    assert.deepEqual(await counts(await open(), 'taken'), { accepted: 3, dropped: 3 });

    viewed(catalog, 'taken', 2);
    const second = catalog.takeStats();
    assert.deepEqual(await counts(catalog, 'taken'), { accepted: 5, dropped: 5 });
    await assert.rejects(
      ctx.kernel.storage.raw.transaction(async (tx) => {
        await catalog.writeStats(tx, second);
        throw new Error('the group failed after writing its counts');
      }),
    );
    catalog.restoreStats(second);
    assert.deepEqual(await counts(catalog, 'taken'), { accepted: 5, dropped: 5 }, 'rolled back and put back: counted once');
    assert.deepEqual(await counts(await open(), 'taken'), { accepted: 3, dropped: 3 }, 'nothing of the failed group stored');
    await catalog.flushStats();
    assert.deepEqual(await counts(await open(), 'taken'), { accepted: 5, dropped: 5 });
    assert.deepEqual(await counts(catalog, 'taken'), { accepted: 5, dropped: 5 });
  });

  it('counts a group taken while another one is taken, each until its own write', async () => {
    const catalog = await open();
    viewed(catalog, 'overlap', 1);
    const a = catalog.takeStats();
    await Promise.resolve();
    viewed(catalog, 'overlap', 2);
    const b = catalog.takeStats();
    assert.equal((await counts(catalog, 'overlap')).accepted, 3);
    await ctx.kernel.storage.raw.transaction((tx) => catalog.writeStats(tx, b));
    assert.equal((await counts(catalog, 'overlap')).accepted, 3);
    catalog.restoreStats(a);
    assert.equal((await counts(catalog, 'overlap')).accepted, 3);
  });

  it('checks a message without counting it (the CSV import checks rows before the pipeline counts them)', async () => {
    const catalog = await open();
    viewed(catalog, 'aside', 2);
    const checked = catalog.check('track', 'Product Viewed', { properties: { product_id: 'p1', gift_wrap: 'yes' } });
    assert.equal(checked.ok, true);
    assert.deepEqual(checked.dropped, ['properties.gift_wrap']);
    assert.deepEqual(await counts(catalog, 'aside'), { accepted: 2, dropped: 2 });
  });
});
