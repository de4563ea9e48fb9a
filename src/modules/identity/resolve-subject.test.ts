import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { intercepted } from '../../../test/support/intercept.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { isCandorError } from '../../shared/errors.ts';

const PROFILE_INSERT = /insert into "?identity_profiles"?/i;
const visitor = (anonymousId: string) => ({ identifiers: [{ type: 'anonymous_id', value: anonymousId }], source: 'web', at: new Date().toISOString() });

// The people that requests name one each (a consent choice, a privacy-center sign-in) are resolved in transactions
// that requests of the same moment share: one commit for every new visitor of that moment instead of one each.
describeEachDialect('people named by requests at the same moment', (dialect) => {
  const ctx = useKernel(dialect);

  it('are resolved in shared transactions: each new visitor gets a profile, the same visitor twice gets one', async () => {
    const { identity } = ctx.kernel;
    const ids = Array.from({ length: 10 }, () => `anon-${randomUUID()}`);
    const twice = ids[3] as string;
    const transactions: string[][] = [];
    const resolved = await intercepted(ctx.kernel, { transactions }, () => Promise.all([...ids, twice].map((id) => identity.resolveSubject(visitor(id)))));
    const creating = transactions.filter((statements) => statements.some((text) => PROFILE_INSERT.test(text)));
    assert.ok(creating.length < ids.length, `${creating.length} transactions for ${ids.length} new visitors`);
    const profiles = resolved.map((r) => r.profileId);
    assert.equal(new Set(profiles).size, ids.length);
    assert.equal(profiles[3], profiles[ids.length]);
    for (const [i, id] of ids.entries()) {
      const [known] = await identity.lookupBatch(ctx.kernel.storage.raw, [visitor(id)]);
      assert.equal(known, profiles[i]);
    }
  });

  it('a request whose person a later request of the same moment merges into another is answered the merged person', async () => {
    const { identity } = ctx.kernel;
    const device = `anon-${randomUUID()}`;
    const account = `user-${randomUUID()}`;
    const [alone] = await Promise.all([identity.resolveSubject(visitor(device)), identity.resolveSubject({ identifiers: [{ type: 'user_id', value: account }], source: 'web', at: new Date().toISOString() })]);
    // At once: the device alone (a consent change sent from it), and the device with the account (it merges them).
    const [fromDevice, merging] = await Promise.all([
      identity.resolveSubject(visitor(device)),
      identity.resolveSubject({ identifiers: [{ type: 'user_id', value: account }, { type: 'anonymous_id', value: device }], source: 'web', at: new Date().toISOString() }),
    ]);
    assert.equal(merging.merges.length, 1);
    assert.equal(await identity.canonical(alone?.profileId as string), merging.profileId);
    // The device's change must land on the person the device now belongs to, not on the profile merged away.
    assert.equal(fromDevice.profileId, merging.profileId);
    assert.equal(fromDevice.holder, alone?.profileId);
    await identity.notifyMerges(merging.merges);
  });

  it('an erased visitor among them is refused; the others are resolved', async () => {
    const { identity } = ctx.kernel;
    const ids = Array.from({ length: 6 }, () => `anon-${randomUUID()}`);
    const erased = ids[2] as string;
    await identity.suppress([{ type: 'anonymous_id', valueHash: identity.hash({ type: 'anonymous_id', value: erased }) }], 'test');
    const settled = await Promise.allSettled(ids.map((id) => identity.resolveSubject(visitor(id))));
    assert.deepEqual(settled.map((s) => s.status), ids.map((id) => (id === erased ? 'rejected' : 'fulfilled')));
    assert.ok(isCandorError((settled[2] as PromiseRejectedResult).reason, 'COLLECT_SUBJECT_SUPPRESSED'));
    const [nobody] = await identity.lookupBatch(ctx.kernel.storage.raw, [visitor(erased)]);
    assert.equal(nobody, null);
  });
});
