import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('a GPC signal on a consent request whose choices are refused is recorded for the known person', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let issuer = '';
  const SALE = 'third_party_sharing';
  const ADS = 'marketing.advertising.third_party.targeted';
  const basic = () => ({ authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' });
  const post = (url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { ...basic(), ...headers }, payload: JSON.stringify(body) });
  type Problem = { code?: string; details?: { gpcHonoured?: boolean; receiptId?: string; purposes?: string[] } };
  const profileOf = async (type: string, value: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]))[0] ?? null;
  /** A known person who gave both sale/sharing and targeted-advertising purposes. */
  const knownPerson = async (userId: string): Promise<string> => {
    const given = await post('/v1/consent', { userId, purposes: { [SALE]: 'given', [ADS]: 'given' }, mechanism: 'banner_accept' });
    assert.equal(given.statusCode, 200, given.body);
    const id = await profileOf('user_id', userId);
    assert.ok(id);
    return id;
  };
  const gpcStates = async (profileId: string) => {
    const state = await ctx.kernel.consent.state(profileId);
    return [SALE, ADS].map((p) => [state[p]?.state, state[p]?.gpc, state[p]?.allowed]);
  };
  const OPTED_OUT = [['refused', true, false], ['refused', true, false]];
  const STILL_GIVEN = [['given', false, true], ['given', false, true]];

  /** The refusal kept its status and code, the person is opted out, and the refusal says so, naming the GPC receipt. */
  const assertRefusedAfterGpc = async (response: { statusCode: number; body: string; json: () => unknown }, status: number, code: string, profileId: string) => {
    assert.equal(response.statusCode, status, response.body);
    const problem = response.json() as Problem;
    assert.equal(problem.code, code);
    assert.deepEqual(await gpcStates(profileId), OPTED_OUT, 'both purposes opted out by GPC');
    assert.equal(problem.details?.gpcHonoured, true, response.body);
    assert.ok(problem.details?.receiptId, response.body);
    const receipt = await ctx.kernel.consent.receipt(problem.details.receiptId, [profileId]);
    assert.equal(receipt.mechanism, 'gpc');
    const history = await ctx.kernel.consent.history(profileId);
    assert.deepEqual(history.filter((e) => e.mechanism === 'gpc').map((e) => [e.purpose, e.receiptId]).sort(), [[ADS, problem.details.receiptId], [SALE, problem.details.receiptId]]);
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('POST /v1/consent with only an unknown purpose: 400 CONSENT_PURPOSE_UNKNOWN after recording the GPC opt-out', async () => {
    const id = await knownPerson('gpc-r1');
    const response = await post('/v1/consent', { userId: 'gpc-r1', purposes: { 'marketing.nope': 'refused' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    await assertRefusedAfterGpc(response, 400, 'CONSENT_PURPOSE_UNKNOWN', id);
    assert.deepEqual((response.json() as Problem).details?.purposes, ['marketing.nope']);
  });

  it('POST /v1/consent refusing a contract purpose with the body flag: 409 CONSENT_BASIS_NOT_CONSENT after recording it', async () => {
    const id = await knownPerson('gpc-r2');
    const response = await post('/v1/consent', { userId: 'gpc-r2', purposes: { 'essential.service.operations': 'refused' }, mechanism: 'banner_save', gpc: true });
    await assertRefusedAfterGpc(response, 409, 'CONSENT_BASIS_NOT_CONSENT', id);
  });

  it('POST /v1/me/consent with an unknown purpose: 400 after recording the GPC opt-out', async () => {
    const id = await knownPerson('gpc-r3');
    const issued = await server.app.inject({ method: 'POST', url: '/v1/subject-sessions', headers: { authorization: `Bearer ${issuer}` }, payload: { userId: 'gpc-r3' } });
    assert.equal(issued.statusCode, 201, issued.body);
    const token = (issued.json() as { token: string }).token;
    const response = await server.app.inject({ method: 'POST', url: '/v1/me/consent', headers: { authorization: `Bearer ${token}`, 'sec-gpc': '1' }, payload: { purposes: { 'marketing.nope': 'refused' } } });
    await assertRefusedAfterGpc(response, 400, 'CONSENT_PURPOSE_UNKNOWN', id);
  });

  it('POST /v1/consent/opt-out-notice for a jurisdiction the purpose does not list: 403 after recording the GPC opt-out', async () => {
    const id = await knownPerson('gpc-r4');
    const noticeVersion = ctx.kernel.consent.currentNotice().version;
    const response = await post('/v1/consent/opt-out-notice', { userId: 'gpc-r4', purpose: 'analytics.reporting', jurisdiction: 'US-VA', noticeVersion }, { 'sec-gpc': '1' });
    await assertRefusedAfterGpc(response, 403, 'CONSENT_OPT_OUT_NOT_ALLOWED', id);
  });

  it('an opt-out notice for a sale/sharing purpose on a GPC request: 409 CONSENT_GPC_CONFLICT saying the signal was honoured', async () => {
    const purpose = ctx.kernel.consent.purpose(SALE);
    assert.ok(purpose);
    const id = await knownPerson('gpc-r5');
    await ctx.kernel.consent.setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    try {
      const noticeVersion = ctx.kernel.consent.currentNotice().version;
      const response = await post('/v1/consent/opt-out-notice', { userId: 'gpc-r5', purpose: SALE, jurisdiction: 'US-CA', noticeVersion }, { 'sec-gpc': '1' });
      await assertRefusedAfterGpc(response, 409, 'CONSENT_GPC_CONFLICT', id);
    } finally {
      await ctx.kernel.consent.setPurpose(purpose, CLI_ACTOR);
    }
  });

  it('covers the other profiles the request ids belong to (a shared device), in the same receipt', async () => {
    const owner = await knownPerson('gpc-r6');
    const device = await post('/v1/consent', { anonymousId: 'gpc-r6-device', purposes: { [SALE]: 'given', [ADS]: 'given' }, mechanism: 'banner_accept' });
    assert.equal(device.statusCode, 200, device.body);
    const other = await profileOf('anonymous_id', 'gpc-r6-device');
    assert.ok(other && other !== owner);
    const response = await post('/v1/consent', { userId: 'gpc-r6', anonymousId: 'gpc-r6-device', purposes: { 'marketing.nope': 'given' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    await assertRefusedAfterGpc(response, 400, 'CONSENT_PURPOSE_UNKNOWN', owner);
    await assertRefusedAfterGpc(response, 400, 'CONSENT_PURPOSE_UNKNOWN', other);
  });

  it('says the signal was honoured without a receipt when its opt-outs were in force already', async () => {
    const id = await knownPerson('gpc-r7');
    const first = await post('/v1/consent', { userId: 'gpc-r7', purposes: { 'marketing.nope': 'refused' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    assert.equal(first.statusCode, 400, first.body);
    const again = await post('/v1/consent', { userId: 'gpc-r7', purposes: { 'marketing.nope': 'refused' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    assert.equal(again.statusCode, 400, again.body);
    assert.equal((again.json() as Problem).details?.gpcHonoured, true);
    assert.equal((again.json() as Problem).details?.receiptId, undefined);
    assert.equal((await ctx.kernel.consent.history(id)).filter((e) => e.mechanism === 'gpc').length, 2, 'no second opt-out');
    // An opt-in refused for the opt-out in force: the signal is honoured too.
    const conflict = await post('/v1/consent', { userId: 'gpc-r7', purposes: { [SALE]: 'given' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    assert.equal(conflict.statusCode, 409, conflict.body);
    assert.equal((conflict.json() as Problem).code, 'CONSENT_GPC_CONFLICT');
    assert.equal((conflict.json() as Problem).details?.gpcHonoured, true);
  });

  it('records nothing without the signal, for a person Candor does not know, or when an id is unusable', async () => {
    const id = await knownPerson('gpc-r8');
    const plain = await post('/v1/consent', { userId: 'gpc-r8', purposes: { 'marketing.nope': 'refused' }, mechanism: 'banner_save' });
    assert.equal(plain.statusCode, 400, plain.body);
    assert.equal((plain.json() as Problem).details?.gpcHonoured, undefined);
    const unusable = await post('/v1/consent', { userId: 'gpc-r8', anonymousId: 'bad\u0001id', purposes: { 'marketing.nope': 'refused' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    assert.equal(unusable.statusCode, 400, unusable.body);
    assert.equal((unusable.json() as Problem).code, 'REQUEST_VALIDATION_FAILED');
    assert.deepEqual(await gpcStates(id), STILL_GIVEN);
    const stranger = await post('/v1/consent', { userId: 'gpc-r8-stranger', purposes: { 'marketing.nope': 'refused' }, mechanism: 'banner_save' }, { 'sec-gpc': '1' });
    assert.equal(stranger.statusCode, 400, stranger.body);
    assert.equal((stranger.json() as Problem).details?.gpcHonoured, undefined);
    assert.equal(await profileOf('user_id', 'gpc-r8-stranger'), null, 'no profile is created for the signal');
  });
});
