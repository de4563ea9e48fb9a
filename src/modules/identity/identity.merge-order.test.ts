import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { MergeRecord, ResolveItem } from './index.ts';

const uid = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;
const banner = { mechanism: 'banner_save', source: 'https://shop.example/' } as const;
const PURPOSE = 'analytics.reporting';

function item(ids: Record<string, string>): ResolveItem {
  return { identifiers: Object.entries(ids).map(([type, value]) => ({ type, value })), source: 'web', at: new Date().toISOString() };
}

describeEachDialect('identity merges of one batch', (dialect) => {
  const ctx = useKernel(dialect);
  const profileOf = async (i: ResolveItem) => (await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [i])))[0]?.profileId as string;
  /** Resolves one batch and commits, announcing nothing: as if the process stopped right after the commit. */
  const batchWithoutNotice = async (items: ResolveItem[]) =>
    (await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, items))).flatMap((r) => r.merges);

  it('get increasing times in the order they were made, and are listed and replayed in that order', async () => {
    // A chain (anonymous into e-mail, then e-mail into user id) and eight pairs, all merged by one batch.
    const [anon, email, user] = [uid('anon'), `${uid('e')}@shop.io`, uid('user')];
    for (const i of [{ anonymous_id: anon }, { email }, { user_id: user }] as Record<string, string>[]) await profileOf(item(i));
    const pairs = Array.from({ length: 8 }, () => ({ user_id: uid('user'), anonymous_id: uid('anon') }));
    for (const pair of pairs) {
      await profileOf(item({ user_id: pair.user_id }));
      await profileOf(item({ anonymous_id: pair.anonymous_id }));
    }
    const made = await batchWithoutNotice([item({ email, anonymous_id: anon }), item({ user_id: user, email }), ...pairs.map(item)]);
    assert.equal(made.length, 10);
    const [first, second] = made as [MergeRecord, MergeRecord];
    assert.equal(second.from, first.into, 'the second merge moves the survivor of the first');

    const listed = await ctx.kernel.identity.merges(second.into);
    assert.deepEqual(listed.map((m) => m.mergeId), [first.mergeId, second.mergeId]);
    const times = listed.map((m) => m.at as string);
    assert.ok((times[0] as string) < (times[1] as string), `the chain's merges have increasing times: ${times.join(' ')}`);
    assert.match(times[0] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'stored as ISO text with microseconds');

    const heard: string[] = [];
    ctx.kernel.identity.onMerge(async (m) => {
      heard.push(m.mergeId);
    });
    assert.deepEqual(await ctx.kernel.identity.applyPendingMerges(), { applied: 10, failed: [] });
    assert.deepEqual(heard, made.map((m) => m.mergeId), 'replayed in the order they were made');
  });

  it('replayed after a crash leave the consent a notice would have left', async () => {
    // Per person: a user id (survivor), an e-mail profile that withdrew and an anonymous one that refused. One item
    // merges both into the survivor; each brings its own opt-out, and the one copied first is the one kept.
    const person = async () => {
      const ids = { user_id: uid('user'), email: `${uid('e')}@shop.io`, anonymous_id: uid('anon') };
      const survivor = await profileOf(item({ user_id: ids.user_id }));
      const withdrew = await profileOf(item({ email: ids.email }));
      const refused = await profileOf(item({ anonymous_id: ids.anonymous_id }));
      await ctx.kernel.consent.record(withdrew, [{ purpose: PURPOSE, state: 'given' }], banner, CLI_ACTOR);
      await ctx.kernel.consent.record(withdrew, [{ purpose: PURPOSE, state: 'withdrawn' }], banner, CLI_ACTOR);
      await ctx.kernel.consent.record(refused, [{ purpose: PURPOSE, state: 'refused' }], banner, CLI_ACTOR);
      return { ids, survivor };
    };
    const stateOf = async (profile: string) => (await ctx.kernel.consent.state(profile))[PURPOSE]?.state;
    const people = 8;
    await ctx.kernel.identity.applyPendingMerges();
    const announced = await Promise.all(Array.from({ length: people }, person));
    const announcedMerges = await batchWithoutNotice(announced.map((p) => item(p.ids)));
    await ctx.kernel.identity.notifyMerges(announcedMerges);
    const crashed = await Promise.all(Array.from({ length: people }, person));
    await batchWithoutNotice(crashed.map((p) => item(p.ids)));
    assert.deepEqual(await ctx.kernel.identity.applyPendingMerges(), { applied: 2 * people, failed: [] });

    const expected = await Promise.all(announced.map((p) => stateOf(p.survivor)));
    assert.ok(expected.every((s) => s === expected[0] && (s === 'withdrawn' || s === 'refused')), `announced: ${expected.join(' ')}`);
    assert.deepEqual(await Promise.all(crashed.map((p) => stateOf(p.survivor))), expected);
  });
});
