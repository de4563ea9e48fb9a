import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { planWithEvent } from '../../test/support/plans.ts';
import { start, stop, type Running } from '../../test/support/serve-process.ts';
import { openKernel } from '../kernel.ts';
import type { PlanDocument } from '../modules/catalog/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { main } from './main.ts';

const WARNED = 'the consent gate cannot keep for all of their purposes';
const SHARED = 'Shared With Partner';
/** The event declares no category: read as user.behavior, which notice 1 describes for third_party_sharing only as purchase history. */
const bare = () => planWithEvent(SHARED, ['third_party_sharing']);

async function publish(env: TestEnvironment, plan: PlanDocument): Promise<number> {
  const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
  try {
    return (await kernel.catalog.publish(plan, CLI_ACTOR)).version;
  } finally {
    await kernel.close();
  }
}

/** The server's log lines that warn about the plan in force. */
function warnings(running: Running): Record<string, unknown>[] {
  return running
    .stdout()
    .split('\n')
    .filter((line) => line.startsWith('{') && line.includes(WARNED))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function eventually(what: string, done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describeEachDialect('candor serve: the warnings of the plan in force', (dialect) => {
  it('says at start that the plan in force has events the gate cannot keep, logs a change another process makes once, and the listed command lists them', { timeout: 90_000 }, async (t) => {
    const env = await createEnvironment(dialect);
    t.after(() => env.cleanup());
    assert.equal(await publish(env, bare()), 2);

    const running = await start(env);
    try {
      const line = 'plan warnings: 1 event of plan version 2 not kept for all of their purposes under notice version 1; list them: candor plan warnings';
      // The log is written apart from the summary: it may come a moment after.
      await eventually('the start summary and the log', () => running.stdout().includes(line) && warnings(running).length > 0);
      assert.equal(warnings(running).length, 1, running.stdout());
      assert.deepEqual([warnings(running)[0]?.planVersion, warnings(running)[0]?.events], [2, 1]);

      // Published elsewhere: a plan without the problem (nothing logged), then one with it again (logged once).
      assert.equal(await publish(env, planWithEvent(SHARED, ['third_party_sharing'], 'user.behavior.purchase_history')), 3);
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(warnings(running).length, 1, running.stdout());
      assert.equal(await publish(env, bare()), 4);
      await eventually('the warning of version 4', () => warnings(running).some((w) => w.planVersion === 4));
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(warnings(running).length, 2, running.stdout());
    } finally {
      assert.equal(await stop(running), 0);
    }

    // The command the summary names lists them.
    const candor = async (...args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), ...args], (l) => out.push(l), (l) => err.push(l));
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    const listed = await candor('plan', 'warnings');
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /^tracking plan version 4, notice version 1: 0 fields and 1 event with warnings$/m);
    assert.match(listed.out, /^warning: track "Shared With Partner": occurrence never kept for the event's purposes: .*third_party_sharing.* read as user\.behavior\)$/m);
  });
});
