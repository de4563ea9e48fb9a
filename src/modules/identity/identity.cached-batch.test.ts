import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { ResolveItem } from './index.ts';

const uid = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

function item(ids: Record<string, string>): ResolveItem {
  return { identifiers: Object.entries(ids).map(([type, value]) => ({ type, value })), source: 'web', at: new Date().toISOString() };
}

// A batch whose items are partly answered from the cache (every identifier cached on one profile) and partly resolved
// from the database: a merge among the others leaves the cached ones where they are, unless it merges away their profile.
describeEachDialect('identity batches answered partly from the cache', (dialect) => {
  const ctx = useKernel(dialect);
  const resolve = (items: ResolveItem[]) => ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, items));
  const profileOf = async (i: ResolveItem) => (await resolve([i]))[0]?.profileId as string;
  /** Looked up outside a transaction: what it reads is committed, so the cache keeps it. */
  const warm = (items: ResolveItem[]) => ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, items);
  const canonicalOf = async (i: ResolveItem) => (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [i]))[0];

  it('keeps cached items on their profile while another item merges two other people, and makes that merge', async () => {
    const p = { user_id: uid('user'), anonymous_id: uid('anon') };
    const pid = await profileOf(item(p));
    const x = { user_id: uid('user') };
    const y = { email: `${uid('e')}@shop.io` };
    const xid = await profileOf(item(x));
    const yid = await profileOf(item(y));
    await warm([item(p)]);
    const out = await resolve([item(p), item({ ...x, ...y }), item(p)]);
    assert.equal(out[0]?.profileId, pid);
    assert.equal(out[2]?.profileId, pid);
    assert.deepEqual(out[0]?.merges, []);
    assert.equal(out[1]?.profileId, xid, 'the user id is the stronger identifier');
    assert.deepEqual(out[1]?.merges.map((m) => [m.from, m.into]), [[yid, xid]]);
    assert.equal(await canonicalOf(item(y)), xid, 'the merge was written');
    assert.equal(await canonicalOf(item(p)), pid);
  });

  it('keeps cached items on the profile another item merges someone into', async () => {
    const p = { user_id: uid('user'), anonymous_id: uid('anon') };
    const pid = await profileOf(item(p));
    const device = { anonymous_id: uid('anon') };
    const did = await profileOf(item(device));
    await warm([item(p)]);
    const out = await resolve([item(p), item({ user_id: p.user_id, ...device }), item(p)]);
    assert.deepEqual(out.map((r) => r.profileId), [pid, pid, pid]);
    assert.deepEqual(out[1]?.merges.map((m) => [m.from, m.into]), [[did, pid]]);
    assert.equal(await canonicalOf(item(device)), pid);
  });

  it('resolves the whole batch in order when a merge moves a cached item: before it on its profile, after it on the survivor', async () => {
    const device = { anonymous_id: uid('anon') };
    const aid = await profileOf(item(device));
    const b = { user_id: uid('user') };
    const bid = await profileOf(item(b));
    await warm([item(device)]);
    const out = await resolve([item(device), item({ ...b, ...device }), item(device)]);
    assert.equal(out[0]?.profileId, aid, 'resolved before the merge');
    assert.deepEqual(out[1]?.merges.map((m) => [m.from, m.into]), [[aid, bid]]);
    assert.equal(out[2]?.profileId, bid, 'resolved after the merge');
    assert.equal(await canonicalOf(item(device)), bid);
  });
});
