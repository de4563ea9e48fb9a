import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, it } from 'node:test';
import { unzipSync } from 'fflate';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('data-subject requests over HTTP', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  let writeKey = '';
  /** A backend's token: sessions are issued with it, never with a write key. */
  let issuer = '';
  const app = () => harness.server.app;
  const outbox = () => join(ctx.env.dataDir, 'outbox');
  const code = (requestId: string) => {
    for (const file of readdirSync(outbox()).sort().reverse()) {
      const text = readFileSync(join(outbox(), file), 'utf8');
      const match = /Your code is (\d{6})/.exec(text);
      if (text.includes(requestId) && match) return match[1] as string;
    }
    throw new Error('no code in the outbox');
  };
  const business = (url: string, payload: unknown) =>
    app().inject({ method: 'POST', url, headers: { authorization: url === '/v1/subject-sessions' ? `Bearer ${issuer}` : `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` }, payload: payload as Record<string, unknown> });
  const start = (payload: Record<string, unknown>) => app().inject({ method: 'POST', url: '/v1/rights/requests', payload });
  const json = (r: { json: () => unknown }) => r.json() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test reads loose JSON

  before(async () => {
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
    for (const [userId, email] of [['h-1', 'h1@candor-example.dev'], ['h-2', 'h2@candor-example.dev']]) {
      await business('/v1/consent', { userId, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' } });
      assert.equal(json(await business('/v1/identify', { userId, traits: { email, first_name: 'Ada' } })).results[0].status, 'stored');
    }
    await business('/v1/track', { userId: 'h-1', event: 'Product Viewed', properties: { product_id: 'p1' } });
  });

  it('runs an access request end to end: start, code from the outbox, verify, session, status, download', async () => {
    const started = await start({ type: 'access', email: 'h1@candor-example.dev' });
    assert.equal(started.statusCode, 202, started.body);
    const { requestId } = json(started);
    await ctx.kernel.rights.settled();
    const verified = await app().inject({ method: 'POST', url: `/v1/rights/requests/${requestId}/verify`, payload: { code: code(requestId), secondIdentifier: { type: 'user_id', value: 'h-1' } } });
    assert.equal(verified.statusCode, 200, verified.body);
    const body = json(verified);
    assert.equal(body.request.state, 'completed');
    assert.match(body.session.token, /^css_/);
    const mine = await app().inject({ url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${body.session.token}` } });
    assert.equal(mine.statusCode, 200, mine.body);
    assert.deepEqual(json(mine).requests.map((r: { id: string }) => r.id), [requestId]);
    const download = await app().inject({ url: body.download.url });
    assert.equal(download.statusCode, 200, download.body);
    assert.equal(download.headers['content-type'], 'application/zip');
    const files = unzipSync(new Uint8Array(download.rawPayload));
    assert.ok('manifest.json' in files);
    const link = await app().inject({ method: 'POST', url: `/v1/me/rights/requests/${requestId}/download-link`, headers: { authorization: `Bearer ${body.session.token}` } });
    assert.equal(link.statusCode, 200, link.body);
    assert.equal((await app().inject({ url: json(link).url })).statusCode, 200);
    assert.equal(json(await app().inject({ url: `/v1/rights/downloads/${'x'.repeat(43)}` })).code, 'RIGHTS_DOWNLOAD_INVALID');
  });

  it('answers a known and an unknown address alike, and a wrong code with its specific code', async () => {
    const known = await start({ type: 'erasure', email: 'h2@candor-example.dev' });
    const unknown = await start({ type: 'erasure', email: 'ghost@candor-example.dev' });
    assert.equal(known.statusCode, unknown.statusCode);
    assert.deepEqual(Object.keys(json(known)), Object.keys(json(unknown)));
    assert.deepEqual({ ...json(known), requestId: '' }, { ...json(unknown), requestId: '' });
    const wrong = await app().inject({ method: 'POST', url: `/v1/rights/requests/${json(unknown).requestId}/verify`, payload: { code: '123456' } });
    assert.equal(wrong.statusCode, 401);
    assert.equal(json(wrong).code, 'RIGHTS_CODE_INVALID');
    assert.equal(json(await start({ type: 'erasure' })).code, 'REQUEST_VALIDATION_FAILED');
    assert.equal(json(await start({ type: 'erasure', email: 'not-an-address' })).code, 'RIGHTS_REQUEST_INVALID');
  });

  it('answers verifying a request that needs no verification with one error for a known and an unknown address', async () => {
    assert.equal(json(await business('/v1/identify', { userId: 'h-3', traits: { email: 'h3@candor-example.dev' } })).results[0].status, 'stored');
    const known = json(await start({ type: 'opt_out_sale_sharing', email: 'h3@candor-example.dev' })).requestId as string;
    const unknown = json(await start({ type: 'opt_out_sale_sharing', email: 'ghost3@candor-example.dev' })).requestId as string;
    await ctx.kernel.rights.settled();
    const verify = (id: string) => app().inject({ method: 'POST', url: `/v1/rights/requests/${id}/verify`, payload: { code: '123456' } });
    const [a, b] = [await verify(known), await verify(unknown)];
    assert.equal(a.statusCode, 409, a.body);
    assert.equal(a.statusCode, b.statusCode);
    // The bodies differ only by `instance`, the id of the HTTP exchange.
    assert.deepEqual({ ...json(a), instance: '' }, { ...json(b), instance: '' });
    assert.ok(!a.body.includes('completed') && !b.body.includes('denied'), a.body);
  });

  it('answers an old download link of a person erased since with a coded 404', async () => {
    assert.equal(json(await business('/v1/identify', { userId: 'h-4', traits: { email: 'h4@candor-example.dev' } })).results[0].status, 'stored');
    const { requestId } = json(await start({ type: 'access', email: 'h4@candor-example.dev' }));
    await ctx.kernel.rights.settled();
    const verified = json(await app().inject({ method: 'POST', url: `/v1/rights/requests/${requestId}/verify`, payload: { code: code(requestId), secondIdentifier: { type: 'user_id', value: 'h-4' } } }));
    assert.equal(verified.request.downloadExpiresAt, verified.download.expiresAt);
    const erase = await app().inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${verified.session.token}` }, payload: { type: 'erasure' } });
    assert.equal(json(erase).request.state, 'completed', erase.body);
    const old = await app().inject({ url: verified.download.url });
    assert.equal(old.statusCode, 404, old.body);
    assert.equal(json(old).code, 'RIGHTS_DOWNLOAD_INVALID');
  });

  it('refuses another person’s request to a valid session with a coded 404', async () => {
    const session = json(await business('/v1/subject-sessions', { userId: 'h-2' })).token as string;
    const others = await ctx.kernel.rights.queue({ states: ['completed'] });
    const foreign = others.find((r) => r.type === 'access');
    assert.ok(foreign);
    const answer = await app().inject({ url: `/v1/me/rights/requests/${foreign.id}`, headers: { authorization: `Bearer ${session}` } });
    assert.equal(answer.statusCode, 404);
    assert.equal(json(answer).code, 'RIGHTS_REQUEST_NOT_FOUND');
    const link = await app().inject({ method: 'POST', url: `/v1/me/rights/requests/${foreign.id}/download-link`, headers: { authorization: `Bearer ${session}` } });
    assert.equal(json(link).code, 'RIGHTS_REQUEST_NOT_FOUND');
  });

  it('lets a signed-in customer opt out at once, and staff see the queue, deny with a reason and read certificates', async () => {
    const session = json(await business('/v1/subject-sessions', { userId: 'h-2' })).token as string;
    const optOut = await app().inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${session}` }, payload: { type: 'withdraw_consent' } });
    assert.equal(optOut.statusCode, 201, optOut.body);
    assert.equal(json(optOut).request.state, 'completed');
    const repeat = await app().inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${session}` }, payload: { type: 'withdraw_consent' } });
    assert.equal(json(repeat).duplicate, true);

    const restriction = await app().inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${session}` }, payload: { type: 'access', email: 'h2@candor-example.dev' } });
    assert.equal(json(restriction).request.state, 'verifying');
    const id = json(restriction).request.id as string;
    const queue = await app().inject({ url: '/v1/admin/rights/requests?state=verifying', headers: harness.auth('privacy_officer') });
    assert.equal(queue.statusCode, 200, queue.body);
    assert.ok(json(queue).requests.some((r: { id: string; dueAt: string }) => r.id === id && r.dueAt));
    assert.equal((await app().inject({ url: '/v1/admin/rights/requests', headers: harness.auth('marketer') })).statusCode, 403);
    const denied = await app().inject({ method: 'POST', url: `/v1/admin/rights/requests/${id}/deny`, headers: harness.auth('owner'), payload: { reason: 'Identity could not be confirmed' } });
    assert.equal(denied.statusCode, 200, denied.body);
    assert.equal(json(denied).state, 'denied');
    const again = await app().inject({ method: 'POST', url: `/v1/admin/rights/requests/${id}/approve`, headers: harness.auth('owner') });
    assert.equal(json(again).code, 'RIGHTS_TRANSITION_INVALID');
    const detail = json(await app().inject({ url: `/v1/admin/rights/requests/${id}`, headers: harness.auth('owner') }));
    assert.deepEqual(detail.events.map((e: { to: string }) => e.to), ['verifying', 'denied']);

    const erase = await app().inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${session}` }, payload: { type: 'erasure' } });
    assert.equal(json(erase).request.state, 'completed', erase.body);
    const certificate = await app().inject({ url: `/v1/admin/rights/requests/${json(erase).request.id}/certificate`, headers: harness.auth('privacy_officer') });
    assert.equal(certificate.statusCode, 200, certificate.body);
    assert.equal(json(certificate).status, 'complete');
    const read = (await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 10_000 })).filter((e) => e.resource === 'GET /v1/admin/rights/requests/:id/certificate').at(-1);
    assert.ok(read);
    assert.equal(read.subject, json(certificate).subject, 'audited under the pseudonym the certificate names');
    assert.match(String(read.subject), /\S/);
    // The erasure ended the customer's sessions.
    assert.equal(json(await app().inject({ url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${session}` } })).code, 'AUTH_SUBJECT_SESSION_INVALID');
    const audited = await ctx.kernel.audit.list({ action: 'rights.request.denied', limit: 10 });
    assert.ok(audited.some((e) => e.resource === `rights_request:${id}`));
  });
});
