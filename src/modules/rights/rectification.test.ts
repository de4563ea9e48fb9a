import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN } from '../catalog/index.ts';
import { MASKED } from '../profiles/index.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test reads loose JSON

describeEachDialect('rectification against the tracking plan', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  let writeKey = '';
  /** A backend's token: sessions are issued with it, never with a write key. */
  let issuer = '';
  const app = () => harness.server.app;
  const outbox = () => join(ctx.env.dataDir, 'outbox');
  const mails = () => (existsSync(outbox()) ? readdirSync(outbox()).length : 0);
  const json = (r: { json: () => unknown }) => r.json() as Json;
  const business = (url: string, payload: unknown) =>
    app().inject({ method: 'POST', url, headers: { authorization: url === '/v1/subject-sessions' ? `Bearer ${issuer}` : `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` }, payload: payload as Record<string, unknown> });
  const code = (requestId: string) => {
    for (const file of readdirSync(outbox()).sort().reverse()) {
      const text = readFileSync(join(outbox(), file), 'utf8');
      const match = /Your code is (\d{6})/.exec(text);
      if (text.includes(requestId) && match) return match[1] as string;
    }
    throw new Error('no code in the outbox');
  };
  const profileOf = async (userId: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]))[0] as string;
  const sessionOf = async (userId: string) => json(await business('/v1/subject-sessions', { userId })).token as string;
  const startMine = async (userId: string, email: string, changes: unknown) =>
    app().inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${await sessionOf(userId)}` }, payload: { type: 'rectification', email, changes } });
  /** A rectification started with a session and verified with its code: waiting for staff approval. */
  const waiting = async (userId: string, email: string, changes: unknown) => {
    const started = await startMine(userId, email, changes);
    assert.equal(started.statusCode, 201, started.body);
    const id = json(started).request.id as string;
    await ctx.kernel.rights.settled();
    const verified = await app().inject({ method: 'POST', url: `/v1/rights/requests/${id}/verify`, payload: { code: code(id) } });
    assert.equal(verified.statusCode, 200, verified.body);
    assert.equal(json(verified).request.awaitingApproval, true);
    return id;
  };

  before(async () => {
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
    for (const [userId, email] of [
      ['r-1', 'r1@candor-example.dev'],
      ['r-2', 'r2@candor-example.dev'],
    ]) {
      await business('/v1/consent', { userId, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
      const identified = await business('/v1/identify', { userId, traits: { email, first_name: 'Ada', city: 'Paris' } });
      assert.equal(json(identified).results[0].status, 'stored', identified.body);
    }
  });

  it('refuses at request time a value the plan does not accept for the trait, with every problem by key, path and rule and nothing stored or mailed', async () => {
    const profileId = await profileOf('r-1');
    const requestsBefore = (await ctx.kernel.rights.mine(profileId)).length;
    const mailsBefore = mails();
    const refused = await startMine('r-1', 'r1@candor-example.dev', [
      { key: 'city', value: { street: '1 rue de la Paix', email: 'ada@elsewhere.example' } },
      { key: 'email', value: 'not an address' },
      { key: 'shoe_size', value: 42 },
      { key: 'first_name', value: 'Adah' },
    ]);
    assert.equal(refused.statusCode, 400, refused.body);
    const body = json(refused);
    assert.equal(body.code, 'RIGHTS_RECTIFICATION_INVALID');
    assert.deepEqual(body.details.problems, [
      { key: 'city', path: 'traits.city', rule: 'type' },
      { key: 'email', path: 'traits.email', rule: 'format' },
      { key: 'shoe_size', rule: 'undeclared' },
    ]);
    assert.ok(!refused.body.includes('rue de la Paix') && !refused.body.includes('not an address'), 'no value is echoed');
    await ctx.kernel.rights.settled();
    assert.equal((await ctx.kernel.rights.mine(profileId)).length, requestsBefore);
    assert.equal(mails(), mailsBefore);
    // The same answer without a session, whether or not the address is known.
    for (const email of ['r1@candor-example.dev', 'nobody@candor-example.dev']) {
      const anonymous = await app().inject({ method: 'POST', url: '/v1/rights/requests', payload: { type: 'rectification', email, changes: [{ key: 'city', value: { street: 'x' } }] } });
      assert.equal(anonymous.statusCode, 400, anonymous.body);
      assert.equal(json(anonymous).code, 'RIGHTS_RECTIFICATION_INVALID');
    }
    await ctx.kernel.rights.settled();
    assert.equal(mails(), mailsBefore);
  });

  it('shows staff the proposed changes, personal values decrypted for roles that may read them and masked otherwise, then writes them as the plan says', async () => {
    const profileId = await profileOf('r-1');
    const id = await waiting('r-1', 'r1@candor-example.dev', [
      { key: 'city', value: 'Lyon' },
      { key: 'first_name', value: 'Adah' },
    ]);
    const detail = await app().inject({ url: `/v1/admin/rights/requests/${id}`, headers: harness.auth('privacy_officer') });
    assert.equal(detail.statusCode, 200, detail.body);
    assert.deepEqual(json(detail).changes, [
      { key: 'city', value: 'Lyon', state: 'plain', personal: false, category: 'user.contact.address.city' },
      { key: 'first_name', value: 'Adah', state: 'decrypted', personal: true, category: 'user.name.first' },
    ]);
    const masked = await ctx.kernel.rights.get(id, { decrypt: false });
    assert.deepEqual(
      masked.changes?.map((c) => [c.key, c.value, c.state]),
      [
        ['city', 'Lyon', 'plain'],
        ['first_name', MASKED, 'masked'],
      ],
    );
    // The read is audited as a read of the subject's personal data.
    const reads = await ctx.kernel.audit.list({ limit: 50 });
    assert.ok(reads.some((e) => e.subject === ctx.kernel.keyring.pseudonym('subject', profileId) && e.resource?.includes(id)));

    const approved = await app().inject({ method: 'POST', url: `/v1/admin/rights/requests/${id}/approve`, headers: harness.auth('owner') });
    assert.equal(approved.statusCode, 200, approved.body);
    assert.equal(json(approved).state, 'completed', approved.body);
    const view = await ctx.kernel.profiles.get([profileId], { decrypt: false });
    const trait = (key: string) => view.traits.find((t) => t.key === key);
    assert.deepEqual([trait('city')?.value, trait('city')?.state], ['Lyon', 'plain']);
    assert.deepEqual([trait('first_name')?.value, trait('first_name')?.state], [MASKED, 'masked']);
    const stored = await ctx.kernel.storage.raw.all<{ key: string; value: string; encrypted: number }>(
      `SELECT key, value, encrypted FROM profiles_traits WHERE profile_id = ${dialect === 'postgres' ? '$1' : '?'} AND key IN ('city', 'first_name') ORDER BY key`,
      [profileId],
    );
    assert.deepEqual(
      stored.map((r) => [r.key, Number(r.encrypted)]),
      [
        ['city', 0],
        ['first_name', 1],
      ],
    );
    assert.ok(!stored[1]?.value.includes('Adah'));
  });

  it('checks the changes again at approval against the plan then in force, and writes nothing the new plan refuses', async () => {
    const profileId = await profileOf('r-2');
    const id = await waiting('r-2', 'r2@candor-example.dev', [{ key: 'city', value: 'Saint-Rémy-de-Provence' }]);
    const plan = structuredClone(DEFAULT_PLAN) as unknown as { traits: { properties: Record<string, Record<string, unknown>> } };
    plan.traits.properties.city = { ...plan.traits.properties.city, maxLength: 10 };
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    try {
      const approved = await app().inject({ method: 'POST', url: `/v1/admin/rights/requests/${id}/approve`, headers: harness.auth('owner') });
      assert.equal(approved.statusCode, 200, approved.body);
      assert.deepEqual([json(approved).state, json(approved).lastError], ['in_progress', 'RIGHTS_RECTIFICATION_INVALID']);
      const city = (await ctx.kernel.profiles.get([profileId], { decrypt: true })).traits.find((t) => t.key === 'city');
      assert.equal(city?.value, 'Paris');
    } finally {
      await ctx.kernel.catalog.publish(DEFAULT_PLAN, CLI_ACTOR);
    }
    // Under the plan that accepts it again, a retry writes it.
    const retried = await app().inject({ method: 'POST', url: `/v1/admin/rights/requests/${id}/retry`, headers: harness.auth('owner') });
    assert.equal(json(retried).state, 'completed', retried.body);
    assert.equal((await ctx.kernel.profiles.get([profileId], { decrypt: true })).traits.find((t) => t.key === 'city')?.value, 'Saint-Rémy-de-Provence');
  });
});
