// A category another process adds and a plan it then publishes with that category can reach a running process in
// either order within one refresh: what was derived from the taxonomy before the category was known (the plan compiled
// with it read as a special category, the notice look-ups that could not see its parent, the plan's warnings) is
// derived again once it is read.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { planWithEvent } from '../../../test/support/plans.ts';
import { openKernel } from '../../kernel.ts';
import { PlanWarningWatch } from '../../plan-warning-watch.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { refreshConfiguration } from './index.ts';

const TIER = 'user.behavior.purchase_history.loyalty_tier';
const EVENT = 'Tier Changed';

describeEachDialect('refreshConfiguration: custom taxonomy entries another process added', (dialect) => {
  it('compiles the plan in force again and forgets the notice look-ups made without them', { timeout: 60_000 }, async (t) => {
    const env = await createEnvironment(dialect);
    t.after(() => env.cleanup());
    const running = await openKernel(env.config);
    const other = await openKernel(env.config);
    t.after(async () => {
      await other.close();
      await running.close();
    });
    const watch = new PlanWarningWatch(running);
    assert.deepEqual((await watch.check()).warnings, []);
    // The running process reads the taxonomy before the other adds the category, and the plan after it publishes one
    // that declares a field of it (as one refresh does when both land between its two reads).
    await running.taxonomy.refreshIfChanged();
    await other.taxonomy.addCustom('data-categories', { key: TIER, name: 'Loyalty tier', description: 'The tier a customer has reached.', parentKey: 'user.behavior.purchase_history' }, CLI_ACTOR);
    const plan = planWithEvent(EVENT, ['analytics.reporting'], 'user.behavior.purchase_history');
    const properties = plan.events[EVENT]?.properties?.properties;
    assert.ok(properties);
    properties.tier = { type: 'string', 'x-candor': { category: TIER, purposes: ['analytics.reporting'], retention: 'P13M', personal: false } };
    assert.equal((await other.catalog.publish(plan, CLI_ACTOR)).version, 2);
    await until(async () => (await running.catalog.refreshIfChanged()) === 2);
    const tier = async () => (await running.catalog.outline()).find((s) => s.event === EVENT)?.fields.find((f) => f.path === 'properties.tier');
    // Unknown here: read as a special category (refused without explicit consent), and not under anything the notice lists.
    assert.equal((await tier())?.special, true);
    assert.equal(running.consent.describes('analytics.reporting', TIER), false);
    const stale = await watch.check();
    assert.deepEqual(stale.warnings.map((w) => w.path), ['properties.tier']);

    let refreshed = { planVersion: 0, taxonomyChanged: false };
    await until(async () => (refreshed = await refreshConfiguration(running)).taxonomyChanged);
    assert.deepEqual(refreshed, { planVersion: 2, taxonomyChanged: true });
    assert.equal((await tier())?.special, false);
    assert.equal(running.consent.describes('analytics.reporting', TIER), true);
    assert.deepEqual((await watch.check()).warnings, []);
    // Nothing new: the next refresh tells nothing.
    assert.deepEqual(await refreshConfiguration(running), { planVersion: 2, taxonomyChanged: false });
  });
});

/** Tries `done` until it holds (PostgreSQL's commit notice arrives a moment after the commit). */
async function until(done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await done())) {
    assert.ok(Date.now() < deadline, 'in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

