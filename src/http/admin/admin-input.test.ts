import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('admin API: numbers and ids out of range, unknown subjects and types, impossible days', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let token = '';
  const call = (method: 'GET' | 'POST', url: string, payload?: unknown) =>
    server.app.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) }, ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }) });
  const code = (response: { json: () => unknown }) => (response.json() as { code?: string }).code;

  before(async () => {
    server = await buildServer(ctx.kernel);
    token = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('answers numbers beyond what the database holds as validation errors or not found, never 500 (PostgreSQL refused them)', async () => {
    for (const version of ['2147483648', '99999999999999999999']) {
      const response = await call('GET', `/v1/admin/catalog/plan/versions/${version}`);
      assert.equal(response.statusCode, 400, response.body);
      assert.equal(code(response), 'REQUEST_VALIDATION_FAILED');
    }
    await assert.rejects(ctx.kernel.catalog.plan(2_147_483_648), (error: Error & { code?: string }) => error.code === 'CATALOG_PLAN_VERSION_NOT_FOUND');
    for (const after of ['99999999999999999999', '9223372036854775807']) {
      const response = await call('GET', `/v1/admin/audit?after=${after}`);
      assert.equal(response.statusCode, 400, response.body);
    }
    const last = await call('GET', `/v1/admin/audit?after=${Number.MAX_SAFE_INTEGER}`);
    assert.equal(last.statusCode, 200, last.body);
    assert.deepEqual(last.json(), []);
  });

  it("answers a consent read about a profile nobody has as not found, not as someone who never consented", async () => {
    const unknown = await call('GET', '/v1/admin/subjects/prf_aaaaaaaaaaaaaaaaaaaa/consent');
    assert.equal(unknown.statusCode, 404, unknown.body);
    assert.equal(code(unknown), 'IDENTITY_PROFILE_NOT_FOUND');
    const malformed = await call('GET', '/v1/admin/subjects/xyz/consent');
    assert.equal(malformed.statusCode, 400, malformed.body);
    assert.equal(code(malformed), 'REQUEST_VALIDATION_FAILED');
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-known' }], source: 'web', at: new Date().toISOString() }]));
    const known = await call('GET', `/v1/admin/subjects/${resolved?.profileId}/consent`);
    assert.equal(known.statusCode, 200, known.body);
    assert.deepEqual((known.json() as { history: unknown[] }).history, []);
  });

  it('refuses a look-up by an identifier type Candor does not have', async () => {
    const response = await call('POST', '/v1/admin/profiles/lookup', { type: 'passport', value: 'x' });
    assert.equal(response.statusCode, 400, response.body);
    assert.equal(code(response), 'REQUEST_VALIDATION_FAILED');
    assert.equal((await call('POST', '/v1/admin/profiles/lookup', { type: 'custom:crm', value: 'x' })).statusCode, 404);
  });

  it('refuses a day no calendar has', async () => {
    for (const since of ['2026-13-45', '2026-02-30']) {
      const response = await call('GET', `/v1/admin/collect/refusals?since=${since}`);
      assert.equal(response.statusCode, 400, response.body);
      assert.equal(code(response), 'REQUEST_VALIDATION_FAILED');
    }
    assert.equal((await call('GET', '/v1/admin/collect/refusals?since=2024-02-29')).statusCode, 200);
  });
});
