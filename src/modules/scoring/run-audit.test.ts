import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { buyerWithAnOrder } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('scoring: a run is audited in the transaction that saves it', (dialect) => {
  const ctx = useKernel(dialect);

  it('saves no scores or models of a run whose audit entry cannot be written; a saved run has one entry', async () => {
    const { profileId } = await buyerWithAnOrder(ctx.kernel);
    const runs = () => ctx.kernel.audit.list({ action: 'scoring.run', limit: 1000 });

    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] }));
    assert.deepEqual(await ctx.kernel.scoring.models(), [], 'no model saved');
    assert.equal((await ctx.kernel.scoring.memberships()).size, 0, 'no score saved');
    assert.deepEqual(await runs(), []);

    const run = await ctx.kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
    assert.equal(run.profiled, 1);
    const rfm = run.models.find((m) => m.kind === 'rfm');
    assert.equal(rfm?.id, 'rfm-1');
    assert.ok((await ctx.kernel.scoring.memberships()).has(profileId));
    const [entry, ...more] = await runs();
    assert.equal(more.length, 0);
    assert.equal(entry?.resource, run.runId);
    assert.equal(entry?.purpose, 'personalize.profiling');
    assert.deepEqual(JSON.parse(entry?.details ?? 'null').models, ['rfm-1']);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });
});
