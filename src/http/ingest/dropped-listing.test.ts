import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_DROPPED_LISTED } from '../../modules/catalog/index.ts';

describeEachDialect('Segment ingest: dropped paths in the answer', (dialect) => {
  const ctx = useKernel(dialect);
  const server = useIngestServer(ctx);
  before(async () => server.consent('u-listed', { 'analytics.reporting': 'given' }));

  it(`lists the first ${MAX_DROPPED_LISTED} dropped paths of each message, and counts each message for every one in the plan statistics`, async () => {
    // A batch-level context of 150 undeclared keys, taken by every message: stored, refused and invalid alike.
    const context = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`k${i}`, 1]));
    const paths = Object.keys(context).map((k) => `context.${k}`);
    const track = (userId: string, productId: unknown) => ({ type: 'track', userId, event: 'Product Viewed', properties: { product_id: productId } });
    const response = await server.send('/v1/batch', { context, batch: [track('u-listed', 'p1'), track('u-unknown', 'p2'), track('u-listed', 7)] });
    assert.equal(response.statusCode, 200, response.body);
    const results = (response.json() as { results: { status: string; code?: string; dropped?: string[]; droppedUnlisted?: number }[] }).results;
    assert.deepEqual(results.map((r) => [r.status, r.code]), [['stored', undefined], ['refused', 'COLLECT_NO_LAWFUL_BASIS'], ['invalid', 'CATALOG_EVENT_INVALID']]);
    for (const result of results) {
      assert.deepEqual(result.dropped, paths.slice(0, MAX_DROPPED_LISTED), result.status);
      assert.equal(result.droppedUnlisted, 150 - MAX_DROPPED_LISTED, result.status);
    }
    const [row] = await ctx.kernel.catalog.stats({ source: 'web', event: 'Product Viewed' });
    // 100 paths by name (a row's bound), each dropped from three messages; the other 50 under *other*, once per message.
    assert.deepEqual(new Map(row?.dropped.map((d) => [d.path, d.count])), new Map([...paths.slice(0, 100).map((path) => [path, 3] as const), ['*other*', 3]]));
  });
});
