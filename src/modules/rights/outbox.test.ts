import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { OUTBOX_RULE } from './outbox.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test reads loose JSON

describeEachDialect('the mail outbox and erasure', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  let writeKey = '';
  const app = () => harness.server.app;
  const outbox = () => join(ctx.env.dataDir, 'outbox');
  const messages = () => (existsSync(outbox()) ? readdirSync(outbox()).sort().map((f) => ({ file: f, text: readFileSync(join(outbox(), f), 'utf8') })) : []);
  const naming = (address: string) => messages().filter((m) => m.text.toLowerCase().includes(address));
  const json = (r: { json: () => unknown }) => r.json() as Json;
  const business = (url: string, payload: unknown) =>
    app().inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` }, payload: payload as Record<string, unknown> });
  const code = (requestId: string) => {
    for (const m of messages().reverse()) {
      const match = /Your code is (\d{6})/.exec(m.text);
      if (m.text.includes(requestId) && match) return match[1] as string;
    }
    throw new Error('no code in the outbox');
  };

  before(async () => {
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    for (const [userId, email] of [
      ['o-1', 'erased.person@candor-example.dev'],
      ['o-2', 'kept.person@candor-example.dev'],
    ]) {
      await business('/v1/consent', { userId, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' } });
      assert.equal(json(await business('/v1/identify', { userId, traits: { email, first_name: 'Ada' } })).results[0].status, 'stored');
    }
  });

  it('deletes every message to the erased person, lists it in the certificate, and leaves other people’s messages', async () => {
    // Someone else's request: their code stays in the outbox.
    await app().inject({ method: 'POST', url: '/v1/rights/requests', payload: { type: 'restriction', email: 'kept.person@candor-example.dev' } });
    // An earlier request of the person, and a message written before messages carried their request id.
    await app().inject({ method: 'POST', url: '/v1/rights/requests', payload: { type: 'access', email: 'erased.person@candor-example.dev' } });
    await ctx.kernel.rights.settled();
    writeFileSync(join(outbox(), 'mail_legacy.eml'), 'From: privacy@candor.test\nTo: Erased.Person@Candor-Example.dev\nSubject: Your verification code\n\nYour code is 000000.\n', { mode: 0o600 });
    const started = await app().inject({ method: 'POST', url: '/v1/rights/requests', payload: { type: 'erasure', email: 'erased.person@candor-example.dev' } });
    const { requestId } = json(started);
    await ctx.kernel.rights.settled();
    assert.equal(naming('erased.person@candor-example.dev').length, 3);

    const verified = await app().inject({ method: 'POST', url: `/v1/rights/requests/${requestId}/verify`, payload: { code: code(requestId) } });
    assert.equal(json(verified).request.state, 'completed', verified.body);

    // Only the notice that the erasure was done is left, written after it; it is about this request.
    const left = naming('erased.person@candor-example.dev');
    assert.equal(left.length, 1, left.map((m) => m.text).join('\n---\n'));
    assert.match(left[0]?.text ?? '', /Subject: Your data was erased/);
    assert.match(left[0]?.text ?? '', new RegExp(`X-Candor-Request: ${requestId}`));
    assert.equal(statSync(join(outbox(), left[0]?.file as string)).mode & 0o777, 0o600);
    assert.equal(naming('kept.person@candor-example.dev').length, 1);

    const certificate = await ctx.kernel.rights.certificate(requestId);
    const store = certificate.stores.find((s) => s.store.startsWith('mail outbox'));
    assert.deepEqual([store?.module, store?.status, store?.deleted], ['rights', 'confirmed', 3]);
    assert.match(store?.detail ?? '', new RegExp(`P7D.*${OUTBOX_RULE.replace('.', '\\.')}`));
    assert.equal(certificate.status, 'complete');
  });

  it('lets the retention sweeper delete every message once it is seven days old, the erasure notice included', async () => {
    const policies = await ctx.kernel.retention.policies();
    assert.deepEqual(
      policies.filter((p) => p.id === OUTBOX_RULE).map((p) => [p.module, p.period, p.action]),
      [['rights', 'P7D', 'delete']],
    );
    const count = messages().length;
    assert.ok(count >= 2);
    const soon = await ctx.kernel.retention.sweep({ now: new Date(Date.now() + 6 * 86_400_000) });
    assert.equal(soon.counts.find((c) => c.rule === OUTBOX_RULE)?.count, 0);
    assert.equal(messages().length, count);
    const later = new Date(Date.now() + 7 * 86_400_000 + 60_000);
    const dry = await ctx.kernel.retention.sweep({ now: later, dryRun: true });
    assert.equal(dry.counts.find((c) => c.rule === OUTBOX_RULE)?.count, count);
    assert.equal(messages().length, count);
    const swept = await ctx.kernel.retention.sweep({ now: later });
    assert.equal(swept.counts.find((c) => c.rule === OUTBOX_RULE)?.count, count);
    assert.deepEqual(messages(), []);
    const evidence = await ctx.kernel.audit.list({ action: 'retention.sweep', limit: 5 });
    assert.ok(evidence.some((e) => JSON.stringify(e.details).includes(`${OUTBOX_RULE} `)));
  });
});
