import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('special-category and precise-location fields need explicit consent to a purpose that declares them', (dialect) => {
  const ctx = useKernel(dialect);
  const at = () => new Date().toISOString();
  /** A person known by user id with consent (banner_save) to `purposes`; answers the profile id. */
  const personWith = async (userId: string, purposes: readonly string[]) => {
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: at() }]));
    const profileId = resolved?.profileId as string;
    await ctx.kernel.consent.record(profileId, purposes.map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    return profileId;
  };
  const storedEvent = async (profileId: string, messageId: string) => {
    const events = await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 100 });
    const event = events.find((e) => e.messageId === messageId);
    assert.ok(event, `event ${messageId} stored`);
    return JSON.parse(JSON.stringify({ id: event.id, data: event.data, personal: event.personal })) as { id: string; data: Record<string, Record<string, unknown>>; personal: Record<string, Record<string, Record<string, unknown>>> | null };
  };
  const survey = (userId: string, messageId: string) => ({ type: 'track', userId, messageId, event: 'Survey Answered', properties: { survey_id: 's1', rating: 7, allergies: ['nuts', 'latex'] } });
  const located = (userId: string, messageId: string) => ({ type: 'page', userId, messageId, properties: { path: '/stores' }, context: { location: { city: 'Delft', latitude: 52.0116, longitude: 4.3571 } } });

  it('refuses a health field when the explicit consent is to a purpose the field does not declare', async () => {
    const profileId = await personWith('u-wrong-purpose', ['analytics.reporting', 'personalize.content.limited']);
    assert.equal(ctx.kernel.consent.decide(profileId, 'personalize.content.limited').explicit, true, 'the consent is explicit');
    const [result] = await sendMessages(ctx.kernel, [survey('u-wrong-purpose', 'wrong-1')]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.deepEqual(result?.refusedFields, ['properties.allergies']);
    const event = await storedEvent(profileId, 'wrong-1');
    assert.ok(!JSON.stringify(event).includes('latex'), JSON.stringify(event));
    assert.equal(event.data.properties?.survey_id, 's1');
  });

  it('stores a health field, encrypted and readable on decryption, with explicit consent to fairness_audit', async () => {
    const profileId = await personWith('u-fairness', ['analytics.reporting', 'fairness_audit']);
    const [result] = await sendMessages(ctx.kernel, [survey('u-fairness', 'fair-1')]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.equal(result?.refusedFields, undefined);
    const event = await storedEvent(profileId, 'fair-1');
    assert.deepEqual(event.personal?.properties?.allergies, ['nuts', 'latex']);
    assert.ok(!JSON.stringify(event.data).includes('latex'), 'not in the clear part');
    // The messageId reads masked unless decrypted: the masked read is found by the event's id.
    const raw = (await ctx.kernel.collect.events([profileId], { decrypt: false, limit: 100 })).find((e) => e.id === event.id);
    assert.ok(raw && !JSON.stringify(raw).includes('latex'), 'encrypted unless decrypted');
  });

  it('stores nothing for a purpose only a refused field declares: a refused precise location is no basis for the event', async () => {
    // A plan whose precise location also declares a purpose needing no consent record (the operations of the shop).
    const { plan } = await ctx.kernel.catalog.plan();
    const withOperations = JSON.parse(JSON.stringify(plan)) as { context: { properties: { location: { properties: Record<string, { 'x-candor': { purposes: string[] } }> } } } };
    for (const key of ['latitude', 'longitude']) {
      const field = withOperations.context.properties.location.properties[key] as { 'x-candor': { purposes: string[] } };
      field['x-candor'].purposes = ['personalize.content.limited', 'essential.service.operations'];
    }
    const published = await ctx.kernel.catalog.publish(withOperations, CLI_ACTOR);
    try {
      // Someone unknown, with no consent: a product view is refused, with a precise location or without one.
      const view = (messageId: string, context: Record<string, unknown>) => ({ type: 'track', anonymousId: 'anon-located', messageId, event: 'Product Viewed', properties: { product_id: 'p-42' }, context });
      const results = await sendMessages(ctx.kernel, [view('loc-1', { locale: 'de-DE' }), view('loc-2', { locale: 'de-DE', location: { latitude: 52.52, longitude: 13.4 } })]);
      assert.deepEqual(results.map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS'], ['refused', 'COLLECT_NO_LAWFUL_BASIS']], JSON.stringify(results));
      const [profile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-located' }], source: 'web', at: at() }]);
      assert.equal(profile, null, 'no profile is made for it');
    } finally {
      await ctx.kernel.catalog.publish(plan, CLI_ACTOR, { baseVersion: published.version });
    }
  });

  it('keeps precise location with explicit consent to personalize.content.limited', async () => {
    const profileId = await personWith('u-nearby', ['analytics.reporting', 'personalize.content.limited']);
    const [result] = await sendMessages(ctx.kernel, [located('u-nearby', 'near-1')]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.equal(result?.refusedFields, undefined);
    const event = await storedEvent(profileId, 'near-1');
    const location = { ...event.data.context?.location as Record<string, unknown>, ...event.personal?.context?.location };
    assert.equal(location.latitude, 52.0116, JSON.stringify(event));
    assert.equal(location.longitude, 4.3571);
  });

  it('refuses precise location when the only explicit consent is to fairness_audit', async () => {
    const profileId = await personWith('u-fair-only', ['analytics.reporting', 'fairness_audit']);
    const [result] = await sendMessages(ctx.kernel, [located('u-fair-only', 'far-1')]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.deepEqual(result?.refusedFields?.sort(), ['context.location.latitude', 'context.location.longitude']);
    const event = await storedEvent(profileId, 'far-1');
    assert.ok(!JSON.stringify(event).includes('52.0116') && !JSON.stringify(event).includes('4.3571'), JSON.stringify(event));
  });
});
