import assert from 'node:assert/strict';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_EVENT_BYTES } from '../../modules/collect/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('Segment ingest: sizes as merged, content codings, malformed credentials, page names', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const basic = () => `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
  const post = (url: string, payload: string | Buffer, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: basic(), 'content-type': 'application/json', ...headers }, payload });
  type Answer = { code?: string; details?: Record<string, unknown>; results?: { status: string; code?: string; detail?: string }[] };
  const answer = (response: { json: () => unknown }) => response.json() as Answer;
  const track = (messageId: string, extra: Record<string, unknown> = {}) => ({ type: 'track', userId: 'u-limits', messageId, event: 'Product Viewed', properties: { product_id: 'p' }, ...extra });

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    for (const id of [{ userId: 'u-limits' }, { anonymousId: 'anon-pages' }]) {
      const consent = await post('/v1/consent', JSON.stringify({ mechanism: 'banner_save', ...id, purposes: { 'analytics.reporting': 'given' } }));
      assert.equal(consent.statusCode, 200, consent.body);
    }
  });
  after(async () => {
    await server.app.close();
  });

  it('counts a batch-level context toward the 32 KB of every message that takes it, as if the message carried it', async () => {
    const context = { locale: 'de', junk: 'x'.repeat(40_000) };
    const viaBatch = await post('/v1/batch', JSON.stringify({ context, batch: [track('bc3')] }));
    assert.equal(viaBatch.statusCode, 200, viaBatch.body);
    const inMessage = await post('/v1/batch', JSON.stringify({ batch: [track('bc4', { context })] }));
    const [merged] = answer(viaBatch).results ?? [];
    const [own] = answer(inMessage).results ?? [];
    assert.equal(own?.code, 'COLLECT_EVENT_TOO_LARGE');
    assert.deepEqual([merged?.status, merged?.code], ['invalid', 'COLLECT_EVENT_TOO_LARGE'], viaBatch.body);
    assert.equal(merged?.detail, own?.detail, 'the same size as with the context inside the message');
    assert.equal(merged?.detail, `${Buffer.byteLength(JSON.stringify({ ...track('bc3'), context }))} bytes`);
  });

  it('refuses a message whose own part and the batch-level parts it takes are each under 32 KB but over it together, measured exactly', async () => {
    // 18 KB of UTF-8 (each ü two bytes) in the batch-level context, 16 KB in the message.
    const context = { locale: 'de', junk: 'ü'.repeat(9_000) };
    const sentAt = new Date().toISOString();
    const half = track('half-1', { properties: { product_id: 'p', note: 'y'.repeat(16_000) } });
    assert.ok(Buffer.byteLength(JSON.stringify(half)) < MAX_EVENT_BYTES && Buffer.byteLength(JSON.stringify({ context, sentAt })) < MAX_EVENT_BYTES);
    const response = await post('/v1/batch', JSON.stringify({ context, sentAt, batch: [half, track('half-2', { context: { locale: 'en' } }), track('half-3')] }));
    assert.equal(response.statusCode, 200, response.body);
    const results = answer(response).results ?? [];
    assert.deepEqual(results.map((r) => r.code ?? r.status), ['COLLECT_EVENT_TOO_LARGE', 'stored', 'stored']);
    assert.equal(results[0]?.detail, `${Buffer.byteLength(JSON.stringify({ ...half, context, sentAt }))} bytes`);
    // An empty message takes the batch-level parts with no comma before the first.
    const large = { junk: 'ü'.repeat(17_000) };
    const empty = await post('/v1/batch', JSON.stringify({ context: large, sentAt, batch: [{}] }));
    assert.deepEqual(answer(empty).results?.map((r) => [r.code, r.detail]), [['COLLECT_EVENT_TOO_LARGE', `${Buffer.byteLength(JSON.stringify({ context: large, sentAt }))} bytes`]]);
  });

  it('measures a large batch-level context once: messages with a context of their own that it makes too large are answered so, each with its exact size', async () => {
    // 20,000 members taken by 400 messages with an empty context (merged copies would be ~100 MB: none is made).
    const context: Record<string, number> = {};
    for (let i = 0; i < 20_000; i++) context[`k${i}`] = 0;
    const batch = Array.from({ length: 400 }, (_, i) => track(`fan-${i}`, { context: i % 2 === 0 ? {} : { k1: 1, locale: 'de' } }));
    const response = await post('/v1/batch', JSON.stringify({ context, batch }));
    assert.equal(response.statusCode, 200);
    const results = answer(response).results ?? [];
    assert.equal(results.length, 400);
    assert.ok(results.every((r) => r.code === 'COLLECT_EVENT_TOO_LARGE'));
    assert.equal(results[0]?.detail, `${Buffer.byteLength(JSON.stringify({ ...(batch[0] as object), context }))} bytes`);
    assert.equal(results[1]?.detail, `${Buffer.byteLength(JSON.stringify({ ...(batch[1] as object), context: { ...context, k1: 1, locale: 'de' } }))} bytes`);
  });

  it('answers the messages whose share of the batch-level parts passes 12 MB COLLECT_BATCH_CONTEXT_TOO_LARGE, the others processed', async () => {
    // A 3 MB request: 30 KB of batch-level context taken by 2,500 messages would be 75 MB of events.
    const context = { junk: 'j'.repeat(30_000) };
    const batch = Array.from({ length: 2_500 }, (_, i) => track(`amp-${i}`, i === 2_499 ? { context: { junk: 'own' } } : {}));
    const response = await post('/v1/batch', JSON.stringify({ context, batch }));
    assert.equal(response.statusCode, 200);
    const results = answer(response).results ?? [];
    // Each message that takes the context counts its exact `,"context":{…}` against the 12 MB.
    const share = Buffer.byteLength(`,"context":${JSON.stringify(context)}`);
    const fit = Math.floor((12 * 1024 * 1024) / share);
    const tally = (list: typeof results) => [...new Set(list.map((r) => `${r.status}:${r.code ?? ''}`))];
    assert.deepEqual(tally(results.slice(0, fit)), ['stored:']);
    assert.deepEqual(tally(results.slice(fit, 2_499)), ['invalid:COLLECT_BATCH_CONTEXT_TOO_LARGE']);
    assert.equal(results[2_499]?.status, 'stored', 'a message that takes nothing of the batch context goes on');
  });

  it('takes a batch-level sentAt for every message of a full batch of ordinary messages (the budget counts what is taken, exactly)', async () => {
    // 700 messages of ~5 KB of text each (3.6 MB): each takes only the batch's sentAt.
    const batch = Array.from({ length: 700 }, (_, i) => track(`sent-${i}`, { properties: { product_id: 'p', note: 'n'.repeat(5_000) } }));
    const response = await post('/v1/batch', JSON.stringify({ sentAt: new Date().toISOString(), batch }));
    assert.equal(response.statusCode, 200);
    assert.deepEqual([...new Set((answer(response).results ?? []).map((r) => r.status))], ['stored']);
  });

  it('measures a single message as compact JSON, as in a batch: sent escaped or pretty-printed it is answered by its size, not by the body\'s', async () => {
    // 20 KB of text, sent as \u006e escapes: a body of 120 KB.
    const escaped = JSON.stringify(track('single-escaped', { properties: { product_id: 'p', note: 'n'.repeat(20_000) } })).replace('n'.repeat(20_000), '\\u006e'.repeat(20_000));
    // 3,000 numbers, one a line under a deep indent: a body of 100 KB for 6 KB of JSON.
    const pretty = JSON.stringify(track('single-pretty', { properties: { product_id: 'p', note: Array<number>(3_000).fill(0) } }), null, 10);
    for (const [what, body] of [['escaped', escaped], ['pretty-printed', pretty]] as const) {
      assert.ok(Buffer.byteLength(body) > 2 * MAX_EVENT_BYTES, what);
      for (const url of ['/v1/track', '/v1/t']) {
        const single = await post(url, body);
        assert.equal(single.statusCode, 200, `${what} on ${url}: ${single.body.slice(0, 300)}`);
        assert.deepEqual(answer(single).results?.map((r) => r.status), [url === '/v1/track' ? 'stored' : 'duplicate'], what);
      }
    }
    // Over 32 KB as compact JSON (ü: two bytes of UTF-8, six escaped): answered as a batch answers it, with its exact size.
    const large = track('single-large', { properties: { product_id: 'p', note: 'ü'.repeat(17_000) } });
    const response = await post('/v1/track', JSON.stringify(large).replace('ü'.repeat(17_000), '\\u00fc'.repeat(17_000)));
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(answer(response).results?.map((r) => [r.status, r.code, r.detail]), [['invalid', 'COLLECT_EVENT_TOO_LARGE', `${Buffer.byteLength(JSON.stringify(large))} bytes`]]);
    // A body over six times the message limit is refused unread.
    const huge = await post('/v1/track', JSON.stringify(track('single-huge', { properties: { product_id: 'p', note: 'x'.repeat(6 * MAX_EVENT_BYTES) } })));
    assert.deepEqual([huge.statusCode, answer(huge).code], [413, 'REQUEST_BODY_TOO_LARGE']);
  });

  it('refuses a page or screen name that is no string, COLLECT_MESSAGE_INVALID (it would be dropped unreported)', async () => {
    const batch = [5, { a: 1 }, true, null, 'Home'].map((name, i) => ({ type: i % 2 === 0 ? 'page' : 'screen', userId: 'u-limits', messageId: `named-${i}`, name }));
    const response = await post('/v1/batch', JSON.stringify({ batch }));
    assert.deepEqual(answer(response).results?.map((r) => [r.status, r.code, r.detail]), [
      ['invalid', 'COLLECT_MESSAGE_INVALID', 'name'],
      ['invalid', 'COLLECT_MESSAGE_INVALID', 'name'],
      ['invalid', 'COLLECT_MESSAGE_INVALID', 'name'],
      ['stored', undefined, undefined],
      ['stored', undefined, undefined],
    ]);
  });

  it('inflates gzip whatever the case of its name, and x-gzip, with identity listed or not', async () => {
    const body = (messageId: string) => gzipSync(JSON.stringify(track(messageId)));
    for (const [i, coding] of ['GZIP', 'x-gzip', 'X-Gzip', 'identity, gzip', 'gzip , identity', 'Deflate'].entries()) {
      const payload = coding === 'Deflate' ? deflateSync(JSON.stringify(track(`coding-${i}`))) : body(`coding-${i}`);
      const response = await post('/v1/track', payload, { 'content-encoding': coding });
      assert.equal(response.statusCode, 200, `${coding}: ${response.body}`);
      assert.deepEqual(answer(response).results?.map((r) => r.status), ['stored'], coding);
    }
    const plain = await post('/v1/track', JSON.stringify(track('coding-identity')), { 'content-encoding': 'identity' });
    assert.deepEqual(answer(plain).results?.map((r) => r.status), ['stored'], plain.body);
  });

  it('refuses a body in a coding it cannot decode, or in stacked codings, with 415 REQUEST_UNSUPPORTED_MEDIA_TYPE', async () => {
    const json = JSON.stringify(track('br-1'));
    const cases: [string, string | Buffer, string][] = [
      ['br', brotliCompressSync(json), '/v1/track'],
      // Plain JSON labelled br was read as JSON: a coding Candor does not know is refused, not ignored.
      ['br', json, '/v1/track'],
      ['zstd', json, '/v1/batch'],
      ['gzip, gzip', gzipSync(gzipSync(json)), '/v1/track'],
      ['gzip, br', json, '/v1/track'],
      ['compress', json, '/v1/consent'],
    ];
    for (const [coding, payload, url] of cases) {
      const response = await post(url, payload, { 'content-encoding': coding });
      assert.equal(response.statusCode, 415, `${coding} on ${url}: ${response.body}`);
      assert.equal(answer(response).code, 'REQUEST_UNSUPPORTED_MEDIA_TYPE', coding);
      assert.deepEqual(answer(response).details, { header: 'content-encoding', supported: ['gzip', 'x-gzip', 'deflate'] });
      assert.equal(response.headers['accept-encoding'], 'gzip, deflate', coding);
      assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
    }
    const events = await ctx.kernel.collect.countEvents();
    const retried = await post('/v1/track', json);
    assert.deepEqual(answer(retried).results?.map((r) => r.status), ['stored'], 'nothing of the refused bodies was stored');
    assert.equal(await ctx.kernel.collect.countEvents(), events + 1);
  });

  it('answers a compressed body that does not inflate, sent with a type it does not read, and goes on serving', async () => {
    // The body is never read (the type is refused first): its inflating stream's error has no reader, and ended the
    // process.
    const json = JSON.stringify(track('cut-short'));
    const bodies: [string, Buffer][] = [
      ['garbage', Buffer.from('not gzip at all')],
      // Cut short: the inflater's error comes after the body has ended.
      ['cut short', gzipSync(json).subarray(0, 5)],
    ];
    for (const [what, body] of bodies) {
      for (const [type, coding] of [['application/xml', 'gzip'], ['application/xml', 'deflate'], ['text/csv', 'gzip']] as const) {
        const payload = what === 'cut short' && coding === 'deflate' ? deflateSync(json).subarray(0, 5) : body;
        const response = await post('/v1/track', payload, { 'content-type': type, 'content-encoding': coding });
        assert.equal(response.statusCode, 415, `${what} ${type} ${coding}: ${response.body}`);
        assert.equal(answer(response).code, 'REQUEST_UNSUPPORTED_MEDIA_TYPE');
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const [, body] of bodies) {
      const garbled = await post('/v1/track', body, { 'content-encoding': 'gzip' });
      assert.equal(garbled.statusCode, 400, garbled.body);
      assert.deepEqual([answer(garbled).code, answer(garbled).details?.reason], ['REQUEST_INVALID', 'body_not_inflatable'], garbled.body);
    }
    const after = await post('/v1/track', JSON.stringify(track('after-bad-gzip')));
    assert.deepEqual(answer(after).results?.map((r) => r.status), ['stored'], after.body);
  });

  it('answers a Basic header that is not base64 AUTH_CREDENTIAL_INVALID, also with a write key in the body, and reads the body for an empty one', async () => {
    const body = JSON.stringify({ writeKey, ...track('auth-1') });
    for (const authorization of ['Basic !!!', 'basic a', 'Basic a=b=']) {
      for (const url of ['/v1/track', '/v1/consent']) {
        const response = await post(url, body, { authorization });
        assert.equal(response.statusCode, 401, `${authorization} on ${url}: ${response.body}`);
        assert.equal(answer(response).code, 'AUTH_CREDENTIAL_INVALID', authorization);
      }
    }
    // No user name in it: the header presents no credential, and the write key in the body is read.
    for (const [i, authorization] of ['Basic', 'Basic ', `Basic ${Buffer.from(':').toString('base64')}`, `Basic ${Buffer.from(':secret').toString('base64')}`].entries()) {
      const response = await post('/v1/track', JSON.stringify({ writeKey, ...track(`auth-empty-${i}`) }), { authorization });
      assert.deepEqual(answer(response).results?.map((r) => r.status), ['stored'], `${authorization}: ${response.body}`);
    }
    const spaced = await post('/v1/track', JSON.stringify(track('auth-spaced')), { authorization: basic().replace(' ', '   ') });
    assert.deepEqual(answer(spaced).results?.map((r) => r.status), ['stored'], spaced.body);
    const unpadded = await post('/v1/track', JSON.stringify(track('auth-2')), { authorization: basic().replace(/=+$/, '') });
    assert.deepEqual(answer(unpadded).results?.map((r) => r.status), ['stored'], unpadded.body);
    // Browsers send no Authorization header at all: the write key in the body is read.
    const browser = await server.app.inject({ method: 'POST', url: '/v1/track', headers: { 'content-type': 'text/plain' }, payload: body });
    assert.deepEqual(answer(browser).results?.map((r) => r.status), ['stored'], browser.body);
    const none = await server.app.inject({ method: 'POST', url: '/v1/track', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(track('auth-3')) });
    assert.equal(answer(none).code, 'AUTH_CREDENTIAL_MISSING');
  });

  it('keeps a page or screen name as the property name, with no event name, and counts its refusal under the message type', async () => {
    const stored = await post('/v1/batch', JSON.stringify({ batch: [
      { type: 'page', anonymousId: 'anon-pages', messageId: 'page-1', name: 'Home', properties: { path: '/' } },
      { type: 'screen', anonymousId: 'anon-pages', messageId: 'screen-1', name: 'Cart' },
    ] }));
    assert.deepEqual(answer(stored).results?.map((r) => r.status), ['stored', 'stored'], stored.body);
    const [profile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-pages' }], source: 'web', at: new Date().toISOString() }]);
    const events = await ctx.kernel.collect.events([profile as string], { decrypt: true, limit: 10 });
    const named = Object.fromEntries(events.map((e) => [e.messageId, [e.kind, e.event, (e.data.properties as Record<string, unknown> | undefined)?.name]]));
    assert.deepEqual(named, { 'page-1': ['page', null, 'Home'], 'screen-1': ['screen', null, 'Cart'] });

    const refused = await post('/v1/batch', JSON.stringify({ batch: [
      { type: 'page', anonymousId: 'anon-no-consent', messageId: 'page-r', name: 'Checkout Zq' },
      { type: 'screen', anonymousId: 'anon-no-consent', messageId: 'screen-r', name: 'Basket Zq' },
    ] }));
    assert.deepEqual(answer(refused).results?.map((r) => r.code), ['COLLECT_NO_LAWFUL_BASIS', 'COLLECT_NO_LAWFUL_BASIS'], refused.body);
    const owner = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    const counts = await server.app.inject({ url: '/v1/admin/collect/refusals?source=web', headers: { authorization: `Bearer ${owner}` } });
    const rows = counts.json() as { event: string; purpose: string; count: number }[];
    assert.ok(rows.some((r) => r.event === 'page' && r.purpose === 'analytics.reporting'), counts.body);
    assert.ok(rows.some((r) => r.event === 'screen' && r.purpose === 'analytics.reporting'), counts.body);
    assert.ok(!counts.body.includes('Zq'), 'no page or screen name among the counts');
  });
});
