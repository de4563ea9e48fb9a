import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_PLAN, type PlanDocument } from './index.ts';

/** The default plan with a health field serving `purposes`. */
function healthFor(purposes: string[]): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  plan.events['Check-up Booked'] = {
    purposes: ['analytics.reporting'],
    properties: { type: 'object', properties: { condition: { type: 'string', 'x-candor': { category: 'user.health_and_medical', purposes, retention: 'P6M', personal: true } } } },
  };
  return plan;
}

describeEachDialect('catalog: special categories never serve targeting, through custom data uses either', (dialect) => {
  const ctx = useKernel(dialect);

  it('refuses a health field serving a custom data use below marketing.advertising or personalize', async () => {
    await ctx.kernel.taxonomy.addCustom('data-uses', { key: 'promo_targeting', name: 'Promotions', description: 'Promotions chosen for a person.', parentKey: 'marketing.advertising' }, CLI_ACTOR);
    await ctx.kernel.taxonomy.addCustom('data-uses', { key: 'care_tips', name: 'Care tips', description: 'Tips chosen for a person.', parentKey: 'personalize.content' }, CLI_ACTOR);
    await ctx.kernel.taxonomy.addCustom('data-uses', { key: 'clinic_stats', name: 'Clinic statistics', description: 'Aggregate counts.', parentKey: 'analytics.reporting' }, CLI_ACTOR);
    const before = ctx.kernel.catalog.version();
    const { ok, problems } = await ctx.kernel.catalog.validatePlan(healthFor(['promo_targeting', 'care_tips', 'clinic_stats']));
    assert.equal(ok, false);
    const at = '/events/Check-up Booked/properties/properties/condition/x-candor/purposes';
    assert.deepEqual(problems, [
      { path: `${at}/0`, problem: 'a special-category field must not serve targeting or personalization (promo_targeting)' },
      { path: `${at}/1`, problem: 'a special-category field must not serve targeting or personalization (care_tips)' },
    ]);
    await assert.rejects(ctx.kernel.catalog.publish(healthFor(['promo_targeting']), CLI_ACTOR), (error) => isCandorError(error, 'CATALOG_PLAN_INVALID'));
    assert.equal(ctx.kernel.catalog.version(), before);
    assert.equal((await ctx.kernel.catalog.publish(healthFor(['clinic_stats']), CLI_ACTOR)).version, before + 1, 'an aggregate custom use stays possible');
  });
});
