import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { Kernel } from '../../kernel.ts';
import { MAX_DROPPED_LISTED } from '../../modules/catalog/index.ts';

/** The dropped paths catalog_stats holds for source `web`, a kind and an event name, with their counts. */
async function storedDropped(kernel: Kernel, kind: string, event = ''): Promise<Map<string, number>> {
  const rows = await kernel.storage.db
    .withTables<{ catalog_stats: { source: string; kind: string; event: string; metric: string; item: string; count: number } }>()
    .selectFrom('catalog_stats')
    .select(['item', 'count'])
    .where('source', '=', 'web')
    .where('kind', '=', kind)
    .where('event', '=', event)
    .where('metric', '=', 'dropped')
    .execute();
  return new Map(rows.map((r) => [r.item, Number(r.count)]));
}

describeEachDialect('Segment ingest: dropped paths in the answer', (dialect) => {
  const ctx = useKernel(dialect);
  const server = useIngestServer(ctx);
  before(async () => {
    await server.consent('u-listed', { 'analytics.reporting': 'given' });
    await server.consent('u-top', { 'analytics.reporting': 'given' });
  });

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

  it('lists and counts as dropped a section the call type does not take and every key outside the protocol, never the envelope', async () => {
    // The envelope Segment's and RudderStack's libraries send, on each message: nothing of it is listed.
    const envelope = { userId: 'u-top', integrations: { All: true }, _metadata: { bundled: [] }, channel: 'web', originalTimestamp: new Date().toISOString(), sentAt: new Date().toISOString() };
    const response = await server.send('/v1/batch', {
      batch: [
        { ...envelope, type: 'track', event: 'Product Added', properties: { product_id: 'p4' }, traits: { email: 'x@example.org' }, email: 'top@example.org' },
        { ...envelope, type: 'identify', traits: { country: 'NL' }, properties: { plan: 'pro' }, 'ada.lovelace@example.org': true },
        { ...envelope, type: 'alias', previousId: 'a-top', traits: { email: 'x@example.org' } },
        { ...envelope, type: 'track', event: 'Product Added', properties: { product_id: 'p5' }, traits: {} },
      ],
    });
    assert.equal(response.statusCode, 200, response.body);
    const results = (response.json() as { results: { status: string; dropped?: string[] }[] }).results;
    assert.deepEqual(results.map((r) => r.status), ['stored', 'stored', 'stored', 'stored']);
    assert.deepEqual(results.map((r) => r.dropped ?? []), [['traits', 'email'], ['properties', '["ada.lovelace@example.org"]'], ['traits'], []]);

    // Counted per source as stored, a sender's key by name only if it is a plain key.
    await ctx.kernel.catalog.flushStats();
    assert.deepEqual(await storedDropped(ctx.kernel, 'track', 'Product Added'), new Map([['traits', 1], ['email', 1]]));
    assert.deepEqual(await storedDropped(ctx.kernel, 'identify'), new Map([['properties', 1], ['*', 1]]));
    assert.deepEqual(await storedDropped(ctx.kernel, 'alias'), new Map([['traits', 1]]));
    const [row] = await ctx.kernel.catalog.stats({ source: 'web', event: 'Product Added' });
    assert.deepEqual(row?.dropped, [{ path: 'email', count: 1 }, { path: 'traits', count: 1 }]);

    // None of it is stored with the events.
    const stored = JSON.stringify(await ctx.kernel.storage.db.withTables<{ collect_events: Record<string, unknown> }>().selectFrom('collect_events').selectAll().execute());
    for (const text of ['top@example.org', 'x@example.org', 'ada.lovelace', '"plan"']) assert.ok(!stored.includes(text), text);
  });
});
