import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('explicit consent is judged by what the person agreed to, not by what a purpose asks today', (dialect) => {
  const ctx = useKernel(dialect);
  const survey = (messageId: string) => ({ type: 'track', userId: 'u-expl', messageId, event: 'Survey Answered', properties: { survey_id: 's1', rating: 7, allergies: ['nuts'] } });
  const profileId = async () => {
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'u-expl' }], source: 'web', at: new Date().toISOString() }]);
    return id as string;
  };
  const allergiesStored = async (messageId: string) => {
    const events = await ctx.kernel.collect.events([await profileId()], { decrypt: true, limit: 100 });
    const event = events.find((e) => e.messageId === messageId);
    return (event?.personal as { properties?: { allergies?: unknown } } | null)?.properties?.allergies;
  };

  it('does not turn an ordinary consent into an explicit one when the purpose is made explicit later', async () => {
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-expl' }], source: 'web', at: new Date().toISOString() }]));
    await ctx.kernel.consent.record(await profileId(), [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const [plain] = await sendMessages(ctx.kernel, [survey('s-1')]);
    assert.equal(plain?.status, 'stored');
    assert.deepEqual(plain?.refusedFields, ['properties.allergies'], 'an ordinary consent keeps no health data');

    const purpose = ctx.kernel.consent.purpose('analytics.reporting');
    assert.ok(purpose);
    await ctx.kernel.consent.setPurpose({ ...purpose, explicit: true }, CLI_ACTOR);
    // The notice now describes health data for reporting too (a material change, as making it explicit is).
    const notice = ctx.kernel.consent.currentNotice();
    const purposes = notice.purposes.map((p) => (p.purpose === 'analytics.reporting' ? { ...p, categories: [...p.categories, 'user.health_and_medical'] } : p));
    await ctx.kernel.consent.publishNotice({ text: `${notice.text} Reports, with explicit consent, include allergies.`, purposes }, CLI_ACTOR);
    const decision = ctx.kernel.consent.decide(await profileId(), 'analytics.reporting');
    assert.deepEqual([decision.allowed, decision.reason, decision.explicit], [false, 'renewal_required', false]);
    const [after] = await sendMessages(ctx.kernel, [survey('s-2')]);
    assert.equal(after?.status, 'refused', 'the consent given before it was asked for explicitly no longer counts');
    assert.equal(await allergiesStored('s-2'), undefined);

    // Given again while the purpose asks for explicit consent: now it is explicit, and the field is kept.
    await ctx.kernel.consent.record(await profileId(), [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    assert.equal(ctx.kernel.consent.decide(await profileId(), 'analytics.reporting').explicit, true);
    const [renewed] = await sendMessages(ctx.kernel, [survey('s-3')]);
    assert.equal(renewed?.status, 'stored');
    assert.equal(renewed?.refusedFields, undefined);
    assert.deepEqual(await allergiesStored('s-3'), ['nuts']);

    // Saving the purpose again (another description) keeps the time it became explicit: the renewed consent stands.
    await ctx.kernel.consent.setPurpose({ ...purpose, explicit: true, description: 'Reports, now with explicit consent.' }, CLI_ACTOR);
    assert.equal(ctx.kernel.consent.decide(await profileId(), 'analytics.reporting').explicit, true);
    // And a reload from the database (another process's view) agrees.
    await ctx.kernel.consent.refreshConfigurationIfChanged();
    assert.equal(ctx.kernel.consent.decide(await profileId(), 'analytics.reporting').explicit, true);
  });
});
