import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { buildServer, type CandorServer } from './server.ts';

const json = (response: LightMyRequestResponse) => response.json() as Record<string, unknown>;

function assertProblem(response: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  assert.equal(response.statusCode, status, `${code}: ${response.body}`);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const body = json(response);
  assert.equal(body.code, code);
  assert.equal(body.status, status);
  return body;
}

describeEachDialect('HTTP server', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  const tokens: Record<string, string> = {};
  const auth = (role: string) => ({ authorization: `Bearer ${tokens[role]}` });

  before(async () => {
    server = await buildServer(ctx.kernel);
    for (const role of ['owner', 'privacy_officer', 'marketer', 'analyst', 'developer']) {
      tokens[role] = (await ctx.kernel.access.createToken(role, null, CLI_ACTOR)).secret;
    }
    tokens.writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('answers health and readiness without a credential', async () => {
    assert.deepEqual(json(await server.app.inject({ url: '/healthz' })), { status: 'ok' });
    assert.deepEqual(json(await server.app.inject({ url: '/readyz' })), { status: 'ready' });
  });

  it('serves Prometheus metrics with request counts and latencies by route', async () => {
    await server.app.inject({ url: '/healthz' });
    const text = (await server.app.inject({ url: '/metrics' })).body;
    assert.match(text, /candor_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
    assert.match(text, /candor_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/healthz"\}/);
  });

  it('describes every route in /openapi.json', async () => {
    const spec = json(await server.app.inject({ url: '/openapi.json' })) as { openapi: string; paths: Record<string, unknown> };
    assert.equal(spec.openapi, '3.1.0');
    for (const path of ['/healthz', '/v1/admin/tokens', '/v1/admin/audit', '/v1/admin/taxonomy/{kind}']) assert.ok(spec.paths[path], path);
  });

  it('declares audience, roles and purpose on every registered route', () => {
    assert.ok(server.routes.length >= 12);
    for (const route of server.routes) {
      assert.ok(route.access, `${route.method} ${route.url} has no access declaration`);
      assert.ok(['public', 'ingest', 'subject', 'admin'].includes(route.access.audience));
      assert.ok(ctx.kernel.taxonomy.dataUse(route.access.purpose), `${route.url}: unknown purpose ${route.access.purpose}`);
      if (route.access.audience === 'admin') assert.ok((route.access.roles ?? []).length > 0, `${route.url} allows no role`);
      if (route.url.startsWith('/v1/admin')) assert.equal(route.access.audience, 'admin', route.url);
    }
  });

  it('refuses to register a route without an access declaration', async () => {
    await assert.rejects(
      buildServer(ctx.kernel, { extend: (app) => void app.get('/undeclared', async () => 'open') }),
      /declares no access/,
    );
    await assert.rejects(
      buildServer(ctx.kernel, { extend: (app) => void app.get('/v1/admin/open', { config: { access: { audience: 'admin', roles: [], purpose: 'analytics' } } }, async () => 'x') }),
      /allows no role/,
    );
  });

  it('rejects missing, malformed, wrong-kind and revoked credentials with specific codes', async () => {
    assertProblem(await server.app.inject({ url: '/v1/admin/me' }), 401, 'AUTH_CREDENTIAL_MISSING');
    assertProblem(await server.app.inject({ url: '/v1/admin/me', headers: { authorization: 'Bearer nope' } }), 401, 'AUTH_CREDENTIAL_INVALID');
    assertProblem(await server.app.inject({ url: '/v1/admin/me', headers: { authorization: `Bearer ${tokens.writeKey}` } }), 403, 'AUTH_CREDENTIAL_WRONG_KIND');
    const temporary = await ctx.kernel.access.createToken('analyst', null, CLI_ACTOR);
    assert.equal((await server.app.inject({ url: '/v1/admin/me', headers: { authorization: `Bearer ${temporary.secret}` } })).statusCode, 200);
    const revoked = await server.app.inject({ method: 'DELETE', url: `/v1/admin/credentials/${temporary.id}`, headers: auth('owner') });
    assert.equal(revoked.statusCode, 200);
    assert.ok(json(revoked).revokedAt);
    assertProblem(await server.app.inject({ url: '/v1/admin/me', headers: { authorization: `Bearer ${temporary.secret}` } }), 401, 'AUTH_CREDENTIAL_REVOKED');
  });

  it('enforces roles per route and audits the denied attempt', async () => {
    const denied = assertProblem(await server.app.inject({ url: '/v1/admin/credentials', headers: auth('marketer') }), 403, 'AUTH_ROLE_FORBIDDEN');
    assert.deepEqual(denied.details, { role: 'marketer' });
    const entries = await ctx.kernel.audit.list({ action: 'access.denied', limit: 100 });
    assert.equal(entries.at(-1)?.resource, 'GET /v1/admin/credentials');
    assert.equal(entries.at(-1)?.outcome, 'denied');
    assert.equal((await server.app.inject({ url: '/v1/admin/taxonomy/data-uses', headers: auth('marketer') })).statusCode, 200);
  });

  it('lets developers revoke write keys but not API tokens', async () => {
    const key = await ctx.kernel.access.createWriteKey('temp', null, CLI_ACTOR);
    const token = await ctx.kernel.access.createToken('analyst', null, CLI_ACTOR);
    assertProblem(await server.app.inject({ method: 'DELETE', url: `/v1/admin/credentials/${token.id}`, headers: auth('developer') }), 403, 'AUTH_ROLE_FORBIDDEN');
    assert.equal((await server.app.inject({ method: 'DELETE', url: `/v1/admin/credentials/${key.id}`, headers: auth('developer') })).statusCode, 200);
  });

  it("audits a developer's refused revocation of the owner's token as access.denied, as the guard audits refused roles", async () => {
    const ownerId = (tokens.owner as string).split('_')[1] as string;
    const developerId = (tokens.developer as string).split('_')[1] as string;
    const before = (await ctx.kernel.audit.list({ action: 'access.denied', limit: 1000 })).length;
    assertProblem(await server.app.inject({ method: 'DELETE', url: `/v1/admin/credentials/${ownerId}`, headers: auth('developer') }), 403, 'AUTH_ROLE_FORBIDDEN');
    const denied = await ctx.kernel.audit.list({ action: 'access.denied', limit: 1000 });
    assert.equal(denied.length, before + 1, 'one entry, not two');
    const entry = denied.at(-1);
    assert.deepEqual(
      { actor: entry?.actor, role: entry?.role, purpose: entry?.purpose, resource: entry?.resource, outcome: entry?.outcome, subject: entry?.subject, details: entry?.details },
      { actor: developerId, role: 'developer', purpose: 'essential.service.security', resource: 'DELETE /v1/admin/credentials/:id', outcome: 'denied', subject: null, details: null },
    );
    // The same fields as a refusal by the guard itself.
    assertProblem(await server.app.inject({ method: 'POST', url: '/v1/admin/tokens', headers: auth('developer'), payload: { role: 'analyst' } }), 403, 'AUTH_ROLE_FORBIDDEN');
    const byGuard = (await ctx.kernel.audit.list({ action: 'access.denied', limit: 1000 })).at(-1);
    assert.deepEqual([byGuard?.actor, byGuard?.role, byGuard?.purpose, byGuard?.outcome], [entry?.actor, entry?.role, entry?.purpose, entry?.outcome]);
    assert.equal((await ctx.kernel.access.list()).find((c) => c.id === ownerId)?.revokedAt, null);
  });

  it('creates a token over the API and shows its secret only in that answer', async () => {
    const created = await server.app.inject({ method: 'POST', url: '/v1/admin/tokens', headers: auth('owner'), payload: { role: 'analyst', label: 'dashboards' } });
    assert.equal(created.statusCode, 201);
    const body = json(created);
    assert.match(String(body.secret), /^cnd_/);
    const listed = (await server.app.inject({ url: '/v1/admin/credentials', headers: auth('owner') })).body;
    assert.ok(listed.includes(String(body.id)));
    assert.ok(!listed.includes(String(body.secret)));
    const key = await server.app.inject({ method: 'POST', url: '/v1/admin/write-keys', headers: auth('developer'), payload: { source: 'ios-app' } });
    assert.equal(key.statusCode, 201);
    assert.match(String(json(key).secret), /^cwk_/);
  });

  it('audits every read of the audit log, naming who read it and for what purpose', async () => {
    const response = await server.app.inject({ url: '/v1/admin/audit?limit=5', headers: auth('privacy_officer') });
    assert.equal(response.statusCode, 200);
    assert.equal((response.json() as unknown[]).length, 5);
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 1000 });
    const last = reads.at(-1);
    assert.equal(last?.role, 'privacy_officer');
    assert.equal(last?.purpose, 'essential.legal_obligation');
    assert.equal(last?.resource, 'GET /v1/admin/audit');
    const verify = json(await server.app.inject({ url: '/v1/admin/audit/verify', headers: auth('owner') }));
    assert.equal(verify.ok, true);
    const head = verify.head as { seq: number; hash: string };
    const pinned = json(await server.app.inject({ url: `/v1/admin/audit/verify?expectSeq=${head.seq}&expectHash=${head.hash}`, headers: auth('owner') }));
    assert.equal(pinned.ok, true);
    const future = json(await server.app.inject({ url: `/v1/admin/audit/verify?expectSeq=${head.seq + 1000}&expectHash=${'a'.repeat(64)}`, headers: auth('owner') }));
    assert.equal((future.firstBad as { problem: string }).problem, 'truncated');
  });

  it('answers bad input with a specific code and changes nothing', async () => {
    const countBefore = (await ctx.kernel.access.list()).length;
    const post = (payload: string, headers: Record<string, string> = {}) =>
      server.app.inject({ method: 'POST', url: '/v1/admin/tokens', headers: { ...auth('owner'), 'content-type': 'application/json', ...headers }, payload });
    assertProblem(await post('{"role": "analyst"'), 400, 'REQUEST_MALFORMED_JSON');
    assertProblem(await post(''), 400, 'REQUEST_MALFORMED_JSON');
    const unknown = assertProblem(await post('{"role":"analyst","isAdmin":true}'), 400, 'REQUEST_UNKNOWN_FIELD');
    assert.deepEqual((unknown.details as { errors: { path: string }[] }).errors.map((e) => e.path), ['/isAdmin']);
    const wrongType = assertProblem(await post('{"role":42}'), 400, 'REQUEST_VALIDATION_FAILED');
    assert.ok(!JSON.stringify(wrongType).includes('42'), 'values are never echoed');
    assertProblem(await post('{"role":"root"}'), 400, 'REQUEST_VALIDATION_FAILED');
    assertProblem(await post('{"role":"analyst","__proto__":{"isAdmin":true}}'), 400, 'REQUEST_FORBIDDEN_KEY');
    assertProblem(await post('{"role":"analyst","constructor":{"prototype":{"x":1}}}'), 400, 'REQUEST_FORBIDDEN_KEY');
    assertProblem(await post(JSON.stringify({ role: 'analyst', label: 'x'.repeat(ctx.kernel.config.bodyLimit) })), 413, 'REQUEST_BODY_TOO_LARGE');
    assertProblem(await post('role=analyst', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'REQUEST_UNSUPPORTED_MEDIA_TYPE');
    assertProblem(await server.app.inject({ url: '/v1/admin/audit?limit=abc', headers: auth('owner') }), 400, 'REQUEST_VALIDATION_FAILED');
    assertProblem(await server.app.inject({ url: '/v1/admin/audit?colour=blue', headers: auth('owner') }), 400, 'REQUEST_UNKNOWN_FIELD');
    // Also on a route that declares no query string (it takes none), staff's and the privacy center's alike.
    assertProblem(await server.app.inject({ url: '/v1/admin/scoring/models?colour=blue', headers: auth('owner') }), 400, 'REQUEST_UNKNOWN_FIELD');
    assert.equal((await server.app.inject({ url: '/v1/admin/scoring/models', headers: auth('owner') })).statusCode, 200);
    assertProblem(await server.app.inject({ url: '/v1/admin/taxonomy/planets', headers: auth('owner') }), 400, 'REQUEST_VALIDATION_FAILED');
    assertProblem(await server.app.inject({ url: '/nowhere' }), 404, 'ROUTE_NOT_FOUND');
    assertProblem(await server.app.inject({ method: 'DELETE', url: '/v1/admin/credentials/0000000000000000', headers: auth('owner') }), 404, 'ACCESS_TOKEN_NOT_FOUND');
    assert.equal((await ctx.kernel.access.list()).length, countBefore);
    assert.deepEqual(json(await server.app.inject({ url: '/healthz' })), { status: 'ok' });
  });

  it('lets privacy staff add custom taxonomy entries, validated and audited', async () => {
    const add = (payload: object) => server.app.inject({ method: 'POST', url: '/v1/admin/taxonomy/data-categories', headers: auth('privacy_officer'), payload });
    const created = await add({ key: 'user.health_and_medical.allergies', name: 'Allergies', description: 'Food and drug allergies a shop customer told us about.', parentKey: 'user.health_and_medical' });
    assert.equal(created.statusCode, 201);
    assert.equal(json(created).specialCategory, 'health');
    assert.equal(json(created).protectedAttribute, true);
    assertProblem(await add({ key: 'user.health_and_medical.allergies', name: 'x', description: 'y' }), 409, 'TAXONOMY_KEY_EXISTS');
    assertProblem(await add({ key: 'User Shoe Size', name: 'x', description: 'y' }), 400, 'TAXONOMY_KEY_INVALID');
    assertProblem(await add({ key: 'user.shoe_size', name: 'x', description: 'y', parentKey: 'user.nothing' }), 400, 'TAXONOMY_PARENT_UNKNOWN');
    assertProblem(
      await server.app.inject({ method: 'POST', url: '/v1/admin/taxonomy/data-uses', headers: auth('marketer'), payload: { key: 'marketing.x', name: 'x', description: 'y' } }),
      403,
      'AUTH_ROLE_FORBIDDEN',
    );
    const list = (await server.app.inject({ url: '/v1/admin/taxonomy/data-categories', headers: auth('analyst') })).json() as { key: string }[];
    assert.ok(list.some((e) => e.key === 'user.health_and_medical.allergies'));
    const entries = await ctx.kernel.audit.list({ action: 'config.taxonomy.add', limit: 10 });
    assert.equal(entries.length, 1);
  });

  it('shows the configuration to owners with secrets masked', async () => {
    const lines = (await server.app.inject({ url: '/v1/admin/config', headers: auth('owner') })).json() as { key: string; value: string }[];
    const url = lines.find((l) => l.key === 'databaseUrl');
    assert.equal(url?.value, ctx.env.databaseUrl ? '********' : '');
  });

  it('rotates the master key over the API', async () => {
    const response = await server.app.inject({ method: 'POST', url: '/v1/admin/keys/rotate', headers: auth('owner') });
    assert.equal(response.statusCode, 200);
    assert.equal(json(response).version, 2);
    assert.deepEqual(json(response).skipped, [], 'the data keys it could not re-wrap are listed (none here)');
  });
});
