import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel, useUpgradedKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { MergeRecord, ResolveItem } from './index.ts';

const uid = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;
const banner = { mechanism: 'banner_save', source: 'https://shop.example/' } as const;
const SALE = 'third_party_sharing';

function item(ids: Record<string, string>): ResolveItem {
  return { identifiers: Object.entries(ids).map(([type, value]) => ({ type, value })), source: 'web', at: new Date().toISOString() };
}

describeEachDialect('identity merge listeners', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');
  const profileOf = async (i: ResolveItem) => (await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [i])))[0]?.profileId as string;
  /** Resolves and commits, announcing nothing: as if the process stopped right after the commit. */
  const mergeWithoutNotice = async (i: ResolveItem) => (await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [i])))[0]?.merges ?? [];
  const appliedAt = async (mergeId: string) =>
    (await ctx.kernel.storage.raw.all<{ applied_at: string | null }>(`select applied_at from identity_merges where id = ${p(1)}`, [mergeId]))[0]?.applied_at;
  /** Two profiles of one person: `from` (anonymous) refused analytics and sent GPC; `into` (user id) gave analytics and sale. */
  const twoProfiles = async () => {
    const [user, anon] = [uid('user'), uid('anon')];
    const into = await profileOf(item({ user_id: user }));
    const from = await profileOf(item({ anonymous_id: anon }));
    await ctx.kernel.consent.record(into, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: SALE, state: 'given' }], banner, CLI_ACTOR);
    await ctx.kernel.consent.record(from, [{ purpose: 'analytics.reporting', state: 'refused' }], banner, CLI_ACTOR);
    await ctx.kernel.consent.recordGpc([from], {}, CLI_ACTOR);
    return { user, anon, into, from };
  };

  it('leaves a merge whose listener failed unapplied, and the next start applies it with the most restrictive consent', async () => {
    const { user, anon, into, from } = await twoProfiles();
    const failing = mock.method(ctx.kernel.consent, 'mergeSubjects', async () => {
      throw new Error('consent store unavailable');
    });
    const merges = await mergeWithoutNotice(item({ user_id: user, anonymous_id: anon }));
    assert.deepEqual(merges.map((m) => [m.from, m.into]), [[from, into]]);
    await assert.rejects(ctx.kernel.identity.notifyMerges(merges), /consent store unavailable/);
    failing.mock.restore();
    const merge = merges[0] as MergeRecord;
    assert.equal(await appliedAt(merge.mergeId), null, 'the merge is committed but not applied');
    assert.equal((await ctx.kernel.consent.state(into))['analytics.reporting']?.state, 'given', 'consent not merged yet');

    const restarted = await openKernel(ctx.env.config);
    try {
      assert.ok(await appliedAt(merge.mergeId), 'the start applied it');
      const state = await restarted.consent.state(into);
      assert.equal(state['analytics.reporting']?.state, 'refused', "the merged-away profile's refusal wins");
      assert.equal(state[SALE]?.state, 'refused', 'its GPC opt-out spreads over the consent');
      assert.equal(state[SALE]?.gpc, true);
      assert.equal((await restarted.identity.applyPendingMerges()).applied, 0, 'nothing left to apply');
    } finally {
      await restarted.close();
    }

    // This process still holds the merge for a retry; the next announcement finds it applied and leaves it.
    const heard: MergeRecord[] = [];
    ctx.kernel.identity.onMerge(async (m) => {
      heard.push(m);
    });
    const { user: user2, anon: anon2 } = await twoProfiles();
    const next = await mergeWithoutNotice(item({ user_id: user2, anonymous_id: anon2 }));
    await ctx.kernel.identity.notifyMerges(next);
    assert.deepEqual(heard.map((m) => m.mergeId), next.map((m) => m.mergeId), 'an applied merge is not applied twice');
    assert.deepEqual((await ctx.kernel.identity.applyPendingMerges()).applied, 0);
    assert.equal(heard.length, 1);
  });

  it('retries a merge whose listener failed before the next announced merges, oldest first', async () => {
    const heard: string[] = [];
    let fail = true;
    const spy = mock.method(ctx.kernel.consent, 'mergeSubjects', async (from: string) => {
      heard.push(from);
      if (fail) throw new Error('temporarily down');
      return { entries: [], receipt: null, receiptId: null, receipts: [] };
    });
    try {
      const first = await twoProfiles();
      const failed = await mergeWithoutNotice(item({ user_id: first.user, anonymous_id: first.anon }));
      await assert.rejects(ctx.kernel.identity.notifyMerges(failed), /temporarily down/);
      fail = false;
      const second = await twoProfiles();
      const merges = await mergeWithoutNotice(item({ user_id: second.user, anonymous_id: second.anon }));
      await ctx.kernel.identity.notifyMerges(merges);
      assert.deepEqual(heard, [first.from, first.from, second.from]);
      assert.ok(await appliedAt((failed[0] as MergeRecord).mergeId));
      assert.ok(await appliedAt((merges[0] as MergeRecord).mergeId));
      await ctx.kernel.identity.notifyMerges(merges);
      assert.equal(spy.mock.callCount(), 4, 'announcing again runs the listeners again, but retries nothing');
    } finally {
      spy.mock.restore();
    }
  });

  it('does not apply a merge that was undone before its listeners ran', async () => {
    const { user, anon, into } = await twoProfiles();
    const merges = await mergeWithoutNotice(item({ user_id: user, anonymous_id: anon }));
    const merge = merges[0] as MergeRecord;
    await ctx.kernel.identity.unmerge(into, merge.mergeId, CLI_ACTOR);
    const spy = mock.method(ctx.kernel.consent, 'mergeSubjects');
    try {
      assert.deepEqual(await ctx.kernel.identity.applyPendingMerges(), { applied: 0, failed: [] });
      assert.equal(spy.mock.callCount(), 0);
    } finally {
      spy.mock.restore();
    }
    assert.equal((await ctx.kernel.consent.state(into))['analytics.reporting']?.state, 'given');
    assert.equal(await appliedAt(merge.mergeId), null);
  });

  it('replays a pending merge onto the profile that holds the merged-away profile now', async () => {
    const [anon, email, user] = [uid('anon'), `${uid('e')}@shop.io`, uid('user')];
    const from = await profileOf(item({ anonymous_id: anon }));
    const middle = await profileOf(item({ email }));
    const top = await profileOf(item({ user_id: user }));
    await ctx.kernel.consent.record(from, [{ purpose: 'analytics.reporting', state: 'refused' }], banner, CLI_ACTOR);
    await ctx.kernel.consent.record(top, [{ purpose: 'analytics.reporting', state: 'given' }], banner, CLI_ACTOR);
    const pending = (await mergeWithoutNotice(item({ email, anonymous_id: anon })))[0] as MergeRecord;
    assert.deepEqual([pending.from, pending.into], [from, middle]);
    // Then the merged person merges into the profile with the stronger identifier: `middle` is no longer canonical.
    const later = (await mergeWithoutNotice(item({ user_id: user, email })))[0] as MergeRecord;
    assert.deepEqual([later.from, later.into], [middle, top]);
    const heard: MergeRecord[] = [];
    ctx.kernel.identity.onMerge(async (m) => {
      heard.push(m);
    });
    assert.deepEqual(await ctx.kernel.identity.applyPendingMerges(), { applied: 2, failed: [] });
    assert.deepEqual(heard.map((m) => [m.mergeId, m.from, m.into]), [
      [pending.mergeId, from, top],
      [later.mergeId, middle, top],
    ]);
    assert.equal((await ctx.kernel.consent.state(top))['analytics.reporting']?.state, 'refused');
  });

  it('leaves an unmerge whose consent split failed unapplied, and the next start applies it', async () => {
    const { user, anon, into, from } = await twoProfiles();
    const merges = await mergeWithoutNotice(item({ user_id: user, anonymous_id: anon }));
    await ctx.kernel.identity.notifyMerges(merges);
    const merge = merges[0] as MergeRecord;
    // While merged, the person refuses e-mail marketing: it is recorded on the surviving profile.
    await ctx.kernel.consent.record(into, [{ purpose: 'marketing.communications.email', state: 'refused' }], banner, CLI_ACTOR);
    const unmergeApplied = async () =>
      (await ctx.kernel.storage.raw.all<{ unmerge_applied_at: string | null }>(`select unmerge_applied_at from identity_merges where id = ${p(1)}`, [merge.mergeId]))[0]?.unmerge_applied_at;
    const failing = mock.method(ctx.kernel.consent, 'mergeSubjects', async () => {
      throw new Error('consent store unavailable');
    });
    await assert.rejects(ctx.kernel.identity.unmerge(into, merge.mergeId, CLI_ACTOR), /consent store unavailable/);
    failing.mock.restore();
    assert.equal(await ctx.kernel.identity.canonical(from), from, 'the unmerge itself is committed');
    assert.equal(await unmergeApplied(), null);
    assert.equal((await ctx.kernel.consent.state(from))['marketing.communications.email']?.state, 'none', 'not split yet');

    const restarted = await openKernel(ctx.env.config);
    try {
      assert.ok(await unmergeApplied(), 'the start applied it');
      assert.equal((await restarted.consent.state(from))['marketing.communications.email']?.state, 'refused', 'what was refused while merged binds the split-out profile');
      assert.equal((await restarted.identity.applyPendingUnmerges()).applied, 0, 'nothing left to apply');
    } finally {
      await restarted.close();
    }
  });
});

