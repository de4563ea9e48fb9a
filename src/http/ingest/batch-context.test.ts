import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { ItemResult } from '../../modules/collect/index.ts';
import { listWithinBudget, MAX_ANSWER_LISTED, MAX_ANSWER_LISTED_CHARS, MAX_PATH_SEGMENT_CHARS, MAX_PATH_SEGMENTS, shortPath } from './answer-listing.ts';

const REPORTING = 'analytics.reporting';
const PROFILING = 'personalize.profiling';

type Result = { status: string; code?: string; purposes?: string[]; detail?: string; gpcHonoured?: boolean };

describe('shortPath', () => {
  it('cuts each segment of a long path and leaves out the middle of a deep one', () => {
    assert.equal(shortPath('properties.items[0].__proto__'), 'properties.items[0].__proto__');
    assert.equal(shortPath(`context.${'k'.repeat(10_000)}.__proto__`), `context.${'k'.repeat(MAX_PATH_SEGMENT_CHARS)}….__proto__`);
    const deep = shortPath(`context.${Array.from({ length: 5_000 }, () => 'abcdefghij').join('.')}.__proto__`);
    assert.equal(deep.split('.').length, MAX_PATH_SEGMENTS + 1, deep);
    assert.ok(deep.startsWith('context.abcdefghij.') && deep.includes('.….') && deep.endsWith('.abcdefghij.__proto__'), deep);
    // Not cut inside a surrogate pair.
    assert.equal(shortPath(`${'k'.repeat(MAX_PATH_SEGMENT_CHARS - 1)}😀x.__proto__`), `${'k'.repeat(MAX_PATH_SEGMENT_CHARS - 1)}….__proto__`);
  });

  it("counts a forbidden key's path against the answer's budget, and leaves it out past the budget", () => {
    const path = `context.${'k'.repeat(MAX_ANSWER_LISTED_CHARS / 2)}.__proto__`;
    const forbidden = (index: number): ItemResult => ({ index, messageId: undefined, status: 'invalid', code: 'REQUEST_FORBIDDEN_KEY', detail: path });
    const bounded = listWithinBudget([forbidden(0), forbidden(1), { index: 2, messageId: undefined, status: 'invalid', code: 'COLLECT_TIMESTAMP_INVALID', detail: 'timestamp' }]);
    assert.deepEqual(
      bounded.map((r) => r.detail),
      [path, undefined, 'timestamp'],
    );
  });
});

