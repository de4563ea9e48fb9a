import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// A large group holding messages of people nobody knows yet is written in two transactions: resolution (the new
// people made) on this thread, then the events. On SQLite the events' transaction goes to the writer thread, as the
// usual group's does; a message stored meanwhile sends it back to this thread, which tells the duplicate apart.
describeEachDialect('a large group with new people: its events written by the writer thread', (dialect) => {
  const ctx = useKernel(dialect);
  const KNOWN = 70;

  const known = async (prefix: string) => {
    const { storage, identity, consent } = ctx.kernel;
    const items = Array.from({ length: KNOWN }, (_, i) => ({ identifiers: [{ type: 'user_id', value: `${prefix}-${i}` }], source: 'web', at: new Date().toISOString() }));
    const resolved = await storage.raw.transaction((tx) => identity.resolveBatch(tx, items));
    for (const r of resolved) await consent.record(r.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
  };
  const view = (userId: string, messageId: string) => ({ type: 'page', name: 'Home', userId, messageId, properties: { path: '/' } });
  const order = (anonymousId: string, messageId: string) => ({ type: 'track', event: 'Order Completed', anonymousId, messageId, properties: { order_id: messageId, total: 20, currency: 'EUR' } });
  /** Ingests one request, counting the deferred (writer thread) transactions it took. */
  const ingest = async (raws: Record<string, unknown>[]) => {
    const deferred = ctx.kernel.storage.deferred;
    let onWriter = 0;
    const original = deferred?.transaction.bind(deferred);
    if (deferred && original) {
      (deferred as { transaction: typeof original }).transaction = ((fn, dispatched) => {
        onWriter++;
        return original(fn, dispatched);
      }) as typeof original;
    }
    try {
      const results = await ctx.kernel.collect.ingest(raws.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      return { results, onWriter };
    } finally {
      if (deferred && original) (deferred as { transaction: typeof original }).transaction = original;
    }
  };

  it('stores every message, and the new people with them', async () => {
    await known('wst-a');
    const raws = [...Array.from({ length: KNOWN }, (_, i) => view(`wst-a-${i}`, `wst-a-v${i}`)), order('wst-a-stranger-1', 'wst-a-o1'), order('wst-a-stranger-2', 'wst-a-o2')];
    const { results, onWriter } = await ingest(raws);
    assert.deepEqual(results.map((r) => r.status), raws.map(() => 'stored'), JSON.stringify(results.filter((r) => r.status !== 'stored')));
    if (dialect === 'sqlite') assert.ok(onWriter >= 1, 'the events went through the writer thread');
    const [stranger] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'wst-a-stranger-1' }], source: 'web', at: '' }]);
    assert.ok(stranger, 'the new person was made');
    const events = await ctx.kernel.collect.events([stranger as string], { decrypt: true, limit: 10 });
    assert.deepEqual(events.map((e) => e.messageId), ['wst-a-o1']);
  });

  it('answers a message stored meanwhile duplicate and stores the rest once', async () => {
    await known('wst-b');
    const first = view('wst-b-0', 'wst-b-again');
    assert.equal((await ingest([first])).results[0]?.status, 'stored');
    const raws = [first, ...Array.from({ length: KNOWN - 1 }, (_, i) => view(`wst-b-${i + 1}`, `wst-b-v${i}`)), order('wst-b-stranger', 'wst-b-o1')];
    const { results } = await ingest(raws);
    assert.equal(results[0]?.status, 'duplicate');
    assert.deepEqual(results.slice(1).map((r) => r.status), raws.slice(1).map(() => 'stored'));
    const [p] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'wst-b-0' }], source: 'web', at: '' }]);
    assert.deepEqual((await ctx.kernel.collect.events([p as string], { decrypt: true, limit: 10 })).map((e) => e.messageId), ['wst-b-again'], 'stored once');
  });
});
