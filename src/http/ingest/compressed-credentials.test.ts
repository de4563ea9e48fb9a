import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { deflateSync, Gunzip, gzipSync, Inflate } from 'node:zlib';
import { after, afterEach, before, beforeEach, it, mock } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

// A compressed body is inflated before a write key in it can be read: a few KB of gzip would have the server inflate
// and parse megabytes for anyone. It is taken only with the key in the Authorization header, checked before inflating.
describeEachDialect('Segment ingest: compressed bodies and where their write key is', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const basic = () => `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
  const post = (url: string, payload: string | Buffer, headers: Record<string, string>) =>
    server.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload });
  type Problem = { code?: string; details?: Record<string, unknown> };
  const batch = (key: string | undefined) => JSON.stringify({ ...(key === undefined ? {} : { writeKey: key }), batch: [{ type: 'track', anonymousId: 'anon-compressed', event: 'Product Viewed', properties: { product_id: 'p1' } }] });
  const track = (key: string) => JSON.stringify({ writeKey: key, type: 'track', anonymousId: 'anon-compressed', event: 'Product Viewed', properties: { product_id: 'p1' } });

  /** Bytes the requests' inflaters gave out since the test began. */
  let inflated = 0;
  beforeEach(() => {
    inflated = 0;
    const push = Readable.prototype.push;
    for (const Inflater of [Gunzip, Inflate]) {
      mock.method(Inflater.prototype, 'push', function (this: Gunzip | Inflate, chunk: Buffer | null, encoding?: BufferEncoding) {
        if (chunk) inflated += chunk.length;
        return push.call(this, chunk, encoding);
      });
    }
  });
  afterEach(() => mock.restoreAll());

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('refuses a compressed body with no credential in a header before inflating it, even with a valid write key inside', async () => {
    for (const [url, body, coding] of [
      ['/v1/batch', gzipSync(batch(writeKey)), 'gzip'],
      ['/v1/track', deflateSync(track(writeKey)), 'deflate'],
      ['/v1/batch', gzipSync(batch(undefined)), 'x-gzip'],
      ['/v1/batch', Buffer.from('not gzip at all'), 'identity, gzip'],
    ] as const) {
      const response = await post(url, body, { 'content-encoding': coding });
      assert.equal(response.statusCode, 401, `${url} ${coding}: ${response.body}`);
      const problem = response.json() as Problem;
      assert.equal(problem.code, 'AUTH_CREDENTIAL_MISSING');
      assert.deepEqual(problem.details, { reason: 'a compressed body needs the write key in the Authorization header' });
    }
    assert.equal(inflated, 0, 'nothing was inflated');
  });

  it('refuses a compressed body whose header credential is wrong before inflating it', async () => {
    const wrong = `${writeKey.slice(0, -4)}AAAA`;
    for (const authorization of [`Bearer ${wrong}`, `Basic ${Buffer.from(`${wrong}:`).toString('base64')}`]) {
      const response = await post('/v1/batch', gzipSync(batch(undefined)), { 'content-encoding': 'gzip', authorization });
      assert.equal(response.statusCode, 401, response.body);
      assert.equal((response.json() as Problem).code, 'AUTH_CREDENTIAL_INVALID');
    }
    assert.equal(inflated, 0, 'nothing was inflated');
  });

  it('takes a compressed body with the write key in the header, and a key in an uncompressed body as browsers send it', async () => {
    const compressed = await post('/v1/batch', gzipSync(batch(undefined)), { 'content-encoding': 'gzip', authorization: basic() });
    assert.equal(compressed.statusCode, 200, compressed.body);
    assert.ok(inflated > 0);
    for (const coding of [undefined, 'identity']) {
      const plain = await post('/v1/batch', batch(writeKey), { 'content-type': 'text/plain', ...(coding ? { 'content-encoding': coding } : {}) });
      assert.equal(plain.statusCode, 200, plain.body);
    }
  });
});
