import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type PlanDocument } from './index.ts';

/** The default plan with a trait `tier` kept `retention` (none: without it) and, with `promo`, the event `Promo Viewed`. */
function plan(retention: string | undefined, promo = false): PlanDocument {
  const doc = structuredClone(DEFAULT_PLAN) as unknown as { traits: { properties: Record<string, unknown> }; events: Record<string, unknown> };
  const note = (period: string) => ({ category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], retention: period, personal: false });
  if (retention !== undefined) doc.traits.properties.tier = { type: 'string', 'x-candor': note(retention) };
  if (promo) doc.events['Promo Viewed'] = { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { slot: { type: 'string', 'x-candor': note('P30D') } } } };
  return doc as unknown as PlanDocument;
}

describeEachDialect('catalog: declarations of fields the plan in force no longer declares', (dialect) => {
  const ctx = useKernel(dialect);

  it('answers each with the latest stored version that declared it, and none the plan in force declares again', async () => {
    const catalog = ctx.kernel.catalog;
    await catalog.publish(plan('P30D', true), CLI_ACTOR);
    const longer = await catalog.publish(plan('P90D', true), CLI_ACTOR);
    const removed = await catalog.publish(plan(undefined), CLI_ACTOR);
    const now = await catalog.declarations();
    assert.equal(now.version, removed.version);
    assert.deepEqual(now.unreadable, []);
    assert.ok(!now.inForce.some((s) => s.fields.some((f) => f.path === 'traits.tier')));
    const traits = now.retired.find((s) => s.section === 'identify')?.fields ?? [];
    assert.deepEqual(traits.map((f) => [f.path, f.retention, f.version]), [['traits.tier', 'P90D', longer.version]]);
    const promo = now.retired.find((s) => s.section === 'track' && s.event === 'Promo Viewed');
    assert.deepEqual(promo?.fields.map((f) => [f.path, f.retention, f.version]), [['properties.slot', 'P30D', longer.version]]);

    await catalog.publish(plan('P7D'), CLI_ACTOR);
    const again = await catalog.declarations();
    assert.equal(again.retired.find((s) => s.section === 'identify'), undefined, 'declared again: in force, not retired');
    assert.equal(again.inForce.find((s) => s.section === 'identify')?.fields.find((f) => f.path === 'traits.tier')?.retention, 'P7D');
    assert.ok(again.retired.some((s) => s.event === 'Promo Viewed'));
  });
});
