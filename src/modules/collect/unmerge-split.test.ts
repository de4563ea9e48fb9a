import assert from 'node:assert/strict';
import { after, before, it, mock } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// A wrong merge split back out takes with it what arrived while the two were merged under the identifiers that came in
// through the merged profile: the events, traits and activity were written to the profile holding the message's
// strongest identifier, not to the survivor.
describeEachDialect('unmerge: what arrived during a merge', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const send = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const statuses = async (url: string, payload: unknown) => {
    const response = await send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: { status: string }[] }).results.map((r) => r.status);
  };
  const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  const eventsOf = async (profileId: string) => (await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 100 })).map((e) => e.messageId).sort();

  it('gives the split-out profile the events, traits and activity that arrived under its identifiers while merged', async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'banner_save', purposes })).statusCode, 200);
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes })).statusCode, 200);
    const page = (messageId: string, ids: Record<string, string>) => ({ type: 'page', messageId, name: 'Home', properties: { path: '/', url: `https://shop.example/?m=${messageId}` }, ...ids });
    assert.deepEqual(await statuses('/v1/batch', { batch: [page(`${device}-before`, { anonymousId: device }), page(`${user}-before`, { userId: user })] }), ['stored', 'stored']);
    const [deviceProfile, userProfile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [
      { identifiers: [{ type: 'anonymous_id', value: device }], source: 'web', at: new Date().toISOString() },
      { identifiers: [{ type: 'user_id', value: user }], source: 'web', at: new Date().toISOString() },
    ]);
    assert.ok(deviceProfile && userProfile && deviceProfile !== userProfile);

    // One message names both: the device's profile merges into the user's (a user id outranks an anonymous id).
    assert.deepEqual(await statuses('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link`, traits: { country: 'DE' } }), ['stored']);
    assert.equal(await ctx.kernel.identity.canonical(deviceProfile), userProfile);
    const [merge] = await ctx.kernel.identity.merges(userProfile);
    assert.equal(merge?.from, deviceProfile);

    // While merged: the device alone, the user alone.
    assert.deepEqual(
      await statuses('/v1/batch', {
        batch: [
          page(`${device}-during`, { anonymousId: device }),
          { type: 'identify', messageId: `${device}-traits`, anonymousId: device, traits: { country: 'FR' } },
          page(`${user}-during`, { userId: user }),
        ],
      }),
      ['stored', 'stored', 'stored'],
    );
    // A group large enough for SQLite's writer thread, from the device alone.
    const many = Array.from({ length: 70 }, (_, i) => page(`${device}-many-${i}`, { anonymousId: device }));
    assert.deepEqual(new Set(await statuses('/v1/batch', { batch: many })), new Set(['stored']));
    // One person to every reader while merged.
    const members = await ctx.kernel.identity.members(userProfile);
    assert.deepEqual((await ctx.kernel.collect.events(members, { decrypt: false, limit: 100 })).length, 76);
    const merged = await ctx.kernel.profiles.get(members, { decrypt: true });
    assert.equal(merged.traits.find((t) => t.key === 'country')?.value, 'FR');
    assert.equal(merged.computed.eventCount, 76);

    await ctx.kernel.identity.unmerge(userProfile, merge?.mergeId as string, CLI_ACTOR);
    assert.equal(await ctx.kernel.identity.canonical(deviceProfile), deviceProfile);
    assert.deepEqual(await eventsOf(deviceProfile), [`${device}-before`, `${device}-during`, `${device}-traits`, ...many.map((m) => m.messageId)].sort());
    assert.deepEqual(await eventsOf(userProfile), [`${user}-before`, `${user}-during`, `${user}-link`].sort());
    const deviceView = await ctx.kernel.profiles.get([deviceProfile], { decrypt: true });
    assert.equal(deviceView.traits.find((t) => t.key === 'country')?.value, 'FR');
    assert.equal(deviceView.computed.eventCount, 73);
    const userView = await ctx.kernel.profiles.get([userProfile], { decrypt: true });
    assert.equal(userView.traits.find((t) => t.key === 'country')?.value, 'DE');
    assert.equal(userView.computed.eventCount, 3);
    // Each side's personal event data is sealed with its own data key.
    const [during] = await ctx.kernel.collect.events([deviceProfile], { decrypt: true, limit: 1 });
    assert.ok(during && typeof during.personal === 'object');
  });

  it('writes a trait a merged-in device sends again when the person\'s view shows another value', async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'banner_save', purposes })).statusCode, 200);
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes })).statusCode, 200);
    assert.deepEqual(await statuses('/v1/identify', { anonymousId: device, messageId: `${device}-fr`, traits: { country: 'FR' } }), ['stored']);
    // The merge writes DE on the user's profile (the message names the user id); the device then sends FR again.
    assert.deepEqual(await statuses('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-de`, traits: { country: 'DE' } }), ['stored']);
    assert.deepEqual(await statuses('/v1/identify', { anonymousId: device, messageId: `${device}-fr-again`, traits: { country: 'FR' } }), ['stored']);
    const [profile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: user }], source: 'web', at: new Date().toISOString() }]);
    const view = await ctx.kernel.profiles.get(await ctx.kernel.identity.members(profile as string), { decrypt: true });
    assert.equal(view.traits.find((t) => t.key === 'country')?.value, 'FR');
    // The same value once more changes nothing.
    assert.deepEqual(await statuses('/v1/identify', { anonymousId: device, messageId: `${device}-fr-third`, traits: { country: 'FR' } }), ['stored']);
    const history = await ctx.kernel.profiles.traitHistory(await ctx.kernel.identity.members(profile as string), 'country', { decrypt: true });
    assert.deepEqual(history.map((h) => h.value).sort(), ['DE', 'FR', 'FR']);
  });

  it('binds the split-out profile by what the person withdrew while merged, not by what the survivor refused before', async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    const all = { ...purposes, 'marketing.communications.email': 'given' };
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'banner_save', purposes: all })).statusCode, 200);
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes: { ...purposes, 'marketing.communications.email': 'refused' } })).statusCode, 200);
    assert.deepEqual(await statuses('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link` }), ['stored']);
    const [deviceProfile, userProfile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [
      { identifiers: [{ type: 'anonymous_id', value: device }], source: 'web', at: new Date().toISOString() },
      { identifiers: [{ type: 'user_id', value: user }], source: 'web', at: new Date().toISOString() },
    ]);
    assert.equal(deviceProfile, userProfile, 'one person while merged');
    // While merged, the device withdraws analytics: it is recorded on the person, that is the surviving profile.
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'privacy_center', purposes: { 'analytics.reporting': 'withdrawn' } })).statusCode, 200);
    const [merge] = await ctx.kernel.identity.merges(userProfile as string);
    await ctx.kernel.identity.unmerge(userProfile as string, merge?.mergeId as string, CLI_ACTOR);
    const split = merge?.from as string;
    await ctx.kernel.consent.load([split, userProfile as string]);
    assert.equal(ctx.kernel.consent.decide(split, 'analytics.reporting').allowed, false, 'the withdrawal binds the split-out profile');
    assert.equal(ctx.kernel.consent.decide(split, 'personalize.profiling').allowed, true);
    assert.equal(ctx.kernel.consent.decide(split, 'marketing.communications.email').allowed, true, "the survivor's refusal before the merge is its own");
    assert.equal(ctx.kernel.consent.decide(userProfile as string, 'analytics.reporting').allowed, false);
    // The device alone after the split: the withdrawn purpose is not processed for it.
    const response = await send('/v1/track', { anonymousId: device, event: 'Product Viewed', messageId: `${device}-after`, properties: { product_id: 'p1' } });
    const [result] = (response.json() as { results: { status: string; purposes?: string[] }[] }).results;
    assert.ok(result?.status === 'refused' || !result?.purposes?.includes('analytics.reporting'), JSON.stringify(result));
  });

  it('binds a profile merged in two steps only by what each side recorded while one person with it', async () => {
    const device = uniqueId('anon-device');
    const other = uniqueId('anon-other');
    const user = uniqueId('user');
    const email = `${uniqueId('chain')}@shop-customer.net`;
    const all = { ...purposes, 'marketing.communications.email': 'given', 'marketing.communications.sms': 'given' };
    for (const ids of [{ anonymousId: device }, { anonymousId: other }, { userId: user }]) {
      assert.equal((await send('/v1/consent', { ...ids, mechanism: 'banner_save', purposes: all })).statusCode, 200);
    }
    const profileOf = async (type: string, value: string) => (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]))[0] as string;
    const deviceProfile = await profileOf('anonymous_id', device);
    const otherProfile = await profileOf('anonymous_id', other);
    // t1: the device joins the other device's person (one e-mail address); the user is still someone else.
    assert.deepEqual(await statuses('/v1/identify', { anonymousId: other, messageId: `${other}-mail`, traits: { email } }), ['stored']);
    assert.deepEqual(await statuses('/v1/identify', { anonymousId: device, messageId: `${device}-mail`, traits: { email } }), ['stored']);
    assert.equal(await ctx.kernel.identity.canonical(deviceProfile), otherProfile);
    // Before they are one person: the user withdraws SMS; the device's person withdraws e-mail.
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'privacy_center', purposes: { 'marketing.communications.sms': 'withdrawn' } })).statusCode, 200);
    assert.equal((await send('/v1/consent', { anonymousId: other, mechanism: 'privacy_center', purposes: { 'marketing.communications.email': 'withdrawn' } })).statusCode, 200);
    await new Promise((resolve) => setTimeout(resolve, 5));
    // t2: the user signs in with that address: both devices join the user.
    assert.deepEqual(await statuses('/v1/identify', { userId: user, messageId: `${user}-mail`, traits: { email } }), ['stored']);
    const userProfile = await profileOf('user_id', user);
    assert.equal(await ctx.kernel.identity.canonical(deviceProfile), userProfile);
    const merges = await ctx.kernel.identity.merges(userProfile);
    const deviceMerge = merges.find((m) => m.from === deviceProfile);
    assert.ok(deviceMerge);
    await ctx.kernel.identity.unmerge(userProfile, deviceMerge.mergeId, CLI_ACTOR);
    assert.equal(await ctx.kernel.identity.canonical(deviceProfile), deviceProfile);
    await ctx.kernel.consent.load([deviceProfile]);
    assert.equal(ctx.kernel.consent.decide(deviceProfile, 'marketing.communications.sms').allowed, true, 'the user withdrew before the device was one person with them');
    assert.equal(ctx.kernel.consent.decide(deviceProfile, 'marketing.communications.email').allowed, false, 'the other device withdrew while one person with the device');
    assert.equal(ctx.kernel.consent.decide(deviceProfile, 'analytics.reporting').allowed, true);
  });

  it('stores what a merged-in device sends alone without personal data in one transaction (no data key needed)', async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'banner_save', purposes })).statusCode, 200);
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes })).statusCode, 200);
    const page = (messageId: string, ids: Record<string, string>) => ({ type: 'page', messageId, name: 'Home', properties: { path: '/' }, ...ids });
    assert.deepEqual(await statuses('/v1/batch', { batch: [page(`${device}-before`, { anonymousId: device }), page(`${user}-before`, { userId: user })] }), ['stored', 'stored']);
    assert.deepEqual(await statuses('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link` }), ['stored']);
    const transactions = mock.method(ctx.kernel.storage.raw, 'transaction');
    try {
      for (let i = 0; i < 3; i++) assert.deepEqual(await statuses('/v1/batch', { batch: [page(`${device}-plain-${i}`, { anonymousId: device })] }), ['stored']);
      assert.equal(transactions.mock.callCount(), 3);
    } finally {
      transactions.mock.restore();
    }
    const [deviceProfile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: device }], source: 'web', at: new Date().toISOString() }]);
    const [plain] = await ctx.kernel.collect.events(await ctx.kernel.identity.members(deviceProfile as string), { decrypt: false, limit: 1 });
    assert.equal(plain?.personal, null);
  });
});
