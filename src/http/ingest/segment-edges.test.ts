import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { createDeflate, createGzip, Gunzip, Inflate } from 'node:zlib';
import { after, before, it, mock } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_BATCH_BYTES } from '../../modules/collect/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

/** `prefix`, `spaces` spaces (JSON whitespace) and `suffix`, compressed: a small body that may inflate to a large one. */
async function bomb(coding: 'gzip' | 'deflate', prefix: string, spaces: number, suffix: string): Promise<Buffer> {
  const compressor = coding === 'gzip' ? createGzip({ level: 9 }) : createDeflate({ level: 9 });
  const chunks: Buffer[] = [];
  compressor.on('data', (chunk: Buffer) => chunks.push(chunk));
  const megabyte = Buffer.alloc(1 << 20, 0x20);
  compressor.write(prefix);
  for (let left = spaces; left > 0; left -= megabyte.length) {
    if (!compressor.write(left >= megabyte.length ? megabyte : megabyte.subarray(0, left))) await once(compressor, 'drain');
  }
  compressor.end(suffix);
  await once(compressor, 'end');
  return Buffer.concat(chunks);
}

// The edges of a Segment request: bodies that inflate far past the limit, a batch-level sentAt that is no time, and
// times whose ISO text would not sort.
describeEachDialect('Segment ingest at its edges: gzip bombs, a batch sentAt that is no time, years outside 1-9999', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const post = (url: string, payload: string | Buffer, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json', ...headers }, payload });
  type Result = { status: string; code?: string; detail?: string };
  const results = async (url: string, payload: unknown, headers: Record<string, string> = {}) => {
    const response = await post(url, typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload), headers);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: Result[] }).results.map((r) => (r.status === 'invalid' ? `${r.code} ${r.detail}` : r.status));
  };
  const viewed = (userId: string, messageId: string, extra: Record<string, unknown> = {}) => ({ type: 'track', userId, messageId, event: 'Product Viewed', properties: { product_id: 'p1' }, ...extra });

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    for (const userId of ['u-edges', 'u-years']) {
      const consent = await post('/v1/consent', JSON.stringify({ mechanism: 'banner_save', userId, purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } }));
      assert.equal(consent.statusCode, 200, consent.body);
    }
  });
  after(async () => {
    await server.app.close();
  });

  it('stops inflating a compressed body once it is past the limit, answered 413, instead of inflating all of it', async () => {
    for (const [coding, Inflater] of [['gzip', Gunzip], ['deflate', Inflate]] as const) {
      // What the request's inflater gives out, counted as it does.
      const push = Readable.prototype.push;
      const inflaters = new Set<Gunzip | Inflate>();
      let inflated = 0;
      const spy = mock.method(Inflater.prototype, 'push', function (this: Gunzip | Inflate, chunk: Buffer | null, encoding?: BufferEncoding) {
        inflaters.add(this);
        if (chunk) inflated += chunk.length;
        return push.call(this, chunk, encoding);
      });
      try {
        // Within the limit as sent (about 64 KB), 64 MB inflated.
        const body = await bomb(coding, '{"batch":[', 64 << 20, ']}');
        assert.ok(body.length < MAX_BATCH_BYTES);
        const response = await post('/v1/batch', body, { 'content-encoding': coding });
        assert.equal(response.statusCode, 413, response.body);
        assert.equal((response.json() as { code: string }).code, 'REQUEST_BODY_TOO_LARGE');
        assert.equal(inflaters.size, 1);
        // Once closed (destroyed, or having inflated everything it was given), the inflater gives out nothing more.
        for (const inflater of inflaters) if (!inflater.closed) await once(inflater, 'close');
        assert.ok(inflated > MAX_BATCH_BYTES, `${coding}: inflated up to the limit`);
        assert.ok(inflated < MAX_BATCH_BYTES + (1 << 20), `${coding}: ${inflated} bytes inflated of 64 MB`);
      } finally {
        spy.mock.restore();
      }
    }
    // A body that inflates to just under the limit is read whole.
    const message = JSON.stringify(viewed('u-edges', 'after-bomb'));
    const under = await bomb('gzip', `{"batch":[${message}`, MAX_BATCH_BYTES - message.length - 12, ']}');
    assert.deepEqual(await results('/v1/batch', under, { 'content-encoding': 'gzip' }), ['stored']);
  });

  it('answers each message that takes a batch-level sentAt that is no time COLLECT_TIMESTAMP_INVALID, however deep it nests, without a 500', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const batch = (sentAt: string, id: string) => `{"sentAt":${sentAt},"batch":[${JSON.stringify(viewed('u-edges', `${id}-1`))},${JSON.stringify(viewed('u-edges', `${id}-2`, { sentAt: new Date().toISOString() }))}]}`;
    for (const [sentAt, id] of [[deep, 'deep'], ['[[1]]', 'array'], ['{"at":"2026-01-01T00:00:00Z"}', 'object'], ['true', 'boolean']] as const) {
      // The message with a sentAt of its own does not take the batch's.
      assert.deepEqual(await results('/v1/batch', batch(sentAt, id)), ['COLLECT_TIMESTAMP_INVALID sentAt', 'stored'], id);
    }
  });

  it('refuses times before year 1 and after 9999, and keeps times from year 1 on in time order', async () => {
    const now = new Date().toISOString();
    const refused = await results('/v1/batch', {
      batch: [
        viewed('u-years', 'neg-text', { timestamp: '-000001-01-01T00:00:00Z' }),
        viewed('u-years', 'neg-number', { timestamp: -8640000000000000 }),
        viewed('u-years', 'neg-original', { originalTimestamp: '-000001-01-01T00:00:00Z' }),
        viewed('u-years', 'far-original', { originalTimestamp: '+010000-01-01T00:00:00Z', sentAt: '+010000-01-01T00:00:00Z' }),
        viewed('u-years', 'neg-corrected', { originalTimestamp: '0001-01-01T00:00:00Z', sentAt: '9999-01-01T00:00:00Z' }),
      ],
    });
    assert.deepEqual(refused, ['COLLECT_TIMESTAMP_INVALID timestamp', 'COLLECT_TIMESTAMP_INVALID timestamp', 'COLLECT_TIMESTAMP_INVALID originalTimestamp', 'COLLECT_TIMESTAMP_INVALID originalTimestamp', 'COLLECT_TIMESTAMP_INVALID timestamp']);
    const stored = await results('/v1/batch', { batch: [viewed('u-years', 'year-1', { timestamp: '0001-01-01T00:00:00Z' }), viewed('u-years', 'year-now', { timestamp: now }), viewed('u-years', 'year-1999', { timestamp: 946_684_799_000 })] });
    assert.deepEqual(stored, ['stored', 'stored', 'stored']);
    const [profile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'u-years' }], source: 'web', at: now }]);
    assert.ok(profile);
    const events = await ctx.kernel.collect.events([profile], { decrypt: true, limit: 10 });
    assert.deepEqual(events.map((e) => e.messageId), ['year-now', 'year-1999', 'year-1'], 'newest first');
    const { computed } = await ctx.kernel.profiles.get([profile], { decrypt: false });
    assert.deepEqual([computed.firstSeenAt, computed.lastSeenAt], ['0001-01-01T00:00:00.000Z', new Date(Date.parse(now)).toISOString()]);
  });
});
