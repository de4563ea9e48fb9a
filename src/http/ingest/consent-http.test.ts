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
  /** A backend's token: sessions are issued with it, never with a write key. */
  let issuer = '';
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
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
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
    assert.deepEqual(answer(response).details, { purposes: ['personalize.profiling'], rejected: [{ purpose: 'personalize.profiling', code: 'CONSENT_PURPOSE_NOT_IN_NOTICE' }], noticeVersion: narrower.version, currentNoticeVersion: narrower.version });
    // With a change that can be recorded, that one is, and the other is listed in rejected.
    const mixed = await consent({ anonymousId: 'anon-narrow-2', purposes: { 'personalize.profiling': 'given', 'analytics.reporting': 'refused' }, noticeVersion: narrower.version });
    assert.equal(mixed.statusCode, 200, mixed.body);
    assert.deepEqual(answer(mixed).rejected, [{ purpose: 'personalize.profiling', code: 'CONSENT_PURPOSE_NOT_IN_NOTICE' }]);
    assert.deepEqual(answer(mixed).recorded?.map((r) => [r.purpose, r.state]), [['analytics.reporting', 'refused']]);
    // The older version that describes it still records it; a purpose the notice describes is recorded under the new one.
    const older = await consent({ anonymousId: 'anon-narrow', purposes: { 'personalize.profiling': 'given' }, noticeVersion: before.version });
    assert.equal(older.statusCode, 200, older.body);
    const described = await consent({ anonymousId: 'anon-narrow', purposes: { 'analytics.reporting': 'given' }, noticeVersion: narrower.version });
    assert.equal(described.statusCode, 200, described.body);
    // Restore the notice for the tests that follow.
    await ctx.kernel.consent.publishNotice({ text: `${before.text}\n\nRestored.`, purposes: before.purposes }, CLI_ACTOR);
  });

  it('records a withdrawal sent with an unknown purpose and one resting on contract, listing each in rejected', async () => {
    const given = await consent({ userId: 'u-90', purposes: { 'personalize.profiling': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    const response = await consent({
      userId: 'u-90',
      purposes: { 'personalize.profiling': 'withdrawn', 'marketing.advertising.first_party.targeted': 'refused', 'essential.service.operations': 'refused' },
      mechanism: 'privacy_center',
    });
    assert.equal(response.statusCode, 200, response.body);
    const body = answer(response) as Answer & { receipt?: string; receiptId?: string };
    assert.deepEqual(body.recorded?.map((r) => [r.purpose, r.state]), [['personalize.profiling', 'withdrawn']]);
    assert.deepEqual(body.rejected, [
      { purpose: 'marketing.advertising.first_party.targeted', code: 'CONSENT_PURPOSE_UNKNOWN' },
      { purpose: 'essential.service.operations', code: 'CONSENT_BASIS_NOT_CONSENT' },
    ]);
    assert.ok(body.receipt && body.receiptId);
    await ctx.kernel.consent.verifyReceipt(body.receipt);
    const state = await stateOf('user_id', 'u-90', 'personalize.profiling');
    assert.deepEqual([state?.state, state?.allowed], ['withdrawn', false], 'the withdrawal is recorded and processing stops');
  });

  it('fails a request none of whose changes can be recorded with the first code, naming each purpose, and creates no one', async () => {
    const response = await consent({ anonymousId: 'anon-all-bad', purposes: { 'essential.service.operations': 'refused', 'no.such.purpose': 'refused' } });
    assert.equal(response.statusCode, 409, response.body);
    assert.equal(answer(response).code, 'CONSENT_BASIS_NOT_CONSENT');
    assert.deepEqual(answer(response).details, {
      purposes: ['essential.service.operations', 'no.such.purpose'],
      rejected: [{ purpose: 'essential.service.operations', code: 'CONSENT_BASIS_NOT_CONSENT' }, { purpose: 'no.such.purpose', code: 'CONSENT_PURPOSE_UNKNOWN' }],
    });
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-all-bad' }], source: 'web', at: new Date().toISOString() }]);
    assert.equal(id, null);
  });

  it('records the valid changes on POST /v1/me/consent too, listing each invalid one in rejected', async () => {
    const issued = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { authorization: `Bearer ${issuer}` }, payload: { userId: 'cust-partial' } });
    assert.equal(issued.statusCode, 201, issued.body);
    const token = (issued.json() as { token: string }).token;
    const me = (purposes: Record<string, string>) => server.app.inject({ method: 'POST', url: '/v1/me/consent', headers: { authorization: `Bearer ${token}` }, payload: { purposes } });
    assert.equal((await me({ 'personalize.profiling': 'given' })).statusCode, 200);
    const partial = await me({ 'personalize.profiling': 'withdrawn', 'no.such.purpose': 'refused', 'essential.service.operations': 'refused' });
    assert.equal(partial.statusCode, 200, partial.body);
    assert.deepEqual(answer(partial).recorded?.map((r) => [r.purpose, r.state]), [['personalize.profiling', 'withdrawn']]);
    assert.deepEqual(answer(partial).rejected, [
      { purpose: 'no.such.purpose', code: 'CONSENT_PURPOSE_UNKNOWN' },
      { purpose: 'essential.service.operations', code: 'CONSENT_BASIS_NOT_CONSENT' },
    ]);
    assert.equal((await stateOf('user_id', 'cust-partial', 'personalize.profiling'))?.state, 'withdrawn');
    const none = await me({ 'no.such.purpose': 'refused', 'essential.service.operations': 'refused' });
    assert.equal(none.statusCode, 400, none.body);
    assert.equal(answer(none).code, 'CONSENT_PURPOSE_UNKNOWN');
    assert.deepEqual(answer(none).details?.purposes, ['no.such.purpose', 'essential.service.operations']);
  });

  it('refuses an opt-out notice it cannot record before creating a profile for the person', async () => {
    const purpose = ctx.kernel.consent.purpose('analytics.reporting');
    assert.ok(purpose);
    await ctx.kernel.consent.setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    try {
      const noticeVersion = ctx.kernel.consent.currentNotice().version;
      const cases: [Record<string, unknown>, number, string][] = [
        [{ purpose: 'foo.bar', jurisdiction: 'US-CA', noticeVersion }, 400, 'CONSENT_PURPOSE_UNKNOWN'],
        [{ purpose: 'analytics.reporting', jurisdiction: 'DE', noticeVersion }, 403, 'CONSENT_OPT_OUT_NOT_ALLOWED'],
        [{ purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion: noticeVersion + 100 }, 400, 'CONSENT_NOTICE_UNKNOWN'],
      ];
      for (const [i, [body, status, code]] of cases.entries()) {
        const anonymousId = `a-91-${i}`;
        const response = await server.app.inject({ method: 'POST', url: '/v1/consent/opt-out-notice', headers: { ...basic(), 'content-type': 'application/json' }, payload: JSON.stringify({ anonymousId, ...body }) });
        assert.equal(response.statusCode, status, response.body);
        assert.equal(answer(response).code, code);
        const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: anonymousId }], source: 'web', at: new Date().toISOString() }]);
        assert.equal(id, null, `${code}: no profile for ${anonymousId}`);
      }
    } finally {
      await ctx.kernel.consent.setPurpose(purpose, CLI_ACTOR);
    }
  });

  it('leaves a consent the person gave standing when an opt-out notice is shown for the same purpose', async () => {
    const purpose = ctx.kernel.consent.purpose('analytics.reporting');
    assert.ok(purpose);
    const given = await consent({ userId: 'u-80', purposes: { 'analytics.reporting': 'given' }, jurisdiction: 'US-CA' });
    assert.equal(given.statusCode, 200, given.body);
    await ctx.kernel.consent.setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    try {
      const noticeVersion = ctx.kernel.consent.currentNotice().version;
      const shown = await server.app.inject({
        method: 'POST', url: '/v1/consent/opt-out-notice', headers: { ...basic(), 'content-type': 'application/json' },
        payload: JSON.stringify({ userId: 'u-80', purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion }),
      });
      assert.equal(shown.statusCode, 200, shown.body);
      const body = shown.json() as { receipt?: string; recorded: unknown[]; kept: { purpose: string; state: string; basis: string }[] };
      assert.deepEqual(body.recorded, []);
      assert.deepEqual(body.kept.map((k) => [k.purpose, k.state, k.basis]), [['analytics.reporting', 'given', 'consent']]);
      assert.equal(body.receipt, undefined, 'nothing changed, nothing signed');
    } finally {
      await ctx.kernel.consent.setPurpose(purpose, CLI_ACTOR);
    }
    const state = await stateOf('user_id', 'u-80', 'analytics.reporting');
    assert.deepEqual([state?.basis, state?.allowed, state?.reason], ['consent', true, 'given']);
  });

  it('answers a GPC conflict on POST /v1/me/consent the same way (409 when all rejected, rejected[] otherwise)', async () => {
    const issued = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { authorization: `Bearer ${issuer}` }, payload: { userId: 'cust-gpc' } });
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
