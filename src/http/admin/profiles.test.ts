import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { resolveItem, uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { ResolveItem } from '../../modules/identity/index.ts';
import { buildServer, type CandorServer } from '../server.ts';

const uid = uniqueId;
const item = resolveItem;

describeEachDialect('admin profiles API', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  const tokens: Record<string, string> = {};
  const auth = (role: string) => ({ authorization: `Bearer ${tokens[role]}` });
  const email = `${uid('ada')}@shop.io`;
  const deviceAnon = uid('anon');
  let main = '';
  let device = '';

  before(async () => {
    server = await buildServer(ctx.kernel);
    for (const role of ['owner', 'privacy_officer', 'marketer', 'analyst', 'developer']) {
      tokens[role] = (await ctx.kernel.access.createToken(role, null, CLI_ACTOR)).secret;
    }
    const { identity, profiles, storage } = ctx.kernel;
    const user = uid('user');
    const resolve = async (i: ResolveItem) => (await storage.raw.transaction((tx) => identity.resolveBatch(tx, [i])))[0];
    main = (await resolve(item({ user_id: user, email }, 'm-1')))?.profileId as string;
    device = (await resolve(item({ anonymous_id: deviceAnon }, 'm-2')))?.profileId as string;
    await profiles.prepare([main, device]);
    await storage.raw.transaction(async (tx) => {
      await profiles.setTraitsBatch(tx, [
        { profileId: main, traits: [{ key: 'email', value: email, category: 'user.contact.email', personal: true }], source: 'web', messageId: 'm-1', at: '2025-01-01T10:00:00.000Z' },
        { profileId: device, traits: [{ key: 'plan', value: 'pro', category: 'user.account', personal: false }], source: 'app', messageId: 'm-2', at: '2025-01-02T10:00:00.000Z' },
      ]);
      await profiles.recordActivityBatch(tx, [
        { profileId: main, at: '2025-01-01T10:00:00.000Z', kind: 'track', event: 'Order Completed', revenue: 42, currency: 'EUR' },
        { profileId: device, at: '2025-01-03T10:00:00.000Z', kind: 'page' },
      ]);
    });
  });
  after(async () => {
    await server.app.close();
  });

  it('shows owners the merged profile with decrypted personal traits, identifiers as pseudonyms, and audits the read', async () => {
    const response = await server.app.inject({ url: `/v1/admin/profiles/${main}`, headers: auth('owner') });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as {
      id: string;
      decrypted: boolean;
      identifiers: { type: string; valueHash: string }[];
      traits: { key: string; value: unknown; state: string }[];
      computed: { orderCount: number; totalOrderValue: number; averageOrderValue: number };
    };
    assert.equal(body.id, main);
    assert.equal(body.decrypted, true);
    assert.deepEqual(body.traits.map((t) => [t.key, t.value, t.state]), [['email', email, 'decrypted']]);
    assert.deepEqual(body.identifiers.map((i) => i.type).sort(), ['email', 'user_id']);
    assert.ok(body.identifiers.every((i) => /^[A-Za-z0-9_-]{43}$/.test(i.valueHash)));
    assert.equal(body.computed.orderCount, 1);
    assert.equal(body.computed.averageOrderValue, 42);
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', subject: ctx.kernel.keyring.pseudonym('subject', main), limit: 100 });
    const last = reads.at(-1);
    assert.equal(last?.role, 'owner');
    assert.equal(last?.purpose, 'essential.service.operations.support');
    assert.equal(last?.resource, 'GET /v1/admin/profiles/:id');
  });

  it('masks personal traits for marketers and analysts, and still audits their reads', async () => {
    for (const role of ['marketer', 'analyst']) {
      const response = await server.app.inject({ url: `/v1/admin/profiles/${main}`, headers: auth(role) });
      assert.equal(response.statusCode, 200);
      assert.ok(!response.body.includes(email), `${role} must not see the e-mail address`);
      const body = response.json() as { decrypted: boolean; traits: { key: string; value: unknown; state: string }[] };
      assert.equal(body.decrypted, false);
      assert.deepEqual(body.traits.map((t) => [t.key, t.value, t.state]), [['email', '••••', 'masked']]);
      const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', subject: ctx.kernel.keyring.pseudonym('subject', main), limit: 100 });
      assert.equal(reads.at(-1)?.role, role);
    }
    const refused = await server.app.inject({ url: `/v1/admin/profiles/${main}`, headers: auth('developer') });
    assert.equal(refused.statusCode, 403);
    assert.equal((refused.json() as { code: string }).code, 'AUTH_ROLE_FORBIDDEN');
  });

  it('resolves a merged profile id to its canonical profile and splits the merge back out on request', async () => {
    const { identity, storage } = ctx.kernel;
    // The device's anonymous id arrives with the user's e-mail address: the device profile merges into the main one.
    const login = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [item({ email, anonymous_id: deviceAnon }, 'm-login')]));
    const mergeId = login[0]?.merges[0]?.mergeId as string;
    assert.equal(login[0]?.merges[0]?.from, device);
    const second = device;

    const viaMember = await server.app.inject({ url: `/v1/admin/profiles/${second}`, headers: auth('privacy_officer') });
    assert.equal(viaMember.statusCode, 200);
    const body = viaMember.json() as { id: string; requestedId: string; members: string[]; merges: { mergeId: string; messageId: string; from: string }[]; traits: { key: string }[] };
    assert.equal(body.id, main);
    assert.equal(body.requestedId, second);
    assert.ok(body.members.includes(second));
    assert.equal(body.merges.find((m) => m.mergeId === mergeId)?.messageId, 'm-login');
    assert.deepEqual(body.traits.map((t) => t.key), ['email', 'plan'], 'traits of every member');

    const forbidden = await server.app.inject({ method: 'POST', url: `/v1/admin/profiles/${main}/unmerge`, headers: auth('marketer'), payload: { mergeId } });
    assert.equal(forbidden.statusCode, 403);
    const extra = await server.app.inject({ method: 'POST', url: `/v1/admin/profiles/${main}/unmerge`, headers: auth('owner'), payload: { mergeId, force: true } });
    assert.equal((extra.json() as { code: string }).code, 'REQUEST_UNKNOWN_FIELD');
    const split = await server.app.inject({ method: 'POST', url: `/v1/admin/profiles/${main}/unmerge`, headers: auth('owner'), payload: { mergeId } });
    assert.equal(split.statusCode, 200, split.body);
    assert.deepEqual(split.json(), { restored: second, identifiersMoved: 1 });
    assert.equal(await identity.canonical(second), second);
    const again = await server.app.inject({ method: 'POST', url: `/v1/admin/profiles/${main}/unmerge`, headers: auth('owner'), payload: { mergeId } });
    assert.equal(again.statusCode, 409);
    assert.equal((again.json() as { code: string }).code, 'IDENTITY_MERGE_ALREADY_UNDONE');
    const audited = await ctx.kernel.audit.list({ action: 'identity.profile.unmerge', limit: 100 });
    assert.equal(audited.filter((e) => e.resource === `merge:${mergeId}`).length, 2);
    assert.deepEqual(
      audited.filter((e) => e.resource === `merge:${mergeId}`).map((e) => e.purpose),
      ['essential.service.operations.support', 'essential.service.operations.support'],
      'the purpose the route declares, not profiling',
    );
  });

  it('lists trait history with previous values, masked by role', async () => {
    await ctx.kernel.profiles.prepare([main]);
    await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.profiles.setTraitsBatch(tx, [
        { profileId: main, traits: [{ key: 'email', value: 'new-' + email, category: 'user.contact.email', personal: true }], source: 'crm', messageId: 'm-4', at: '2025-02-01T10:00:00.000Z' },
      ]),
    );
    const owner = await server.app.inject({ url: `/v1/admin/profiles/${main}/history?key=email`, headers: auth('owner') });
    assert.equal(owner.statusCode, 200, owner.body);
    const changes = (owner.json() as { changes: { value: unknown; previousValue?: unknown; source: string }[] }).changes;
    assert.deepEqual(changes.map((c) => [c.value, c.previousValue, c.source]), [
      ['new-' + email, email, 'crm'],
      [email, undefined, 'web'],
    ]);
    const analyst = await server.app.inject({ url: `/v1/admin/profiles/${main}/history`, headers: auth('analyst') });
    assert.ok(!analyst.body.includes(email));
    const unknownField = await server.app.inject({ url: `/v1/admin/profiles/${main}/history?colour=blue`, headers: auth('owner') });
    assert.equal((unknownField.json() as { code: string }).code, 'REQUEST_UNKNOWN_FIELD');
  });

  it('answers an unknown or malformed profile id with a specific code', async () => {
    const unknown = await server.app.inject({ url: '/v1/admin/profiles/prf_aaaaaaaaaaaaaaaaaaaa', headers: auth('owner') });
    assert.equal(unknown.statusCode, 404);
    assert.equal((unknown.json() as { code: string }).code, 'IDENTITY_PROFILE_NOT_FOUND');
    const malformed = await server.app.inject({ url: '/v1/admin/profiles/not-a-profile', headers: auth('owner') });
    assert.equal(malformed.statusCode, 400);
    assert.equal((malformed.json() as { code: string }).code, 'REQUEST_VALIDATION_FAILED');
  });
});
