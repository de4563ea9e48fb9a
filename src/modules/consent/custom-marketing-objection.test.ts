import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('an objection to direct marketing covers custom data uses below marketing', (dialect) => {
  const ctx = useKernel(dialect);

  it('withdraws and blocks a custom purpose whose parent is marketing.advertising, not one under analytics', async () => {
    await ctx.kernel.taxonomy.addCustom('data-uses', { key: 'promo_targeting', name: 'Promotions', description: 'Promotions chosen for a person.', parentKey: 'marketing.advertising' }, CLI_ACTOR);
    await ctx.kernel.taxonomy.addCustom('data-uses', { key: 'store_footfall', name: 'Footfall', description: 'Counting store visits.', parentKey: 'analytics.reporting' }, CLI_ACTOR);
    const purpose = { basis: 'legitimate_interests' as const, saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: 'Custom.' };
    await ctx.kernel.consent.setPurpose({ ...purpose, key: 'promo_targeting' }, CLI_ACTOR);
    await ctx.kernel.consent.setPurpose({ ...purpose, key: 'store_footfall' }, CLI_ACTOR);
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-promo' }], source: 'web', at: new Date().toISOString() }]));
    const id = resolved?.profileId as string;
    await ctx.kernel.consent.load([id]);
    assert.equal(ctx.kernel.consent.decide(id, 'promo_targeting').reason, 'legitimate_interests');

    const result = await ctx.kernel.consent.objectToMarketing([id], {}, CLI_ACTOR);
    assert.ok(result.entries.some((e) => e.purpose === 'promo_targeting' && e.state === 'withdrawn'), JSON.stringify(result.entries.map((e) => e.purpose)));
    assert.ok(!result.entries.some((e) => e.purpose === 'store_footfall'));
    assert.equal(ctx.kernel.consent.decide(id, 'promo_targeting').reason, 'objected');
    // Absolute: a basis that needs no record of the person stays blocked while the objection stands.
    await ctx.kernel.consent.setPurpose({ ...purpose, key: 'promo_targeting', basis: 'contract' }, CLI_ACTOR);
    assert.equal(ctx.kernel.consent.decide(id, 'promo_targeting').reason, 'objected');
    assert.equal(ctx.kernel.consent.decide(id, 'store_footfall').reason, 'legitimate_interests');
  });
});
