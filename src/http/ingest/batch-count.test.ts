import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_BATCH_BYTES, MAX_BATCH_MESSAGES } from '../../modules/collect/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { SLICE_ITEMS } from '../../shared/in-slices.ts';
import { buildServer, type CandorServer } from '../server.ts';

/**
 * The smallest message a client library could send: Segment's and RudderStack's libraries give every message a
 * messageId, a timestamp and context.library (a bare page call weighs 286 bytes or more).
 */
const LIBRARY_SMALLEST = '{"type":"page","userId":1,"messageId":"00000000-0000-4000-8000-000000000000","timestamp":"2026-01-01T00:00:00.000Z","context":{"library":{"name":"","version":""}}}';
const batchOf = (messages: readonly string[]) => `{"batch":[${messages.join(',')}]}`;

// @segment/analytics-node and @rudderstack/rudder-sdk-node put no bound on flushAt and resend no batch answered 4xx: a
// batch refused for its count (2,500 messages were the most once, however small) lost every message in it.
describeEachDialect('Segment ingest: a batch is limited by its bytes, not by a count a client library reaches', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const post = (payload: string | Buffer, coding = 'identity') =>
    server.app.inject({ method: 'POST', url: '/v1/batch', payload, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json', 'content-encoding': coding } });
  type Answer = { success?: boolean; code?: string; results: { index: number; messageId?: string; status: string; code?: string }[] };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const consent = await server.app.inject({
      method: 'POST', url: '/v1/consent', payload: { mechanism: 'banner_save', userId: 'u-count', purposes: { 'analytics.reporting': 'given' } },
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` },
    });
    assert.equal(consent.statusCode, 200, consent.body);
  });
  after(async () => {
    await server.app.close();
  });

  it('stores and answers every message of a small batch of more than 2,500, each result at its own index', async () => {
    const count = 2 * SLICE_ITEMS + 1;
    const messages = Array.from({ length: count }, (_, i) => JSON.stringify({ type: 'track', userId: 'u-count', event: 'Product Viewed', messageId: `n${i}` }));
    const payload = batchOf(messages);
    assert.ok(Buffer.byteLength(payload) < 500 * 1024, 'within Segment’s own limit');
    const response = await post(payload);
    assert.equal(response.statusCode, 200, response.body.slice(0, 300));
    const answer = response.json() as Answer;
    assert.equal(answer.success, true);
    assert.equal(answer.results.length, count);
    assert.ok(answer.results.every((r, i) => r.index === i && r.messageId === `n${i}` && r.status === 'stored'), JSON.stringify(answer.results.find((r, i) => r.index !== i || r.status !== 'stored')));
    // Sent again (as a client does after a timeout): every slice finds its messages stored.
    const again = (await post(payload)).json() as Answer;
    assert.ok(again.results.every((r, i) => r.index === i && r.status === 'duplicate'));
  });

  it('takes as many messages as the body limit holds of the smallest a client library sends, and refuses one more whole', async () => {
    // No batch a library builds within the body limit reaches the count.
    assert.ok(Buffer.byteLength(batchOf(Array<string>(MAX_BATCH_MESSAGES + 1).fill(LIBRARY_SMALLEST))) > MAX_BATCH_BYTES);
    // Messages of two bytes each (no message at all), in a few hundred bytes of gzip: the count bounds the work and the
    // answer of such a body, which was 14 MB for 155,344 of them (as many as 4 MB hold of `{"type":"page","userId":1}`).
    const body = gzipSync(batchOf(Array<string>(MAX_BATCH_MESSAGES).fill('0')));
    assert.ok(body.length < 1_000);
    const full = await post(body, 'gzip');
    assert.equal(full.statusCode, 200, full.body.slice(0, 300));
    assert.ok(full.rawPayload.length <= MAX_BATCH_BYTES, `an answer of ${full.rawPayload.length} bytes`);
    const results = (full.json() as Answer).results;
    assert.equal(results.length, MAX_BATCH_MESSAGES);
    assert.ok(results.every((r, i) => r.index === i && r.code === 'COLLECT_MESSAGE_INVALID'));
    const over = await post(gzipSync(batchOf(Array<string>(MAX_BATCH_MESSAGES + 1).fill('0'))), 'gzip');
    assert.deepEqual([over.statusCode, (over.json() as Answer).code], [400, 'COLLECT_BATCH_INVALID']);
  });
});
