// The privacy center's edges: a receipt id no receipt can have is answered the same coded 400 on both databases
// (PostgreSQL refused a NUL in it with a 500), and a path under /v1/ this server does not have carries the CORS header
// its routes carry, so a browser on another origin reads the coded 404.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('privacy center edges', (dialect) => {
  const ctx = useKernel(dialect);
  const http = useServer(ctx);

  it('refuses a receipt id with a NUL or half a surrogate pair and a query string it does not take, and answers an unknown receipt 404', async () => {
    const app = http.server.app;
    const issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
    const session = await app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { authorization: `Bearer ${issuer}` }, payload: { userId: 'edge-1' } });
    assert.equal(session.statusCode, 201, session.body);
    const token = (session.json() as { token: string }).token;
    const receipt = (id: string) => app.inject({ method: 'GET', url: `/v1/me/consent/receipts/${id}`, headers: { authorization: `Bearer ${token}` } });
    // A NUL fails the id's format; bytes that are no UTF-8 (half a surrogate pair) fail the path's decoding.
    for (const [id, code] of [['a%00b', 'REQUEST_VALIDATION_FAILED'], ['a%ED%A0%80b', 'REQUEST_INVALID']] as const) {
      const r = await receipt(id);
      assert.deepEqual([r.statusCode, (r.json() as { code: string }).code], [400, code], r.body);
    }
    // A query string the route does not take is refused, not ignored.
    const paged = await app.inject({ method: 'GET', url: '/v1/me/consent?limit=5', headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual([paged.statusCode, (paged.json() as { code: string }).code], [400, 'REQUEST_UNKNOWN_FIELD']);
    const unknown = await receipt('rcpt_nothing');
    assert.deepEqual([unknown.statusCode, (unknown.json() as { code: string }).code], [404, 'CONSENT_RECEIPT_NOT_FOUND']);
  });

  it('answers a path it does not have under the ingest and subject routes with the CORS header, not under the staff routes', async () => {
    const app = http.server.app;
    for (const url of ['/v1/me/preferences', '/v2/track'.replace('/v2', '/v1/v2')]) {
      const r = await app.inject({ method: 'GET', url });
      assert.deepEqual([r.statusCode, (r.json() as { code: string }).code, r.headers['access-control-allow-origin']], [404, 'ROUTE_NOT_FOUND', '*'], url);
    }
    const staff = await app.inject({ method: 'GET', url: '/v1/admin/nothing-here', headers: http.auth('owner') });
    assert.deepEqual([staff.statusCode, staff.headers['access-control-allow-origin']], [404, undefined]);
  });
});
