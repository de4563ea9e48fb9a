import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { TraitInput, TraitsBatchItem } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const name = (value: string): TraitInput => ({ key: 'first_name', value, category: 'user.name', personal: true });
const day = (d: number) => new Date(Date.UTC(2026, 2, d)).toISOString();

// The person's trait history ends with the value the person's view shows, however the members got their values.
describeEachDialect('a merged person\'s trait history ends with the value the view shows', (dialect) => {
  const ctx = useKernel(dialect);
  const set = async (items: TraitsBatchItem[]) => {
    await ctx.kernel.profiles.prepare(items.flatMap((i) => [i.profileId, ...(i.person ?? [])]));
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, items));
  };
  const shown = async (profileIds: string[]) => (await ctx.kernel.profiles.get(profileIds, { decrypt: true })).traits.map((t) => [t.value, t.updatedAt, t.profileId]);
  const history = async (profileIds: string[]) =>
    (await ctx.kernel.profiles.traitHistory(profileIds, 'first_name', { decrypt: true })).map((h) => [h.value, h.previousValue, h.changedAt, h.profileId]);

  it('gets the shown value again at its time when the merge makes a member\'s moved value newer than another\'s change', async () => {
    const [user, device] = [profileId(), profileId()];
    // Apart: the device's Cleo, re-sent later (its time moves forward, no entry), and the user's Ann in between.
    await set([{ profileId: device, traits: [name('Cleo')], source: 'app', messageId: 'd1', at: day(20) }]);
    await set([{ profileId: device, traits: [name('Cleo')], source: 'app', messageId: 'd2', at: day(28) }]);
    await set([{ profileId: user, traits: [name('Ann')], source: 'web', messageId: 'u1', at: day(23) }]);
    // Then merged, in the merge's transaction.
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.merged(tx, [[user, device]]));
    assert.deepEqual(await shown([user, device]), [['Cleo', day(28), device]]);
    assert.deepEqual(await history([user, device]), [
      ['Cleo', 'Ann', day(28), device],
      ['Ann', 'Cleo', day(23), user],
      ['Cleo', undefined, day(20), device],
    ]);
    // Once is enough: the same merge applied again adds nothing.
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.merged(tx, [[user, device]]));
    assert.equal((await history([user, device])).length, 3);
    // Apart again, each profile's history is its own and ends with its own value.
    assert.deepEqual(await history([device]), [['Cleo', undefined, day(20), device]]);
    assert.deepEqual(await history([user]), [['Ann', undefined, day(23), user]]);
  });

  it('adds nothing where the history already ends with the shown value', async () => {
    const [user, device] = [profileId(), profileId()];
    await set([{ profileId: device, traits: [name('Cleo')], source: 'app', messageId: 'd1', at: day(20) }]);
    await set([{ profileId: user, traits: [name('Ann')], source: 'web', messageId: 'u1', at: day(23) }]);
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.merged(tx, [[user, device]]));
    const p = dialect === 'postgres' ? ['$1', '$2'] : ['?', '?'];
    const rows = await ctx.kernel.storage.raw.all(`select id from profiles_trait_history where profile_id in (${p.join(', ')})`, [user, device]);
    assert.equal(rows.length, 2);
  });
});

