import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { identityFlows, tag } from '../../../test/support/identity-flows.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter } from '../collect/index.ts';
import { legacyPhone } from './identity.phone.ts';
import { IdentityRepo } from './identity.repo.ts';

// Phone numbers a release before libphonenumber (up to 4b72e03) stored: it normalized them differently (legacyPhone),
// so their pseudonyms, linked and suppressed, are those of the legacy form. An upgrade must keep them: an erased
// number stays suppressed, and a person is still found, verified and joined by the number they gave then.

describe('legacyPhone (the normalization of the release before libphonenumber)', () => {
  it('reads numbers as that release did', () => {
    // Expected values: 4b72e03's normalize (identity.rules.ts normalizePhone and its ^\+\d{7,15}$ check).
    const cases: [string, string | undefined][] = [
      ['+44 (0)20 7946 0018', '+4402079460018'],
      ['+44 020 7946 0018', '+4402079460018'],
      ['+44 20 7946 0018', '+442079460018'],
      ['0044 20 7946 0018', '+442079460018'],
      ['4155550123', '+4155550123'],
      ['(415) 555-0123', '+4155550123'],
      ['+1 415.555.0123', '+14155550123'],
      ['+5215512345678', '+5215512345678'],
      ['+12345678', '+12345678'],
      ['+1 415 555 0123 ext 7', undefined],
      ['tel:+14155550123', undefined],
      ['+1\u2013415\u2013555\u20130123', undefined],
      ['+123456', undefined],
      ['+1234567890123456', undefined],
    ];
    for (const [written, legacy] of cases) assert.equal(legacyPhone(written), legacy, written);
  });
});

let line = 100;
/** A London number no other test of the run uses, written with the trunk prefix `(0)` as people often do. */
const trunkLondon = () => `+44 (0)20 7946 0${String(++line).padStart(3, '0')}`;

/** Each person's own number a release before libphonenumber stored for `written`, as it stored it. */
function oldRelease(ctx: { readonly kernel: Kernel }) {
  /** Links the number to the profile as that release did: the pseudonym of its legacy form, by the statement its resolution ran. */
  const linkPhone = async (profileId: string, written: string) => {
    const legacy = legacyPhone(written);
    assert.ok(legacy, written);
    const valueHash = ctx.kernel.keyring.pseudonym('phone', legacy);
    const row = { type: 'phone', value_hash: valueHash, profile_id: profileId, first_seen_at: new Date().toISOString(), source: 'web', message_id: null };
    await ctx.kernel.storage.raw.transaction((tx) => new IdentityRepo(ctx.kernel.storage).insertIdentifiers(tx, [row]));
    return valueHash;
  };
  return { linkPhone };
}

function legacyPhoneSuite(dialect: 'sqlite' | 'postgres', rules: Record<string, unknown>) {
  const ctx = {} as { kernel: Kernel; env: TestEnvironment };
  before(async () => {
    ctx.env = await createEnvironment(dialect);
    ctx.kernel = await openKernel(ctx.env.configWith({ CANDOR_IDENTITY_RULES: JSON.stringify(rules) }));
  });
  after(async () => {
    await ctx.kernel?.close();
    await ctx.env?.cleanup();
  });
  const flows = identityFlows(ctx, useIngestServer(ctx));
  const { linkPhone } = oldRelease(ctx);
  /** A person known by user id and e-mail, whose phone number the release before libphonenumber linked. */
  const person = async (written: string) => {
    const t = tag();
    const userId = `old-${t}`;
    const email = `old.${t}@shop.io`;
    await flows.consent({ userId });
    assert.equal(await flows.identify({ userId }, { email }), 'stored');
    const profileId = await flows.profileOf('user_id', userId);
    assert.ok(profileId);
    const valueHash = await linkPhone(profileId, written);
    return { userId, email, profileId, valueHash };
  };
  /** What a new device sending only this phone number gets: its result and the profile its anonymous id is on. */
  const newDevice = async (written: string) => {
    const anonymousId = `dev-${tag()}`;
    await flows.consent({ anonymousId });
    const status = await flows.identify({ anonymousId }, { phone: written });
    return { status, profileId: await flows.profileOf('anonymous_id', anonymousId), anonymousId };
  };
  const phoneHashes = async (profileId: string) => (await ctx.kernel.identity.identifiersOf(profileId)).filter((i) => i.type === 'phone').map((i) => i.valueHash);
  return { ctx, flows, person, newDevice, phoneHashes };
}