// A batch-level context is taken by each of up to 2,500 messages: what it makes them answer must stay within the answer's
// budget, and its consent signals must reach every message that takes it.
describeEachDialect('Segment ingest: the batch-level context', (dialect) => {
  const ctx = useKernel(dialect);
  const { send } = useIngestServer(ctx);
  const results = async (payload: unknown) => {
    const response = await send('/v1/batch', payload);
    assert.equal(response.statusCode, 200, response.body.slice(0, 500));
    return (response.json() as { results: Result[] }).results;
  };
  const consent = async (anonymousId: string) => {
    const response = await send('/v1/consent', { mechanism: 'banner_save', anonymousId, purposes: { [REPORTING]: 'given', [PROFILING]: 'given' } });
    assert.equal(response.statusCode, 200, response.body);
  };
  const viewed = (anonymousId: string, messageId: string, extra: Record<string, unknown> = {}) => ({ type: 'track', anonymousId, messageId, event: 'Product Viewed', properties: { product_id: 'p1' }, ...extra });
  const denying = (deniedConsentIds: string[]) => ({ consentManagement: { deniedConsentIds, provider: 'custom' } });

  it('answers 2,500 messages taking a forbidden key under a long or deep batch-level context key within a bound of the budget', async () => {
    // The audit's shape: a request of 136 KB drew 25 MB, each message naming the 10,000-character key in full.
    const tiny = Array.from({ length: 2_500 }, (_, i) => `{"type":"track","anonymousId":"a${i}","event":"x"}`).join(',');
    const long = `{"context":{"${'k'.repeat(10_000)}":{"__proto__":{}}},"batch":[${tiny}]}`;
    const deep = `{"context":${'{"abcdefghij":'.repeat(2_000)}{"__proto__":{}}${'}'.repeat(2_000)},"batch":[${tiny}]}`;
    for (const [name, body] of [['long', long], ['deep', deep]] as const) {
      // JSON.parse keeps `__proto__` as a plain member, and the helper's JSON.stringify writes it back.
      const response = await send('/v1/batch', JSON.parse(body));
      assert.equal(response.statusCode, 200, response.body.slice(0, 500));
      const answered = (response.json() as { results: Result[] }).results;
      assert.equal(answered.length, 2_500);
      assert.ok(answered.every((r) => r.status === 'invalid' && r.code === 'REQUEST_FORBIDDEN_KEY'), name);
      assert.ok(answered[0]?.detail?.startsWith('context.') && answered[0].detail.endsWith('.__proto__'), answered[0]?.detail);
      // A result's fixed part (index, status, code) is under 100 bytes; listed paths take at most the budget's characters,
      // at most 3 bytes each (the ellipsis), and quotes.
      const bound = 2_500 * 100 + 3 * MAX_ANSWER_LISTED_CHARS + 3 * MAX_ANSWER_LISTED;
      assert.ok(Buffer.byteLength(response.body) <= bound, `${name}: answer of ${Buffer.byteLength(response.body)} bytes, over ${bound}`);
    }
  });

  it('applies the batch-level consent signals to a message whose context is null, as to one with none', async () => {
    await consent('bc-null');
    const deny = denying([REPORTING, PROFILING]);
    const answered = await results({ context: deny, batch: [viewed('bc-null', 'bc-1', { context: null }), viewed('bc-null', 'bc-2')] });
    assert.deepEqual(answered.map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS'], ['refused', 'COLLECT_NO_LAWFUL_BASIS']], JSON.stringify(answered));
    const gpc = await results({ context: { gpc: true }, batch: [viewed('bc-null', 'bc-3', { context: null })] });
    assert.deepEqual(gpc.map((r) => [r.status, r.gpcHonoured]), [['stored', true]], JSON.stringify(gpc));
    // A batch-level context that is no object is each message's, and makes it invalid: never dropped unread.
    const array = await results({ context: [deny], batch: [viewed('bc-null', 'bc-4', { context: {} }), viewed('bc-null', 'bc-5')] });
    assert.deepEqual(array.map((r) => [r.status, r.code, r.detail]), [['invalid', 'COLLECT_MESSAGE_INVALID', 'context'], ['invalid', 'COLLECT_MESSAGE_INVALID', 'context']]);
  });

  it("keeps the batch-level consent signals when a message's own context would weaken them", async () => {
    await consent('bc-own');
    const answered = await results({
      context: { ...denying([REPORTING]), gpc: true },
      batch: [
        viewed('bc-own', 'bc-11', { context: { consentManagement: { deniedConsentIds: [], provider: 'custom' } } }),
        viewed('bc-own', 'bc-12', { context: { ...denying([PROFILING]), gpc: false } }),
        viewed('bc-own', 'bc-13', { context: { gpc: false, locale: 'fr-FR' } }),
      ],
    });
    assert.deepEqual(
      answered.map((r) => [r.status, r.code, r.purposes?.join(), r.gpcHonoured]),
      [
        ['stored', undefined, PROFILING, true],
        ['refused', 'COLLECT_NO_LAWFUL_BASIS', undefined, true],
        ['stored', undefined, PROFILING, true],
      ],
      JSON.stringify(answered),
    );
  });

  it("takes the batch's sentAt for a message whose sentAt is null", async () => {
    // A device clock an hour fast: without the batch's sentAt, the event would be an hour in the future.
    const fast = Date.now() + 3_600_000;
    const answered = await results({ sentAt: new Date(fast).toISOString(), batch: [viewed('bc-sent', 'bc-6', { timestamp: new Date(fast - 10_000).toISOString(), sentAt: null })] });
    assert.deepEqual(answered.map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS']], JSON.stringify(answered));
  });

  it('denies a purpose named in another case, with spaces, or by a parent key, and nothing by a part of a key', async () => {
    await consent('bc-deny');
    const answered = await results({
      batch: [
        viewed('bc-deny', 'bc-7', { context: denying([REPORTING.toUpperCase(), ` ${PROFILING} `]) }),
        viewed('bc-deny', 'bc-8', { context: denying(['analytics', 'Personalize']) }),
        viewed('bc-deny', 'bc-9', { context: denying(['Analytics']) }),
        viewed('bc-deny', 'bc-10', { context: denying(['analytics.rep', 'personalize.', 'marketing', '']) }),
      ],
    });
    assert.deepEqual(
      answered.map((r) => [r.status, r.code, r.purposes?.join()]),
      [
        ['refused', 'COLLECT_NO_LAWFUL_BASIS', undefined],
        ['refused', 'COLLECT_NO_LAWFUL_BASIS', undefined],
        ['stored', undefined, PROFILING],
        ['stored', undefined, [REPORTING, PROFILING].join()],
      ],
      JSON.stringify(answered),
    );
  });
});
