import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// The ledger and receipts are kept for good, an erasure included: a source is a page URL or a property's name, never
// free text that could name the person.
describeEachDialect('a consent source is an http(s) URL or a property token, nothing else', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  let writeKey = '';
  const post = (url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
  const consent = (body: Record<string, unknown>, headers?: Record<string, string>) => post('/v1/consent', { mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' }, ...body }, headers);
  const withdrawAll = (body: Record<string, unknown>) => post('/v1/consent', { mechanism: 'privacy_center', withdrawAll: true, ...body });
  const optOutNotice = (body: Record<string, unknown>, headers?: Record<string, string>) => post('/v1/consent/opt-out-notice', { purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion: ctx.kernel.consent.currentNotice().version, ...body }, headers);
  const profileOf = async (type: string, value: string) => {
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]);
    return id ?? null;
  };
  const refusedForSource = (response: { statusCode: number; body: string; json: () => unknown }, what: string) => {
    assert.equal(response.statusCode, 400, `${what}: ${response.body}`);
    const problem = response.json() as { code?: string; details?: { reason?: string } };
    assert.deepEqual([problem.code, problem.details?.reason], ['CONSENT_CHANGE_INVALID', 'source'], `${what}: ${response.body}`);
    return problem as { details: Record<string, unknown> };
  };
  const leak = 'LEAK SRC46 Ada Lovelace +44 20 7946 0046';
  const freeText = [leak, 'Ada Lovelace', 'ada+shop', 'https://shop.example/LEAK SRC46 Ada Lovelace', 'https://', 'shop.example/Ada Lovelace?x=1', 'zq-%41da', 'x'.repeat(201)];

  before(async () => {
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const purpose = ctx.kernel.consent.purpose('analytics.reporting');
    assert.ok(purpose);
    await ctx.kernel.consent.setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
  });

  it('refuses free text on every write-key endpoint before anything is written: no one created, no ledger entry', async () => {
    const known = uniqueId('a');
    assert.equal((await consent({ anonymousId: known, source: 'web' })).statusCode, 200);
    const profile = await profileOf('anonymous_id', known);
    assert.ok(profile);
    const before = (await ctx.kernel.consent.history(profile)).length;
    for (const source of freeText) {
      const stranger = uniqueId('a');
      refusedForSource(await consent({ anonymousId: stranger, source }), `consent ${source}`);
      refusedForSource(await withdrawAll({ anonymousId: stranger, source }), `withdraw-all ${source}`);
      refusedForSource(await optOutNotice({ anonymousId: stranger, source }), `opt-out notice ${source}`);
      assert.equal(await profileOf('anonymous_id', stranger), null, `no one made for ${source}`);
      refusedForSource(await consent({ anonymousId: known, source }), `consent of a known person ${source}`);
      refusedForSource(await withdrawAll({ anonymousId: known, source }), `withdraw-all of a known person ${source}`);
      refusedForSource(await optOutNotice({ anonymousId: known, source }), `opt-out notice of a known person ${source}`);
    }
    assert.equal((await ctx.kernel.consent.history(profile)).length, before);
  });

  it('still records a GPC signal of a request refused for its source, without the source', async () => {
    const known = uniqueId('a');
    assert.equal((await consent({ anonymousId: known, source: 'web' })).statusCode, 200);
    const profile = await profileOf('anonymous_id', known);
    assert.ok(profile);
    const problem = refusedForSource(await consent({ anonymousId: known, source: leak }, { 'sec-gpc': '1' }), 'consent with GPC');
    assert.equal(problem.details.gpcHonoured, true);
    refusedForSource(await optOutNotice({ anonymousId: known, source: leak }, { 'sec-gpc': '1' }), 'opt-out notice with GPC');
    const history = await ctx.kernel.consent.history(profile);
    const gpc = history.filter((e) => e.mechanism === 'gpc');
    assert.ok(gpc.length > 0, 'the opt-out is recorded');
    assert.deepEqual([...new Set(gpc.map((e) => e.source))], [null]);
    assert.ok(!JSON.stringify(history).includes('Lovelace'));
  });

  it('refuses it in the module too, for every other caller', async () => {
    const known = uniqueId('a');
    assert.equal((await consent({ anonymousId: known, source: 'web' })).statusCode, 200);
    const profile = (await profileOf('anonymous_id', known)) as string;
    const isSource = (error: { code?: string; details?: { reason?: string } }) => error.code === 'CONSENT_CHANGE_INVALID' && error.details?.reason === 'source';
    await assert.rejects(ctx.kernel.consent.record(profile, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'api', source: leak }, CLI_ACTOR), isSource);
    await assert.rejects(ctx.kernel.consent.withdrawAll(profile, { mechanism: 'api', source: leak }, CLI_ACTOR), isSource);
    await assert.rejects(ctx.kernel.consent.recordGpc([profile], { source: leak }, CLI_ACTOR), isSource);
  });

  it('records an http(s) URL without its query, fragment and credentials, and a property token as given', async () => {
    const accepted: [string, string | null][] = [
      ['https://ada:pw@Shop.example:8443/account?email=ada@b.c#top', 'https://Shop.example:8443/account'],
      ['http://shop.example/', 'http://shop.example/'],
      ['ios-app', 'ios-app'],
      ['web:checkout/v2.1', 'web:checkout/v2.1'],
      ['shop.example/privacy#email=ada@b.c', 'shop.example/privacy'],
      ['', null],
    ];
    for (const [source, recorded] of accepted) {
      const person = uniqueId('a');
      const response = await consent({ anonymousId: person, source });
      assert.equal(response.statusCode, 200, `${source}: ${response.body}`);
      const profile = (await profileOf('anonymous_id', person)) as string;
      assert.deepEqual([...new Set((await ctx.kernel.consent.history(profile)).map((e) => e.source))], [recorded], source);
    }
  });
});
