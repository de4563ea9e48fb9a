import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { loadShop, type Send } from '../../demo/load.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { compareText, type Storage } from '../../storage/index.ts';

const DAY_MS = 86_400_000;

/**
 * Writes every stored event again in another physical order (shuffled by the random tail of its id), as a copy from
 * another database, a restore or a table rewrite (VACUUM FULL, `candor compact`) may leave them.
 */
async function rewriteInAnotherOrder(storage: Storage): Promise<void> {
  await storage.raw.transaction(async (tx) => {
    await tx.run('CREATE TABLE reorder_copy AS SELECT * FROM collect_events');
    await tx.run('DELETE FROM collect_events');
    // The insert trigger skips an event whose message id it kept: the same events come back, so they are kept again.
    await tx.run('DELETE FROM collect_recent_ids');
    await tx.run('INSERT INTO collect_events SELECT * FROM reorder_copy ORDER BY substr(id, length(id) - 7)');
    await tx.run('DROP TABLE reorder_copy');
  });
}

describeEachDialect('scoring: the same stored rows give the same models and scores whatever their physical order', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  // A fixed time of day for the shop's history and the runs (as scoring.test.ts), so both runs see the same windows.
  const now = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS / 2);

  before(async () => {
    server = await buildServer(ctx.kernel);
    const key = await ctx.kernel.access.createWriteKey('demo', null, CLI_ACTOR);
    const authorization = `Basic ${Buffer.from(`${key.secret}:`).toString('base64')}`;
    const send: Send = async (url, body, headers = {}) => {
      const response = await server.app.inject({ method: 'POST', url, headers: { authorization, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
      return { statusCode: response.statusCode, body: response.body };
    };
    await loadShop(send, { customers: 300, seed: 1 }, { now });
  });
  after(async () => {
    await server.app.close();
  });

  const snapshot = async () => {
    const models = Object.fromEntries((await ctx.kernel.scoring.models()).map((m) => [m.kind, { params: m.params, details: m.details, customers: m.customers }]));
    const scores = Object.fromEntries([...(await ctx.kernel.scoring.memberships())].sort(([a], [b]) => compareText(a, b)));
    return { models, scores };
  };

  it('reads a purpose-bound chunk of orders and activity by profile, time and id (code point), not in storage order', async () => {
    await rewriteInAnotherOrder(ctx.kernel.storage);
    const ids: string[] = [];
    for await (const chunk of ctx.kernel.identity.groups()) ids.push(...chunk.map((p) => p.profileId));
    const byProfileAndTime = (a: { profileId: string; occurredAt: string }, b: { profileId: string; occurredAt: string }) => compareText(a.profileId, b.profileId) || compareText(a.occurredAt, b.occurredAt);
    const orders = await ctx.kernel.collect.ordersFor(ids, 'personalize.profiling');
    assert.ok(orders.length > 300, `orders read (${orders.length})`);
    assert.deepEqual(orders, [...orders].sort(byProfileAndTime));
    const activity = await ctx.kernel.collect.activityFor(ids, 'personalize.profiling');
    assert.ok(activity.length > 300, `activity read (${activity.length})`);
    assert.deepEqual(activity, [...activity].sort(byProfileAndTime));
  });

  it('fits the same personas, lifetime and lead models and gives everyone the same scores after the events are rewritten in another order', async () => {
    const first = await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.ok(first.models.some((m) => m.kind === 'personas' && !m.skipped), JSON.stringify(first.models));
    const before = await snapshot();
    await rewriteInAnotherOrder(ctx.kernel.storage);
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    const after = await snapshot();
    assert.deepEqual(after.models.personas, before.models.personas);
    assert.deepEqual(after, before);
  });
});
