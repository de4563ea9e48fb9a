// A person's trait history ends with the value their profile shows, also when a message re-sends a value and a later
// message of the same batch merges its profile into another person (the re-send is compared with the person the
// merge leaves, not with the profile it was resolved to).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';

describeEachDialect('trait history: a message whose person a later message of the batch merges away', (dialect) => {
  const ctx = useKernel(dialect);
  const { send } = useIngestServer(ctx);
  const statuses = async (url: string, payload: unknown) => {
    const response = await send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: { status: string }[] }).results.map((r) => r.status);
  };
  const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
  const at = (hoursAgo: number) => new Date(Date.now() - hoursAgo * 3600_000).toISOString();

  for (const together of [false, true]) {
    it(`history ends with the value the view shows (re-send ${together ? 'in one batch with the merge' : 'alone, before the merge'})`, async () => {
      const a1 = uniqueId('anon-p');
      const a2 = uniqueId('anon-m');
      const user = uniqueId('user');
      const email = `${uniqueId('p')}@shop-customer.net`;
      for (const ids of [{ anonymousId: a1 }, { anonymousId: a2 }, { userId: user }]) {
        assert.equal((await send('/v1/consent', { ...ids, mechanism: 'banner_save', purposes })).statusCode, 200);
      }
      assert.deepEqual(await statuses('/v1/identify', { anonymousId: a1, messageId: `${a1}-c`, timestamp: at(10), traits: { country: 'Ann' } }), ['stored']);
      assert.deepEqual(await statuses('/v1/identify', { anonymousId: a2, messageId: `${a2}-c`, timestamp: at(9), traits: { country: 'Bob' } }), ['stored']);
      assert.deepEqual(await statuses('/v1/identify', { anonymousId: a1, messageId: `${a1}-e`, timestamp: at(8), traits: { email } }), ['stored']);
      assert.deepEqual(await statuses('/v1/identify', { anonymousId: a2, messageId: `${a2}-e`, timestamp: at(8), traits: { email } }), ['stored']);
      const resend = { type: 'identify', anonymousId: a1, messageId: `${a1}-again`, timestamp: at(5), traits: { country: 'Ann' } };
      const link = { type: 'identify', userId: user, anonymousId: a1, messageId: `${user}-link`, timestamp: at(4) };
      if (together) assert.deepEqual(await statuses('/v1/batch', { batch: [resend, link] }), ['stored', 'stored']);
      else {
        assert.deepEqual(await statuses('/v1/batch', { batch: [resend] }), ['stored']);
        assert.deepEqual(await statuses('/v1/batch', { batch: [link] }), ['stored']);
      }
      const [q] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: user }], source: 'web', at: at(0) }]);
      const members = await ctx.kernel.identity.members(q as string);
      const view = await ctx.kernel.profiles.get(members, { decrypt: true });
      const history = await ctx.kernel.profiles.traitHistory(members, 'country', { decrypt: true });
      // P's `Ann` (10 h ago) then M's `Bob` (9 h ago) were the person's; P re-sends `Ann` 5 h ago: a change back.
      assert.equal(members.length, 3);
      assert.equal(view.traits.find((t) => t.key === 'country')?.value, 'Ann');
      assert.deepEqual(history.slice(0, 2).map((h) => [h.value, h.previousValue]), [['Ann', 'Bob'], ['Bob', 'Ann']]);
    });
  }
});
