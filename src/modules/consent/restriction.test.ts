import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { addMonths } from './decide.ts';

describeEachDialect('restriction, objection and opt-outs enforced in the decision path', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const send = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const track = async (userId: string) =>
    ((await send('/v1/track', { userId, event: 'Product Viewed', properties: { product_id: 'p1' } })).json() as { results: { status: string; code?: string }[] }).results[0];
  const profileOf = async (userId: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]))[0] as string;
  const ALL = () => ctx.kernel.consent.purposes().map((p) => p.key);

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('a restriction leaves only legal-obligation purposes allowed, stops ingestion, and its lifting is audited', async () => {
    const given = await send('/v1/consent', { userId: 'r-1', mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    assert.equal((await track('r-1'))?.status, 'stored');
    const id = await profileOf('r-1');
    await ctx.kernel.consent.restrict([id], { requestId: 'rr_test1' }, CLI_ACTOR);
    await ctx.kernel.consent.load([id]);
    assert.deepEqual(ctx.kernel.consent.allowedPurposes(id, ALL()), ['essential.legal_obligation']);
    assert.equal(ctx.kernel.consent.decide(id, 'personalize.profiling').reason, 'restricted');
    assert.equal(ctx.kernel.consent.decide(id, 'essential.service.operations').reason, 'restricted');
    const refused = await track('r-1');
    assert.deepEqual([refused?.status, refused?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    // Restricting twice changes nothing; state() tells the subject why.
    await ctx.kernel.consent.restrict([id], {}, CLI_ACTOR);
    assert.equal((await ctx.kernel.consent.state(id))['analytics.reporting']?.reason, 'restricted');
    assert.equal((await ctx.kernel.consent.restrictions(id)).history.length, 1);

    await ctx.kernel.consent.liftRestriction([id], { requestId: 'rr_test1' }, CLI_ACTOR);
    assert.equal(ctx.kernel.consent.decide(id, 'personalize.profiling').reason, 'given');
    assert.equal((await track('r-1'))?.status, 'stored');
    const lifts = await ctx.kernel.audit.list({ action: 'consent.restrict.lift', limit: 10 });
    assert.equal(lifts.length, 1);
    assert.equal(lifts[0]?.subject, ctx.kernel.keyring.pseudonym('subject', id));
    await assert.rejects(ctx.kernel.consent.liftRestriction([id], {}, CLI_ACTOR), (e) => isCandorError(e, 'CONSENT_RESTRICTION_NOT_FOUND'));
  });

  it('a restriction written by another process is seen at the next load', async () => {
    await send('/v1/consent', { userId: 'r-2', mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' } });
    const id = await profileOf('r-2');
    const { openKernel } = await import('../../kernel.ts');
    const other = await openKernel(ctx.env.config);
    try {
      await other.consent.restrict([id], {}, CLI_ACTOR);
    } finally {
      await other.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal((await track('r-2'))?.code, 'COLLECT_NO_LAWFUL_BASIS');
  });

  it('an objection to direct marketing withdraws every marketing purpose and blocks one resting on legitimate interests', async () => {
    const email = ctx.kernel.consent.purpose('marketing.communications.email');
    assert.ok(email);
    await send('/v1/consent', { userId: 'o-1', mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'marketing.advertising.third_party.targeted': 'given' } });
    const id = await profileOf('o-1');
    // Newsletters to existing customers on legitimate interests (the "soft opt-in").
    await ctx.kernel.consent.setPurpose({ ...email, basis: 'legitimate_interests' }, CLI_ACTOR);
    try {
      await ctx.kernel.consent.load([id]);
      assert.equal(ctx.kernel.consent.decide(id, 'marketing.communications.email').reason, 'legitimate_interests');
      const result = await ctx.kernel.consent.objectToMarketing([id], { requestId: 'rr_obj' }, CLI_ACTOR);
      const withdrawn = result.entries.map((e) => e.purpose);
      assert.ok(withdrawn.includes('marketing.advertising.third_party.targeted') && withdrawn.includes('marketing.communications.email'));
      assert.ok(withdrawn.every((p) => p.startsWith('marketing.')));
      assert.equal(ctx.kernel.consent.decide(id, 'marketing.communications.email').reason, 'objected');
      assert.equal(ctx.kernel.consent.decide(id, 'marketing.advertising.third_party.targeted').allowed, false);
      assert.equal(ctx.kernel.consent.decide(id, 'analytics.reporting').reason, 'given');
      // Absolute: even a purpose that no longer needs the subject's record stays blocked while the objection stands.
      await ctx.kernel.consent.setPurpose({ ...email, basis: 'contract' }, CLI_ACTOR);
      assert.equal(ctx.kernel.consent.decide(id, 'marketing.communications.email').reason, 'objected');
      assert.equal((await ctx.kernel.audit.list({ action: 'consent.object', limit: 10 })).length, 1);
    } finally {
      await ctx.kernel.consent.setPurpose(email, CLI_ACTOR);
    }
  });

  it('an opt-out of sale/sharing records the GPC-strength opt-out, and limiting sensitive data withdraws explicit consent', async () => {
    await send('/v1/consent', { userId: 's-1', mechanism: 'banner_save', purposes: { third_party_sharing: 'given', fairness_audit: 'given', 'marketing.communications.email': 'given' } });
    const id = await profileOf('s-1');
    const optOut = await ctx.kernel.consent.optOutOfSaleSharing([id], { requestId: 'rr_oo' }, CLI_ACTOR);
    assert.ok(optOut.entries.every((e) => e.gpc && e.state === 'refused' && e.mechanism === 'privacy_center'));
    assert.ok(optOut.entries.some((e) => e.purpose === 'third_party_sharing'));
    const state = await ctx.kernel.consent.state(id);
    assert.equal(state.third_party_sharing?.allowed, false);
    assert.equal(state.third_party_sharing?.gpc, true);
    // An opt-in over it needs the separate confirmation, as after a GPC signal.
    const again = await ctx.kernel.consent.record(id, [{ purpose: 'third_party_sharing', state: 'given' }, { purpose: 'marketing.communications.email', state: 'given' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    assert.deepEqual(again.rejected, [{ purpose: 'third_party_sharing', code: 'CONSENT_GPC_CONFLICT' }]);

    assert.ok(ctx.kernel.consent.sensitivePurposes().includes('fairness_audit'));
    const limited = await ctx.kernel.consent.limitSensitive(id, {}, CLI_ACTOR);
    assert.ok(limited.purposes.includes('fairness_audit'));
    assert.equal(ctx.kernel.consent.decide(id, 'fairness_audit').reason, 'withdrawn');
    // A purpose whose notice describes no sensitive category is left as it was (reporting's describes survey answers:
    // private content, which is sensitive).
    assert.equal(ctx.kernel.consent.decide(id, 'marketing.communications.email').reason, 'given');
  });

  it('a restriction of either profile binds the survivor of a merge', async () => {
    await send('/v1/consent', { userId: 'm-1', mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' } });
    await send('/v1/consent', { anonymousId: 'anon-m-2', mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' } });
    const restricted = (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-m-2' }], source: 'web', at: new Date().toISOString() }]))[0] as string;
    await ctx.kernel.consent.restrict([restricted], {}, CLI_ACTOR);
    const survivor = await profileOf('m-1');
    await ctx.kernel.consent.mergeSubjects(restricted, survivor, CLI_ACTOR);
    const canonical = survivor;
    await ctx.kernel.consent.load([canonical]);
    assert.equal(ctx.kernel.consent.decide(canonical, 'analytics.reporting').reason, 'restricted');
  });

  it("a restricted person's state still shows an expired consent as expired and one to be renewed as such", async () => {
    const subject = `user-${randomUUID()}`;
    const { entries } = await ctx.kernel.consent.record(subject, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.content.profiling', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const notice = ctx.kernel.consent.currentNotice();
    const widened = notice.purposes.map((p) => (p.purpose === 'personalize.content.profiling' ? { ...p, categories: [...p.categories, 'user.contact.email'] } : p));
    assert.equal((await ctx.kernel.consent.publishNotice({ text: `${notice.text}\n\nContent choices use e-mail addresses.`, purposes: widened }, CLI_ACTOR)).material, true);
    await ctx.kernel.consent.restrict([subject], {}, CLI_ACTOR);

    const renewal = (await ctx.kernel.consent.state(subject))['personalize.content.profiling'];
    assert.deepEqual([renewal?.state, renewal?.needsRenewal, renewal?.allowed, renewal?.reason], ['given', true, false, 'restricted']);
    const later = new Date(addMonths(Date.parse(entries[0]?.at as string), 13) + 1000);
    const expired = (await ctx.kernel.consent.state(subject, later))['analytics.reporting'];
    assert.deepEqual([expired?.state, expired?.needsRenewal, expired?.allowed, expired?.reason], ['expired', false, false, 'restricted']);
  });
});