// Two values of one trait with the same event time: the one received last is shown, on one profile as on a merged
// person, whatever the profile ids; the view and the history agree.
describeEachDialect('trait values with the same time', (dialect) => {
  const ctx = useKernel(dialect);
  const set = async (items: TraitsBatchItem[]) => {
    await ctx.kernel.profiles.prepare(items.flatMap((i) => [i.profileId, ...(i.person ?? [])]));
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, items));
  };
  const shownValue = async (profileIds: string[]) => (await ctx.kernel.profiles.get(profileIds, { decrypt: true })).traits.find((t) => t.key === 'first_name')?.value;
  const newest = async (profileIds: string[]) => (await ctx.kernel.profiles.traitHistory(profileIds, 'first_name', { decrypt: true, limit: 1 }))[0]?.value;
  const at = day(1);

  it('shows the value received last on one profile', async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [name('Ann')], source: 'web', messageId: 't1', at }]);
    await set([{ profileId: id, traits: [name('Bob')], source: 'web', messageId: 't2', at }]);
    assert.equal(await shownValue([id]), 'Bob');
    assert.equal(await newest([id]), 'Bob');
  });

  it('shows the value received last on a merged person, canonical profile or not, whichever has the lower id', async () => {
    for (const canonicalLower of [true, false]) {
      for (const [firstHolder, secondHolder] of [['canonical', 'member'], ['member', 'canonical']] as const) {
        const [low, high] = [profileId(), profileId()].sort() as [string, string];
        const person = canonicalLower ? [low, high] : [high, low];
        const holder = { canonical: person[0] as string, member: person[1] as string };
        const label = `canonical ${canonicalLower ? 'lower' : 'higher'}, ${firstHolder} first`;
        await set([{ profileId: holder[firstHolder], traits: [name('Ann')], source: 'web', messageId: 't1', at, person }]);
        await set([{ profileId: holder[secondHolder], traits: [name('Bob')], source: 'app', messageId: 't2', at, person }]);
        assert.equal(await shownValue(person), 'Bob', label);
        assert.equal(await newest(person), 'Bob', label);
        // The first holder sends its value again, same time: received last, it is shown again (as on one profile).
        await set([{ profileId: holder[firstHolder], traits: [name('Ann')], source: 'web', messageId: 't3', at, person }]);
        assert.equal(await shownValue(person), 'Ann', label);
        assert.equal(await newest(person), 'Ann', label);
        // What a report of the trait reads too.
        const owner = new Map(person.map((id) => [id, person[0] as string]));
        assert.equal((await ctx.kernel.profiles.traitValues(owner, 'first_name')).get(person[0] as string), 'Ann', label);
      }
    }
  });
});

// Through ingestion: the merge itself (identity's transaction) writes what the person's history needs.
describeEachDialect('the trait history of a person merged by ingestion', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, profileOf } = useIngestServer(ctx);
  const post = async (url: string, payload: unknown) => {
    const response = await send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results?: { status: string }[] }).results?.map((r) => r.status);
  };

  it('ends with the value the view shows when the merge comes last', async () => {
    const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
    await post('/v1/consent', { mechanism: 'banner_save', userId: 'tail-user', purposes });
    await post('/v1/consent', { mechanism: 'banner_save', anonymousId: 'tail-device', purposes });
    const statuses = await post('/v1/batch', {
      batch: [
        { type: 'identify', anonymousId: 'tail-device', messageId: 'h-1', timestamp: '2026-03-20T03:00:00.000Z', traits: { first_name: 'Cleo' } },
        { type: 'identify', anonymousId: 'tail-device', messageId: 'h-4', timestamp: '2026-03-28T00:00:00.000Z', traits: { first_name: 'Cleo' } },
        { type: 'identify', userId: 'tail-user', messageId: 'h-3', timestamp: '2026-03-23T00:00:00.000Z', traits: { first_name: 'Ann' } },
      ],
    });
    assert.deepEqual(statuses, ['stored', 'stored', 'stored']);
    assert.deepEqual(await post('/v1/identify', { userId: 'tail-user', anonymousId: 'tail-device', messageId: 'h-2', timestamp: '2026-03-25T00:00:00.000Z', traits: {} }), ['stored']);
    const id = await profileOf('user_id', 'tail-user');
    assert.ok(id);
    const members = await ctx.kernel.identity.members(id);
    assert.equal(members.length, 2);
    const view = (await ctx.kernel.profiles.get(members, { decrypt: true })).traits.find((t) => t.key === 'first_name');
    assert.deepEqual([view?.value, view?.updatedAt], ['Cleo', '2026-03-28T00:00:00.000Z']);
    const history = await ctx.kernel.profiles.traitHistory(members, 'first_name', { decrypt: true });
    assert.deepEqual(
      history.map((h) => [h.value, h.previousValue, h.changedAt]),
      [
        ['Cleo', 'Ann', '2026-03-28T00:00:00.000Z'],
        ['Ann', 'Cleo', '2026-03-23T00:00:00.000Z'],
        ['Cleo', undefined, '2026-03-20T03:00:00.000Z'],
      ],
    );
  });
});
