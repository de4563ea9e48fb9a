import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { buildServer, type CandorServer } from './server.ts';

const basic = (user: string) => `Basic ${Buffer.from(`${user}:`).toString('base64')}`;

function code(response: LightMyRequestResponse): string {
  return `${response.statusCode} ${String((response.json() as { code?: string }).code ?? '')}`;
}

describeEachDialect('HTTP guard', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let owner: string;
  let writeKey: string;
  const get = (url: string, authorization?: string) => server.app.inject({ url, headers: authorization ? { authorization } : {} });

  before(async () => {
    server = await buildServer(ctx.kernel);
    owner = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('answers a real credential of the wrong kind AUTH_CREDENTIAL_WRONG_KIND on every audience, however it is sent', async () => {
    const wrong = '403 AUTH_CREDENTIAL_WRONG_KIND';
    assert.equal(code(await get('/v1/admin/me', `Bearer ${writeKey}`)), wrong);
    assert.equal(code(await get('/v1/admin/me', basic(writeKey))), wrong);
    // Staff routes take API tokens as Bearer only; Basic is the write keys' (Segment's) way in.
    assert.equal(code(await get('/v1/admin/me', basic(owner))), wrong);
    assert.equal(code(await get('/v1/me/consent', `Bearer ${owner}`)), wrong);
    assert.equal(code(await get('/v1/me/consent', `Bearer ${writeKey}`)), wrong);
    assert.equal(code(await get('/v1/me/consent', basic(writeKey))), wrong);
    const track = { method: 'POST' as const, url: '/v1/track', payload: { userId: 'u1', event: 'Product Viewed' } };
    assert.equal(code(await server.app.inject({ ...track, headers: { authorization: `Bearer ${owner}` } })), wrong);
    assert.equal(code(await server.app.inject({ ...track, headers: { authorization: basic(owner) } })), wrong);
    // A customer's session on staff or ingest routes; a session that is not a live one stays invalid.
    const session = (await ctx.kernel.subjectSessions.issue('prf_guard', ctx.kernel.keyring.pseudonym('subject', 'prf_guard'), { ttlSeconds: 300, via: 'test' }, CLI_ACTOR)).token;
    assert.equal(code(await get('/v1/admin/me', `Bearer ${session}`)), wrong);
    assert.equal(code(await server.app.inject({ ...track, headers: { authorization: `Bearer ${session}` } })), wrong);
    assert.equal(code(await get('/v1/admin/me', 'Bearer css_nope')), '401 AUTH_SUBJECT_SESSION_INVALID');
  });

  it('tells a forged or revoked credential from one of the wrong kind, and still takes the right ones', async () => {
    const forged = `${owner.slice(0, -43)}${'A'.repeat(43)}`;
    assert.equal(code(await get('/v1/me/consent', `Bearer ${forged}`)), '401 AUTH_CREDENTIAL_INVALID');
    assert.equal(code(await get('/v1/admin/me', basic('not-a-credential'))), '401 AUTH_CREDENTIAL_INVALID');
    const revoked = await ctx.kernel.access.createWriteKey('old', null, CLI_ACTOR);
    await ctx.kernel.access.revoke(revoked.id, CLI_ACTOR);
    assert.equal(code(await get('/v1/me/consent', `Bearer ${revoked.secret}`)), '401 AUTH_CREDENTIAL_REVOKED');
    assert.equal(code(await get('/v1/me/consent')), '401 AUTH_SUBJECT_SESSION_REQUIRED');
    assert.equal(code(await get('/v1/me/consent', 'Bearer css_nope')), '401 AUTH_SUBJECT_SESSION_INVALID');
    assert.equal(code(await get('/v1/admin/me')), '401 AUTH_CREDENTIAL_MISSING');
    assert.equal((await get('/v1/admin/me', `Bearer ${owner}`)).statusCode, 200);
    assert.equal((await get('/v1/admin/me', `bearer   ${owner}  `)).statusCode, 200);
    const tracked = await server.app.inject({ method: 'POST', url: '/v1/track', headers: { authorization: basic(writeKey) }, payload: { userId: 'u1', event: 'Product Viewed' } });
    assert.equal(tracked.statusCode, 200, tracked.body);
  });

  it('refuses an Authorization header with anything after the credential', async () => {
    assert.equal(code(await get('/v1/admin/config', `Bearer ${owner} trailing-junk`)), '401 AUTH_CREDENTIAL_INVALID');
    assert.equal(code(await get('/v1/me/consent', 'Bearer css_x trailing-junk')), '401 AUTH_CREDENTIAL_INVALID');
    const tracked = await server.app.inject({ method: 'POST', url: '/v1/track', headers: { authorization: `${basic(writeKey)} more` }, payload: { userId: 'u1', event: 'Product Viewed' } });
    assert.equal(code(tracked), '401 AUTH_CREDENTIAL_INVALID');
  });

  it("shows each operation's credential, roles and purpose in /openapi.json", async () => {
    type Operation = { security?: unknown; 'x-candor-access'?: unknown };
    const spec = (await get('/openapi.json')).json() as { paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> } };
    const config = spec.paths['/v1/admin/config']?.get;
    assert.deepEqual(config?.security, [{ apiToken: ['owner'] }]);
    assert.deepEqual(config?.['x-candor-access'], { audience: 'admin', roles: ['owner'], purpose: 'essential.service.operations', personalData: false });
    const scores = spec.paths['/v1/admin/profiles/{id}/scores']?.get;
    assert.deepEqual(scores?.['x-candor-access'], { audience: 'admin', roles: ['owner', 'privacy_officer', 'marketer', 'analyst'], purpose: 'personalize.profiling', personalData: true });
    const track = spec.paths['/v1/track']?.post;
    assert.deepEqual(track?.security, [{ writeKey: [] }, { writeKeyBearer: [] }]);
    assert.deepEqual(track?.['x-candor-access'], { audience: 'ingest', roles: [], purpose: 'analytics.reporting', personalData: false });
    assert.deepEqual(spec.paths['/v1/me/consent']?.get?.security, [{ subjectSession: [] }]);
    assert.deepEqual(spec.paths['/healthz']?.get?.security, []);
    // The status codes the privacy center's routes answer with, as they answer them.
    const statuses = (path: string, method: string) => Object.keys((spec.paths[path]?.[method] as { responses?: object } | undefined)?.responses ?? {}).sort();
    assert.deepEqual(statuses('/v1/rights/requests', 'post'), ['202']);
    assert.deepEqual(statuses('/v1/me/rights/requests', 'post'), ['200', '201']);
    assert.deepEqual(statuses('/v1/me/session', 'delete'), ['204']);
    for (const operations of Object.values(spec.paths)) {
      for (const operation of Object.values(operations)) {
        for (const requirement of (operation.security ?? []) as Record<string, unknown>[]) {
          for (const scheme of Object.keys(requirement)) assert.ok(spec.components.securitySchemes[scheme], scheme);
        }
      }
    }
  });
});
