import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { chunkSizes } from '../../storage/batching.ts';
import type { SqlExecutor } from '../../storage/index.ts';
import type { TraitsBatchItem } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const day = (d: number) => new Date(Date.UTC(2026, 2, d)).toISOString();

type Member = 'user' | 'device' | 'tablet';
/** One write of a key's scenario: who sends which value at which day. */
type Write = [Member, number, string];

/**
 * What the members of a person are sent for one key before they merge, one list per kind of case: a key one member
 * holds; a value whose time a re-sent message moved past another member's change (the merge writes it again), on either
 * member; a plain
 * newer value; equal times with entries (the one recorded last is shown); equal times without entries at that time
 * (moved forward by re-sent messages: the lower profile id is shown); three members at one time.
 */
const SCENARIOS: readonly (readonly Write[])[] = [
  [['user', 3, 'Ann']],
  [['device', 20, 'Cleo'], ['device', 28, 'Cleo'], ['user', 23, 'Ann']],
  [['user', 20, 'Ann'], ['user', 28, 'Ann'], ['device', 23, 'Cleo']],
  [['device', 20, 'Cleo'], ['user', 23, 'Ann']],
  [['user', 10, 'Ann'], ['device', 10, 'Bob']],
  [['device', 10, 'Bob'], ['user', 10, 'Ann']],
  [['device', 5, 'Bob'], ['user', 6, 'Ann'], ['device', 10, 'Bob'], ['user', 10, 'Ann']],
  [['user', 10, 'Ann'], ['device', 10, 'Bob'], ['tablet', 10, 'Tia']],
];

/** Key names of every kind: upper and lower case, accents, other scripts (the statements compare keys, never order them). */
const keyName = (i: number) => [`trait_${i}`, `Trait_${i}`, `Ünï_${i}`, `ключ_${i}`, `t ${i}`][i % 5] as string;

