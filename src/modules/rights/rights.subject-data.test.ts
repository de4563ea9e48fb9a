import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { strFromU8, unzipSync } from 'fflate';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MIGRATIONS, openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { backupDatabase, restoreDatabase } from '../retention/index.ts';
import { RATE_EVENTS_RULE, REQUESTS_KEPT_REASON } from './rights.subject-data.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test reads loose JSON

const outboxOf = (dataDir: string) => join(dataDir, 'outbox');
const messages = (dataDir: string) =>
  existsSync(outboxOf(dataDir)) ? readdirSync(outboxOf(dataDir)).filter((f) => f.endsWith('.eml')).sort().map((f) => readFileSync(join(outboxOf(dataDir), f), 'utf8')) : [];

/** The code in the newest outbox message about a request. */
function codeFor(dataDir: string, requestId: string): string {
  for (const text of messages(dataDir).reverse()) {
    const match = /Your code is (\d{6})/.exec(text);
    if (text.includes(requestId) && match) return match[1] as string;
  }
  throw new Error(`no code for ${requestId} in the outbox`);
}

/** A person known by a user id and an e-mail address, with consent to what their identify needs. */
async function seed(kernel: Kernel, userId: string, email: string): Promise<string> {
  const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  const profileId = r?.profileId as string;
  await kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  const results = await kernel.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-id`, traits: { email, first_name: 'Ada' } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
  assert.equal(results[0]?.status, 'stored', JSON.stringify(results));
  return profileId;
}

async function erasureByEmail(kernel: Kernel, dataDir: string, email: string): Promise<string> {
  const { requestId } = await kernel.rights.start({ type: 'erasure', email });
  await kernel.rights.settled();
  const verified = await kernel.rights.verify(requestId, codeFor(dataDir, requestId));
  await kernel.rights.settled();
  assert.equal(verified.request.state, 'completed');
  return requestId;
}

describeEachDialect('the rights module’s own subject data', (dialect) => {
  const ctx = useKernel(dialect);
  const email = `rights.data.${dialect}@candor-example.dev`;
  const userId = `rights-data-${dialect}`;
  const ids: { rectification: string; optOut: string } = { rectification: '', optOut: '' };
  const rateRows = async () => {
    const key = `id:${ctx.kernel.keyring.pseudonym('rights.rate', email)}`;
    return Number((await sql<{ n: number }>`SELECT count(*) AS n FROM rights_rate_events WHERE key = ${key}`.execute(ctx.kernel.storage.db)).rows[0]?.n);
  };

  before(async () => {
    await seed(ctx.kernel, userId, email);
    const rect = await ctx.kernel.rights.start({ type: 'rectification', email, changes: [{ key: 'first_name', value: 'Adelheid' }] });
    await ctx.kernel.rights.settled();
    await ctx.kernel.rights.verify(rect.requestId, codeFor(ctx.env.dataDir, rect.requestId), { secondIdentifier: { type: 'user_id', value: userId } });
    const approved = await ctx.kernel.rights.approve(rect.requestId, CLI_ACTOR);
    assert.equal(approved.state, 'completed');
    const optOut = await ctx.kernel.rights.start({ type: 'opt_out_sale_sharing', email });
    await ctx.kernel.rights.settled();
    ids.rectification = rect.requestId;
    ids.optOut = optOut.requestId;
  });

  it('puts every request of the person in the access archive: states, times, outcome, events, address and changes', async () => {
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'email', value: email } });
    assert.ok(subject);
    const files = unzipSync(await ctx.kernel.exporter.archive(subject, { requestId: `req-rights-export-${dialect}` }, CLI_ACTOR));
    const section = JSON.parse(strFromU8(files['rights.json'] ?? new Uint8Array())) as Json;
    const requests = section.data.requests as Json[];
    assert.deepEqual(requests.map((r) => r.id), [ids.rectification, ids.optOut]);
    const [rect, optOut] = requests as [Json, Json];
    assert.deepEqual([rect.type, rect.state, rect.email, rect.emailState], ['rectification', 'completed', email, 'decrypted']);
    assert.deepEqual(rect.changes, [{ key: 'first_name', value: 'Adelheid' }]);
    assert.ok(rect.receivedAt && rect.dueAt && rect.verifiedAt && rect.completedAt);
    assert.deepEqual(
      rect.events.map((e: Json) => e.to),
      ['verifying', 'in_progress', 'in_progress', 'completed'].slice(0, rect.events.length),
    );
    assert.ok(rect.events.every((e: Json) => typeof e.at === 'string' && typeof e.by === 'string' && !('actor' in e)));
    assert.equal(optOut.state, 'completed');
    assert.match(String(optOut.outcome.receiptId), /\S/);
    assert.ok(!JSON.stringify(section).includes('code_hash') && !JSON.stringify(section).includes('download'));
    assert.ok((section.fields as Json[]).some((f) => f.field === 'requests[].email' && f.category === 'user.contact.email'));
  });

  it('lists the request records as kept in the certificate and deletes the start counts of the person’s address', async () => {
    assert.equal(await rateRows(), 2);
    const requestId = await erasureByEmail(ctx.kernel, ctx.env.dataDir, email);
    const certificate = await ctx.kernel.rights.certificate(requestId);
    const requests = certificate.stores.find((s) => s.store === 'rights_requests');
    assert.deepEqual([requests?.module, requests?.status, requests?.deleted, requests?.kept], ['rights', 'confirmed', 0, { count: 3, reason: REQUESTS_KEPT_REASON }]);
    const events = certificate.stores.find((s) => s.store === 'rights_request_events');
    assert.ok((events?.kept?.count ?? 0) >= 8, JSON.stringify(events));
    assert.match(certificate.stores.find((s) => s.store === 'rights_rate_events')?.detail ?? '', new RegExp(RATE_EVENTS_RULE.replace('.', '\\.')));
    assert.equal(certificate.status, 'complete');
    assert.equal(await rateRows(), 0);
    // What stays is the record: the address and changes are shredded with the person's key.
    const entry = (await ctx.kernel.erasure.ledger()).at(-1);
    assert.ok(entry);
    const handler = ctx.kernel.subjectData.find((h) => h.module === 'rights');
    const left = (await handler?.export({ profileId: entry.profileIds[0] as string, profileIds: entry.profileIds, identifiers: entry.identifiers }))?.data as Json;
    assert.equal(left.requests.length, 3);
    assert.ok(left.requests.every((r: Json) => r.email === null && r.changes === null));
    assert.equal(left.requests.find((r: Json) => r.id === ids.rectification).emailState, 'shredded');
  });

  it('deletes start counts older than the rate window under retention rule rights.rate_events', async () => {
    const policy = (await ctx.kernel.retention.policies()).find((p) => p.id === RATE_EVENTS_RULE);
    assert.deepEqual([policy?.module, policy?.store, policy?.period, policy?.action], ['rights', 'rights_rate_events', 'PT1H', 'delete']);
    const now = new Date('2030-01-01T12:00:00.000Z');
    const at = (minutes: number) => new Date(now.getTime() - minutes * 60_000).toISOString();
    const db = ctx.kernel.storage.db;
    await sql`DELETE FROM rights_rate_events`.execute(db);
    for (const [key, minutes] of [['id:old-1', 61], ['id:old-2', 90], ['client:old', 120], ['id:fresh', 59]] as const) {
      await sql`INSERT INTO rights_rate_events (key, at) VALUES (${key}, ${at(minutes)})`.execute(db);
    }
    const dry = await ctx.kernel.retention.sweep({ now, dryRun: true });
    assert.equal(dry.counts.find((c) => c.rule === RATE_EVENTS_RULE)?.count, 3);
    const swept = await ctx.kernel.retention.sweep({ now, batchSize: 2 });
    assert.equal(swept.counts.find((c) => c.rule === RATE_EVENTS_RULE)?.count, 3);
    const left = (await sql<{ key: string }>`SELECT key FROM rights_rate_events`.execute(db)).rows.map((r) => r.key);
    assert.deepEqual(left, ['id:fresh']);
    const again = await ctx.kernel.retention.sweep({ now });
    assert.equal(again.counts.find((c) => c.rule === RATE_EVENTS_RULE)?.count ?? 0, 0);
  });
});

describeEachDialect('a restore replaying an erasure done by request', (dialect) => {
  let env: TestEnvironment;
  const email = `replayed.${dialect}@candor-example.dev`;
  let requestId = '';
  let backupFile = '';

  before(async () => {
    env = await createEnvironment(dialect);
    const kernel = await openKernel(env.config);
    try {
      await seed(kernel, `replayed-${dialect}`, email);
      backupFile = join(env.dataDir, '..', `${env.dataDir.split('/').pop()}.rights-backup`);
      await backupDatabase(env.config, backupFile, CLI_ACTOR);
      requestId = await erasureByEmail(kernel, env.dataDir, email);
    } finally {
      await kernel.close();
    }
  });
  after(async () => {
    await env?.cleanup();
  });

  it('keeps the notice that the erasure was done in the outbox', { timeout: 60_000 }, async () => {
    const notices = () => messages(env.dataDir).filter((m) => m.includes(`X-Candor-Request: ${requestId}`) && /Subject: Your data was erased/.test(m));
    assert.equal(notices().length, 1);
    await restoreDatabase(env.config, backupFile, CLI_ACTOR, MIGRATIONS);
    const kernel = await openKernel(env.config);
    try {
      assert.equal(kernel.erasuresReplayed, 1);
      assert.equal(notices().length, 1);
      assert.deepEqual(
        messages(env.dataDir).filter((m) => m.toLowerCase().includes(email)).map((m) => /Subject: (.*)/.exec(m)?.[1]),
        ['Your data was erased'],
      );
      const certificate = await kernel.erasure.certificate(requestId);
      assert.ok(certificate?.stores.some((s) => s.store.startsWith('mail outbox')));
    } finally {
      await kernel.close();
    }
  });
});
