// A person consents to what the notice told them: the gate keeps a field for a consent-based purpose only where the
// notice describes the field's data category for that purpose (Consent.describes), and reads for a purpose do the same.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { storeLegacyCategory } from '../../../test/support/legacy-taxonomy.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN } from '../catalog/index.ts';
import { DEFAULT_NOTICE_PURPOSES } from './defaults.ts';

describeEachDialect('consent: the notice describes what a consent covers', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  let server: CandorServer;
  let writeKey = '';
  const send = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const traitsOf = async (userId: string) => {
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    const view = await ctx.kernel.profiles.get([profileId as string], { decrypt: true });
    return Object.fromEntries(view.traits.map((t) => [t.key, t.value]));
  };
  /** Publishes the default notice with personalize.profiling's categories replaced. */
  const publishProfiling = async (categories: string[]) => {
    const purposes = DEFAULT_NOTICE_PURPOSES.map((p) => (p.purpose === 'personalize.profiling' ? { ...p, categories } : p));
    return await consent().publishNotice({ text: `Notice ${randomUUID()}`, purposes }, CLI_ACTOR);
  };
  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('describes a category listed for the purpose or below one listed, any category for a purpose not resting on consent, and system data', () => {
    assert.equal(consent().describes('personalize.profiling', 'user.behavior.purchase_history'), true, 'below user.behavior');
    assert.equal(consent().describes('marketing.communications.sms', 'user.contact.email'), false);
    assert.equal(consent().describes('essential.service.operations', 'user.demographic.date_of_birth'), true, 'contract');
    assert.equal(consent().describes('analytics.reporting', 'system.operations'), true);
    assert.equal(consent().describes('no.such.purpose', 'user.behavior'), false);
  });

  it('knows system data by where the category sits in the taxonomy, not by its key', async () => {
    // Stored before a key under another entry than its parent was refused (TAXONOMY_PARENT_MISMATCH).
    await storeLegacyCategory(ctx.kernel, ctx.env, 'system.crm_notes', 'user.contact');
    await ctx.kernel.taxonomy.addCustom('data-categories', { key: 'system.build_host', name: 'Build host', description: 'Where an app was built', parentKey: 'system.operations' }, CLI_ACTOR);
    assert.equal(consent().describes('marketing.communications.sms', 'system.crm_notes'), false, 'under user.contact');
    assert.equal(consent().describes('marketing.communications.sms', 'system.build_host'), true, 'under system');
  });

  it('the default notice describes every field the default plan declares for a consent-based purpose', async () => {
    const plan = await ctx.kernel.catalog.outline();
    const undescribed = plan.flatMap((s) =>
      s.fields.flatMap((f) => f.purposes.filter((p) => !(f.special && p === 'analytics.reporting') && !consent().describes(p, f.category)).map((p) => `${f.path} ${p}`)),
    );
    assert.deepEqual(undescribed, []);
    assert.ok(DEFAULT_PLAN.traits, 'the default plan declares traits');
  });

  it('keeps a field only for the purposes the notice describes its category for, and again once a consent is given under a notice that does', async () => {
    const userId = `u-${randomUUID()}`;
    // A later notice that tells less about profiling (not a material change: consents stand).
    const narrower = await publishProfiling(['user.behavior', 'user.contact.address.country']);
    assert.deepEqual(narrower.renewalRequired, []);
    assert.equal(consent().describes('personalize.profiling', 'user.demographic.date_of_birth'), false);
    const given = await send('/v1/consent', { userId, mechanism: 'banner_save', purposes: { 'personalize.profiling': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    const first = await send('/v1/identify', { userId, messageId: `m-${randomUUID()}`, traits: { birthday: '1990-01-02', country: 'NL' } });
    assert.equal(first.statusCode, 200, first.body);
    const [result] = (first.json() as { results: { status: string; refusedFields?: string[] }[] }).results;
    assert.equal(result?.status, 'stored');
    assert.deepEqual(result?.refusedFields, ['traits.birthday']);
    assert.deepEqual(await traitsOf(userId), { country: 'NL' });

    // The notice describes date of birth for profiling again: a material change, so the consent is asked for anew.
    const wider = await publishProfiling(['user.behavior', 'user.contact.address.country', 'user.demographic.date_of_birth']);
    assert.deepEqual(wider.renewalRequired, ['personalize.profiling']);
    const before = await send('/v1/identify', { userId, messageId: `m-${randomUUID()}`, traits: { birthday: '1990-01-02' } });
    assert.equal((before.json() as { results: { status: string }[] }).results[0]?.status, 'refused', 'the old consent needs renewal');
    const renewed = await send('/v1/consent', { userId, mechanism: 'banner_save', noticeVersion: wider.version, purposes: { 'personalize.profiling': 'given' } });
    assert.equal(renewed.statusCode, 200, renewed.body);
    const after = await send('/v1/identify', { userId, messageId: `m-${randomUUID()}`, traits: { birthday: '1990-01-02' } });
    assert.equal((after.json() as { results: { status: string }[] }).results[0]?.status, 'stored');
    assert.deepEqual(await traitsOf(userId), { country: 'NL', birthday: '1990-01-02' });
  });

  it('reads no page or product views for a purpose whose notice does not describe browsing history', async () => {
    const userId = `u-${randomUUID()}`;
    const given = await send('/v1/consent', { userId, mechanism: 'banner_save', purposes: { 'personalize.profiling': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    // Stored while the notice describes browsing history for profiling; a narrower notice (not material) follows.
    const page = await send('/v1/page', { userId, messageId: `m-${randomUUID()}`, name: 'Home' });
    assert.equal((page.json() as { results: { status: string }[] }).results[0]?.status, 'stored');
    await publishProfiling(['user.contact.email']);
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    assert.deepEqual(await ctx.kernel.collect.activityFor([profileId as string], 'personalize.profiling'), []);
    // Nor is a page view stored for it any more (its occurrence is browsing history, and so is every field of it).
    const later = await send('/v1/page', { userId, messageId: `m-${randomUUID()}`, name: 'Home' });
    assert.equal((later.json() as { results: { status: string }[] }).results[0]?.status, 'refused');
    await publishProfiling(DEFAULT_NOTICE_PURPOSES.find((p) => p.purpose === 'personalize.profiling')?.categories ?? []);
    assert.equal((await ctx.kernel.collect.activityFor([profileId as string], 'personalize.profiling')).length, 1, 'described again: read');
  });

  it('lists the fields a plan declares for a purpose the notice does not describe them for, when it is checked', async () => {
    await publishProfiling(['user.behavior']);
    const checked = await ctx.kernel.catalog.validatePlan(DEFAULT_PLAN, { purposes: consent().purposes(), describes: (p, c) => consent().describes(p, c) });
    const birthday = checked.warnings?.find((w) => w.path === 'traits.birthday');
    assert.equal(birthday?.warning, 'not kept for personalize.profiling: the notice in force does not describe user.demographic.date_of_birth for it');
    await publishProfiling(DEFAULT_NOTICE_PURPOSES.find((p) => p.purpose === 'personalize.profiling')?.categories ?? []);
  });
});
