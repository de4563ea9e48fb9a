import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { openStorage, type SqlExecutor } from '../../storage/index.ts';
import { Identity, type MergeRecord, type ResolveItem } from './index.ts';

/** A value unique to this run, so tests sharing one database do not meet. */
const uid = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

function item(ids: Record<string, string | string[]>, messageId?: string): ResolveItem {
  const identifiers = Object.entries(ids).flatMap(([type, value]) => (Array.isArray(value) ? value : [value]).map((v) => ({ type, value: v })));
  return { identifiers, source: 'web', at: new Date().toISOString(), ...(messageId ? { messageId } : {}) };
}

/** Wraps an executor to count the statements sent through it. */
function counting(tx: SqlExecutor): { tx: SqlExecutor; count: () => number } {
  let n = 0;
  return {
    tx: {
      all: (text, params) => {
        n++;
        return tx.all(text, params);
      },
      run: (text, params) => {
        n++;
        return tx.run(text, params);
      },
    },
    count: () => n,
  };
}

describeEachDialect('identity', (dialect) => {
  const ctx = useKernel(dialect);
  const resolve = (items: ResolveItem[]) => ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, items));
  const resolveOne = async (i: ResolveItem) => (await resolve([i]))[0] as Awaited<ReturnType<typeof resolve>>[number];
  const lookup = async (i: ResolveItem) => (await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.lookupBatch(tx, [i])))[0];
  const profileCount = async () => Number((await ctx.kernel.storage.raw.all<{ n: number }>('select count(*) as n from identity_profiles'))[0]?.n);

  it('creates a profile for a new anonymous id, and resolves to it again without creating another', async () => {
    const anon = uid('anon');
    const first = await resolveOne(item({ anonymous_id: anon }));
    assert.match(first.profileId ?? '', /^prf_[a-z2-7]{20}$/);
    assert.equal(first.created, true);
    assert.deepEqual(first.merges, []);
    const again = await resolveOne(item({ anonymous_id: anon }));
    assert.deepEqual(again, { profileId: first.profileId, holder: first.profileId, created: false, merges: [], ignored: [] });
    assert.equal(first.holder, first.profileId);
  });

  it('finds nobody, and links nothing, by an id holding half of a surrogate pair (whose pseudonym would be that of U+FFFD)', async () => {
    const tail = uid('');
    const stored = await resolveOne(item({ user_id: `x\uFFFD${tail}` }));
    assert.ok(stored.profileId);
    assert.equal(await lookup(item({ user_id: `x\uFFFD${tail}` })), stored.profileId);
    for (const half of ['\uD800', '\uDFFF']) {
      assert.equal(await lookup(item({ user_id: `x${half}${tail}` })), null, `look-up by x${JSON.stringify(half)}…`);
      assert.equal(ctx.kernel.identity.normalize({ type: 'user_id', value: `x${half}${tail}` }), undefined);
      const refused = await resolveOne(item({ user_id: `x${half}${tail}` }));
      assert.equal(refused.profileId, null);
      assert.deepEqual(refused.ignored, [{ type: 'user_id', reason: 'blocked' }]);
    }
  });

  it('stores identifiers only as keyed pseudonyms, never their values', async () => {
    const email = `${uid('ada')}@shop.io`;
    const { profileId } = await resolveOne(item({ email: email.toUpperCase() }));
    const rows = await ctx.kernel.storage.raw.all<Record<string, unknown>>(`select * from identity_identifiers where profile_id = ${dialect === 'postgres' ? '$1' : '?'}`, [profileId]);
    assert.equal(rows.length, 1);
    assert.ok(!JSON.stringify(rows).includes(email.split('@')[0] as string));
    assert.equal(rows[0]?.value_hash, ctx.kernel.identity.hash({ type: 'email', value: email }));
    assert.equal(rows[0]?.value_hash, ctx.kernel.keyring.pseudonym('email', email));
  });

  it('links a user id and an anonymous id sent together to one profile', async () => {
    const [user, anon] = [uid('user'), uid('anon')];
    const anonymous = await resolveOne(item({ anonymous_id: anon }));
    const identified = await resolveOne(item({ user_id: user, anonymous_id: anon }));
    assert.equal(identified.profileId, anonymous.profileId);
    assert.equal(identified.created, false);
    assert.equal(await lookup(item({ user_id: user })), anonymous.profileId);
    const ids = await ctx.kernel.identity.identifiersOf(anonymous.profileId as string);
    assert.deepEqual(ids.map((i) => i.type).sort(), ['anonymous_id', 'user_id']);
  });

  it("merges a second device's anonymous profile into the user's profile when the same user id appears, with provenance", async () => {
    const [user, phone, tablet] = [uid('user'), uid('phone'), uid('tablet')];
    const main = await resolveOne(item({ user_id: user, anonymous_id: phone }));
    const second = await resolveOne(item({ anonymous_id: tablet }));
    assert.notEqual(second.profileId, main.profileId);
    const login = await resolveOne(item({ user_id: user, anonymous_id: tablet }, 'msg-login-1'));
    assert.equal(login.profileId, main.profileId);
    assert.equal(login.merges.length, 1);
    assert.deepEqual({ ...login.merges[0], mergeId: undefined }, { mergeId: undefined, from: second.profileId, into: main.profileId, rule: 'priority:user_id' });
    assert.equal(await ctx.kernel.identity.canonical(second.profileId as string), main.profileId);
    assert.deepEqual(await ctx.kernel.identity.members(second.profileId as string), [main.profileId, second.profileId]);
    assert.equal(login.holder, main.profileId);
    // The tablet's id is still held by its own profile, now merged in: what it brings alone is written there (read
    // from the database, then from the cache a committed lookup filled).
    const alone = await resolveOne(item({ anonymous_id: tablet }));
    assert.deepEqual([alone.profileId, alone.holder], [main.profileId, second.profileId]);
    assert.equal(await lookup(item({ anonymous_id: tablet })), main.profileId);
    const cached = await resolveOne(item({ anonymous_id: tablet }));
    assert.deepEqual([cached.profileId, cached.holder], [main.profileId, second.profileId]);
    const [merge] = await ctx.kernel.identity.merges(main.profileId as string);
    assert.equal(merge?.messageId, 'msg-login-1');
    assert.equal(merge?.source, 'web');
    assert.equal(merge?.triggerType, 'anonymous_id');
    assert.equal(merge?.triggerHash, ctx.kernel.identity.hash({ type: 'anonymous_id', value: tablet }));
    assert.equal(merge?.undoneAt, null);
  });

  it('never puts two user ids on one profile: a second user on a shared device gets its own profile', async () => {
    const [alice, bob, device] = [uid('alice'), uid('bob'), uid('device')];
    const first = await resolveOne(item({ user_id: alice, anonymous_id: device }));
    const second = await resolveOne(item({ user_id: bob, anonymous_id: device }));
    assert.notEqual(second.profileId, first.profileId);
    assert.equal(second.created, true);
    assert.deepEqual(second.merges, []);
    assert.deepEqual(second.ignored, [{ type: 'anonymous_id', reason: 'limit' }]);
    assert.equal(await lookup(item({ anonymous_id: device })), first.profileId);
    // Two existing profiles each holding a user id do not merge either.
    const crossed = await resolveOne(item({ user_id: alice, email: `${uid('bob')}@shop.io` }));
    assert.equal(crossed.profileId, first.profileId);
    const both = await resolveOne(item({ user_id: bob, anonymous_id: device }));
    assert.equal(both.profileId, second.profileId);
    assert.deepEqual(both.merges, []);
  });

  it('keeps the profile holding the highest-priority identifier when two meet, and the older one on a tie', async () => {
    const email = `${uid('e')}@shop.io`;
    const user = uid('user');
    const byEmail = await resolveOne(item({ email }));
    const byUser = await resolveOne(item({ user_id: user }));
    const met = await resolveOne(item({ email, user_id: user }));
    assert.equal(met.profileId, byUser.profileId, 'the user id outranks the older profile with an e-mail');
    assert.equal(met.merges[0]?.from, byEmail.profileId);
    assert.equal(met.merges[0]?.rule, 'priority:user_id');

    const [p1, p2] = ['+4420' + String(Date.now()).slice(-7), '+4421' + String(Date.now()).slice(-7)];
    const older = await resolveOne(item({ phone: p1 }));
    const newer = await resolveOne(item({ phone: p2 }));
    const tie = await resolveOne(item({ phone: [p2, p1] }));
    assert.equal(tie.profileId, older.profileId);
    assert.deepEqual(tie.merges.map((m) => [m.from, m.rule]), [[newer.profileId, 'older']]);
  });

  it('ignores blocked and malformed identifiers and creates nothing for them', async () => {
    const before = await profileCount();
    const result = await resolveOne(item({ user_id: 'null', anonymous_id: ' undefined ', email: 'test@example.com' }));
    assert.deepEqual(result, {
      profileId: null,
      holder: null,
      created: false,
      merges: [],
      ignored: [
        { type: 'user_id', reason: 'blocked' },
        { type: 'anonymous_id', reason: 'blocked' },
        { type: 'email', reason: 'blocked' },
      ],
    });
    const partly = await resolveOne(item({ user_id: 'unknown', anonymous_id: uid('anon') }));
    assert.equal(partly.created, true);
    assert.deepEqual(partly.ignored, [{ type: 'user_id', reason: 'blocked' }]);
    assert.equal(await profileCount(), before + 1);
    assert.throws(() => ctx.kernel.identity.hash({ type: 'user_id', value: 'null' }), (e) => isCandorError(e, 'IDENTITY_IDENTIFIER_INVALID'));
  });

  it('prepares a repeated raw identifier as it did the first time: blocked again, or the same normalized pseudonym', async () => {
    for (let round = 0; round < 2; round++) {
      const blocked = await resolveOne(item({ user_id: 'null', email: 'test@example.com' }));
      assert.deepEqual(blocked.ignored, [{ type: 'user_id', reason: 'blocked' }, { type: 'email', reason: 'blocked' }]);
    }
    const email = `${uid('Mixed')}@Shop-Customer.NET`;
    const first = await resolveOne(item({ email: ` ${email} `, anonymous_id: uid('anon') }));
    const again = await resolveOne(item({ email: ` ${email} ` }));
    const lowered = await resolveOne(item({ email: email.toLowerCase() }));
    assert.equal(again.profileId, first.profileId);
    assert.equal(lowered.profileId, first.profileId);
    assert.equal(ctx.kernel.identity.hash({ type: 'email', value: ` ${email} ` }), ctx.kernel.identity.hash({ type: 'email', value: email.toLowerCase() }));
  });

  it('lets later items of a batch see what earlier items did', async () => {
    const [anon, user] = [uid('anon'), uid('user')];
    const [first, second, third] = await resolve([item({ anonymous_id: anon }), item({ anonymous_id: anon, user_id: user }), item({ user_id: user })]);
    assert.equal(first?.created, true);
    assert.equal(second?.profileId, first?.profileId);
    assert.equal(second?.created, false);
    assert.equal(third?.profileId, first?.profileId);
  });

  it('looks up without creating anything, answering the profile of the strongest known identifier', async () => {
    const [anon, user] = [uid('anon'), uid('user')];
    const known = await resolveOne(item({ anonymous_id: anon }));
    const other = await resolveOne(item({ user_id: user }));
    const before = await profileCount();
    const found = await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.identity.lookupBatch(tx, [item({ anonymous_id: uid('nobody') }), item({ anonymous_id: anon, email: `${uid('new')}@shop.io` }), item({ anonymous_id: anon, user_id: user }), item({ user_id: 'null' })]),
    );
    assert.deepEqual(found, [null, known.profileId, other.profileId, null]);
    assert.equal(await profileCount(), before);
    assert.deepEqual(await ctx.kernel.identity.merges(known.profileId as string), []);
  });

  it('rolls back everything resolveBatch wrote when the transaction throws', async () => {
    const [user, anon, old] = [uid('user'), uid('anon'), uid('old')];
    const existing = await resolveOne(item({ anonymous_id: old }));
    const before = await profileCount();
    await assert.rejects(
      ctx.kernel.storage.raw.transaction(async (tx) => {
        const [r] = await ctx.kernel.identity.resolveBatch(tx, [item({ user_id: user, anonymous_id: anon }), item({ user_id: user, anonymous_id: old })]);
        assert.ok(r?.profileId);
        throw new Error('storing the events failed');
      }),
      /storing the events failed/,
    );
    assert.equal(await profileCount(), before);
    assert.equal(await lookup(item({ user_id: user })), null);
    assert.equal(await ctx.kernel.identity.canonical(existing.profileId as string), existing.profileId);
    assert.deepEqual(await ctx.kernel.identity.merges(existing.profileId as string), []);
    const retried = await resolveOne(item({ user_id: user, anonymous_id: anon }));
    assert.equal(retried.created, true);
  });

  it('creates one profile when concurrent batches bring the same new identifiers', async () => {
    const [user, a1, a2] = [uid('user'), uid('a1'), uid('a2')];
    const results = await Promise.all([
      resolve([item({ user_id: user, anonymous_id: a1 })]),
      resolve([item({ user_id: user, anonymous_id: a2 })]),
      resolve([item({ anonymous_id: a1 }), item({ anonymous_id: a2 })]),
    ]);
    // Whatever order they ran in, everything ends on one canonical profile holding the three identifiers.
    const canonicals = new Set(await Promise.all(results.flat().map((r) => ctx.kernel.identity.canonical(r.profileId as string))));
    assert.equal(canonicals.size, 1);
    assert.equal((await ctx.kernel.identity.identifiersOf([...canonicals][0] as string)).length, 3);
  });

  it('runs onMerge listeners only when the caller announces committed merges', async () => {
    const heard: MergeRecord[] = [];
    ctx.kernel.identity.onMerge(async (merge) => {
      heard.push(merge);
    });
    const [user, anon] = [uid('user'), uid('anon')];
    const main = await resolveOne(item({ user_id: user }));
    await resolveOne(item({ anonymous_id: anon }));
    const merges = await ctx.kernel.storage.raw.transaction(async (tx) => {
      const [r] = await ctx.kernel.identity.resolveBatch(tx, [item({ user_id: user, anonymous_id: anon })]);
      return r?.merges ?? [];
    });
    assert.equal(merges.length, 1);
    assert.equal(heard.length, 0, 'nothing is announced by resolveBatch itself');
    await ctx.kernel.identity.notifyMerges(merges);
    assert.deepEqual(heard, merges);
    assert.equal(heard[0]?.into, main.profileId);
  });

  it('unmerges: the from-profile is canonical again with what came in with it, audited, and not merged again', async () => {
    const [user, a1, a2, a3] = [uid('user'), uid('a1'), uid('a2'), uid('a3')];
    const main = await resolveOne(item({ user_id: user, anonymous_id: a1 }));
    const second = await resolveOne(item({ anonymous_id: a2 }));
    await resolveOne(item({ anonymous_id: a3 }));
    const joined = await resolveOne(item({ anonymous_id: [a2, a3] }));
    assert.equal(joined.profileId, second.profileId, 'the older anonymous profile survives');
    const wrong = await resolveOne(item({ user_id: user, anonymous_id: a2 }, 'msg-wrong'));
    const merge = wrong.merges[0] as MergeRecord;
    assert.equal(merge.from, second.profileId);
    assert.equal((await ctx.kernel.identity.members(main.profileId as string)).length, 3);
    assert.equal(await lookup(item({ anonymous_id: a3 })), main.profileId);

    const result = await ctx.kernel.identity.unmerge(main.profileId as string, merge.mergeId, CLI_ACTOR);
    assert.deepEqual(result, { restored: second.profileId, identifiersMoved: 2 });
    assert.equal(await ctx.kernel.identity.canonical(second.profileId as string), second.profileId);
    assert.equal((await ctx.kernel.identity.members(second.profileId as string)).length, 2);
    assert.equal(await lookup(item({ anonymous_id: a3 })), second.profileId);
    assert.equal(await lookup(item({ anonymous_id: a1 })), main.profileId);
    assert.deepEqual((await ctx.kernel.identity.identifiersOf(main.profileId as string)).map((i) => i.type).sort(), ['anonymous_id', 'user_id']);
    const undone = (await ctx.kernel.identity.merges(main.profileId as string)).find((m) => m.mergeId === merge.mergeId);
    assert.ok(undone?.undoneAt);

    const entries = await ctx.kernel.audit.list({ action: 'identity.profile.unmerge', limit: 100 });
    const subjects = entries.filter((e) => e.resource === `merge:${merge.mergeId}`).map((e) => e.subject);
    assert.deepEqual(subjects.sort(), [ctx.kernel.keyring.pseudonym('subject', main.profileId as string), ctx.kernel.keyring.pseudonym('subject', second.profileId as string)].sort());

    const again = await resolveOne(item({ user_id: user, anonymous_id: a2 }));
    assert.equal(again.profileId, main.profileId);
    assert.deepEqual(again.merges, []);
    assert.deepEqual(again.ignored, [{ type: 'anonymous_id', reason: 'unmerged' }]);

    await assert.rejects(ctx.kernel.identity.unmerge(main.profileId as string, merge.mergeId, CLI_ACTOR), (e) => isCandorError(e, 'IDENTITY_MERGE_ALREADY_UNDONE'));
    const other = await resolveOne(item({ anonymous_id: uid('other') }));
    const foreign = (await ctx.kernel.identity.merges(second.profileId as string)).find((m) => m.undoneAt === null) as MergeRecord;
    await assert.rejects(ctx.kernel.identity.unmerge(other.profileId as string, foreign.mergeId, CLI_ACTOR), (e) => isCandorError(e, 'IDENTITY_MERGE_NOT_FOUND'));
    await assert.rejects(ctx.kernel.identity.unmerge('prf_aaaaaaaaaaaaaaaaaaaa', foreign.mergeId, CLI_ACTOR), (e) => isCandorError(e, 'IDENTITY_PROFILE_NOT_FOUND'));
  });

  it('unmerges and audits in one transaction: an audit entry that cannot be written leaves the merge as it was', async () => {
    const [user, own, anon] = [uid('user'), uid('own'), uid('anon')];
    await resolveOne(item({ user_id: user, anonymous_id: own }));
    const device = await resolveOne(item({ anonymous_id: anon }));
    const joined = await resolveOne(item({ user_id: user, anonymous_id: anon }, 'msg-join'));
    const merge = joined.merges[0] as MergeRecord;
    assert.equal(merge.from, device.profileId);
    const { audit } = ctx.kernel;
    const appendIn = audit.appendIn.bind(audit);
    audit.appendIn = () => Promise.reject(new Error('audit log unavailable'));
    try {
      await assert.rejects(ctx.kernel.identity.unmerge(joined.profileId as string, merge.mergeId, CLI_ACTOR), /audit log unavailable/);
    } finally {
      audit.appendIn = appendIn;
    }
    assert.equal((await ctx.kernel.identity.merges(joined.profileId as string)).find((m) => m.mergeId === merge.mergeId)?.undoneAt, null);
    assert.equal(await ctx.kernel.identity.canonical(device.profileId as string), joined.profileId, 'still merged');
    assert.equal(await lookup(item({ anonymous_id: anon })), joined.profileId);
    await ctx.kernel.identity.unmerge(joined.profileId as string, merge.mergeId, CLI_ACTOR);
    const entries = await ctx.kernel.audit.list({ action: 'identity.profile.unmerge', limit: 100 });
    assert.equal(entries.filter((e) => e.resource === `merge:${merge.mergeId}`).length, 2);
  });

  it('links a new identifier to the profile holding the known one it came with, so an unmerge takes it along', async () => {
    const [user, device, deviceEmail, userEmail] = [uid('user'), uid('device'), `${uid('dev')}@shop.io`, `${uid('usr')}@shop.io`];
    const main = await resolveOne(item({ user_id: user }));
    const second = await resolveOne(item({ anonymous_id: device }));
    const merge = (await resolveOne(item({ user_id: user, anonymous_id: device }))).merges[0] as MergeRecord;
    assert.equal(merge.from, second.profileId);
    // While merged: the device alone brings an e-mail address (stronger than its anonymous id, and new).
    const fromDevice = await resolveOne(item({ anonymous_id: device, email: deviceEmail }));
    assert.deepEqual([fromDevice.profileId, fromDevice.holder], [main.profileId, second.profileId]);
    // The user id brings another: it joins the user's own profile.
    const fromUser = await resolveOne(item({ user_id: user, email: userEmail }));
    assert.deepEqual([fromUser.profileId, fromUser.holder], [main.profileId, main.profileId]);
    assert.equal(await lookup(item({ email: deviceEmail })), main.profileId);

    await ctx.kernel.identity.unmerge(main.profileId as string, merge.mergeId, CLI_ACTOR);
    assert.equal(await lookup(item({ email: deviceEmail })), second.profileId, "the device's address left with it");
    assert.equal(await lookup(item({ email: userEmail })), main.profileId);
    assert.deepEqual((await ctx.kernel.identity.identifiersOf(second.profileId as string)).map((i) => i.type).sort(), ['anonymous_id', 'email']);
  });

  it('flags items carrying a suppressed identifier, by pseudonym only', async () => {
    const [erased, kept] = [`${uid('erased')}@shop.io`, uid('kept')];
    await ctx.kernel.identity.suppress([{ type: 'email', valueHash: ctx.kernel.identity.hash({ type: 'email', value: erased }) }], 'erasure');
    await ctx.kernel.identity.suppress([{ type: 'email', valueHash: ctx.kernel.identity.hash({ type: 'email', value: erased }) }], 'erasure again');
    const flags = await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.identity.isSuppressedBatch(tx, [item({ anonymous_id: kept }), item({ anonymous_id: kept, email: ` ${erased.toUpperCase()}` }), item({})]),
    );
    assert.deepEqual(flags, [false, true, false]);
  });

  it('sees identifiers suppressed by another process at the next check, without a query while nobody else wrote', async () => {
    const [early, late] = [`${uid('early')}@shop.io`, `${uid('late')}@shop.io`];
    const check = (email: string) => ctx.kernel.identity.isSuppressedBatch(ctx.kernel.storage.raw, [item({ email })]);
    assert.deepEqual(await check(early), [false]);
    // Another process (the CLI, a second server) erases someone: a second connection to the same database.
    const storage = await openStorage(ctx.env.config);
    try {
      const other = await Identity.open({ storage, audit: ctx.kernel.audit, keyring: ctx.kernel.keyring });
      await other.suppress([{ type: 'email', valueHash: other.hash({ type: 'email', value: early }) }], 'erasure elsewhere');
    } finally {
      await storage.close();
    }
    // SQLite's write counter is read at most once a millisecond; PostgreSQL's commit notice arrives a moment later
    // (a group's transaction reads the suppression list again there, so nothing is stored meanwhile).
    await new Promise((resolve) => setTimeout(resolve, 2));
    if (dialect === 'postgres') {
      const until = Date.now() + 10_000;
      while (!(await check(early))[0] && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.deepEqual(await check(early), [true], 'a write by another connection is noticed at the next check');
    await ctx.kernel.identity.suppress([{ type: 'email', valueHash: ctx.kernel.identity.hash({ type: 'email', value: late }) }], 'erasure here');
    const counted = counting(ctx.kernel.storage.raw);
    assert.deepEqual(await ctx.kernel.identity.isSuppressedBatch(counted.tx, [item({ email: late }), item({ email: early })]), [true, true]);
    if (dialect === 'sqlite') assert.equal(counted.count(), 0, 'SQLite: the list is held in memory while no other connection writes');
  });

  it('sees a merge made by another process at the next look-up, not a minute later', async () => {
    const [device, user, email] = [uid('anon-merged-elsewhere'), uid('user-merged-elsewhere'), `${uid('merged')}@shop.io`];
    const byDevice = await resolveOne(item({ anonymous_id: device, email }));
    const byUser = await resolveOne(item({ user_id: user }));
    const lookup = async () => (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [item({ anonymous_id: device })]))[0];
    assert.equal(await lookup(), byDevice.profileId, 'cached');
    // Another process (a CSV import, a second server) merges the device's profile into the user's.
    const storage = await openStorage(ctx.env.config);
    try {
      const other = await Identity.open({ storage, audit: ctx.kernel.audit, keyring: ctx.kernel.keyring });
      const [merged] = await storage.raw.transaction((tx) => other.resolveBatch(tx, [item({ user_id: user, email })]));
      assert.equal(merged?.profileId, byUser.profileId);
      assert.equal(merged?.merges.length, 1);
    } finally {
      await storage.close();
    }
    // SQLite's write counter is read at most once a millisecond; PostgreSQL's commit notice arrives a moment later.
    const until = Date.now() + 10_000;
    let seen = await lookup();
    while (seen !== byUser.profileId && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      seen = await lookup();
    }
    assert.equal(seen, byUser.profileId, 'the merged-away profile is no longer answered');
  });

  it('resolves a batch of known identifiers in one query, and in none once a committed lookup cached them', async () => {
    const ids = Array.from({ length: 100 }, () => uid('bulk'));
    const items = ids.map((anon) => item({ anonymous_id: anon }));
    const created = await ctx.kernel.storage.raw.transaction(async (tx) => {
      const c = counting(tx);
      const out = await ctx.kernel.identity.resolveBatch(c.tx, items);
      // lookup, 3 chunks of profiles (64+32+4), 3 of identifiers; PostgreSQL adds the writer lock and a second lookup.
      assert.ok(c.count() <= (dialect === 'postgres' ? 9 : 7), `statements: ${c.count()}`);
      return out;
    });
    assert.equal(new Set(created.map((r) => r.profileId)).size, 100);
    const known = await ctx.kernel.storage.raw.transaction(async (tx) => {
      const c = counting(tx);
      const out = await ctx.kernel.identity.resolveBatch(c.tx, items);
      assert.equal(c.count(), 1);
      return out;
    });
    assert.deepEqual(known.map((r) => r.profileId), created.map((r) => r.profileId));
    await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, items);
    await ctx.kernel.storage.raw.transaction(async (tx) => {
      const c = counting(tx);
      await ctx.kernel.identity.resolveBatch(c.tx, items);
      assert.equal(c.count(), 0);
    });
  });

  it('queries only for the items not cached, and resolves the whole batch again when one of them merges a cached profile', async () => {
    const known = Array.from({ length: 50 }, () => item({ anonymous_id: uid('cached') }));
    const before = await resolve(known);
    await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, known);
    // Cached items among new ones: the statements are those of the new ones alone, and the cached keep their profile.
    const fresh = [item({ anonymous_id: uid('new') }), item({ user_id: uid('new') })];
    const mixed = [known[0] as ResolveItem, fresh[0] as ResolveItem, ...known.slice(1, 10), fresh[1] as ResolveItem];
    const out = await ctx.kernel.storage.raw.transaction(async (tx) => {
      const sizes: number[] = [];
      const c = counting({ all: (text, params = []) => (sizes.push(params.length), tx.all(text, params)), run: (text, params) => tx.run(text, params) });
      const resolved = await ctx.kernel.identity.resolveBatch(c.tx, mixed);
      // One lookup of the two new identifiers (their pseudonyms; the whole batch would be 12), then their two profiles and two
      // identifiers (the lookup again on PostgreSQL, under the writer lock).
      assert.ok(c.count() <= (dialect === 'postgres' ? 5 : 3), `statements: ${c.count()}`);
      assert.equal(sizes[0], 2);
      return resolved;
    });
    assert.deepEqual([out[0], ...out.slice(2, 11)].map((r) => r?.profileId), before.slice(0, 10).map((r) => r.profileId));
    assert.ok(out[1]?.created && out[11]?.created);
    assert.equal(new Set(out.map((r) => r.profileId)).size, 12);
    // A new user id that brings a cached anonymous profile to merge: the cached items after it see the merged profile.
    const user = uid('user');
    const mainProfile = (await resolveOne(item({ user_id: user }))).profileId;
    const anon = known[20]?.identifiers[0]?.value as string;
    const merging = [known[20] as ResolveItem, item({ user_id: user, anonymous_id: anon }), known[20] as ResolveItem, known[21] as ResolveItem];
    const after = await resolve(merging);
    assert.equal(after[1]?.merges.length, 1);
    assert.equal(after[0]?.profileId, before[20]?.profileId);
    assert.equal(after[2]?.profileId, mainProfile);
    assert.equal(after[3]?.profileId, before[21]?.profileId);
  });

  it('resolves a batch with more identifiers than one statement takes', async () => {
    const items = Array.from({ length: 1500 }, () => item({ anonymous_id: uid('big'), user_id: uid('big') }));
    const created = await resolve(items);
    assert.equal(new Set(created.map((r) => r.profileId)).size, 1500);
    const again = await resolve(items);
    assert.deepEqual(again.map((r) => r.profileId), created.map((r) => r.profileId));
    const flags = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.isSuppressedBatch(tx, items));
    assert.equal(flags.filter(Boolean).length, 0);
  });

  it('drops cached lookups of a profile as soon as it is merged away', async () => {
    const [user, anon] = [uid('user'), uid('anon')];
    const main = await resolveOne(item({ user_id: user }));
    const device = await resolveOne(item({ anonymous_id: anon }));
    assert.deepEqual(await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [item({ anonymous_id: anon })]), [device.profileId]);
    const merged = await resolveOne(item({ user_id: user, anonymous_id: anon }));
    await ctx.kernel.identity.notifyMerges(merged.merges);
    assert.deepEqual(await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [item({ anonymous_id: anon })]), [main.profileId]);
    const fast = await resolveOne(item({ anonymous_id: anon }));
    assert.equal(fast.profileId, main.profileId);
  });
});
