import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// The audit's steps: customer E (a user id) and another person's browser F (an anonymous id) each give consent, one
// wrong identify merges F into E, F's device signs in to the privacy center, staff undo the merge.
describeEachDialect('privacy-center sessions across a merge and its undoing', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const app = () => harness.server.app;
  let writeKey = '';
  let issuer = '';
  const userE = uniqueId('u-E');
  const anonF = uniqueId('a-F');
  const emailE = `${uniqueId('erin')}@erinmail.de`;
  const emailF = `${uniqueId('fred')}@fredmail.de`;
  let E = '';
  let F = '';
  let mergeId = '';
  /** E's access request, completed before the merge. */
  let requestE = '';
  const json = (r: { json: () => unknown }) => r.json() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test reads loose JSON
  const business = (url: string, payload: unknown) =>
    app().inject({ method: 'POST', url, headers: { authorization: url === '/v1/subject-sessions' ? `Bearer ${issuer}` : `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` }, payload: payload as Record<string, unknown> });
  const as = (token: string, method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>) =>
    app().inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  const session = async (ids: Record<string, string>) => {
    const issued = await business('/v1/subject-sessions', { ...ids, ttlSeconds: 3600 });
    assert.equal(issued.statusCode, 201, issued.body);
    return json(issued).token as string;
  };
  const code = (requestId: string) => {
    const outbox = join(ctx.env.dataDir, 'outbox');
    for (const file of readdirSync(outbox).sort().reverse()) {
      const text = readFileSync(join(outbox, file), 'utf8');
      const match = /Your code is (\d{6})/.exec(text);
      if (text.includes(requestId) && match) return match[1] as string;
    }
    throw new Error('no code in the outbox');
  };
  const receiptsOf = async (profileId: string) => new Set((await ctx.kernel.consent.history(profileId)).map((e) => e.receiptId).filter((id) => id !== null));
  const given = (body: Record<string, any>) => (body.purposes as { key: string; state: string }[]).filter((p) => p.state === 'given').map((p) => p.key).sort(); // eslint-disable-line @typescript-eslint/no-explicit-any -- loose JSON

  // Sessions and a download link handed out while the two were (wrongly) one person.
  let whileMerged: { sessionF: string; sessionE: string; verified: string; link: string };

  before(async () => {
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
    const purposesE = { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given' };
    assert.equal((await business('/v1/consent', { userId: userE, purposes: purposesE, mechanism: 'banner_save', noticeVersion: 1 })).statusCode, 200);
    assert.equal((await business('/v1/consent', { anonymousId: anonF, purposes: { 'analytics.reporting': 'given' }, mechanism: 'banner_save', noticeVersion: 1 })).statusCode, 200);
    const stored = await business('/v1/batch', {
      batch: [
        { type: 'identify', userId: userE, traits: { email: emailE } },
        { type: 'identify', anonymousId: anonF, traits: { email: emailF } },
        { type: 'track', anonymousId: anonF, event: 'Product Viewed', properties: { product_id: 'p9' } },
      ],
    });
    assert.deepEqual(json(stored).results.map((r: { status: string }) => r.status), ['stored', 'stored', 'stored'], stored.body);
    // E asks for a copy of their data and gets it.
    const started = await as(await session({ userId: userE }), 'POST', '/v1/me/rights/requests', { type: 'access', email: emailE });
    assert.equal(started.statusCode, 201, started.body);
    requestE = json(started).request.id;
    const verified = await app().inject({ method: 'POST', url: `/v1/rights/requests/${requestE}/verify`, payload: { code: code(requestE) } });
    assert.equal(json(verified).request.state, 'completed', verified.body);
    // The wrong link.
    assert.equal(json(await business('/v1/batch', { batch: [{ type: 'identify', userId: userE, anonymousId: anonF, traits: {} }] })).results[0].status, 'stored');
    const { identity, storage } = ctx.kernel;
    E = (await identity.lookupBatch(storage.raw, [{ identifiers: [{ type: 'user_id', value: userE }], source: 'web', at: new Date().toISOString() }]))[0] as string;
    const members = await identity.members(E);
    assert.equal(members.length, 2, 'F was merged into E');
    F = members.find((m) => m !== E) as string;
    mergeId = (await identity.merges(E)).find((m) => m.from === F && m.undoneAt === null)?.mergeId as string;
    assert.ok(mergeId);
  });

  it("ties a session to the profile holding the id signed in, which reaches the merged person while merged", async () => {
    const sessionF = await session({ anonymousId: anonF });
    assert.equal((await ctx.kernel.subjectSessions.authenticate(sessionF)).profileId, F, 'the session is F’s, not the canonical E’s');
    const consent = await as(sessionF, 'GET', '/v1/me/consent');
    assert.equal(consent.statusCode, 200, consent.body);
    assert.ok(given(json(consent)).includes('marketing.communications.email'), 'while merged, the session sees the merged person');
    assert.equal(json(await as(sessionF, 'GET', '/v1/me/scores')).profileId, E);
    assert.ok(json(await as(sessionF, 'GET', '/v1/me/rights/requests')).requests.some((r: { id: string }) => r.id === requestE));
  });

  it('ties the session a verification issues to the profile holding the verified address', async () => {
    const started = await app().inject({ method: 'POST', url: '/v1/rights/requests', payload: { type: 'access', email: emailF } });
    assert.equal(started.statusCode, 202, started.body);
    const id = json(started).requestId as string;
    await ctx.kernel.rights.settled();
    const verified = await app().inject({ method: 'POST', url: `/v1/rights/requests/${id}/verify`, payload: { code: code(id), secondIdentifier: { type: 'anonymous_id', value: anonF } } });
    assert.equal(verified.statusCode, 200, verified.body);
    const token = json(verified).session.token as string;
    assert.equal((await ctx.kernel.subjectSessions.authenticate(token)).profileId, F, 'F’s address was verified');
    const link = await as(await session({ anonymousId: anonF }), 'POST', `/v1/me/rights/requests/${requestE}/download-link`);
    assert.equal(link.statusCode, 200, link.body);
    whileMerged = { sessionF: await session({ anonymousId: anonF }), sessionE: await session({ userId: userE }), verified: token, link: json(link).url };
    assert.equal((await app().inject({ url: whileMerged.link })).statusCode, 200, 'the link works while merged');
  });

  it('ends every session of both sides and every download link handed out when the merge is undone', async () => {
    const split = await app().inject({ method: 'POST', url: `/v1/admin/profiles/${E}/unmerge`, headers: harness.auth('owner'), payload: { mergeId } });
    assert.equal(split.statusCode, 200, split.body);
    assert.equal(await ctx.kernel.identity.canonical(F), F);
    for (const [name, token] of [['F', whileMerged.sessionF], ['E', whileMerged.sessionE], ['verification', whileMerged.verified]] as const) {
      const refused = await as(token, 'GET', '/v1/me/consent');
      assert.equal(refused.statusCode, 401, `the session issued while merged (${name}) still answers`);
      assert.equal(json(refused).code, 'AUTH_SUBJECT_SESSION_INVALID', name);
    }
    const stale = await app().inject({ url: whileMerged.link });
    assert.notEqual(stale.statusCode, 200, 'the archive was served through a link handed out while merged');
    assert.equal(json(stale).code, 'RIGHTS_DOWNLOAD_INVALID', 'a link handed out while merged shows nothing after the unmerge');
  });

  it('leaves a session issued while merged only its own side after the unmerge, also before it is ended', async () => {
    // As on another server between the unmerge's commit and its listeners: the session is not revoked yet.
    await sql`UPDATE access_subject_sessions SET revoked_at = NULL WHERE id = ${whileMerged.sessionF.slice(4, 20)}`.execute(ctx.kernel.storage.db);
    const consent = await as(whileMerged.sessionF, 'GET', '/v1/me/consent');
    assert.equal(consent.statusCode, 200, consent.body);
    assert.deepEqual(given(json(consent)), ['analytics.reporting'], 'F’s own consent, not E’s');
    assert.equal(json(await as(whileMerged.sessionF, 'GET', '/v1/me/scores')).profileId, F);
    assert.equal(json(await as(whileMerged.sessionF, 'POST', `/v1/me/rights/requests/${requestE}/download-link`)).code, 'RIGHTS_REQUEST_NOT_FOUND');
    await ctx.kernel.subjectSessions.revokeAll([F]);
  });

  it('gives a new session of F only F’s consent, receipts, scores and requests, and E’s only E’s', async () => {
    const [receiptsE, receiptsF] = [await receiptsOf(E), await receiptsOf(F)];
    const sessionF = await session({ anonymousId: anonF });
    const sessionE = await session({ userId: userE });
    const consentF = json(await as(sessionF, 'GET', '/v1/me/consent'));
    assert.deepEqual(given(consentF), ['analytics.reporting']);
    const seenF = new Set((consentF.history as { receiptId: string | null }[]).map((h) => h.receiptId).filter((id) => id !== null));
    assert.deepEqual([...seenF].filter((id) => receiptsE.has(id as string)), [], 'none of E’s receipts');
    const bannerE = (await ctx.kernel.consent.history(E)).find((e) => e.mechanism === 'banner_save')?.receiptId as string;
    assert.equal((await as(sessionF, 'GET', `/v1/me/consent/receipts/${bannerE}`)).statusCode, 404);
    assert.equal(json(await as(sessionF, 'GET', '/v1/me/scores')).profileId, F);
    assert.deepEqual(json(await as(sessionF, 'GET', '/v1/me/rights/requests')).requests, []);
    assert.equal(json(await as(sessionF, 'GET', `/v1/me/rights/requests/${requestE}`)).code, 'RIGHTS_REQUEST_NOT_FOUND');
    assert.equal(json(await as(sessionF, 'POST', `/v1/me/rights/requests/${requestE}/download-link`)).code, 'RIGHTS_REQUEST_NOT_FOUND');
    assert.equal((await as(sessionF, 'POST', '/v1/me/consent/withdraw-all', {})).statusCode, 200);
    assert.equal((await ctx.kernel.consent.state(E))['marketing.communications.email']?.state, 'given', 'F withdrew only its own consent');

    const consentE = json(await as(sessionE, 'GET', '/v1/me/consent'));
    assert.ok(given(consentE).includes('marketing.communications.email'));
    const seenE = (consentE.history as { receiptId: string | null }[]).map((h) => h.receiptId);
    assert.deepEqual(seenE.filter((id) => id !== null && receiptsF.has(id) && !receiptsE.has(id)), [], 'none of F’s receipts');
    assert.equal(json(await as(sessionE, 'GET', '/v1/me/scores')).profileId, E);
    assert.ok(json(await as(sessionE, 'GET', '/v1/me/rights/requests')).requests.some((r: { id: string }) => r.id === requestE));
    const link = await as(sessionE, 'POST', `/v1/me/rights/requests/${requestE}/download-link`);
    assert.equal(link.statusCode, 200, link.body);
    const archive = await app().inject({ url: json(link).url });
    assert.equal(archive.statusCode, 200);
  });
});
