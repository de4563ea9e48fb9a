import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// A message gated before a withdrawal and written after it (its group commit still waiting) is gated again inside
// the group's transaction: nothing is stored for a purpose once the withdrawal has been answered.
describeEachDialect('a withdrawal answered while a message is in flight', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, consent, profileOf } = useIngestServer(ctx);

  it('stops the message from being stored for the withdrawn purposes', async () => {
    await consent('wi-u1', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const raw = ctx.kernel.storage.raw;
    const original = raw.transaction.bind(raw);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held!: () => void;
    const holding = new Promise<void>((resolve) => (held = resolve));
    let first = true;
    raw.transaction = async (fn) => {
      if (first) {
        // The group's first transaction waits until the withdrawal has been answered.
        first = false;
        held();
        await released;
      }
      return original(fn);
    };
    try {
      const tracked = send('/v1/track', { userId: 'wi-u1', messageId: 'wi-m1', event: 'Product Viewed', properties: { product_id: 'p1' } });
      await holding;
      const withdrawn = await send('/v1/consent', { mechanism: 'privacy_center', userId: 'wi-u1', withdrawAll: true });
      assert.equal(withdrawn.statusCode, 200, withdrawn.body);
      release();
      const response = await tracked;
      const result = (response.json() as { results: { status: string; code?: string }[] }).results[0];
      assert.deepEqual([result?.status, result?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS'], response.body);
    } finally {
      raw.transaction = original;
    }
    const events = await ctx.kernel.collect.events([(await profileOf('user_id', 'wi-u1')) as string], { decrypt: false, limit: 10 });
    assert.deepEqual(events.filter((e) => e.messageId === 'wi-m1'), []);
  });
});
