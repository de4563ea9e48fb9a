import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { GPC_LAST_UPDATE } from './index.ts';

function problem(response: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const body = response.json() as Record<string, unknown>;
  assert.equal(body.code, code);
  return body;
}

describeEachDialect('consent over HTTP', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const { auth } = harness;

  it('publishes the receipt verification keys at /.well-known/jwks.json without a credential', async () => {
    const { receipt } = await ctx.kernel.consent.record(`user-${randomUUID()}`, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const response = await harness.server.app.inject({ url: '/.well-known/jwks.json' });
    assert.equal(response.statusCode, 200);
    const jwks = response.json() as JSONWebKeySet;
    assert.ok(jwks.keys.every((k) => k.kty === 'OKP' && k.crv === 'Ed25519' && k.d === undefined));
    const { payload } = await jwtVerify(receipt, createLocalJWKSet(jwks));
    assert.equal(payload.collectionMethod, 'banner_accept');
  });

  it('serves /.well-known/gpc.json as the GPC specification describes', async () => {
    const response = await harness.server.app.inject({ url: '/.well-known/gpc.json' });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.deepEqual(response.json(), { gpc: true, lastUpdate: GPC_LAST_UPDATE });
    assert.match(GPC_LAST_UPDATE, /^\d{4}-\d{2}-\d{2}$/);
  });

  it('answers HEAD on the public documents as GET, without a body (a GPC checker may probe with HEAD)', async () => {
    for (const url of ['/.well-known/gpc.json', '/.well-known/jwks.json', '/healthz', '/readyz']) {
      const response = await harness.server.app.inject({ method: 'HEAD', url });
      assert.equal(response.statusCode, 200, `${url} ${response.body}`);
      assert.match(String(response.headers['content-type']), /^application\/json/, url);
      assert.equal(response.body, '', url);
    }
    // Only those: a HEAD elsewhere is still no route.
    assert.equal((await harness.server.app.inject({ method: 'HEAD', url: '/v1/admin/consent/purposes' })).statusCode, 404);
  });

  it('lists purposes to every staff role and lets only privacy staff change one', async () => {
    const listed = await harness.server.app.inject({ url: '/v1/admin/consent/purposes', headers: auth('analyst') });
    assert.equal(listed.statusCode, 200);
    assert.ok((listed.json() as { key: string }[]).some((p) => p.key === 'third_party_sharing'));

    const body = { basis: 'consent', saleOrSharing: false, description: 'Ads measured on our own site.' };
    const url = '/v1/admin/consent/purposes/marketing.advertising.first_party.contextual';
    problem(await harness.server.app.inject({ method: 'PUT', url, headers: auth('marketer'), payload: body }), 403, 'AUTH_ROLE_FORBIDDEN');
    const changed = await harness.server.app.inject({ method: 'PUT', url, headers: auth('privacy_officer'), payload: body });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.deepEqual(changed.json(), {
      key: 'marketing.advertising.first_party.contextual', basis: 'consent', saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: body.description,
    });
    const audited = (await ctx.kernel.audit.list({ action: 'consent.purpose.set', limit: 1000 })).at(-1);
    assert.equal(audited?.resource, 'consent_purpose:marketing.advertising.first_party.contextual');

    problem(await harness.server.app.inject({ method: 'PUT', url, headers: auth('owner'), payload: { ...body, lawful: true } }), 400, 'REQUEST_UNKNOWN_FIELD');
    problem(await harness.server.app.inject({ method: 'PUT', url, headers: auth('owner'), payload: { ...body, optOutJurisdictions: ['california'] } }), 400, 'REQUEST_VALIDATION_FAILED');
    const invalid = problem(await harness.server.app.inject({ method: 'PUT', url, headers: auth('owner'), payload: { ...body, basis: 'contract', saleOrSharing: true } }), 400, 'CONSENT_PURPOSE_INVALID');
    assert.equal((invalid.details as { reason: string }).reason, 'sale_or_advertising_needs_consent_or_legitimate_interests');
    problem(await harness.server.app.inject({ method: 'PUT', url: '/v1/admin/consent/purposes/not.a.data_use', headers: auth('owner'), payload: body }), 400, 'CONSENT_PURPOSE_INVALID');
  });

  it('shows the current notice to staff and lets privacy staff publish a new version', async () => {
    const current = await harness.server.app.inject({ url: '/v1/admin/consent/notices/current', headers: auth('marketer') });
    assert.equal(current.statusCode, 200);
    const notice = current.json() as { version: number; text: string; purposes: { purpose: string; categories: string[] }[] };
    const payload = { text: notice.text, purposes: notice.purposes.map((p) => (p.purpose === 'personalize.profiling' ? { ...p, categories: [...p.categories, 'user.demographic.age_range'] } : p)) };
    problem(await harness.server.app.inject({ method: 'POST', url: '/v1/admin/consent/notices', headers: auth('developer'), payload }), 403, 'AUTH_ROLE_FORBIDDEN');
    const published = await harness.server.app.inject({ method: 'POST', url: '/v1/admin/consent/notices', headers: auth('privacy_officer'), payload });
    assert.equal(published.statusCode, 201, published.body);
    const result = published.json() as { version: number; material: boolean; renewalRequired: string[] };
    assert.equal(result.version, notice.version + 1);
    assert.equal(result.material, true);
    assert.deepEqual(result.renewalRequired, ['personalize.profiling']);
    assert.equal((await harness.server.app.inject({ url: '/v1/admin/consent/notices/current', headers: auth('analyst') })).json().version, result.version);
    problem(await harness.server.app.inject({ method: 'POST', url: '/v1/admin/consent/notices', headers: auth('owner'), payload: { text: 'x', purposes: [] } }), 400, 'REQUEST_VALIDATION_FAILED');
    problem(
      await harness.server.app.inject({ method: 'POST', url: '/v1/admin/consent/notices', headers: auth('owner'), payload: { text: 'x', purposes: [{ purpose: 'analytics.reporting', categories: ['user.made_up'] }] } }),
      400,
      'CONSENT_NOTICE_INVALID',
    );
  });

  it("shows a subject's consent state and history to privacy staff, audited under the subject's pseudonym", async () => {
    // A profile id no profile row holds (an erased person's, say): the ledger alone answers.
    const subject = `prf_${Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('')}`;
    await ctx.kernel.consent.record(subject, [{ purpose: 'marketing.communications.email', state: 'given' }], { mechanism: 'banner_save', source: 'https://shop.example/' }, CLI_ACTOR);
    await ctx.kernel.consent.recordGpc([subject], {}, CLI_ACTOR);
    const url = `/v1/admin/subjects/${encodeURIComponent(subject)}/consent`;
    problem(await harness.server.app.inject({ url, headers: auth('analyst') }), 403, 'AUTH_ROLE_FORBIDDEN');

    const response = await harness.server.app.inject({ url, headers: auth('privacy_officer') });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { subject: string; purposes: Record<string, { state: string; allowed: boolean; reason: string; gpc: boolean }>; history: { purpose: string; state: string; mechanism: string }[] };
    const pseudonym = ctx.kernel.keyring.pseudonym('subject', subject);
    assert.equal(body.subject, pseudonym);
    assert.ok(!response.body.includes(subject), 'the answer names the subject only by pseudonym');
    assert.deepEqual(body.purposes['marketing.communications.email'], { ...body.purposes['marketing.communications.email'], state: 'given', allowed: true, reason: 'given' });
    assert.deepEqual(body.purposes['third_party_sharing'], { ...body.purposes['third_party_sharing'], state: 'refused', allowed: false, gpc: true });
    assert.equal(body.purposes['essential.service.operations']?.state, 'none');
    assert.equal(body.purposes['essential.service.operations']?.allowed, true);
    assert.deepEqual(body.history.map((e) => [e.purpose, e.state, e.mechanism]), [
      ['marketing.communications.email', 'given', 'banner_save'],
      ['marketing.advertising.third_party.targeted', 'refused', 'gpc'],
      ['third_party_sharing', 'refused', 'gpc'],
    ]);

    const read = (await ctx.kernel.audit.list({ action: 'api.personal_data.read', subject: pseudonym, limit: 10 })).at(-1);
    assert.equal(read?.role, 'privacy_officer');
    assert.equal(read?.purpose, 'essential.legal_obligation');
    assert.equal(read?.resource, 'GET /v1/admin/subjects/:subjectId/consent');
  });

  it('declares every consent route in /openapi.json with its access', async () => {
    const spec = (await harness.server.app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, unknown> };
    for (const path of ['/.well-known/jwks.json', '/.well-known/gpc.json', '/v1/admin/consent/purposes', '/v1/admin/consent/purposes/{key}', '/v1/admin/consent/notices', '/v1/admin/consent/notices/current', '/v1/admin/subjects/{subjectId}/consent']) {
      assert.ok(spec.paths[path], path);
    }
    const subjectRoute = harness.server.routes.find((r) => r.url === '/v1/admin/subjects/:subjectId/consent');
    assert.deepEqual(subjectRoute?.access, { audience: 'admin', roles: ['owner', 'privacy_officer'], purpose: 'essential.legal_obligation', personalData: true });
  });
});
