import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter, type CsvImportOptions } from './index.ts';

/** The default plan with a health trait (a special category) serving reporting and the explicit purpose fairness_audit. */
function planWithHealthTrait(): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  const traits = plan.traits as { properties: Record<string, unknown> };
  traits.properties.health_note = {
    type: 'string',
    maxLength: 200,
    'x-candor': { category: 'user.health_and_medical', purposes: ['analytics.reporting', 'fairness_audit'], retention: 'P6M', personal: true },
  };
  return plan;
}

describeEachDialect('CSV import: the dry run predicts the explicit-consent rule as the import applies it', (dialect) => {
  const ctx = useKernel(dialect);

  before(async () => {
    await ctx.kernel.catalog.publish(planWithHealthTrait(), CLI_ACTOR);
  });

  async function run(text: string, options: Partial<CsvImportOptions>) {
    const summary = await new CsvImporter(ctx.kernel).run(Readable.from([text]), { kind: 'customers', basis: 'consent', source: 'crm', actor: CLI_ACTOR, ...options });
    return { stored: summary.stored, refused: summary.refused, refusedFields: summary.refusedFields };
  }

  it('predicts a special-category trait left out when none of the purposes claimed is its explicit one', async () => {
    const text = ['user_id,city,health_note', 'h1,Delft,asthma', 'h2,Leiden,none'].join('\n');
    const options = { purposes: ['analytics.reporting'] };
    const dry = await run(text, { ...options, dryRun: true });
    const real = await run(text, options);
    assert.deepEqual(real, { stored: 2, refused: 0, refusedFields: [{ path: 'traits.health_note', rows: 2 }] });
    assert.deepEqual(dry, real);
  });

  it('predicts it kept when the import records consent to its explicit purpose', async () => {
    const text = ['user_id,city,health_note', 'h3,Delft,asthma'].join('\n');
    const options = { purposes: ['analytics.reporting', 'fairness_audit'] };
    const dry = await run(text, { ...options, dryRun: true });
    const real = await run(text, options);
    assert.deepEqual(real, { stored: 1, refused: 0, refusedFields: [] });
    assert.deepEqual(dry, real);
  });

  it('predicts it left out on a basis that records no consent', async () => {
    const text = ['user_id,email,health_note', 'h4,h4@candor-shop.dev,asthma'].join('\n');
    const dry = await run(text, { basis: 'contract', dryRun: true });
    const real = await run(text, { basis: 'contract' });
    assert.equal(real.stored, 1);
    assert.ok(real.refusedFields.some((f) => f.path === 'traits.health_note'), JSON.stringify(real));
    assert.deepEqual(dry, real);
  });
});
