import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// PostgreSQL ends one of two transactions that wait for each other (two servers on one database writing the same
// people) with deadlock_detected; the group is written again instead of answering the request with an error.
describeEachDialect('a group whose transaction is ended as a deadlock victim', (dialect) => {
  const ctx = useKernel(dialect);
  const { result, consent } = useIngestServer(ctx);

  it('is written again, and its events are stored once', async () => {
    await consent('tr-u1', { 'analytics.reporting': 'given' });
    const raw = ctx.kernel.storage.raw;
    const original = raw.transaction.bind(raw);
    let failures = 0;
    raw.transaction = async (fn) =>
      original(async (tx) => {
        const out = await fn(tx);
        if (failures < 2) {
          failures++;
          throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
        }
        return out;
      });
    try {
      const stored = await result('/v1/track', { userId: 'tr-u1', messageId: 'tr-m1', event: 'Product Viewed', properties: { product_id: 'p1' } });
      assert.equal(stored?.status, 'stored', JSON.stringify(stored));
      assert.equal(failures, 2);
    } finally {
      raw.transaction = original;
    }
    const events = await ctx.kernel.collect.events([(await ctx.kernel.identity.lookupBatch(raw, [{ identifiers: [{ type: 'user_id', value: 'tr-u1' }], source: 'web', at: new Date().toISOString() }]))[0] as string], { decrypt: true, limit: 10 });
    assert.equal(events.filter((e) => e.messageId === 'tr-m1').length, 1);
  });

  it('is not written again for an error that is no transient one', async () => {
    await consent('tr-u2', { 'analytics.reporting': 'given' });
    const raw = ctx.kernel.storage.raw;
    const original = raw.transaction.bind(raw);
    let calls = 0;
    raw.transaction = async () => {
      calls++;
      throw Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR' });
    };
    try {
      const response = await result('/v1/track', { userId: 'tr-u2', messageId: 'tr-m2', event: 'Product Viewed', properties: { product_id: 'p1' } });
      assert.notEqual(response?.status, 'stored');
    } catch {
      // answered as an error: fine
    } finally {
      raw.transaction = original;
    }
    assert.equal(calls, 1);
  });
});
