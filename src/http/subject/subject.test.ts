import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('privacy center consent endpoints (subject sessions)', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  /** A backend's token: sessions are issued with it, never with a write key. */
  let issuer = '';
  let token = '';
  const asBusiness = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: url === '/v1/subject-sessions' ? `Bearer ${issuer}` : `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` }, payload: payload as Record<string, unknown> });
  const asCustomer = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, bearer = token) =>
    server.app.inject({ method, url, headers: { authorization: `Bearer ${bearer}` }, ...(payload ? { payload: payload as Record<string, unknown> } : {}) });

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('issues a short-lived session for a customer the business signed in', async () => {
    const issued = await asBusiness('/v1/subject-sessions', { userId: 'cust-1', ttlSeconds: 600 });
    assert.equal(issued.statusCode, 201, issued.body);
    assert.equal(issued.headers['cache-control'], 'no-store', 'a session secret is never cached');
    const body = issued.json() as { token: string; expiresAt: string };
    assert.match(body.token, /^css_[0-9a-f]{16}_/);
    assert.ok(Date.parse(body.expiresAt) - Date.now() <= 600_000);
    token = body.token;
    const entries = await ctx.kernel.audit.list({ action: 'access.subject_session.issue', limit: 10 });
    assert.equal(entries.length, 1);
  });

  it('issues sessions only to a backend token, never to a write key (browsers carry those: anyone could be anyone)', async () => {
    const basic = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
    const viaHeader = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { authorization: basic }, payload: { userId: 'victim-1' } });
    assert.ok([401, 403].includes(viaHeader.statusCode), viaHeader.body);
    const viaBody = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify({ writeKey, userId: 'victim-1' }) });
    assert.ok([401, 400, 415].includes(viaBody.statusCode), viaBody.body);
    const marketer = (await ctx.kernel.access.createToken('marketer', null, CLI_ACTOR)).secret;
    const staff = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { authorization: `Bearer ${marketer}` }, payload: { userId: 'victim-1' } });
    assert.equal(staff.statusCode, 403, staff.body);
    // The backend's token opens sessions and nothing else.
    const elsewhere = await server.app.inject({ url: '/v1/admin/catalog/plan', headers: { authorization: `Bearer ${issuer}` } });
    assert.equal(elsewhere.statusCode, 403, elsewhere.body);
    const [found] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'victim-1' }], source: 'web', at: new Date().toISOString() }]);
    assert.equal(found, null, 'no profile was made for the refused requests');
  });

  it('shows the customer the notice and their choice per purpose, and audits the read', async () => {
    const response = await asCustomer('GET', '/v1/me/consent');
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as { notice: { version: number; text: string }; purposes: { key: string; state: string }[] };
    assert.ok(body.notice.text.length > 100);
    assert.equal(body.purposes.find((p) => p.key === 'analytics.reporting')?.state, 'none');
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 100 });
    assert.match(reads.at(-1)?.actor ?? '', /^subject_session:/);
    assert.equal(reads.at(-1)?.role, 'subject');
  });

  it('shows the lawful basis of every purpose, the configured one where the customer has no record', async () => {
    const body = (await asCustomer('GET', '/v1/me/consent')).json() as { purposes: { key: string; state: string; basis: string | null }[] };
    const shown = new Map(body.purposes.map((p) => [p.key, p]));
    assert.equal(shown.get('analytics.reporting')?.state, 'none');
    for (const purpose of ctx.kernel.consent.purposes()) assert.equal(shown.get(purpose.key)?.basis, purpose.basis, purpose.key);
    assert.equal(shown.get('analytics.reporting')?.basis, 'consent');
    assert.equal(shown.get('essential.service.operations')?.basis, 'contract');
    // Staff see the same basis for the same person.
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'cust-1' }], source: 'web', at: new Date().toISOString() }]);
    const officer = (await ctx.kernel.access.createToken('privacy_officer', null, CLI_ACTOR)).secret;
    const admin = await server.app.inject({ url: `/v1/admin/subjects/${String(profileId)}/consent`, headers: { authorization: `Bearer ${officer}` } });
    assert.equal(admin.statusCode, 200, admin.body);
    const staffView = (admin.json() as { purposes: Record<string, { state: string; basis: string | null }> }).purposes;
    for (const [key, purpose] of shown) assert.deepEqual([staffView[key]?.state, staffView[key]?.basis], [purpose.state, purpose.basis], key);
  });

  it('lets the customer give consent with a receipt, and withdraw everything in one call', async () => {
    const given = await asCustomer('POST', '/v1/me/consent', { purposes: { 'analytics.reporting': 'given', 'marketing.communications.email': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    const { receipt, recorded } = given.json() as { receipt: string; recorded: { purpose: string; state: string; basis: string }[] };
    // Answered as /v1/consent answers: each entry with its basis.
    assert.deepEqual(recorded.map((e) => [e.purpose, e.state, e.basis]), [['analytics.reporting', 'given', 'consent'], ['marketing.communications.email', 'given', 'consent']]);
    const payload = (await ctx.kernel.consent.verifyReceipt(receipt)) as { collectionMethod: string };
    assert.equal(payload.collectionMethod, 'privacy_center');
    const track = () => asBusiness('/v1/track', { userId: 'cust-1', event: 'Product Viewed', properties: { product_id: 'p1' } });
    assert.equal(((await track()).json() as { results: { status: string }[] }).results[0]?.status, 'stored');
    const withdrawn = await asCustomer('POST', '/v1/me/consent/withdraw-all');
    assert.equal(withdrawn.statusCode, 200, withdrawn.body);
    const state = (await asCustomer('GET', '/v1/me/consent')).json() as { purposes: { key: string; state: string; basis: string | null }[] };
    assert.equal(state.purposes.find((p) => p.key === 'marketing.communications.email')?.state, 'withdrawn');
    assert.equal(state.purposes.find((p) => p.key === 'marketing.communications.email')?.basis, 'consent', 'the basis on record');
    assert.equal(((await track()).json() as { results: { code?: string }[] }).results[0]?.code, 'COLLECT_NO_LAWFUL_BASIS');
    // With the browser's GPC signal, the answer says it was honoured.
    const signalled = await server.app.inject({ method: 'POST', url: '/v1/me/consent/withdraw-all', headers: { authorization: `Bearer ${token}`, 'sec-gpc': '1' } });
    assert.equal(signalled.statusCode, 200, signalled.body);
    assert.equal((signalled.json() as { gpcHonoured?: boolean }).gpcHonoured, true);
    // Withdrawing everything and choosing purposes in the same call is refused rather than half done.
    const both = await asBusiness('/v1/consent', { userId: 'cust-1', withdrawAll: true, purposes: { 'analytics.reporting': 'given' }, mechanism: 'privacy_center' });
    assert.equal(both.statusCode, 400, both.body);
    assert.equal((both.json() as { code: string; details: { reason: string } }).details.reason, 'withdraw_all_with_purposes');
  });

  it('refuses missing, malformed, staff, expired and ended sessions with specific codes', async () => {
    const none = await server.app.inject({ url: '/v1/me/consent' });
    assert.equal((none.json() as { code: string }).code, 'AUTH_SUBJECT_SESSION_REQUIRED');
    const staff = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    // A real staff token is a credential of the wrong kind here (docs/errors.md), not an unknown session.
    assert.equal(((await asCustomer('GET', '/v1/me/consent', undefined, staff)).json() as { code: string }).code, 'AUTH_CREDENTIAL_WRONG_KIND');
    assert.equal(((await asCustomer('GET', '/v1/me/consent', undefined, 'css_0000000000000000_' + 'a'.repeat(43))).json() as { code: string }).code, 'AUTH_SUBJECT_SESSION_INVALID');
    const other = ((await asBusiness('/v1/subject-sessions', { userId: 'cust-2' })).json() as { token: string }).token;
    await sql`UPDATE access_subject_sessions SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ${other.slice(4, 20)}`.execute(ctx.kernel.storage.db);
    assert.equal(((await asCustomer('GET', '/v1/me/consent', undefined, other)).json() as { code: string }).code, 'AUTH_SUBJECT_SESSION_INVALID');
    // A client library that sets a JSON content type on every request signs out all the same (an empty body is none).
    const signedOut = await server.app.inject({ method: 'DELETE', url: '/v1/me/session', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
    assert.equal(signedOut.statusCode, 204, signedOut.body);
    assert.equal(((await asCustomer('GET', '/v1/me/consent')).json() as { code: string }).code, 'AUTH_SUBJECT_SESSION_INVALID');
  });
});