describeEachDialect('phone numbers stored by the release before libphonenumber (no default region)', (dialect) => {
  const { ctx, flows, person, newDevice, phoneHashes } = legacyPhoneSuite(dialect, {});

  it("keeps an erased person's number suppressed in the spellings that release stored it from, over HTTP and in the group's own check", async () => {
    const written = trunkLondon();
    const erased = await person(written);
    await flows.erase('user_id', erased.userId);
    // The erasure suppressed what was stored: the legacy form's pseudonym.
    assert.deepEqual(await ctx.kernel.identity.suppressedOf([{ type: 'phone', valueHash: erased.valueHash }]), [{ type: 'phone', valueHash: erased.valueHash }]);
    for (const spelling of [written, written.replace('(0)20', '020'), `${written} x12`]) {
      const device = await newDevice(spelling);
      assert.equal(device.status, 'suppressed', spelling);
      assert.equal(await flows.profileOf('phone', spelling), null, spelling);
      // The check an ingestion group makes in its transaction (PostgreSQL: against the database itself).
      const item = { identifiers: [{ type: 'anonymous_id', value: `g-${tag()}` }, { type: 'phone', value: spelling }], source: 'web', at: new Date().toISOString() };
      assert.deepEqual(await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.suppressedInGroup(tx, [item])), [true], spelling);
    }
  });

  it("skips a CSV row naming an erased person's number as that release stored it", async () => {
    const written = trunkLondon();
    const erased = await person(written);
    await flows.erase('user_id', erased.userId);
    const userId = `csv-${tag()}`;
    const reports: { row: number; status: string; code: string }[] = [];
    const summary = await new CsvImporter(ctx.kernel).run(
      Readable.from([`user_id,phone\n${userId},"${written}"\n`]),
      { source: 'files', actor: CLI_ACTOR, kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'] },
      { onRows: (rows) => void reports.push(...rows), onWarning: () => {} },
    );
    assert.deepEqual([summary.stored, summary.suppressed], [0, 1]);
    assert.deepEqual(reports.map((r) => [r.row, r.status, r.code]), [[2, 'suppressed', 'COLLECT_SUBJECT_SUPPRESSED']]);
    assert.equal(await flows.profileOf('user_id', userId), null);
  });

  it('finds, verifies and joins a person by the number that release stored, linking no second form of it', async () => {
    const written = trunkLondon();
    const known = await person(written);
    assert.equal(await flows.profileOf('phone', written), known.profileId, 'look-up by phone (as staff make it)');
    assert.equal(await flows.accessWithPhone(known.email, written), 'verified', 'second identifier of an access request');
    const device = await newDevice(written);
    assert.equal(device.status, 'stored');
    assert.equal(device.profileId, known.profileId, 'a new device joins the person');
    // Again from the same device (resolved from the cache where it can be).
    assert.equal(await flows.identify({ anonymousId: device.anonymousId }, { phone: written }), 'stored');
    assert.equal(await flows.profileOf('anonymous_id', device.anonymousId), known.profileId);
    assert.deepEqual(await phoneHashes(known.profileId), [known.valueHash], 'only the stored form, never another');
  });

  it('still matches and suppresses numbers that release took and libphonenumber refuses', async () => {
    for (const written of ['+52 1 55 1234 5678', '+1 234 5678']) {
      const known = await person(written);
      assert.equal(await flows.profileOf('phone', written), known.profileId, written);
      const device = await newDevice(written);
      assert.equal(device.profileId, known.profileId, written);
      assert.equal(await flows.accessWithPhone(known.email, written), 'verified', written);
      await flows.erase('user_id', known.userId);
      assert.equal((await newDevice(written)).status, 'suppressed', written);
    }
  });

  it("never joins a number without country code to someone's number its digits spell in E.164", async () => {
    const t = tag();
    await flows.consent({ userId: `no-${t}` });
    assert.equal(await flows.identify({ userId: `no-${t}` }, { phone: '+47 912 34 470' }), 'stored');
    const device = await newDevice('4791234470');
    assert.equal(device.status, 'stored');
    assert.notEqual(device.profileId, await flows.profileOf('user_id', `no-${t}`));
    assert.equal(await flows.profileOf('phone', '4791234470'), null);
  });
});

