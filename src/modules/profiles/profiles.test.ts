import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { openKernel } from '../../kernel.ts';
import type { SqlExecutor } from '../../storage/index.ts';
import { MASKED, type ActivityInput, type TraitInput, type TraitsBatchItem } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const email = (value: string): TraitInput => ({ key: 'email', value, category: 'user.contact.email', personal: true });
const plan = (value: string): TraitInput => ({ key: 'plan', value, category: 'user.account', personal: false });
const at = (minute: number) => new Date(Date.UTC(2025, 0, 1, 12, minute)).toISOString();

describeEachDialect('profiles', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');
  const set = async (items: TraitsBatchItem[]) => {
    await ctx.kernel.profiles.prepare(items.map((i) => i.profileId));
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, items));
  };
  const record = (items: ActivityInput[]) => ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, items));
  const rawTraits = (id: string) => ctx.kernel.storage.raw.all<{ key: string; value: string; encrypted: number }>(`select key, value, encrypted from profiles_traits where profile_id = ${p(1)} order by key`, [id]);
  const historyRows = (id: string) => ctx.kernel.storage.raw.all<Record<string, unknown>>(`select * from profiles_trait_history where profile_id = ${p(1)}`, [id]);

  it('stores personal traits encrypted at rest and other traits as JSON', async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [email('ada@shop.io'), plan('pro')], source: 'web', messageId: 'm1', at: at(1) }]);
    const rows = await rawTraits(id);
    assert.equal(rows.length, 2);
    assert.equal(rows[0]?.encrypted, 1);
    assert.match(rows[0]?.value ?? '', /^c1\./);
    assert.ok(!JSON.stringify(rows).includes('ada@shop.io'), 'no plaintext personal value at rest');
    assert.ok(!JSON.stringify(await historyRows(id)).includes('ada@shop.io'), 'no plaintext in the history either');
    assert.deepEqual({ ...rows[1] }, { key: 'plan', value: '"pro"', encrypted: 0 });
    const view = await ctx.kernel.profiles.get([id], { decrypt: true });
    assert.deepEqual(
      view.traits.map((t) => [t.key, t.value, t.state, t.category, t.source, t.messageId]),
      [
        ['email', 'ada@shop.io', 'decrypted', 'user.contact.email', 'web', 'm1'],
        ['plan', 'pro', 'plain', 'user.account', 'web', 'm1'],
      ],
    );
  });

  it('masks personal values, and values of traits the plan in force does not declare, for readers who may not decrypt them', async () => {
    const id = profileId();
    const country: TraitInput = { key: 'country', value: 'FR', category: 'user.contact.address.country', personal: false };
    await set([{ profileId: id, traits: [email('grace@shop.io'), plan('basic'), country], source: 'web', at: at(1) }]);
    const view = await ctx.kernel.profiles.get([id], { decrypt: false });
    // `plan` is no trait of the plan in force (the default plan): nothing says it is not personal.
    assert.deepEqual(view.traits.map((t) => [t.key, t.value, t.state]), [
      ['country', 'FR', 'plain'],
      ['email', MASKED, 'masked'],
      ['plan', MASKED, 'masked'],
    ]);
    assert.deepEqual((await ctx.kernel.profiles.get([id], { decrypt: true })).traits.map((t) => [t.key, t.state]), [
      ['country', 'plain'],
      ['email', 'decrypted'],
      ['plan', 'plain'],
    ]);
  });

  it('keeps every change with its previous value, skips unchanged and older values', async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [email('a@shop.io'), plan('basic')], source: 'web', messageId: 'm1', at: at(1) }]);
    await set([{ profileId: id, traits: [email('a@shop.io'), plan('basic')], source: 'web', messageId: 'm2', at: at(2) }]);
    assert.equal((await historyRows(id)).length, 2, 'unchanged values write nothing');
    await set([
      { profileId: id, traits: [email('b@shop.io')], source: 'crm', messageId: 'm3', at: at(3) },
      { profileId: id, traits: [plan('pro'), { ...plan('x'), key: 'nested', value: { b: 1, a: [1, 2] } }], source: 'web', messageId: 'm4', at: at(4) },
      { profileId: id, traits: [plan('legacy')], source: 'import', messageId: 'm0', at: at(0) },
    ]);
    const history = await ctx.kernel.profiles.traitHistory([id], undefined, { decrypt: true });
    assert.deepEqual(
      history.map((h) => [h.key, h.value, h.previousValue, h.messageId]),
      [
        ['nested', { a: [1, 2], b: 1 }, undefined, 'm4'],
        ['plan', 'pro', 'basic', 'm4'],
        ['email', 'b@shop.io', 'a@shop.io', 'm3'],
        ['plan', 'basic', undefined, 'm1'],
        ['email', 'a@shop.io', undefined, 'm1'],
      ],
    );
    const masked = await ctx.kernel.profiles.traitHistory([id], 'email', { decrypt: false });
    assert.deepEqual(masked.map((h) => [h.value, h.valueState, h.previousValue, h.previousState]), [
      [MASKED, 'masked', MASKED, 'masked'],
      [MASKED, 'masked', undefined, null],
    ]);
    // Same value with keys in another order is unchanged too.
    await set([{ profileId: id, traits: [{ ...plan('x'), key: 'nested', value: { a: [1, 2], b: 1 } }], source: 'web', at: at(5) }]);
    assert.equal((await historyRows(id)).length, 5);
  });

  it('never replaces a newer stored value with an older one, even when another writer stored it after this one read', async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [plan('free')], source: 'web', at: at(1) }]);
    // On PostgreSQL another process may commit between this writer's read of the current values and its write; on
    // SQLite writers are serialized and read inside their write transaction, so there the newer value comes first.
    const second = await openKernel(ctx.env.config);
    try {
      const newer = () => second.storage.raw.transaction((tx) => second.profiles.setTraitsBatch(tx, [{ profileId: id, traits: [plan('gold')], source: 'crm', at: at(30) }]));
      if (dialect === 'sqlite') await newer();
      await ctx.kernel.storage.raw.transaction(async (tx) => {
        let first = true;
        const racing: SqlExecutor = {
          all: async <R>(text: string, params?: readonly unknown[]) => {
            const rows = await tx.all<R>(text, params);
            if (first && dialect === 'postgres') await newer();
            first = false;
            return rows;
          },
          run: (text, params) => tx.run(text, params),
        };
        await ctx.kernel.profiles.setTraitsBatch(racing, [{ profileId: id, traits: [plan('silver')], source: 'web', at: at(10) }]);
      });
    } finally {
      await second.close();
    }
    assert.deepEqual((await rawTraits(id)).map((r) => [r.key, r.value]), [['plan', '"gold"']]);
  });

  it('refuses personal traits for a profile whose data key was not prepared, instead of waiting on the database', async () => {
    const id = profileId();
    await assert.rejects(
      ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, [{ profileId: id, traits: [email('x@shop.io')], source: 'web', at: at(1) }])),
      (e) => isCandorError(e, 'PROFILES_NOT_PREPARED'),
    );
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.setTraitsBatch(tx, [{ profileId: id, traits: [plan('free')], source: 'web', at: at(1) }]));
    assert.equal((await rawTraits(id)).length, 1);
  });

  it('computes first and last seen, event and order counts, total and average order value over a batch', async () => {
    const id = profileId();
    await record([
      { profileId: id, at: at(5), kind: 'page' },
      { profileId: id, at: at(2), kind: 'track', event: 'Product Viewed' },
      { profileId: id, at: at(7), kind: 'track', event: 'Order Completed', revenue: 40, currency: 'eur' },
      { profileId: id, at: at(8), kind: 'track', event: 'Order Completed', revenue: 20, currency: 'EUR' },
      { profileId: id, at: at(9), kind: 'track', event: 'Order Completed', revenue: 99, currency: 'USD' },
    ]);
    await record([{ profileId: id, at: at(1), kind: 'track', event: 'Order Completed', revenue: 30 }]);
    const { computed } = await ctx.kernel.profiles.get([id], { decrypt: false });
    assert.deepEqual(computed, {
      firstSeenAt: at(1),
      lastSeenAt: at(9),
      eventCount: 6,
      orderCount: 4,
      totalOrderValue: 90,
      averageOrderValue: 30,
      currency: 'EUR',
    });
  });

  it('averages over the orders in the total: an order without a price or in another currency counts but does not lower it', async () => {
    const [id, member] = [profileId(), profileId()];
    await record([
      { profileId: id, at: at(1), kind: 'track', event: 'Order Completed', revenue: 50, currency: 'EUR' },
      { profileId: id, at: at(2), kind: 'track', event: 'Order Completed' },
    ]);
    await record([
      { profileId: id, at: at(3), kind: 'track', event: 'Order Completed', currency: 'EUR' },
      { profileId: id, at: at(4), kind: 'track', event: 'Order Completed', revenue: 10, currency: 'GBP' },
      { profileId: member, at: at(5), kind: 'track', event: 'Order Completed' },
    ]);
    const { computed } = await ctx.kernel.profiles.get([id], { decrypt: false });
    assert.deepEqual([computed.orderCount, computed.totalOrderValue, computed.averageOrderValue, computed.currency], [4, 50, 50, 'EUR']);
    const merged = await ctx.kernel.profiles.get([id, member], { decrypt: false });
    assert.deepEqual([merged.computed.orderCount, merged.computed.totalOrderValue, merged.computed.averageOrderValue], [5, 50, 50]);
    const unpriced = await ctx.kernel.profiles.get([member], { decrypt: false });
    assert.deepEqual([unpriced.computed.orderCount, unpriced.computed.averageOrderValue, unpriced.computed.currency], [1, null, null]);
  });

  it('keeps order totals to the cent on both databases and leaves out values no order has', async () => {
    const id = profileId();
    await record([{ profileId: id, at: at(1), kind: 'track', event: 'Order Completed', revenue: 16_777_216, currency: 'EUR' }]);
    await record([{ profileId: id, at: at(2), kind: 'track', event: 'Order Completed', revenue: 1.01, currency: 'EUR' }]);
    // A value of 1e39 overflowed PostgreSQL's column (the whole group failed); 1e308 twice made SQLite's total infinite.
    await record([{ profileId: id, at: at(3), kind: 'track', event: 'Order Completed', revenue: 1e39, currency: 'EUR' }]);
    await record([{ profileId: id, at: at(4), kind: 'track', event: 'Order Completed', revenue: 1e308, currency: 'EUR' }]);
    await record([{ profileId: id, at: at(5), kind: 'track', event: 'Order Completed', revenue: -1e308, currency: 'EUR' }]);
    const { computed } = await ctx.kernel.profiles.get([id], { decrypt: false });
    assert.deepEqual([computed.orderCount, computed.totalOrderValue, computed.averageOrderValue], [5, 16_777_217.01, 8_388_608.505]);
  });

  it("adds a batch's orders in the stored currency even when the batch's first order is in another one", async () => {
    const [id, fresh] = [profileId(), profileId()];
    await record([{ profileId: id, at: at(1), kind: 'track', event: 'Order Completed', revenue: 20, currency: 'EUR' }]);
    const batch = (profile: string): ActivityInput[] => [
      { profileId: profile, at: at(2), kind: 'track', event: 'Order Completed', revenue: 50, currency: 'USD' },
      { profileId: profile, at: at(3), kind: 'track', event: 'Order Completed', revenue: 100, currency: 'eur' },
      { profileId: profile, at: at(4), kind: 'track', event: 'Order Completed', revenue: 30 },
    ];
    // On SQLite ingestion writes through the writer thread: the same statements must give the same result there.
    const deferred = ctx.kernel.storage.deferred;
    assert.equal(deferred !== undefined, dialect === 'sqlite');
    await (deferred ? deferred.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, [...batch(id), ...batch(fresh)])) : record([...batch(id), ...batch(fresh)]));
    const stored = (await ctx.kernel.profiles.get([id], { decrypt: false })).computed;
    assert.deepEqual([stored.orderCount, stored.totalOrderValue, stored.averageOrderValue, stored.currency], [4, 150, 50, 'EUR']);
    // The first currency ever seen stays the profile's: for a new profile that is the batch's first.
    const first = (await ctx.kernel.profiles.get([fresh], { decrypt: false })).computed;
    assert.deepEqual([first.orderCount, first.totalOrderValue, first.averageOrderValue, first.currency], [3, 80, 40, 'USD']);
  });

  it('answers order totals and averages rounded to money, whatever order the merge members come in', async () => {
    const [first, second, third] = [profileId(), profileId(), profileId()];
    await record([
      { profileId: first, at: at(1), kind: 'track', event: 'Order Completed', revenue: 10.1, currency: 'EUR' },
      { profileId: first, at: at(2), kind: 'track', event: 'Order Completed', revenue: 20.2, currency: 'EUR' },
      { profileId: second, at: at(3), kind: 'track', event: 'Order Completed', revenue: 30.3, currency: 'EUR' },
      { profileId: third, at: at(4), kind: 'track', event: 'Order Completed', revenue: 40.4, currency: 'EUR' },
    ]);
    for (const members of [[first, second, third], [third, second, first], [second, first, third], [third, first, second]]) {
      const { computed } = await ctx.kernel.profiles.get(members, { decrypt: false });
      assert.deepEqual([computed.orderCount, computed.totalOrderValue, computed.averageOrderValue], [4, 101, 25.25], members.join());
    }
    // Stored as added (10.1 + 20.2 is 30.299999999999997 in a double); answered rounded.
    const { computed } = await ctx.kernel.profiles.get([first], { decrypt: false });
    assert.deepEqual([computed.totalOrderValue, computed.averageOrderValue], [30.3, 15.15]);
  });

  it('reads merge members as one profile: the latest value per key, computed traits combined', async () => {
    const [canonical, member] = [profileId(), profileId()];
    await set([
      { profileId: canonical, traits: [plan('basic'), email('old@shop.io')], source: 'web', at: at(1) },
      { profileId: member, traits: [plan('pro'), { key: 'country', value: 'FR', category: 'user.demographic', personal: false }], source: 'app', at: at(3) },
      { profileId: canonical, traits: [email('new@shop.io')], source: 'web', at: at(4) },
    ]);
    await record([
      { profileId: canonical, at: at(1), kind: 'track', event: 'Order Completed', revenue: 10, currency: 'EUR' },
      { profileId: member, at: at(6), kind: 'track', event: 'Order Completed', revenue: 30, currency: 'EUR' },
      { profileId: member, at: at(2), kind: 'page' },
    ]);
    const view = await ctx.kernel.profiles.get([canonical, member], { decrypt: true });
    assert.deepEqual(view.traits.map((t) => [t.key, t.value, t.profileId]), [
      ['country', 'FR', member],
      ['email', 'new@shop.io', canonical],
      ['plan', 'pro', member],
    ]);
    assert.equal(view.computed.eventCount, 3);
    assert.equal(view.computed.orderCount, 2);
    assert.equal(view.computed.totalOrderValue, 40);
    assert.equal(view.computed.averageOrderValue, 20);
    assert.equal(view.computed.firstSeenAt, at(1));
    assert.equal(view.computed.lastSeenAt, at(6));
    const history = await ctx.kernel.profiles.traitHistory([canonical, member], 'plan', { decrypt: true });
    assert.deepEqual(history.map((h) => [h.value, h.profileId]), [['pro', member], ['basic', canonical]]);
  });

  it("makes a crypto-shredded profile's personal traits unreadable and keeps the rest", async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [email('erased@shop.io'), plan('pro')], source: 'web', at: at(1) }]);
    const stored = (await rawTraits(id))[0]?.value as string;
    assert.equal(await ctx.kernel.keyring.destroySubjectKey(id, CLI_ACTOR, 'essential.legal_obligation'), true);
    await assert.rejects(ctx.kernel.keyring.decrypt(stored, 'profiles.traits.email'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
    const view = await ctx.kernel.profiles.get([id], { decrypt: true });
    assert.deepEqual(view.traits.map((t) => [t.key, t.value, t.state]), [
      ['email', null, 'unreadable'],
      ['plan', 'pro', 'plain'],
    ]);
    const history = await ctx.kernel.profiles.traitHistory([id], 'email', { decrypt: true });
    assert.equal(history[0]?.valueState, 'unreadable');
  });

  it('counts a value as unchanged for a merged person only if it is what the person\'s view shows', async () => {
    const [main, device] = [profileId(), profileId()];
    const person = [main, device];
    await set([{ profileId: main, traits: [plan('basic'), email('main@shop.io')], source: 'web', at: at(1) }]);
    await set([{ profileId: device, traits: [plan('pro'), email('device@shop.io')], source: 'app', at: at(2) }]);
    // The same values again on the main profile: its own rows are unchanged, but the person's view shows the device's
    // newer ones, so they are written (the view shows them again).
    await set([{ profileId: main, traits: [plan('basic'), email('main@shop.io')], source: 'web', at: at(3), person }]);
    let view = await ctx.kernel.profiles.get(person, { decrypt: true });
    assert.deepEqual(view.traits.map((t) => [t.key, t.value]), [['email', 'main@shop.io'], ['plan', 'basic']]);
    assert.equal((await historyRows(main)).length, 4);
    // Now they are what the view shows and the main profile's own values: nothing is written.
    await set([{ profileId: main, traits: [plan('basic'), email('main@shop.io')], source: 'web', at: at(4), person }]);
    assert.equal((await historyRows(main)).length, 4);
    // The device sends what the view shows but its own value differs: the device keeps it (for an unmerge).
    await set([{ profileId: device, traits: [plan('basic')], source: 'app', at: at(5), person }]);
    assert.equal((await historyRows(device)).length, 3);
    view = await ctx.kernel.profiles.get(person, { decrypt: true });
    assert.deepEqual(view.traits.map((t) => [t.key, t.value]), [['email', 'main@shop.io'], ['plan', 'basic']]);
  });

  it('keeps on its own profile a value the person sends while merged that another member already shows', async () => {
    const [user, device] = [profileId(), profileId()];
    const person = [user, device];
    const name = (value: string): TraitInput => ({ key: 'first_name', value, category: 'user.name', personal: true });
    const country = (value: string): TraitInput => ({ key: 'country', value, category: 'user.contact.address.country', personal: false });
    await set([{ profileId: user, traits: [name('Bob'), country('FR')], source: 'web', messageId: 'u1', at: at(1) }]);
    // Merged: the device alone sends Ann/DE (held by the device), then the signed-in user sends Ann/DE.
    await set([{ profileId: device, traits: [name('Ann'), country('DE')], source: 'app', messageId: 'd1', at: at(3), person }]);
    await set([{ profileId: user, traits: [name('Ann'), country('DE')], source: 'web', messageId: 'u2', at: at(4), person }]);
    const merged = await ctx.kernel.profiles.get(person, { decrypt: true });
    assert.deepEqual(merged.traits.map((t) => [t.key, t.value]), [['country', 'DE'], ['first_name', 'Ann']]);
    // The merged history shows the view's one change; the user's second message changed nothing there.
    const mergedHistory = await ctx.kernel.profiles.traitHistory(person, 'first_name', { decrypt: true });
    assert.deepEqual(mergedHistory.map((h) => [h.value, h.previousValue, h.profileId]), [['Ann', 'Bob', device], ['Bob', undefined, user]]);
    // Unmerged, the user's profile has what the user sent, and its own history says so.
    const alone = await ctx.kernel.profiles.get([user], { decrypt: true });
    assert.deepEqual(alone.traits.map((t) => [t.key, t.value, t.updatedAt, t.messageId]), [['country', 'DE', at(4), 'u2'], ['first_name', 'Ann', at(4), 'u2']]);
    const own = await ctx.kernel.profiles.traitHistory([user], undefined, { decrypt: true });
    assert.deepEqual(own.map((h) => [h.key, h.value, h.previousValue]), [['country', 'DE', 'FR'], ['first_name', 'Ann', 'Bob'], ['country', 'FR', undefined], ['first_name', 'Bob', undefined]]);
  });

  it("names as previous value what the person's view showed, and each profile's own value once unmerged", async () => {
    const [user, device] = [profileId(), profileId()];
    const person = [user, device];
    const name = (value: string): TraitInput => ({ key: 'first_name', value, category: 'user.name', personal: true });
    await set([{ profileId: device, traits: [name('Ann'), plan('free')], source: 'app', at: at(1) }]);
    await set([{ profileId: user, traits: [name('Bob'), plan('pro')], source: 'web', at: at(2) }]);
    // Merged: the view shows the user's newer Bob/pro; the device sends Ann/free again.
    await set([{ profileId: device, traits: [name('Ann'), plan('free')], source: 'app', at: at(4), person }]);
    const view = await ctx.kernel.profiles.get(person, { decrypt: true });
    assert.deepEqual(view.traits.map((t) => [t.key, t.value]), [['first_name', 'Ann'], ['plan', 'free']]);
    for (const [key, values] of [['first_name', ['Ann', 'Bob']], ['plan', ['free', 'pro']]] as const) {
      const history = await ctx.kernel.profiles.traitHistory(person, key, { decrypt: true });
      assert.deepEqual(history.map((h) => [h.value, h.previousValue, h.profileId]), [
        [values[0], values[1], device],
        [values[1], values[0], user],
        [values[0], undefined, device],
      ]);
    }
    const masked = await ctx.kernel.profiles.traitHistory(person, 'first_name', { decrypt: false });
    assert.deepEqual(masked.map((h) => [h.valueState, h.previousState]), [['masked', 'masked'], ['masked', 'masked'], ['masked', null]]);
    // Unmerged, each profile reads its own changes: the device's re-sent value changed nothing of its own.
    const deviceHistory = await ctx.kernel.profiles.traitHistory([device], undefined, { decrypt: true });
    assert.deepEqual(deviceHistory.map((h) => [h.key, h.value, h.previousValue, h.changedAt]).sort(), [['first_name', 'Ann', undefined, at(1)], ['plan', 'free', undefined, at(1)]]);
    const userHistory = await ctx.kernel.profiles.traitHistory([user], undefined, { decrypt: true });
    assert.deepEqual(userHistory.map((h) => [h.key, h.value, h.previousValue]).sort(), [['first_name', 'Bob', undefined], ['plan', 'pro', undefined]]);
    // A limit counts the changes listed, not the entries left out.
    const newest = await ctx.kernel.profiles.traitHistory([device], 'plan', { decrypt: true, limit: 1 });
    assert.deepEqual(newest.map((h) => [h.value, h.changedAt]), [['free', at(1)]]);
  });

  it('forgets every row of a profile', async () => {
    const id = profileId();
    await set([{ profileId: id, traits: [email('gone@shop.io')], source: 'web', at: at(1) }]);
    await record([{ profileId: id, at: at(1), kind: 'page' }]);
    await ctx.kernel.profiles.forget(id);
    const view = await ctx.kernel.profiles.get([id], { decrypt: true });
    assert.deepEqual(view.traits, []);
    assert.equal(view.computed.eventCount, 0);
    assert.deepEqual(await historyRows(id), []);
  });
});
