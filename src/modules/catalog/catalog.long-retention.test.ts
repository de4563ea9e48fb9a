import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_PLAN, planHash, type FieldSchema, type PlanDocument } from './index.ts';

/** The default plan with `context.locale` and the `email` trait kept for `retention`. */
function keptFor(retention: string): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  const annotate = (field: FieldSchema | undefined) => {
    const note = field?.['x-candor'];
    if (note) note.retention = retention;
  };
  annotate(plan.context?.properties?.locale);
  annotate(plan.traits?.properties?.email);
  return plan;
}

describeEachDialect('catalog: retention periods the sweeper can count', (dialect) => {
  const ctx = useKernel(dialect);

  it('refuses a retention longer than 100 years with a problem at its path, and accepts 100 years', async () => {
    const { ok, problems } = await ctx.kernel.catalog.validatePlan(keptFor('P300000Y'));
    assert.equal(ok, false);
    assert.deepEqual(problems, [
      { path: '/traits/properties/email/x-candor/retention', problem: 'must be at most P100Y (100 years)' },
      { path: '/context/properties/locale/x-candor/retention', problem: 'must be at most P100Y (100 years)' },
    ]);
    assert.equal((await ctx.kernel.catalog.validatePlan(keptFor('P101Y'))).ok, false);
    assert.equal((await ctx.kernel.catalog.validatePlan(keptFor('P36525D'))).ok, false, 'a day more than 100 years');
    assert.equal((await ctx.kernel.catalog.validatePlan(keptFor('P100Y'))).ok, true);
    assert.equal((await ctx.kernel.catalog.validatePlan(keptFor('P1200M'))).ok, true);
    await assert.rejects(ctx.kernel.catalog.publish(keptFor('P300000Y'), CLI_ACTOR), (error) => isCandorError(error, 'CATALOG_PLAN_INVALID'));
    assert.equal(ctx.kernel.catalog.version(), 1);
  });

  it('sweeps with a stored version whose retention lies beyond the calendar (stored before the limit)', async () => {
    const plan = keptFor('P300000Y');
    const row = { version: 2, name: plan.name, hash: planHash(plan), plan: JSON.stringify(plan), published_at: new Date().toISOString(), published_by: 'cli' };
    await ctx.kernel.storage.db.withTables<{ catalog_plans: typeof row }>().insertInto('catalog_plans').values(row).execute();
    assert.equal(await ctx.kernel.catalog.refresh(), 2, 'a stored version loads although publishing it now would be refused');
    const results = await ctx.kernel.collect.ingest(
      [{ type: 'identify', userId: 'u-long', traits: { email: 'long@example.org' }, context: { locale: 'de-DE' } }].map((raw) => ({ raw, bytes: JSON.stringify(raw).length })),
      undefined,
      { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR },
    );
    assert.equal(results.length, 1);

    const dry = await ctx.kernel.retention.sweep({ dryRun: true });
    assert.equal(dry.total, 0);
    const real = await ctx.kernel.retention.sweep({ now: new Date(Date.now() + 200 * 365 * 86_400_000) });
    assert.ok(real.counts.length > 0, 'every rule ran');
    assert.ok((await ctx.kernel.retention.policies()).some((r) => r.period === 'P300000Y'), 'the trait rule is listed with its period');
  });
});