describeEachDialect('phone numbers stored by the release before libphonenumber (default phone region US)', (dialect) => {
  const { ctx, flows, person, newDevice, phoneHashes } = legacyPhoneSuite(dialect, { defaultPhoneRegion: 'US' });

  it("keeps storing a known customer's national number whose legacy form is an erased person's foreign number", async () => {
    // (479) 123-4490 was +4791234490 to that release: the Norwegian number of another person, erased by this one.
    const t = tag();
    const norway = `no-${t}`;
    const us = `us-${t}`;
    await flows.consent({ userId: norway });
    await flows.consent({ userId: us });
    assert.equal(await flows.identify({ userId: norway }, { phone: '+47 912 34 490' }), 'stored');
    assert.equal(await flows.identify({ userId: us }, { phone: '(479) 123-4490' }), 'stored');
    const usProfile = await flows.profileOf('user_id', us);
    assert.equal(await flows.profileOf('phone', '+1 479 123 4490'), usProfile);
    await flows.erase('user_id', norway);
    assert.equal(await flows.identify({ userId: us }, { phone: '(479) 123-4490' }), 'stored', 'the known customer is not suppressed');
    const device = await newDevice('479-123-4490');
    assert.equal(device.status, 'stored');
    assert.equal(device.profileId, usProfile, 'a new device joins the customer the number is stored for');
    // The group's own check in its transaction, with the number looked up in the database (no cache of this process).
    const item = { identifiers: [{ type: 'anonymous_id', value: `g-${tag()}` }, { type: 'phone', value: '(479) 123-4490' }], source: 'web', at: new Date().toISOString() };
    const fresh = await openKernel(ctx.env.configWith({ CANDOR_IDENTITY_RULES: JSON.stringify({ defaultPhoneRegion: 'US' }) }));
    try {
      assert.deepEqual(await fresh.storage.raw.transaction((tx) => fresh.identity.suppressedInGroup(tx, [item])), [false]);
      assert.deepEqual(await fresh.identity.isSuppressedBatch(fresh.storage.raw, [item]), [false]);
    } finally {
      await fresh.close();
    }
    // A number stored for nobody is still judged by its legacy form (the ambiguity the README states).
    const t2 = tag();
    await flows.consent({ userId: `no2-${t2}` });
    assert.equal(await flows.identify({ userId: `no2-${t2}` }, { phone: '+47 912 34 491' }), 'stored');
    await flows.erase('user_id', `no2-${t2}`);
    assert.equal((await newDevice('(479) 123-4491')).status, 'suppressed');
  });

  it('joins a person by a national number that release stored as + and its digits, and suppresses it once they are erased', async () => {
    const known = await person('4155550123');
    assert.equal(await flows.profileOf('phone', '(415) 555-0123'), known.profileId);
    const device = await newDevice('415-555-0123');
    assert.equal(device.profileId, known.profileId);
    assert.equal(await flows.accessWithPhone(known.email, '415 555 0123'), 'verified');
    assert.deepEqual(await phoneHashes(known.profileId), [known.valueHash]);
    await flows.erase('user_id', known.userId);
    assert.equal((await newDevice('4155550123')).status, 'suppressed');
  });

  it('suppresses a national number its erased holder had stored as a valid foreign number, which finds nobody', async () => {
    // That release read (479) 123-4471 as +4791234471, a Norwegian number: this release never finds anyone by it.
    const erased = await person('(479) 123-4471');
    assert.equal(await flows.profileOf('phone', '(479) 123-4471'), null);
    await flows.erase('user_id', erased.userId);
    assert.equal((await newDevice('479-123-4471')).status, 'suppressed');
  });

  it('prefers the number in its own form where it is stored', async () => {
    const old = await person('4155550177');
    const current = await newDevice('+1 415 555 0177');
    assert.ok(current.profileId);
    assert.notEqual(current.profileId, old.profileId);
    assert.equal(await flows.profileOf('phone', '4155550177'), current.profileId);
    assert.equal((await newDevice('(415) 555-0177')).profileId, current.profileId);
  });
});
