import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_BATCH_BYTES, MAX_BATCH_MESSAGES } from '../../modules/collect/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { SLICE_ITEMS } from '../../shared/in-slices.ts';
import { buildServer, type CandorServer } from '../server.ts';

/** The smallest message the pipeline takes as valid. */
const SMALLEST = '{"type":"page","userId":1}';
const batchOf = (messages: readonly string[]) => `{"batch":[${messages.join(',')}]}`;

// @segment/analytics-node and @rudderstack/rudder-sdk-node put no bound on flushAt and resend no batch answered 4xx: a
// batch refused for its count (2,500 messages were the most once, however small) lost every message in it.
describeEachDialect('Segment ingest: a batch is limited by its bytes, not by its count', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const post = (payload: string) =>
    server.app.inject({ method: 'POST', url: '/v1/batch', payload, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' } });
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

  it('takes as many messages as the body limit holds of the smallest valid one, and refuses one more whole', async () => {
    assert.ok(Buffer.byteLength(batchOf(Array<string>(MAX_BATCH_MESSAGES).fill(SMALLEST))) <= MAX_BATCH_BYTES);
    assert.ok(Buffer.byteLength(batchOf(Array<string>(MAX_BATCH_MESSAGES + 1).fill(SMALLEST))) > MAX_BATCH_BYTES);
    // Messages of two bytes each (no message at all): the count bounds the work and the answer of such a body.
    const full = await post(batchOf(Array<string>(MAX_BATCH_MESSAGES).fill('0')));
    assert.equal(full.statusCode, 200, full.body.slice(0, 300));
    const results = (full.json() as Answer).results;
    assert.equal(results.length, MAX_BATCH_MESSAGES);
    assert.ok(results.every((r, i) => r.index === i && r.code === 'COLLECT_MESSAGE_INVALID'));
    const over = await post(batchOf(Array<string>(MAX_BATCH_MESSAGES + 1).fill('0')));
    assert.deepEqual([over.statusCode, (over.json() as Answer).code], [400, 'COLLECT_BATCH_INVALID']);
  });
});
