import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_DROPPED_LISTED, MAX_VIOLATIONS_LISTED } from '../../modules/catalog/index.ts';
import type { ItemResult } from '../../modules/collect/index.ts';
import { listWithinBudget, MAX_ANSWER_LISTED, MAX_ANSWER_LISTED_CHARS } from './answer-listing.ts';

type Listed = Pick<ItemResult, 'status' | 'code' | 'dropped' | 'droppedUnlisted' | 'violations' | 'violationsUnlisted'>;

/** The listed entries of an answer, and the characters they hold, over all its results. */
function listedIn(results: readonly Listed[]): { entries: number; chars: number } {
  let entries = 0;
  let chars = 0;
  for (const r of results) {
    for (const path of r.dropped ?? []) [entries, chars] = [entries + 1, chars + path.length];
    for (const v of r.violations ?? []) [entries, chars] = [entries + 1, chars + v.path.length + v.rule.length + v.message.length];
  }
  return { entries, chars };
}

describe('listWithinBudget', () => {
  it('stops listing at the first entry past the characters left, and counts it and every later one', () => {
    const long = `context.${'x'.repeat(MAX_ANSWER_LISTED_CHARS)}`;
    const results: ItemResult[] = [
      { index: 0, messageId: 'a', status: 'refused', dropped: ['context.a', long, 'context.b'] },
      { index: 1, messageId: 'b', status: 'refused', dropped: ['context.c'], droppedUnlisted: 4 },
      { index: 2, messageId: 'c', status: 'duplicate' },
    ];
    const bounded = listWithinBudget(results);
    assert.deepEqual(bounded, [
      { index: 0, messageId: 'a', status: 'refused', dropped: ['context.a'], droppedUnlisted: 2 },
      { index: 1, messageId: 'b', status: 'refused', droppedUnlisted: 5 },
      { index: 2, messageId: 'c', status: 'duplicate' },
    ]);
    assert.equal(bounded[2], results[2], 'a result with nothing left out is answered as it is');
  });
});

describeEachDialect('Segment ingest: the listing of a whole answer is bounded', (dialect) => {
  const ctx = useKernel(dialect);
  const { send } = useIngestServer(ctx);

  it(`lists at most ${MAX_ANSWER_LISTED_CHARS} characters of dropped paths for a batch-level context of long undeclared keys taken by 300 messages, and counts the rest`, async () => {
    // The audit's shape: a request of 189 KB was answered with 76 MB, every message listing the context's 100 keys (with
    // 2,500 messages; 300 here, which stay within the 12 MB of batch-level parts a batch's messages may take: see
    // segment-limits.test.ts).
    const context = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${String(i).padStart(3, '0')}${'x'.repeat(290)}`, 1]));
    const paths = Object.keys(context).map((k) => `context.${k}`);
    const batch = Array.from({ length: 300 }, (_, i) => ({ type: 'track', anonymousId: `amp-${i}`, messageId: `amp-${i}`, event: 'Product Viewed' }));
    const response = await send('/v1/batch', { context, batch });
    assert.equal(response.statusCode, 200, response.body.slice(0, 500));
    const results = (response.json() as { results: Listed[] }).results;
    assert.equal(results.length, 300);
    const listed = listedIn(results);
    assert.ok(listed.entries <= MAX_ANSWER_LISTED && listed.chars <= MAX_ANSWER_LISTED_CHARS, `listed ${listed.entries} entries of ${listed.chars} characters`);
    // Each result: a result's fixed part (index, messageId, status, code, the count) is under 160 bytes; listed paths
    // are plain ASCII here, one byte a character plus quotes and a comma.
    const bound = 300 * 160 + MAX_ANSWER_LISTED_CHARS + 3 * MAX_ANSWER_LISTED;
    assert.ok(Buffer.byteLength(response.body) <= bound, `answer of ${Buffer.byteLength(response.body)} bytes, over ${bound}`);
    // The first message lists what a message lists on its own, and every message counts all 100 paths.
    assert.deepEqual(results[0]?.dropped, paths.slice(0, MAX_DROPPED_LISTED));
    for (const [index, r] of results.entries()) {
      assert.deepEqual([r.status, r.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS'], `result ${index}`);
      assert.deepEqual(r.dropped ?? [], paths.slice(0, r.dropped?.length ?? 0), `result ${index} lists the first paths`);
      assert.equal((r.dropped?.length ?? 0) + (r.droppedUnlisted ?? 0), 100, `result ${index} counts every path`);
    }
    assert.equal(results[299]?.dropped, undefined, 'the last message lists none');
    // The plan statistics count every message, listed or not (under `context.*`: these keys are no plain names).
    const [row] = await ctx.kernel.catalog.stats({ source: 'web', event: 'Product Viewed' });
    assert.deepEqual(row?.dropped, [{ path: 'context.*', count: 300 }]);
  });

  it(`lists at most ${MAX_ANSWER_LISTED} violations and dropped paths together, in order, and counts the rest in each result`, async () => {
    // 1,001 violations per message (1,000 allergies of the wrong type, and too many), and one undeclared key.
    const survey = (i: number) => ({ type: 'track', userId: 'u-budget', messageId: `budget-${i}`, event: 'Survey Answered', properties: { survey_id: 's', extra: 1, allergies: new Array(1_000).fill(1) } });
    const response = await send('/v1/batch', { batch: Array.from({ length: 12 }, (_, i) => survey(i)) });
    assert.equal(response.statusCode, 200, response.body.slice(0, 500));
    const results = (response.json() as { results: Listed[] }).results;
    const shape = (r: Listed) => [r.code, r.violations?.length ?? 0, r.violationsUnlisted, r.dropped, r.droppedUnlisted];
    const full = ['CATALOG_EVENT_INVALID', MAX_VIOLATIONS_LISTED, 1_001 - MAX_VIOLATIONS_LISTED, ['properties.extra'], undefined];
    // Nine messages list 101 entries each (909); the tenth lists the 91 violations left; the others only count.
    assert.deepEqual(results.map(shape), [
      ...new Array(9).fill(full),
      ['CATALOG_EVENT_INVALID', 91, 1_001 - 91, undefined, 1],
      ['CATALOG_EVENT_INVALID', 0, 1_001, undefined, 1],
      ['CATALOG_EVENT_INVALID', 0, 1_001, undefined, 1],
    ]);
    assert.equal(listedIn(results).entries, MAX_ANSWER_LISTED);
  });

  it('lists every dropped path of a batch that stays within the budget, as before', async () => {
    // 300 messages with 3 undeclared keys each: 900 paths, all listed, nothing counted apart.
    const batch = Array.from({ length: 300 }, (_, i) => ({ type: 'track', anonymousId: `small-${i}`, messageId: `small-${i}`, event: 'Product Viewed', properties: { product_id: 'p', a: 1, b: 2, c: 3 } }));
    const response = await send('/v1/batch', { batch });
    assert.equal(response.statusCode, 200, response.body.slice(0, 500));
    const results = (response.json() as { results: Listed[] }).results;
    for (const r of results) {
      assert.deepEqual(r.dropped, ['properties.a', 'properties.b', 'properties.c']);
      assert.equal(r.droppedUnlisted, undefined);
    }
  });
});
