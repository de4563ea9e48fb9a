import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { MAX_BATCH_BYTES } from './index.ts';

describeEachDialect('ingestion limits and inputs', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const basic = (key = writeKey) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` });
  const post = (url: string, payload: string | Buffer, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { ...basic(), 'content-type': 'application/json', ...headers }, payload });
  type Answer = { code?: string; results?: { status: string; code?: string; messageId?: string }[] };
  const answer = (response: { json: () => unknown }) => response.json() as Answer;
  /** A batch of small page views whose JSON is at least `bytes` long. */
  const batchOf = (bytes: number, prefix: string) => {
    const batch: Record<string, unknown>[] = [];
    let size = 20;
    for (let i = 0; size < bytes; i++) {
      const message = { type: 'page', anonymousId: 'anon-limits', messageId: `${prefix}-${i}`, properties: { path: `/p/${'x'.repeat(1_900)}` } };
      batch.push(message);
      size += JSON.stringify(message).length + 1;
    }
    return JSON.stringify({ batch });
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const consent = await post('/v1/consent', JSON.stringify({ mechanism: 'banner_save', anonymousId: 'anon-limits', purposes: { 'analytics.reporting': 'given' } }));
    assert.equal(consent.statusCode, 200, consent.body);
  });
  after(async () => {
    await server.app.close();
  });

  it('accepts a batch body just under 4 MB (the limit of RudderStack servers) and refuses one over it with 413 REQUEST_BODY_TOO_LARGE', async () => {
    assert.equal(MAX_BATCH_BYTES, 4 * 1024 * 1024);
    const under = batchOf(MAX_BATCH_BYTES - 3_000, 'under');
    assert.ok(Buffer.byteLength(under) <= MAX_BATCH_BYTES);
    const accepted = await post('/v1/batch', under);
    assert.equal(accepted.statusCode, 200, accepted.body.slice(0, 300));
    const over = batchOf(MAX_BATCH_BYTES + 1, 'over');
    assert.ok(Buffer.byteLength(over) > MAX_BATCH_BYTES);
    for (const url of ['/v1/batch', '/v1/import']) {
      const refused = await post(url, over);
      assert.equal(refused.statusCode, 413, `${url}: ${refused.body.slice(0, 300)}`);
      assert.equal(answer(refused).code, 'REQUEST_BODY_TOO_LARGE');
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
    }
  });

  it('stores every message of a batch past the 500 KB Segment documents, as the RudderStack libraries send them, plain or gzipped', async () => {
    // rudder-sdk-node flushes at 450 KB counted in UTF-16 units: 20 messages of 31,000 characters, each under 32 KB.
    const batch = (prefix: string) =>
      JSON.stringify({ batch: Array.from({ length: 20 }, (_, i) => ({ type: 'track', anonymousId: 'anon-limits', messageId: `${prefix}-${i}`, event: 'Product Viewed', properties: { product_id: `p${i}`, blob: 'x'.repeat(31_000) } })) });
    for (const [prefix, url, coding] of [['rs-plain', '/v1/batch', undefined], ['rs-gzip', '/v1/import', 'gzip']] as const) {
      const body = batch(prefix);
      assert.ok(Buffer.byteLength(body) > 600_000, `${Buffer.byteLength(body)} bytes`);
      const response = await post(url, coding ? gzipSync(body) : body, coding ? { 'content-encoding': coding } : {});
      assert.equal(response.statusCode, 200, response.body.slice(0, 300));
      assert.deepEqual(answer(response).results?.map((r) => r.status), Array(20).fill('stored'), prefix);
    }
  });

  it('applies the limit to the inflated size of a gzip body, not to the compressed bytes', async () => {
    const over = batchOf(MAX_BATCH_BYTES + 50_000, 'gz-over');
    const compressed = gzipSync(over);
    assert.ok(compressed.length < MAX_BATCH_BYTES / 10, 'the compressed body alone is far under the limit');
    const refused = await post('/v1/batch', compressed, { 'content-encoding': 'gzip' });
    assert.equal(refused.statusCode, 413, refused.body.slice(0, 300));
    assert.equal(answer(refused).code, 'REQUEST_BODY_TOO_LARGE');
    const small = await post('/v1/batch', gzipSync(batchOf(10_000, 'gz-under')), { 'content-encoding': 'gzip' });
    assert.equal(small.statusCode, 200, small.body.slice(0, 300));
    assert.deepEqual(new Set(answer(small).results?.map((r) => r.status)), new Set(['stored']));
  });

  it('answers a corrupt gzip body with a coded 400, not a server error', async () => {
    const good = gzipSync(JSON.stringify({ anonymousId: 'anon-limits', event: 'Product Viewed', properties: { product_id: 'p1' } }));
    // A gzip header followed by bytes that are no deflate stream.
    const corrupt = Buffer.concat([good.subarray(0, 10), Buffer.from('this is not deflate data at all, not at all')]);
    const response = await post('/v1/track', corrupt, { 'content-encoding': 'gzip' });
    assert.equal(response.statusCode, 400, response.body);
    assert.equal(answer(response).code, 'REQUEST_INVALID');
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  });

  it('answers malformed JSON on ingest routes with 400 REQUEST_MALFORMED_JSON', async () => {
    for (const url of ['/v1/track', '/v1/batch', '/v1/consent']) {
      const response = await post(url, '{"anonymousId": "anon-limits", "event": ');
      assert.equal(response.statusCode, 400, `${url}: ${response.body}`);
      assert.equal(answer(response).code, 'REQUEST_MALFORMED_JSON', url);
    }
    const browser = await post('/v1/batch', '{"writeKey": "x", "batch": [', { 'content-type': 'text/plain' });
    assert.equal(browser.statusCode, 400, browser.body);
    assert.equal(answer(browser).code, 'REQUEST_MALFORMED_JSON');
  });

  it('answers /v1/import exactly as /v1/batch', async () => {
    const batch = [
      { type: 'track', anonymousId: 'anon-limits', messageId: 'import-1', event: 'Product Viewed', properties: { product_id: 'p1' } },
      { type: 'track', event: 'Product Viewed', properties: {} },
      { type: 'track', anonymousId: 'anon-limits', messageId: 'import-3', event: 'Rocket Launched' },
    ];
    const imported = await post('/v1/import', JSON.stringify({ batch }));
    assert.equal(imported.statusCode, 200, imported.body);
    assert.deepEqual(answer(imported).results?.map((r) => r.code ?? r.status), ['stored', 'COLLECT_IDENTITY_MISSING', 'CATALOG_EVENT_UNDECLARED']);
    const again = await post('/v1/batch', JSON.stringify({ batch }));
    assert.deepEqual(answer(again).results?.map((r) => r.code ?? r.status), ['duplicate', 'COLLECT_IDENTITY_MISSING', 'CATALOG_EVENT_UNDECLARED']);
    const empty = await post('/v1/import', JSON.stringify({ batch: [] }));
    assert.equal(answer(empty).code, 'COLLECT_BATCH_INVALID');
  });

  it('refuses a revoked write key sent in a browser-style text/plain body with 401 AUTH_CREDENTIAL_REVOKED', async () => {
    const key = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    const body = (messageId: string) => JSON.stringify({ writeKey: key.secret, batch: [{ type: 'page', anonymousId: 'anon-limits', messageId, properties: { path: '/' } }] });
    const live = await server.app.inject({ method: 'POST', url: '/v1/batch', headers: { 'content-type': 'text/plain' }, payload: body('revoked-before') });
    assert.equal(live.statusCode, 200, live.body);
    await ctx.kernel.access.revoke(key.id, CLI_ACTOR);
    const revoked = await server.app.inject({ method: 'POST', url: '/v1/batch', headers: { 'content-type': 'text/plain' }, payload: body('revoked-after') });
    assert.equal(revoked.statusCode, 401, revoked.body);
    assert.equal(answer(revoked).code, 'AUTH_CREDENTIAL_REVOKED');
    const single = await server.app.inject({ method: 'POST', url: '/v1/page', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify({ writeKey: key.secret, anonymousId: 'anon-limits', properties: { path: '/' } }) });
    assert.equal(single.statusCode, 401, single.body);
    assert.equal(answer(single).code, 'AUTH_CREDENTIAL_REVOKED');
  });

  it('answers one result from each of the /v1/group, /v1/alias and /v1/screen endpoints', async () => {
    const calls: [string, Record<string, unknown>][] = [
      ['/v1/group', { anonymousId: 'anon-limits', messageId: 'single-group', groupId: 'acme' }],
      ['/v1/alias', { userId: 'user-limits', previousId: 'anon-limits', messageId: 'single-alias' }],
      ['/v1/screen', { anonymousId: 'anon-limits', messageId: 'single-screen', name: 'Cart' }],
    ];
    for (const [url, body] of calls) {
      const response = await post(url, JSON.stringify(body));
      assert.equal(response.statusCode, 200, `${url}: ${response.body}`);
      const results = answer(response).results ?? [];
      assert.equal(results.length, 1, `${url}: ${response.body}`);
      assert.equal(results[0]?.messageId, body.messageId, url);
      assert.equal(results[0]?.status, 'stored', `${url}: ${response.body}`);
    }
  });
});
