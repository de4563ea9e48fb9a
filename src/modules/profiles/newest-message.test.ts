import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { TraitInput, TraitsBatchItem } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const name = (value: string): TraitInput => ({ key: 'first_name', value, category: 'user.name', personal: true });
const country = (value: string): TraitInput => ({ key: 'country', value, category: 'user.contact.address.country', personal: false });
const at = (hour: number, minute = 0) => new Date(Date.UTC(2026, 0, 1, hour, minute)).toISOString();

// Messages arrive out of order (an offline mobile queue): the value shown is that of the newest message by event time,
// also when a newer message only re-sent the value already stored.
describeEachDialect('traits show the newest message by event time', (dialect) => {
  const ctx = useKernel(dialect);
  const set = async (items: TraitsBatchItem[]) => {
    await ctx.kernel.profiles.prepare(items.flatMap((i) => [i.profileId, ...(i.person ?? [])]));
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, items));
  };
  const view = async (profileIds: string[]) =>
    (await ctx.kernel.profiles.get(profileIds, { decrypt: true })).traits.map((t) => [t.key, t.value, t.updatedAt, t.messageId, t.profileId]);
  const history = async (profileIds: string[], key: string) =>
    (await ctx.kernel.profiles.traitHistory(profileIds, key, { decrypt: true })).map((h) => [h.value, h.previousValue, h.changedAt, h.profileId]);

  it('ignores an older value that arrives after a newer message re-sent the stored one, with no history entry for the re-sent one', async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [name('Ann'), country('DE')], source: 'app', messageId: 'm1', at: at(10) }]);
    await set([{ profileId: id, traits: [name('Ann'), country('DE')], source: 'app', messageId: 'm2', at: at(12) }]);
    await set([{ profileId: id, traits: [name('Bob'), country('FR')], source: 'app', messageId: 'm3', at: at(11) }]);
    assert.deepEqual(await view([id]), [
      ['country', 'DE', at(12), 'm2', id],
      ['first_name', 'Ann', at(12), 'm2', id],
    ]);
    assert.deepEqual(await history([id], 'first_name'), [['Ann', undefined, at(10), id]]);
    assert.deepEqual(await history([id], 'country'), [['DE', undefined, at(10), id]]);
    // Not only left out by readers: the re-sent values wrote no history row.
    const p = dialect === 'postgres' ? '$1' : '?';
    const rows = await ctx.kernel.storage.raw.all<{ message_id: string }>(`select message_id from profiles_trait_history where profile_id = ${p}`, [id]);
    assert.deepEqual(rows.map((r) => r.message_id), ['m1', 'm1']);
  });

  it('moves the time of the value the person shows forward when it is held by another member', async () => {
    const [user, device] = [profileId(), profileId()];
    const person = [user, device];
    await set([{ profileId: user, traits: [name('Ann')], source: 'web', messageId: 'u1', at: at(10) }]);
    await set([{ profileId: device, traits: [name('Ann')], source: 'app', messageId: 'd1', at: at(11) }]);
    // Merged: the user re-sends Ann at 12:00 (unchanged on the user, and what the view shows), then the device's queued
    // Bob of 11:30 arrives: newer than the device's own Ann, so the device keeps it, but older than the person's Ann.
    await set([{ profileId: user, traits: [name('Ann')], source: 'web', messageId: 'u2', at: at(12), person }]);
    await set([{ profileId: device, traits: [name('Bob')], source: 'app', messageId: 'd2', at: at(11, 30), person }]);
    assert.deepEqual(await view(person), [['first_name', 'Ann', at(12), 'u2', user]]);
    // The view's history ends with the value it shows: Ann again at 12:00, after the device's Bob.
    assert.deepEqual(await history(person, 'first_name'), [
      ['Ann', 'Bob', at(12), user],
      ['Bob', 'Ann', at(11, 30), device],
      ['Ann', undefined, at(10), user],
    ]);
    // Apart, each keeps what it was sent, and its own history lists its own changes only.
    assert.deepEqual(await view([device]), [['first_name', 'Bob', at(11, 30), 'd2', device]]);
    assert.deepEqual(await history([user], 'first_name'), [['Ann', undefined, at(10), user]]);
    assert.deepEqual(await history([device], 'first_name'), [
      ['Bob', 'Ann', at(11, 30), device],
      ['Ann', undefined, at(11), device],
    ]);
  });

  it('moves the time forward on the member the view shows when it re-sends its value, for the person as for one profile', async () => {
    const [user, device] = [profileId(), profileId()];
    const person = [user, device];
    await set([{ profileId: device, traits: [country('DE')], source: 'app', messageId: 'd1', at: at(9) }]);
    await set([{ profileId: user, traits: [country('DE')], source: 'web', messageId: 'u1', at: at(10) }]);
    await set([{ profileId: user, traits: [country('DE')], source: 'web', messageId: 'u2', at: at(12), person }]);
    await set([{ profileId: device, traits: [country('FR')], source: 'app', messageId: 'd2', at: at(11), person }]);
    assert.deepEqual(await view(person), [['country', 'DE', at(12), 'u2', user]]);
    assert.deepEqual(await history(person, 'country'), [
      ['DE', 'FR', at(12), user],
      ['FR', 'DE', at(11), device],
      ['DE', undefined, at(9), device],
    ]);
    assert.deepEqual(await history([user], 'country'), [['DE', undefined, at(10), user]]);
  });
});