describeEachDialect('identity unmerges made before 0097', (dialect) => {
  const ctx = useUpgradedKernel(dialect, '0097_identity_unmerges_applied', async (db) => {
    await sql`INSERT INTO identity_merges (id, at, from_profile, into_profile, rule, trigger_type, trigger_hash, source, message_id, undone_at, applied_at)
      VALUES ('mrg_undone', '2024-05-01T00:00:00.000Z', 'prf_a', 'prf_b', 'older', 'anonymous_id', 'h', 'web', NULL, '2024-06-01T00:00:00.000Z', '2024-05-01T00:00:00.000Z')`.execute(db);
  });

  it('count as applied and are not replayed', async () => {
    const rows = await ctx.kernel.storage.raw.all<{ unmerge_applied_at: string | null }>("select unmerge_applied_at from identity_merges where id = 'mrg_undone'");
    assert.equal(rows[0]?.unmerge_applied_at, '2024-06-01T00:00:00.000Z');
    assert.deepEqual(await ctx.kernel.identity.applyPendingUnmerges(), { applied: 0, failed: [] });
  });
});

describeEachDialect('identity merges made before 0095', (dialect) => {
  const ctx = useUpgradedKernel(dialect, '0095_identity_merges_applied', async (db) => {
    await sql`INSERT INTO identity_merges (id, at, from_profile, into_profile, rule, trigger_type, trigger_hash, source, message_id, undone_at)
      VALUES ('mrg_old', '2024-05-01T00:00:00.000Z', 'prf_a', 'prf_b', 'older', 'anonymous_id', 'h', 'web', NULL, NULL)`.execute(db);
  });

  it('count as applied and are not replayed', async () => {
    const rows = await ctx.kernel.storage.raw.all<{ applied_at: string | null }>("select applied_at from identity_merges where id = 'mrg_old'");
    assert.equal(rows[0]?.applied_at, '2024-05-01T00:00:00.000Z');
    assert.deepEqual(await ctx.kernel.identity.applyPendingMerges(), { applied: 0, failed: [] });
  });
});