describeEachDialect('merging a person with many traits', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => Array.from({ length: n }, (_, i) => (dialect === 'postgres' ? `$${i + 1}` : '?')).join(', ');
  const all = <R>(text: string, params: unknown[]) => ctx.kernel.storage.raw.all<R>(text, params);

  /** Profiles of one person, with `keys` keys sent as SCENARIOS says (scenario i % SCENARIOS.length for key i). */
  const person = async (keys: number) => {
    const ids: Record<Member, string> = { user: profileId(), device: profileId(), tablet: profileId() };
    const steps = Math.max(...SCENARIOS.map((s) => s.length));
    for (let step = 0; step < steps; step++) {
      const items: TraitsBatchItem[] = [];
      for (let i = 0; i < keys; i++) {
        const write = SCENARIOS[i % SCENARIOS.length]?.[step];
        if (!write) continue;
        const [member, d, value] = write;
        items.push({ profileId: ids[member], traits: [{ key: keyName(i), value, category: 'user.name', personal: i % 2 === 0 }], source: 'web', messageId: `m${step}-${i}`, at: day(d) });
      }
      await ctx.kernel.profiles.prepare(items.map((item) => item.profileId));
      await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, items));
    }
    return [ids.user, ids.device, ids.tablet];
  };

  type Trait = { profile_id: string; key: string; value: string; encrypted: number; category: string; updated_at: string };
  type Entry = { id: string; profile_id: string; key: string; changed_at: string; value: string; encrypted: number; category: string };

  /**
   * The merge worked out one key at a time, with a query per question: the value the view shows (newest; at equal
   * times the holder whose entry at that time was recorded last, else the lower profile id) and the person's newest
   * history entry; a confirmation where they differ.
   */
  const oracle = async (members: string[], keys: string[]) => {
    const shown = new Map<string, Trait>();
    const confirmations: string[][] = [];
    for (const key of keys) {
      const rows = await all<Trait>(`select * from profiles_traits where profile_id in (${p(members.length)}) and key = ${dialect === 'postgres' ? `$${members.length + 1}` : '?'}`, [...members, key]);
      const time = rows.map((r) => r.updated_at).sort().at(-1);
      const tied = rows.filter((r) => r.updated_at === time);
      let row = tied[0] as Trait;
      if (tied.length > 1) {
        const n = tied.length;
        const [last] = await all<{ profile_id: string }>(
          `select profile_id from profiles_trait_history where profile_id in (${p(n)}) and key = ${dialect === 'postgres' ? `$${n + 1}` : '?'} and changed_at = ${dialect === 'postgres' ? `$${n + 2}` : '?'} order by id desc limit 1`,
          [...tied.map((r) => r.profile_id), key, time],
        );
        row = tied.find((r) => r.profile_id === last?.profile_id) ?? ([...tied].sort((a, b) => (a.profile_id < b.profile_id ? -1 : 1))[0] as Trait);
      }
      shown.set(key, row);
      if (rows.length < 2) continue;
      const [newest] = await all<Entry>(
        `select * from profiles_trait_history where profile_id in (${p(members.length)}) and key = ${dialect === 'postgres' ? `$${members.length + 1}` : '?'} order by changed_at desc, id desc limit 1`,
        [...members, key],
      );
      if (newest && (newest.value !== row.value || newest.encrypted !== row.encrypted || newest.category !== row.category)) confirmations.push([row.profile_id, key, row.updated_at, row.value]);
    }
    return { shown, confirmations: confirmations.sort() };
  };

  const historyIds = async (members: string[]) => new Set((await all<{ id: string }>(`select id from profiles_trait_history where profile_id in (${p(members.length)})`, members)).map((r) => r.id));

  it('writes what a per-key reading of the history gives, for 50 keys on every member', async () => {
    const members = await person(50);
    const keys = Array.from({ length: 50 }, (_, i) => keyName(i));
    const expected = await oracle(members, keys);
    // The cases are all there: confirmations on both sides, and ties won by either member.
    assert.ok(expected.confirmations.length >= 10, String(expected.confirmations.length));
    assert.equal(new Set(expected.confirmations.map((c) => c[0])).size, 2);
    assert.equal(new Set([...expected.shown.values()].filter((r) => r.updated_at === day(10)).map((r) => r.profile_id)).size, 3);

    const before = await historyIds(members);
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.merged(tx, [members]));
    const added = (await all<Entry>(`select * from profiles_trait_history where profile_id in (${p(members.length)})`, members)).filter((e) => !before.has(e.id));
    assert.deepEqual(added.map((e) => [e.profile_id, e.key, e.changed_at, e.value]).sort(), expected.confirmations);

    // The view reads the same values as the per-key oracle (its ties too are read for every key at once).
    const view = await ctx.kernel.profiles.get(members, { decrypt: false });
    assert.deepEqual(
      view.traits.map((t) => [t.key, t.profileId, t.updatedAt]).sort(),
      [...expected.shown.values()].map((r) => [r.key, r.profile_id, r.updated_at]).sort(),
    );
    // Merged again: the history already ends with what the view shows.
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.merged(tx, [members]));
    assert.equal((await historyIds(members)).size, before.size + added.length);
  });

  it('merges two persons at once as it merges each alone', async () => {
    const [first, second] = [await person(21), await person(14)];
    const expected = [...(await oracle(first, Array.from({ length: 21 }, (_, i) => keyName(i)))).confirmations, ...(await oracle(second, Array.from({ length: 14 }, (_, i) => keyName(i)))).confirmations].sort();
    const before = await historyIds([...first, ...second]);
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.merged(tx, [first, second]));
    const added = (await all<Entry>(`select * from profiles_trait_history where profile_id in (${p(6)})`, [...first, ...second])).filter((e) => !before.has(e.id));
    assert.deepEqual(added.map((e) => [e.profile_id, e.key, e.changed_at, e.value]).sort(), expected);
  });

  it('reads the history in as many statements for 50 keys as for 5', async () => {
    const statements = async (keys: number) => {
      const members = await person(keys);
      const before = await historyIds(members);
      const count = { reads: 0, writes: 0 };
      await ctx.kernel.storage.raw.transaction(async (tx) => {
        const counting: SqlExecutor = {
          all: (text, params) => (count.reads++, tx.all(text, params)),
          run: (text, params) => (count.writes++, tx.run(text, params)),
        };
        await ctx.kernel.profiles.merged(counting, [members]);
      });
      return { ...count, written: (await historyIds(members)).size - before.size };
    };
    const few = await statements(5);
    const many = await statements(50);
    // Read: the current traits, the ties' history, the newest entries. Written: the entries, in power-of-two chunks.
    assert.equal(few.reads, 3);
    assert.equal(many.reads, 3);
    assert.ok(many.written > few.written);
    assert.equal(few.writes, chunkSizes(few.written).length);
    assert.equal(many.writes, chunkSizes(many.written).length);
  });
});
