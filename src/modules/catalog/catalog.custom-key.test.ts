// A custom data category whose key sits under a special category or precise location is one, whatever its parent:
// Taxonomy.addCustom refuses a parent elsewhere, and an entry stored before that is read the stricter way, so a plan
// cannot declare it ordinary data (kept in clear, for targeting, without explicit consent).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { storeLegacyCategory } from '../../../test/support/legacy-taxonomy.ts';
import { sendMessages, uniqueId } from '../../../test/support/subjects.ts';
import { planWarningOptions } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_PLAN, planHash, type PlanDocument } from './index.ts';

const GENOME = 'user.health_and_medical.genome';
const HOME = 'user.location.precise.home';

/** The default plan with Product Viewed carrying `field` of `category`, declared not personal, for profiling. */
function planWith(field: string, category: string): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  const viewed = plan.events['Product Viewed'];
  assert.ok(viewed);
  (viewed.properties.properties as Record<string, unknown>)[field] = {
    type: 'string',
    'x-candor': { category, purposes: ['analytics.reporting', 'personalize.profiling'], retention: 'P1Y', personal: false },
  };
  return plan;
}

describeEachDialect('catalog: a custom category keyed under a special category or precise location', (dialect) => {
  const ctx = useKernel(dialect);

  it('is refused a parent elsewhere; without one, its key names it', async () => {
    const { taxonomy } = ctx.kernel;
    const add = (kind: string, key: string, parentKey: string | null | undefined) => taxonomy.addCustom(kind, { key, name: key, description: 'A custom entry.', parentKey }, CLI_ACTOR);
    for (const [kind, key, parentKey] of [
      ['data-categories', GENOME, 'user.behavior'],
      ['data-categories', HOME, 'user.location.imprecise'],
      ['data-categories', 'system.crm_notes', 'user.contact'],
      ['data-uses', 'marketing.advertising.lookalike', 'analytics.reporting'],
    ] as const) {
      await assert.rejects(add(kind, key, parentKey), (error) => isCandorError(error, 'TAXONOMY_PARENT_MISMATCH') && (error.details as { under: string }).under === key.slice(0, key.lastIndexOf('.')), key);
      assert.equal(kind === 'data-uses' ? taxonomy.dataUse(key) : taxonomy.dataCategory(key), undefined, `${key} not added`);
    }
    assert.deepEqual(await add('data-categories', GENOME, null), { key: GENOME, name: GENOME, description: 'A custom entry.', custom: true, parentKey: 'user.health_and_medical', specialCategory: 'health', protectedAttribute: true, sensitivePersonalInformation: true });
    assert.equal((await add('data-categories', HOME, undefined) as { parentKey: string }).parentKey, 'user.location.precise');
    // A parent below the entry its key names is one of it.
    assert.equal((await add('data-categories', 'user.behavior.gold_tier', 'user.behavior.purchase_history') as { parentKey: string }).parentKey, 'user.behavior.purchase_history');
    assert.equal((await add('data-categories', 'acme_genome', 'user.health_and_medical') as { specialCategory: string }).specialCategory, 'health', 'a key under no entry takes its parent');

    const { ok, problems } = await ctx.kernel.catalog.validatePlan(planWith('genome', GENOME));
    assert.equal(ok, false);
    assert.deepEqual(problems.map((p) => p.path.split('/x-candor/')[1]).sort(), ['personal', 'purposes/1']);
  });

  it('stored with a parent elsewhere (before that was refused), is read as the stricter of its parent and its key', async () => {
    const { kernel } = ctx;
    const [dna, work] = ['user.health_and_medical.dna', 'user.location.precise.work'];
    await storeLegacyCategory(kernel, ctx.env, dna, 'user.behavior');
    await storeLegacyCategory(kernel, ctx.env, work, null);
    assert.equal(kernel.taxonomy.dataCategory(dna)?.specialCategory, null, 'stored as ordinary data');

    // Publishing: a special category and precise location must be personal, and the special one serves no targeting.
    for (const [field, category, expected] of [
      ['genome', dna, ['personal', 'purposes/1']],
      ['home', work, ['personal']],
    ] as const) {
      const { ok, problems } = await kernel.catalog.validatePlan(planWith(field, category), planWarningOptions(kernel));
      assert.equal(ok, false, category);
      assert.deepEqual(problems.map((p) => p.path.split('/x-candor/')[1]).sort(), expected, category);
    }

    // A stored version declaring them so: loaded with them personal, special and precise (explicit consent only).
    const plan = planWith('genome', dna);
    (plan.events['Product Viewed']?.properties.properties as Record<string, unknown>).home = (planWith('home', work).events['Product Viewed']?.properties.properties as Record<string, unknown>).home;
    const version = (await kernel.catalog.plan()).version + 1;
    const row = { version, name: plan.name, hash: planHash(plan), plan: JSON.stringify(plan), published_at: new Date().toISOString(), published_by: 'cli' };
    await kernel.storage.db.withTables<{ catalog_plans: typeof row }>().insertInto('catalog_plans').values(row).execute();
    assert.equal(await kernel.catalog.refresh(), version);
    const fields = (await kernel.catalog.outline()).find((s) => s.event === 'Product Viewed')?.fields ?? [];
    assert.deepEqual(
      fields.filter((f) => f.path === 'properties.genome' || f.path === 'properties.home').map((f) => [f.path, f.personal, f.special, f.preciseLocation, f.protectedAttribute]),
      [
        ['properties.genome', true, true, false, true],
        ['properties.home', true, false, true, true],
      ],
    );

    const userId = uniqueId('legacy-key');
    const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = resolved?.profileId as string;
    await kernel.consent.record(profileId, [{ purpose: 'personalize.profiling', state: 'given' }, { purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const [result] = await sendMessages(kernel, [{ type: 'track', userId, messageId: uniqueId('m'), event: 'Product Viewed', properties: { product_id: 'p1', genome: 'BRCA1+', home: '52.37,4.89' } }]);
    assert.equal(result?.status, 'stored');
    assert.deepEqual(result?.refusedFields, ['properties.genome', 'properties.home'], 'no explicit consent for either');
    const [event] = await kernel.collect.events([profileId], { decrypt: false, limit: 1 });
    assert.deepEqual(event?.data, { properties: { product_id: 'p1' } });
    await kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
  });
});
