import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { ingestPerson, person, sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('an erasure committed while messages are in flight', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');

  it('stores nothing for the erased person: the group checks the suppression list again inside its transaction', async () => {
    const kim = person(`inflight${dialect}`);
    await ingestPerson(ctx.kernel, kim, 2);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: kim.userId } });
    assert.ok(subject);
    // The request passes its suppression check and its consent gate; the erasure commits before its group is written
    // (here: while the group loads data keys, before its transaction), as another request's or another server's would.
    const { keyring } = ctx.kernel;
    const prepare = keyring.prepare.bind(keyring);
    let erased = false;
    keyring.prepare = async (ids) => {
      const made = await prepare(ids);
      if (!erased) {
        erased = true;
        await ctx.kernel.erasure.erase(subject, { requestId: `req-inflight-${dialect}` }, CLI_ACTOR);
      }
      return made;
    };
    try {
      const messages = [
        { type: 'track', messageId: 'inflight-1', userId: kim.userId, event: 'Product Viewed', properties: { product_id: kim.productId } },
        // A new device of theirs, linked to them only through the cache: nothing may point at the erased profile.
        { type: 'track', messageId: 'inflight-2', userId: kim.userId, anonymousId: 'anon-new-device-inflight', event: 'Product Viewed', properties: { product_id: kim.productId } },
      ];
      const results = await sendMessages(ctx.kernel, messages);
      assert.ok(erased, 'the erasure ran while the request was in flight');
      assert.deepEqual(results.map((r) => [r.status, r.code]), [
        ['suppressed', 'COLLECT_SUBJECT_SUPPRESSED'],
        ['suppressed', 'COLLECT_SUBJECT_SUPPRESSED'],
      ]);
    } finally {
      keyring.prepare = prepare;
    }
    const rows = await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from collect_events where profile_id in (${subject.profileIds.map((_, i) => p(i + 1)).join(', ')})`, subject.profileIds);
    assert.equal(Number(rows[0]?.n), 0, 'no event of the erased person');
    const links = await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from identity_identifiers where profile_id in (${subject.profileIds.map((_, i) => p(i + 1)).join(', ')})`, subject.profileIds);
    assert.equal(Number(links[0]?.n), 0, 'no identifier linked to the erased profile');
  });
});
