import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { ItemResult } from './index.ts';

// A message with the GPC signal is written the two-transaction way when its signal has something to record (the
// opt-out recorded between resolution and storage). Once the person's opt-outs are in force and every identifier of the
// message is theirs, there is nothing to record: it is stored with the usual group, in one transaction.
describeEachDialect('GPC messages of a person whose opt-outs are in force go with the usual group', (dialect) => {
  const ctx = useKernel(dialect);
  const purposes = ['analytics.reporting', 'personalize.profiling', 'marketing.advertising.third_party.targeted'];

  const person = async (userId: string, anonymousId: string) => {
    const { storage, identity, consent } = ctx.kernel;
    const ids = [{ type: 'user_id', value: userId }, { type: 'anonymous_id', value: anonymousId }];
    const [r] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [{ identifiers: ids, source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await consent.record(profileId, purposes.map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    return profileId;
  };
  /** Ingests one message with the signal, counting the write transactions it took. */
  const send = async (fields: Record<string, unknown>): Promise<{ result: ItemResult | undefined; transactions: number }> => {
    const raw = { type: 'track', event: 'Product Viewed', properties: { product_id: 'p1' }, context: { gpc: true }, ...fields };
    const storage = ctx.kernel.storage.raw;
    const original = storage.transaction.bind(storage);
    let transactions = 0;
    (storage as { transaction: typeof storage.transaction }).transaction = ((fn: Parameters<typeof storage.transaction>[0]) => {
      transactions++;
      return original(fn);
    }) as typeof storage.transaction;
    try {
      const [result] = await ctx.kernel.collect.ingest([{ raw, bytes: JSON.stringify(raw).length }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      return { result, transactions };
    } finally {
      (storage as { transaction: typeof storage.transaction }).transaction = original;
    }
  };
  const gpcEntries = async (profileId: string) => (await ctx.kernel.consent.history(profileId)).filter((e) => e.mechanism === 'gpc').length;

  it('records the opt-out with the first message, then stores the next ones in one transaction, recording nothing', async () => {
    const p = await person('gug-1', 'gug-1-device');
    const first = await send({ userId: 'gug-1', anonymousId: 'gug-1-device', messageId: 'gug-1-m1' });
    assert.equal(first.result?.status, 'stored', JSON.stringify(first.result));
    assert.equal(first.result?.gpcHonoured, true);
    const recorded = await gpcEntries(p);
    assert.ok(recorded > 0);
    const next = await send({ userId: 'gug-1', anonymousId: 'gug-1-device', messageId: 'gug-1-m2' });
    assert.equal(next.result?.status, 'stored', JSON.stringify(next.result));
    assert.equal(next.result?.gpcHonoured, true);
    assert.ok(!(next.result?.purposes ?? []).includes('marketing.advertising.third_party.targeted'), JSON.stringify(next.result));
    assert.equal(next.transactions, 1, 'stored with the usual group, in one transaction');
    assert.equal(await gpcEntries(p), recorded, 'nothing recorded again');
  });

  it("still records the signal for another person whose device the message names (a shared device)", async () => {
    const p = await person('gug-2', 'gug-2-device');
    const q = await person('gug-3', 'gug-3-device');
    assert.equal((await send({ userId: 'gug-2', anonymousId: 'gug-2-device', messageId: 'gug-2-m1' })).result?.status, 'stored');
    assert.equal(await gpcEntries(q), 0);
    // Person 2's user id on person 3's device: the device stays person 3's (one user id per profile), and the signal
    // covers everyone on it.
    const shared = await send({ userId: 'gug-2', anonymousId: 'gug-3-device', messageId: 'gug-2-m2' });
    assert.equal(shared.result?.status, 'stored', JSON.stringify(shared.result));
    assert.ok(shared.transactions > 1, 'the two-transaction way, with the signal recorded between');
    assert.ok((await gpcEntries(q)) > 0, 'recorded for the device’s other person');
    assert.notEqual(p, q);
  });
});
