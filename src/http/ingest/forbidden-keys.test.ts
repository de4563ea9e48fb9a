import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('ingestion of messages with a forbidden key', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const basic = () => ({ authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` });
  // Bodies are written as text: in an object literal, `__proto__` would set the prototype instead of being a key.
  const post = (url: string, payload: string, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { ...basic(), 'content-type': 'application/json', ...headers }, payload });
  const results = (response: { json: () => unknown }) => (response.json() as { results: { index: number; messageId?: string; status: string; code?: string; detail?: string }[] }).results;
  const outcomes = (response: { json: () => unknown }) => results(response).map((r) => [r.status, r.code]);
  const page = (id: string, extra = '') => `{"type":"page","anonymousId":"anon-fk","messageId":"${id}","properties":{"path":"/"${extra}}}`;
  const storedIds = async () => (await sql<{ message_id: string }>`SELECT message_id FROM collect_events ORDER BY message_id`.execute(ctx.kernel.storage.db)).rows.map((r) => r.message_id);

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const given = await post('/v1/consent', JSON.stringify({ mechanism: 'banner_save', anonymousId: 'anon-fk', purposes: { 'analytics.reporting': 'given' } }));
    assert.equal(given.statusCode, 200, given.body);
  });
  after(async () => {
    await server.app.close();
  });

  it('answers a message with a __proto__ key invalid on its own and stores the rest of the batch', async () => {
    const response = await post('/v1/batch', `{"batch":[${page('fk-good-1')},${page('fk-proto-1', ',"__proto__":{"x":1}')}]}`);
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(outcomes(response), [['stored', undefined], ['invalid', 'REQUEST_FORBIDDEN_KEY']]);
    assert.deepEqual(results(response)[1], { index: 1, messageId: 'fk-proto-1', status: 'invalid', code: 'REQUEST_FORBIDDEN_KEY', detail: 'properties.__proto__' });
    assert.deepEqual(await storedIds(), ['fk-good-1']);
    assert.equal(({} as Record<string, unknown>).x, undefined, 'no prototype was touched');
  });

  it('answers a message with a constructor.prototype key invalid on its own, also written with escapes, and keeps a plain constructor field', async () => {
    const response = await post(
      '/v1/import',
      `{"batch":[${page('fk-ctor', ',"items":[{"constructor":{"prototype":{"x":1}}}]')},${page('fk-good-2', ',"constructor":"Rocket"')},${page('fk-escaped', ',"\\u005f_proto__":{"x":1}')}]}`,
    );
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(outcomes(response), [['invalid', 'REQUEST_FORBIDDEN_KEY'], ['stored', undefined], ['invalid', 'REQUEST_FORBIDDEN_KEY']]);
    assert.deepEqual(results(response).map((r) => r.detail), ['properties.items[0].constructor', undefined, 'properties.__proto__']);
    assert.ok((await storedIds()).includes('fk-good-2'));
  });

  it('answers a single call with a forbidden key 200 with an invalid result', async () => {
    for (const url of ['/v1/track', '/v1/t']) {
      const response = await post(url, `{"anonymousId":"anon-fk","messageId":"fk-single","event":"Product Viewed","properties":{"product_id":"p1"},"context":{"__proto__":{"x":1}}}`);
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual(results(response), [{ index: 0, messageId: 'fk-single', status: 'invalid', code: 'REQUEST_FORBIDDEN_KEY', detail: 'context.__proto__' }]);
    }
    assert.ok(!(await storedIds()).includes('fk-single'));
  });

  it('answers the messages that take a batch-level context with a forbidden key, and refuses a request whose envelope has one', async () => {
    const withContext = await post('/v1/b', `{"context":{"__proto__":{"x":1}},"batch":[${page('fk-takes')},{"type":"page","anonymousId":"anon-fk","messageId":"fk-own","properties":{"path":"/"},"context":{}}]}`);
    assert.equal(withContext.statusCode, 200, withContext.body);
    // A message with a context of its own takes the batch-level one too, merged into it (Segment's HTTP API).
    assert.deepEqual(outcomes(withContext), [['invalid', 'REQUEST_FORBIDDEN_KEY'], ['invalid', 'REQUEST_FORBIDDEN_KEY']]);
    assert.deepEqual(results(withContext).map((r) => r.detail), ['context.__proto__', 'context.__proto__']);
    assert.ok(!(await storedIds()).includes('fk-own'));
    const envelope = await post('/v1/batch', `{"__proto__":{"x":1},"batch":[${page('fk-envelope')}]}`);
    assert.equal(envelope.statusCode, 400, envelope.body);
    assert.equal((envelope.json() as { code: string }).code, 'REQUEST_FORBIDDEN_KEY');
    assert.ok(!(await storedIds()).includes('fk-envelope'));
  });

  it('reads a browser text/plain batch with a forbidden key the same way', async () => {
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: { 'content-type': 'text/plain' },
      payload: `{"writeKey":"${writeKey}","batch":[${page('fk-browser')},${page('fk-browser-bad', ',"__proto__":{"x":1}')}]}`,
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['access-control-allow-origin'], '*');
    assert.deepEqual(outcomes(response), [['stored', undefined], ['invalid', 'REQUEST_FORBIDDEN_KEY']]);
  });

  it('still refuses a whole consent request with a forbidden key', async () => {
    const response = await post('/v1/consent', `{"mechanism":"banner_save","anonymousId":"anon-fk","purposes":{"analytics.reporting":"given"},"__proto__":{"x":1}}`);
    assert.equal(response.statusCode, 400, response.body);
    assert.equal((response.json() as { code: string }).code, 'REQUEST_FORBIDDEN_KEY');
  });
});
