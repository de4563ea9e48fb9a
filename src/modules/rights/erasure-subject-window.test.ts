import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { ingestPerson, person, sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { IdentifierPseudonym } from '../../shared/subject-data.ts';

// The subject an erasure is given is read before its transaction (findSubject, then the request's run): whatever is
// linked to the person or merged into them in between must be erased and suppressed all the same.
describeEachDialect('an erasure and what was linked to the person after its subject was read', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');
  const count = async (table: string, column: string, id: string) =>
    Number((await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from ${table} where ${column} = ${p(1)}`, [id]))[0]?.n);
  const device = (value: string): IdentifierPseudonym => ({ type: 'anonymous_id', valueHash: ctx.kernel.identity.hash({ type: 'anonymous_id', value }) });
  const profileOf = async (anonymousId: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: anonymousId }], source: 'web', at: new Date().toISOString() }]))[0] ?? null;
  const erasureRow = async (requestId: string) => {
    const rows = await ctx.kernel.storage.raw.all<{ profile_ids: string; identifiers: string }>(`select profile_ids, identifiers from rights_erasures where request_id = ${p(1)}`, [requestId]);
    assert.ok(rows[0], requestId);
    return { profileIds: JSON.parse(rows[0].profile_ids) as string[], identifiers: JSON.parse(rows[0].identifiers) as IdentifierPseudonym[] };
  };
  const has = (ids: readonly IdentifierPseudonym[], id: IdentifierPseudonym) => ids.some((i) => i.type === id.type && i.valueHash === id.valueHash);

  it('suppresses an anonymous id linked between findSubject and erase: the device gets no new profile', async () => {
    const kim = person(`window-link-${dialect}`);
    await ingestPerson(ctx.kernel, kim, 1);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: kim.userId } });
    assert.ok(subject);
    // Meanwhile Kim signs in on a new device.
    const phone = `anon-window-phone-${dialect}`;
    const signIn = await sendMessages(ctx.kernel, [{ type: 'track', messageId: `window-link-1-${dialect}`, userId: kim.userId, anonymousId: phone, event: 'Product Viewed', properties: { product_id: kim.productId } }]);
    assert.deepEqual(signIn.map((r) => r.status), ['stored']);
    assert.ok(!has(subject.identifiers, device(phone)), 'the subject was read before the link');

    const requestId = `req-window-link-${dialect}`;
    const certificate = await ctx.kernel.erasure.erase(subject, { requestId }, CLI_ACTOR);
    assert.equal(certificate.status, 'complete');
    assert.equal((await ctx.kernel.identity.suppressedOf([device(phone)])).length, 1, 'the new device is on the suppression list');
    const entry = (await ctx.kernel.erasure.ledger()).find((e) => e.requestId === requestId);
    assert.ok(entry && has(entry.identifiers, device(phone)), 'the ledger names the new device');
    assert.ok(has((await erasureRow(requestId)).identifiers, device(phone)), 'the erasure row names it');
    assert.match(certificate.stores.find((s) => s.store === 'identity_suppressed')?.detail ?? '', new RegExp(`^${entry.identifiers.length} identifier pseudonyms`));

    // The device sends again, anonymously: dropped, nobody is made for it.
    const after = await sendMessages(ctx.kernel, [
      { type: 'identify', messageId: `window-link-2-${dialect}`, anonymousId: phone, traits: { first_name: kim.firstName } },
      { type: 'track', messageId: `window-link-3-${dialect}`, anonymousId: phone, event: 'Order Completed', properties: { order_id: `o-${dialect}`, total: 10, currency: 'EUR' } },
    ]);
    assert.deepEqual(after.map((r) => [r.status, r.code]), [
      ['suppressed', 'COLLECT_SUBJECT_SUPPRESSED'],
      ['suppressed', 'COLLECT_SUBJECT_SUPPRESSED'],
    ]);
    assert.equal(await profileOf(phone), null);
  });

  it('erases a profile merged into the person between findSubject and erase: its rows, events, identifiers and data key', async () => {
    const kim = person(`window-merge-${dialect}`);
    await ingestPerson(ctx.kernel, kim, 1);
    // Kim's tablet, not yet known to be hers, with an order and a personal trait (sealed with its own data key).
    const tabletId = `anon-window-tablet-${dialect}`;
    const tabletSent = await sendMessages(ctx.kernel, [
      { type: 'identify', messageId: `window-tab-0-${dialect}`, anonymousId: tabletId, traits: { first_name: kim.firstName } },
      { type: 'track', messageId: `window-tab-1-${dialect}`, anonymousId: tabletId, event: 'Order Completed', properties: { order_id: `o-77-${dialect}`, total: 10, currency: 'EUR' } },
    ]);
    assert.deepEqual(tabletSent.map((r) => r.status), ['stored', 'stored']);
    const tablet = await profileOf(tabletId);
    assert.ok(tablet);
    assert.equal(await count('crypto_subject_keys', 'subject_id', tablet), 1, 'the tablet has a data key');

    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: kim.userId } });
    assert.ok(subject);
    // Kim signs in on the tablet while her erasure request runs: the tablet's profile merges into hers.
    const signIn = await sendMessages(ctx.kernel, [{ type: 'identify', messageId: `window-tab-2-${dialect}`, userId: kim.userId, anonymousId: tabletId, traits: {} }]);
    assert.deepEqual(signIn.map((r) => r.status), ['stored']);
    const merged = await ctx.kernel.storage.raw.all<{ merged_into: string | null }>(`select merged_into from identity_profiles where id = ${p(1)}`, [tablet]);
    assert.equal(merged[0]?.merged_into, subject.profileId, 'the tablet merged into Kim');
    assert.ok(!subject.profileIds.includes(tablet), 'the subject was read before the merge');

    const requestId = `req-window-merge-${dialect}`;
    const certificate = await ctx.kernel.erasure.erase(subject, { requestId }, CLI_ACTOR);
    assert.equal(certificate.status, 'complete');
    assert.equal(await count('identity_profiles', 'id', tablet), 0, 'tablet profile row');
    assert.equal(await count('collect_events', 'profile_id', tablet), 0, 'tablet events');
    assert.equal(await count('identity_identifiers', 'profile_id', tablet), 0, 'tablet identifiers');
    assert.equal(await count('profiles_traits', 'profile_id', tablet), 0, 'tablet traits');
    assert.equal(await count('crypto_subject_keys', 'subject_id', tablet), 0, 'tablet data key');
    assert.equal(await count('rights_erased_profiles', 'profile_id', tablet), 1, 'tablet marked erased');
    const entry = (await ctx.kernel.erasure.ledger()).find((e) => e.requestId === requestId);
    assert.ok(entry?.profileIds.includes(tablet), 'the ledger names the tablet');
    assert.ok(entry && has(entry.identifiers, device(tabletId)), 'the ledger names the tablet id');
    assert.deepEqual((await erasureRow(requestId)).profileIds, entry.profileIds, 'the erasure row names the profiles the ledger does');

    const again = await sendMessages(ctx.kernel, [{ type: 'track', messageId: `window-tab-3-${dialect}`, anonymousId: tabletId, event: 'Order Completed', properties: { order_id: `o-78-${dialect}`, total: 12, currency: 'EUR' } }]);
    assert.deepEqual(again.map((r) => [r.status, r.code]), [['suppressed', 'COLLECT_SUBJECT_SUPPRESSED']]);
    assert.equal(await profileOf(tabletId), null);
  });

  it('erases the profile the person was merged into between findSubject and erase, with every member', async () => {
    // Known by a device only when the erasure is asked for; meanwhile the device signs in to an older account.
    const kim = person(`window-into-${dialect}`);
    await ingestPerson(ctx.kernel, kim, 1);
    const account = kim.userId;
    const cookie = `anon-window-cookie-${dialect}`;
    const seen = await sendMessages(ctx.kernel, [{ type: 'track', messageId: `window-into-1-${dialect}`, anonymousId: cookie, event: 'Order Completed', properties: { order_id: `o-into-${dialect}`, total: 10, currency: 'EUR' } }]);
    assert.deepEqual(seen.map((r) => r.status), ['stored']);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'anonymous_id', value: cookie } });
    assert.ok(subject);
    assert.equal(subject.profileIds.length, 1);
    const signIn = await sendMessages(ctx.kernel, [{ type: 'identify', messageId: `window-into-2-${dialect}`, userId: account, anonymousId: cookie, traits: {} }]);
    assert.deepEqual(signIn.map((r) => r.status), ['stored']);
    const survivor = await ctx.kernel.storage.raw.all<{ merged_into: string | null }>(`select merged_into from identity_profiles where id = ${p(1)}`, [subject.profileId]);
    const into = survivor[0]?.merged_into;
    assert.ok(into, 'the device\'s profile merged into the account');

    const requestId = `req-window-into-${dialect}`;
    assert.equal((await ctx.kernel.erasure.erase(subject, { requestId }, CLI_ACTOR)).status, 'complete');
    for (const id of [subject.profileId, into]) {
      assert.equal(await count('identity_profiles', 'id', id), 0, id);
      assert.equal(await count('collect_events', 'profile_id', id), 0, id);
    }
    const user = { type: 'user_id', valueHash: ctx.kernel.identity.hash({ type: 'user_id', value: account }) };
    assert.equal((await ctx.kernel.identity.suppressedOf([user, device(cookie)])).length, 2, 'the account and the device are suppressed');
    assert.deepEqual(new Set((await erasureRow(requestId)).profileIds), new Set([subject.profileId, into]));
  });

  /**
   * Runs `act`; when its transaction has resolved identifiers naming `watch` (linked them, not yet committed), starts
   * `erase` and holds the transaction 300 ms: the erasure must wait for it.
   */
  const eraseWhileResolving = async (watch: string, erase: () => Promise<unknown>, act: () => Promise<void>) => {
    const { identity } = ctx.kernel;
    const resolveBatch = identity.resolveBatch.bind(identity);
    let erasing: Promise<unknown> | undefined;
    let settled = false;
    identity.resolveBatch = async (tx, items) => {
      const resolutions = await resolveBatch(tx, items);
      if (erasing === undefined && items.some((item) => item.identifiers.some((i) => i.value === watch))) {
        erasing = erase();
        erasing.then(() => (settled = true), () => (settled = true));
        await sleep(300);
      }
      return resolutions;
    };
    try {
      await act();
    } finally {
      identity.resolveBatch = resolveBatch;
    }
    return { erasing, settledEarly: () => settled };
  };

  it('waits for an ingestion transaction that linked a device before the erasure took its lock, and erases that device too', async () => {
    const kim = person(`window-inflight-${dialect}`);
    await ingestPerson(ctx.kernel, kim, 1);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: kim.userId } });
    assert.ok(subject);
    const watch = `anon-window-watch-${dialect}`;
    const requestId = `req-window-inflight-${dialect}`;
    // The erasure starts right after the group's transaction resolved (linked the new device), before it commits.
    let sent: Awaited<ReturnType<typeof sendMessages>> = [];
    const { erasing, settledEarly } = await eraseWhileResolving(watch, () => ctx.kernel.erasure.erase(subject, { requestId }, CLI_ACTOR), async () => {
      sent = await sendMessages(ctx.kernel, [{ type: 'track', messageId: `window-inflight-1-${dialect}`, userId: kim.userId, anonymousId: watch, event: 'Product Viewed', properties: { product_id: kim.productId } }]);
    });
    assert.ok(erasing, 'the erasure started inside the group transaction');
    assert.equal(settledEarly(), false, 'the erasure waited for the group transaction');
    await erasing;
    // Stored before the erasure (and erased by it), or refused by the group's own check: never kept.
    assert.ok(sent.every((r) => r.status === 'stored' || r.status === 'suppressed'), JSON.stringify(sent));
    assert.equal((await ctx.kernel.identity.suppressedOf([device(watch)])).length, 1, 'the new device is on the suppression list');
    assert.equal(await profileOf(watch), null);
    const placeholders = subject.profileIds.map((_, i) => p(i + 1)).join(', ');
    const events = await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from collect_events where message_id = ${p(1)}`, [`window-inflight-1-${dialect}`]);
    assert.equal(Number(events[0]?.n), 0, 'no event of the group is left');
    const links = await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from identity_identifiers where profile_id in (${placeholders})`, subject.profileIds);
    assert.equal(Number(links[0]?.n), 0);
    const later = await sendMessages(ctx.kernel, [{ type: 'track', messageId: `window-inflight-2-${dialect}`, anonymousId: watch, event: 'Product Viewed', properties: { product_id: kim.productId } }]);
    assert.deepEqual(later.map((r) => [r.status, r.code]), [['suppressed', 'COLLECT_SUBJECT_SUPPRESSED']]);
  });
  it('waits for a consent choice or sign-in (resolveSubject) that linked a device before the erasure took its lock', async () => {
    const kim = person(`window-subject-${dialect}`);
    await ingestPerson(ctx.kernel, kim, 1);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: kim.userId } });
    assert.ok(subject);
    const laptop = `anon-window-laptop-${dialect}`;
    const { erasing, settledEarly } = await eraseWhileResolving(laptop, () => ctx.kernel.erasure.erase(subject, { requestId: `req-window-subject-${dialect}` }, CLI_ACTOR), async () => {
      // The banner's choice on Kim's laptop names her user id and the laptop's anonymous id: one transaction links them.
      const at = new Date().toISOString();
      await ctx.kernel.identity.resolveSubject({ identifiers: [{ type: 'user_id', value: kim.userId }, { type: 'anonymous_id', value: laptop }], source: 'web', at });
    });
    assert.ok(erasing, 'the erasure started inside the resolution transaction');
    assert.equal(settledEarly(), false, 'the erasure waited for the resolution transaction');
    await erasing;
    assert.equal((await ctx.kernel.identity.suppressedOf([device(laptop)])).length, 1, 'the laptop is on the suppression list');
    assert.equal(await profileOf(laptop), null);
    const left = await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from identity_identifiers where value_hash = ${p(1)}`, [device(laptop).valueHash]);
    assert.equal(Number(left[0]?.n), 0, 'no link of the laptop is left');
  });
});
