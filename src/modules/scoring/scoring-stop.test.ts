import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { buyerWithAnOrder } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('scoring: a run given a stop signal', (dialect) => {
  const ctx = useKernel(dialect);

  it('ends between its reads with nothing written when stopped, and completes when stopped once it saves', async () => {
    const { profileId } = await buyerWithAnOrder(ctx.kernel);
    const runs = () => ctx.kernel.audit.list({ action: 'scoring.run', limit: 1000 });

    // Stopped once it knows who may be profiled, before it reads their orders.
    const stop = new AbortController();
    const stages: string[] = [];
    await assert.rejects(
      ctx.kernel.scoring.run(CLI_ACTOR, {
        models: ['rfm'],
        signal: stop.signal,
        onProgress: (_done, _total, stage) => {
          stages.push(stage);
          stop.abort();
        },
      }),
      (error) => error === stop.signal.reason,
    );
    assert.deepEqual(stages, ['reading orders'], 'it went no further than the first read after the stop');
    assert.deepEqual(await ctx.kernel.scoring.models(), [], 'no model saved');
    assert.equal((await ctx.kernel.scoring.memberships()).size, 0, 'no score saved');
    assert.deepEqual(await runs(), [], 'no run audited');

    // Stopped as it begins to save: the save is one unit and goes through.
    const late = new AbortController();
    const run = await ctx.kernel.scoring.run(CLI_ACTOR, { models: ['rfm'], signal: late.signal, onProgress: (_done, _total, stage) => stage === 'saving' && late.abort() });
    assert.equal(late.signal.aborted, true);
    assert.equal(run.models.find((m) => m.kind === 'rfm')?.id, 'rfm-1');
    assert.ok((await ctx.kernel.scoring.memberships()).has(profileId));
    assert.equal((await runs()).length, 1);
  });
});
