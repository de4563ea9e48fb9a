// A server on PostgreSQL whose database stops answering (a network that silently lost its connections: no reset ever
// comes): requests fail with 503 STORAGE_UNAVAILABLE once the storage timeout passes instead of hanging for ever (or
// answering 500), /readyz says not ready, and once the network answers again the same server works on.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildServer, type CandorServer } from './server.ts';
import { openKernel, type Kernel } from '../kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { createEnvironment, DIALECTS, type TestEnvironment } from '../../test/support/databases.ts';
import { startTcpProxy, type TcpProxy } from '../../test/support/tcp-proxy.ts';

describe('a server whose PostgreSQL stops answering', { skip: !DIALECTS.includes('postgres'), timeout: 60_000 }, () => {
  let env: TestEnvironment;
  let proxy: TcpProxy;
  let kernel: Kernel;
  let server: CandorServer;
  let auth = '';
  let staff = '';

  before(async () => {
    env = await createEnvironment('postgres');
    proxy = await startTcpProxy(env.databaseUrl);
    kernel = await openKernel(env.configWith({ CANDOR_DATABASE_URL: proxy.url, CANDOR_POSTGRES_TIMEOUT_MS: '500' }));
    server = await buildServer(kernel);
    const key = (await kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    auth = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
    staff = `Bearer ${(await kernel.access.createToken('owner', null, CLI_ACTOR)).secret}`;
  });
  after(async () => {
    proxy.resume();
    await server?.app.close();
    await kernel?.close();
    await proxy?.close();
    await env?.cleanup();
  });

  const post = (url: string, payload: unknown) => server.app.inject({ method: 'POST', url, headers: { authorization: auth, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const track = () => post('/v1/track', { userId: 'u-1', event: 'Product Viewed', properties: { product_id: 'p-1', price: 10 } });

  it('answers 503 STORAGE_UNAVAILABLE while stalled, not ready, and works on once the network answers', async () => {
    const consent = await post('/v1/consent', { userId: 'u-1', purposes: { 'analytics.reporting': 'given' }, mechanism: 'api', noticeVersion: 1 });
    assert.equal(consent.statusCode, 200, consent.body);
    assert.equal((await track()).statusCode, 200);

    proxy.stall();
    const stalled = await track();
    assert.equal(stalled.statusCode, 503, stalled.body);
    assert.equal((stalled.json() as { code: string }).code, 'STORAGE_UNAVAILABLE');
    assert.equal(stalled.headers['retry-after'], '5', 'clients are told when to send again');
    // A read that finds the database silent: coded, as a lost connection is (not 500 INTERNAL_ERROR).
    const audit = await server.app.inject({ method: 'GET', url: '/v1/admin/audit?limit=1', headers: { authorization: staff } });
    assert.equal(audit.statusCode, 503, audit.body);
    assert.equal((audit.json() as { code: string }).code, 'STORAGE_UNAVAILABLE');
    const ready = await server.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503, ready.body);
    assert.equal((ready.json() as { code: string }).code, 'STORAGE_UNAVAILABLE');

    proxy.resume();
    const after = await track();
    assert.equal(after.statusCode, 200, after.body);
    assert.equal((after.json() as { results: { status: string }[] }).results[0]?.status, 'stored');
    assert.equal((await server.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    assert.equal((await server.app.inject({ method: 'GET', url: '/v1/admin/audit?limit=1', headers: { authorization: staff } })).statusCode, 200);
  });
});
