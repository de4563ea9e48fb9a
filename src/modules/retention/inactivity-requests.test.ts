import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useRefusingRights } from '../../../test/support/rights.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { RetentionHandler } from '../../shared/subject-data.ts';
import { REASON_REMOVED } from '../rights/index.ts';
import { Retention } from './retention.service.ts';

/** `n` calendar months after `at`. */
const months = (at: Date, n: number) => {
  const out = new Date(at.getTime());
  out.setUTCMonth(out.getUTCMonth() + n);
  return out;
};

describeEachDialect('the inactivity rule and the person’s rights requests', (dialect) => {
  const ctx = useKernel(dialect);
  const refusing = useRefusingRights(ctx);
  const db = () => ctx.kernel.storage.db;

  it('closes an inactive person’s open requests when it deletes them and leaves no key that opens their address', async () => {
    const userId = `inactive-${dialect}`;
    const email = `inactive.${dialect}@candor-example.dev`;
    const [r] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await ctx.kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const stored = await ctx.kernel.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-id`, traits: { email } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(stored[0]?.status, 'stored', JSON.stringify(stored));
    const start = async (type: string, client: string) => {
      const { requestId } = await refusing.rights.start({ type, email, client });
      await refusing.rights.settled();
      return requestId;
    };
    // Never verified: an access request (address sealed with the person's key) and an erasure request (its own key).
    const access = await start('access', '10.78.0.1');
    const erasure = await start('erasure', '10.78.0.2');
    // Denied by staff, the notice refused: the address is kept, sealed with the request's own key, for the retry.
    const refused = await start('erasure', '10.78.0.3');
    refusing.mailer.refuse = /About your request/;
    try {
      assert.equal((await refusing.rights.deny(refused, 'Asked twice.', CLI_ACTOR)).lastError, 'RIGHTS_MAIL_FAILED');
    } finally {
      refusing.mailer.refuse = null;
    }
    const ids = [access, erasure, refused];
    const rows = async () =>
      (await sql<{ id: string; profile_id: string | null; state: string; denial_reason: string | null; email: string | null; code_hash: string | null; last_error: string | null }>`SELECT id, profile_id, state, denial_reason, email, code_hash, last_error FROM rights_requests WHERE id IN (${sql.join(ids)}) ORDER BY id`.execute(db())).rows;
    const noticeKeys = async () => (await sql<{ subject_id: string }>`SELECT subject_id FROM crypto_subject_keys WHERE subject_id IN (${sql.join(ids.map((id) => `rights_request:${id}`))})`.execute(db())).rows.map((k) => k.subject_id);
    assert.ok((await rows()).every((row) => row.profile_id === profileId), JSON.stringify(await rows()));
    assert.deepEqual((await noticeKeys()).sort(), [erasure, refused].map((id) => `rights_request:${id}`).sort());

    // 25 months on the person has not been active for 24 months (the codes expired long before: closing unverified
    // requests is not what clears them here).
    const report = await ctx.kernel.retention.sweep({ now: months(new Date(), 25) });
    assert.ok(report.counts.some((c) => c.rule === 'profiles.inactive' && c.store === 'people' && c.count >= 1), JSON.stringify(report.counts));
    assert.equal(await ctx.kernel.identity.canonical(profileId), null);

    const byId = new Map((await rows()).map((row) => [row.id, row]));
    for (const id of [access, erasure]) {
      assert.deepEqual({ ...byId.get(id) }, { id, profile_id: profileId, state: 'denied', denial_reason: 'subject_erased', email: null, code_hash: null, last_error: null });
    }
    assert.deepEqual({ ...byId.get(refused) }, { id: refused, profile_id: profileId, state: 'denied', denial_reason: REASON_REMOVED, email: null, code_hash: null, last_error: null });
    assert.deepEqual(await noticeKeys(), []);
    assert.ok(!(await refusing.rights.queue()).some((v) => ids.includes(v.id)));

    // Each closure is an event and an audit entry.
    const events = (await sql<{ request_id: string; detail: string }>`SELECT request_id, detail FROM rights_request_events WHERE request_id IN (${sql.join(ids)}) AND to_state = 'denied'`.execute(db())).rows;
    for (const id of ids) assert.ok(events.some((e) => e.request_id === id && (JSON.parse(e.detail) as { deletedFor?: string }).deletedFor === 'inactivity'), id);
    const audited = (await sql<{ resource: string }>`SELECT resource FROM audit_log WHERE action = 'rights.request.denied' AND details LIKE ${'%"deletedFor":"inactivity"%'}`.execute(db())).rows.map((a) => a.resource);
    assert.deepEqual(audited.sort(), ids.map((id) => `rights_request:${id}`).sort());
  });

  it('leaves the closing of the requests to the rights module’s subject-data handler: a deletion without it closes none', async () => {
    const k = ctx.kernel;
    const userId = `seam-${dialect}`;
    const email = `seam.${dialect}@candor-example.dev`;
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const stored = await k.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-id`, traits: { email } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(stored[0]?.status, 'stored', JSON.stringify(stored));
    const ids: string[] = [];
    for (const [type, client] of [['access', '10.78.1.1'], ['erasure', '10.78.1.2']] as const) {
      ids.push((await refusing.rights.start({ type, email, client })).requestId);
      await refusing.rights.settled();
    }
    const subject = await k.erasure.findSubject({ profileId });
    assert.ok(subject);
    const states = async () => (await sql<{ state: string }>`SELECT state FROM rights_requests WHERE id IN (${sql.join(ids)}) ORDER BY id`.execute(db())).rows.map((row) => row.state);
    const noticeKeys = async () => (await sql<{ subject_id: string }>`SELECT subject_id FROM crypto_subject_keys WHERE subject_id IN (${sql.join(ids.map((id) => `rights_request:${id}`))})`.execute(db())).rows.length;
    const deletions = async () => (await sql<{ details: string }>`SELECT details FROM audit_log WHERE action = 'retention.subject.delete' AND subject = ${k.keyring.pseudonym('subject', profileId)} ORDER BY seq`.execute(db())).rows.map((e) => JSON.parse(e.details) as Record<string, unknown>);
    // A rule that forgets this one person, run by a retention whose subject-data handlers are the ones given.
    const forgetting: RetentionHandler = {
      module: 'test',
      rules: async () => [],
      sweep: async (_now, { context }) => {
        await context.forget([subject], 'test');
        return [];
      },
    };
    const retention = (handlers: typeof k.subjectData) => new Retention({ storage: k.storage, audit: k.audit, keyring: k.keyring, identity: k.identity, handlers: [forgetting], subjectData: handlers, batchSize: 100 });

    // Every handler but the rights module's (and the identity module's, so that the person is still there to be judged
    // again by the next deletion: a person already gone is not deleted twice): their requests stay as they were.
    await retention(k.subjectData.filter((h) => h.module !== 'rights' && h.module !== 'identity')).sweep();
    assert.equal(await k.identity.canonical(profileId), profileId);
    assert.deepEqual(await states(), ['verifying', 'verifying']);
    assert.equal(await noticeKeys(), 1);
    assert.deepEqual((await deletions()).map((d) => d.requestsClosed), [undefined]);

    // The rights module's handler alone closes them, counts them and destroys the key sealing the erasure request's address.
    await retention(k.subjectData.filter((h) => h.module === 'rights')).sweep();
    assert.deepEqual(await states(), ['denied', 'denied']);
    assert.equal(await noticeKeys(), 0);
    assert.deepEqual((await deletions()).map((d) => d.requestsClosed), [undefined, 2]);
    // The identity module's handler deletes the person; a deletion of someone already gone changes and audits nothing.
    await retention(k.subjectData.filter((h) => h.module === 'identity')).sweep();
    assert.equal(await k.identity.canonical(profileId), null);
    await retention(k.subjectData).sweep();
    assert.equal((await deletions()).length, 3);
  });
});
