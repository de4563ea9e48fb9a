import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('POST /v1/consent and /v1/me/consent answer refused changes with specific codes', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const SALE = 'third_party_sharing';
  const basic = () => ({ authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` });
  const consent = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url: '/v1/consent', headers: { ...basic(), 'content-type': 'application/json', ...headers }, payload: JSON.stringify({ mechanism: 'banner_save', ...body }) });
  type Answer = { code?: string; details?: Record<string, unknown>; recorded?: { purpose: string; state: string }[]; rejected?: { purpose: string; code: string }[]; gpcHonoured?: boolean };
  const answer = (response: { json: () => unknown }) => response.json() as Answer;
  const stateOf = async (type: string, value: string, purpose: string) => {
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]);
    assert.ok(id, `${type} ${value} known`);
    return (await ctx.kernel.consent.state(id))[purpose];
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    assert.ok(ctx.kernel.consent.purpose(SALE)?.saleOrSharing);
  });
  after(async () => {
    await server.app.close();
  });

  it('answers 409 CONSENT_GPC_CONFLICT when every change is rejected for a person GPC already opted out', async () => {
    const first = await consent({ anonymousId: 'anon-gpc-all', purposes: { 'analytics.reporting': 'given' } }, { 'sec-gpc': '1' });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal((await stateOf('anonymous_id', 'anon-gpc-all', SALE))?.gpc, true);
    const conflict = await consent({ anonymousId: 'anon-gpc-all', purposes: { [SALE]: 'given' } }, { 'sec-gpc': '1' });
    assert.equal(conflict.statusCode, 409, conflict.body);
    assert.equal(answer(conflict).code, 'CONSENT_GPC_CONFLICT');
    assert.match(String(conflict.headers['content-type']), /^application\/problem\+json/);
    assert.deepEqual(answer(conflict).details?.purposes, [SALE]);
    const after = await stateOf('anonymous_id', 'anon-gpc-all', SALE);
    assert.deepEqual([after?.state, after?.gpc], ['refused', true], 'nothing was recorded');
  });

  it('records the other changes and lists the rejected purposes in rejected[]', async () => {
    const partial = await consent({ anonymousId: 'anon-gpc-part', purposes: { 'analytics.reporting': 'given', [SALE]: 'given', 'personalize.profiling': 'given' } }, { 'sec-gpc': '1' });
    assert.equal(partial.statusCode, 200, partial.body);
    const body = answer(partial);
    assert.deepEqual(body.rejected, [{ purpose: SALE, code: 'CONSENT_GPC_CONFLICT' }]);
    const given = (body.recorded ?? []).filter((r) => r.state === 'given').map((r) => r.purpose).sort();
    assert.deepEqual(given, ['analytics.reporting', 'personalize.profiling']);
    assert.equal((await stateOf('anonymous_id', 'anon-gpc-part', 'analytics.reporting'))?.state, 'given');
    assert.equal((await stateOf('anonymous_id', 'anon-gpc-part', SALE))?.state, 'refused');
  });

  it('answers CONSENT_NOTICE_UNKNOWN for a notice version above the current one, creating no one', async () => {
    const current = ctx.kernel.consent.currentNotice().version;
    const response = await consent({ anonymousId: 'anon-future-notice', purposes: { 'analytics.reporting': 'given' }, noticeVersion: current + 1 });
    assert.equal(response.statusCode, 400, response.body);
    assert.equal(answer(response).code, 'CONSENT_NOTICE_UNKNOWN');
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-future-notice' }], source: 'web', at: new Date().toISOString() }]);
    assert.equal(id, null);
  });

  it('answers CONSENT_PURPOSE_NOT_IN_NOTICE for consent to a purpose the named notice version does not describe', async () => {
    const before = ctx.kernel.consent.currentNotice();
    assert.ok(before.purposes.some((p) => p.purpose === 'personalize.profiling'));
    const narrower = await ctx.kernel.consent.publishNotice({ text: `${before.text}\n\nWithout profiling.`, purposes: before.purposes.filter((p) => p.purpose !== 'personalize.profiling') }, CLI_ACTOR);
    assert.equal(narrower.version, before.version + 1);
    const response = await consent({ anonymousId: 'anon-narrow', purposes: { 'personalize.profiling': 'given' }, noticeVersion: narrower.version });
    assert.equal(response.statusCode, 400, response.body);
    assert.equal(answer(response).code, 'CONSENT_PURPOSE_NOT_IN_NOTICE');
    assert.deepEqual(answer(response).details, { purpose: 'personalize.profiling', noticeVersion: narrower.version });
    // The older version that describes it still records it; a purpose the notice describes is recorded under the new one.
    const older = await consent({ anonymousId: 'anon-narrow', purposes: { 'personalize.profiling': 'given' }, noticeVersion: before.version });
    assert.equal(older.statusCode, 200, older.body);
    const described = await consent({ anonymousId: 'anon-narrow', purposes: { 'analytics.reporting': 'given' }, noticeVersion: narrower.version });
    assert.equal(described.statusCode, 200, described.body);
    // Restore the notice for the tests that follow.
    await ctx.kernel.consent.publishNotice({ text: `${before.text}\n\nRestored.`, purposes: before.purposes }, CLI_ACTOR);
  });

  it('answers a GPC conflict on POST /v1/me/consent the same way (409 when all rejected, rejected[] otherwise)', async () => {
    const issued = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: basic(), payload: { userId: 'cust-gpc' } });
    assert.equal(issued.statusCode, 201, issued.body);
    const token = (issued.json() as { token: string }).token;
    const me = (purposes: Record<string, string>) =>
      server.app.inject({ method: 'POST', url: '/v1/me/consent', headers: { authorization: `Bearer ${token}`, 'sec-gpc': '1' }, payload: { purposes } });
    const first = await me({ 'analytics.reporting': 'given', [SALE]: 'given' });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(answer(first).gpcHonoured, true);
    assert.deepEqual(answer(first).rejected, [{ purpose: SALE, code: 'CONSENT_GPC_CONFLICT' }]);
    const conflict = await me({ [SALE]: 'given' });
    assert.equal(conflict.statusCode, 409, conflict.body);
    assert.equal(answer(conflict).code, 'CONSENT_GPC_CONFLICT');
    assert.match(String(conflict.headers['content-type']), /^application\/problem\+json/);
    assert.equal((await stateOf('user_id', 'cust-gpc', SALE))?.state, 'refused');
  });
});
