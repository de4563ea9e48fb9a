import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useRefusingRights } from '../../../test/support/rights.ts';
import type { Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { SQLITE_FILE } from '../../storage/index.ts';
import { LEDGER_FILE } from './deletion-ledger.ts';
import { ErasureEngine } from './erasure.ts';
import { REASON_REMOVED } from './requests.repo.ts';

/** A person known by a user id and an e-mail address, with consent to what their identify needs. */
async function seed(kernel: Kernel, userId: string, email: string): Promise<void> {
  const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  await kernel.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  const results = await kernel.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-id`, traits: { email } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
  assert.equal(results[0]?.status, 'stored', JSON.stringify(results));
}

interface Row {
  id: string;
  state: string;
  denial_reason: string | null;
  extension_reason: string | null;
  duplicate_of: string | null;
  email: string | null;
  code_hash: string | null;
  last_error: string | null;
}

describeEachDialect('an erasure and the person’s other rights requests', (dialect) => {
  const ctx = useKernel(dialect);
  const refusing = useRefusingRights(ctx);
  let client = 0;
  const db = () => ctx.kernel.storage.db;
  const start = async (type: string, email: string) => {
    const { requestId } = await refusing.rights.start({ type, email, client: `10.77.0.${++client}` });
    await refusing.rights.settled();
    return requestId;
  };
  const codeOf = (requestId: string) => {
    const texts = readdirSync(refusing.outbox).filter((f) => f.endsWith('.eml')).map((f) => readFileSync(join(refusing.outbox, f), 'utf8'));
    return /Your code is (\d{6})/.exec(texts.filter((t) => t.includes(requestId)).join('\n'))?.[1] ?? '';
  };
  const row = async (id: string) =>
    (await sql<Row>`SELECT id, state, denial_reason, extension_reason, duplicate_of, email, code_hash, last_error FROM rights_requests WHERE id = ${id}`.execute(db())).rows[0];
  const noticeKeys = async (ids: readonly string[]) =>
    (await sql<{ subject_id: string }>`SELECT subject_id FROM crypto_subject_keys WHERE subject_id IN (${sql.join(ids.map((id) => `rights_request:${id}`))})`.execute(db())).rows.map((r) => r.subject_id);

  it('closes the person’s other requests in the erasure’s transaction and shreds the addresses they sealed with their own keys', async () => {
    const email = `others.${dialect}@candor-example.dev`;
    await seed(ctx.kernel, `others-${dialect}`, email);
    // Never verified: an erasure request (its address sealed with its own key) and an access request (the person's key).
    const pending = await start('erasure', email);
    const access = await start('access', email);
    // Denied by staff, the notice refused: the address is kept, sealed with the request's own key, for the retry.
    const refused = await start('erasure', email);
    refusing.mailer.refuse = /About your request/;
    try {
      assert.equal((await refusing.rights.deny(refused, 'Asked twice.', CLI_ACTOR)).lastError, 'RIGHTS_MAIL_FAILED');
    } finally {
      refusing.mailer.refuse = null;
    }
    const erasing = await start('erasure', email);
    assert.deepEqual(await noticeKeys([pending, refused, erasing]), [pending, refused, erasing].map((id) => `rights_request:${id}`).sort());

    const verified = await refusing.rights.verify(erasing, codeOf(erasing));
    assert.equal(verified.request.state, 'completed');

    // No key that could open the person's address is left, and no address is stored.
    assert.deepEqual(await noticeKeys([pending, refused, erasing]), []);
    assert.deepEqual({ ...(await row(pending)) }, { id: pending, state: 'denied', denial_reason: 'duplicate', extension_reason: null, duplicate_of: erasing, email: null, code_hash: null, last_error: null });
    assert.deepEqual({ ...(await row(access)) }, { id: access, state: 'denied', denial_reason: 'subject_erased', extension_reason: null, duplicate_of: null, email: null, code_hash: null, last_error: null });
    assert.deepEqual({ ...(await row(refused)) }, { id: refused, state: 'denied', denial_reason: REASON_REMOVED, extension_reason: null, duplicate_of: null, email: null, code_hash: null, last_error: null });
    // Out of the staff queue, and the code mailed for the pending one opens nothing.
    assert.ok(!(await refusing.rights.queue()).some((v) => [pending, access, refused].includes(v.id)));
    await assert.rejects(refusing.rights.verify(pending, codeOf(pending)), (e) => isCandorError(e, 'RIGHTS_TRANSITION_INVALID'));

    // Each closure is an event and an audit entry.
    const events = (await sql<{ request_id: string; detail: string }>`SELECT request_id, detail FROM rights_request_events WHERE request_id IN (${sql.join([pending, access, refused])}) AND to_state = 'denied'`.execute(db())).rows;
    for (const id of [pending, access, refused]) assert.ok(events.some((e) => e.request_id === id && (JSON.parse(e.detail) as { erasureRequest?: string }).erasureRequest === erasing), id);
    const audited = (await sql<{ resource: string }>`SELECT resource FROM audit_log WHERE action = 'rights.request.denied' AND details LIKE ${`%"erasureRequest":"${erasing}"%`}`.execute(db())).rows.map((r) => r.resource);
    assert.deepEqual(audited.sort(), [pending, access, refused].map((id) => `rights_request:${id}`).sort());

    const certificate = await refusing.rights.certificate(erasing);
    assert.equal(certificate.status, 'complete');
    assert.match(certificate.stores.find((s) => s.store === 'rights_requests (the person\'s other requests)')?.detail ?? '', /^3 other requests of the person closed/);
  });

  it('replaces staff members’ free-text denial and extension reasons at the erasure, and keeps Candor’s own codes', async () => {
    const email = `reasons.${dialect}@candor-example.dev`;
    await seed(ctx.kernel, `reasons-${dialect}`, email);
    const denied = await start('access', email);
    await refusing.rights.deny(denied, 'ID shows Zq7Ada Zq7Lovelace, born 1815-12-10, not the account holder', CLI_ACTOR);
    const extended = await start('restriction', email);
    await refusing.rights.extend(extended, 'Waiting for the Zq7Lovelace estate records', CLI_ACTOR);
    const duplicate = await start('access', email);
    await refusing.rights.deny(duplicate, 'duplicate', CLI_ACTOR);
    const erasing = await start('erasure', email);
    assert.equal((await refusing.rights.verify(erasing, codeOf(erasing))).request.state, 'completed');

    assert.equal((await row(denied))?.denial_reason, REASON_REMOVED);
    assert.deepEqual([(await row(extended))?.extension_reason, (await row(extended))?.denial_reason], [REASON_REMOVED, 'subject_erased']);
    assert.equal((await row(duplicate))?.denial_reason, 'duplicate');
    const left = (await sql<{ n: number | string }>`SELECT count(*) AS n FROM rights_requests WHERE denial_reason LIKE '%Zq7Lovelace%' OR extension_reason LIKE '%Zq7Lovelace%'`.execute(db())).rows[0];
    assert.equal(Number(left?.n), 0);
    const certificate = await refusing.rights.certificate(erasing);
    assert.match(certificate.stores.find((s) => s.store === 'rights_requests')?.detail ?? '', /^2 free-text staff reasons/);
    if (dialect === 'sqlite') {
      // secure_delete and the erasure's checkpoint: the old text is in neither the file nor its log.
      const bytes = readFileSync(join(ctx.env.dataDir, SQLITE_FILE));
      assert.ok(!bytes.includes(Buffer.from('Zq7Lovelace')));
    }
  });

  it('leaves the closing of the other requests to the rights module’s subject-data handler: an erasure without it closes none', async () => {
    const k = ctx.kernel;
    const email = `seam.${dialect}@candor-example.dev`;
    await seed(k, `seam-${dialect}`, email);
    const pending = await start('erasure', email);
    const access = await start('access', email);
    const subject = await k.erasure.findSubject({ identifier: { type: 'email', value: email } });
    assert.ok(subject);
    const engine = new ErasureEngine({ storage: k.storage, audit: k.audit, keyring: k.keyring, identity: k.identity, handlers: k.subjectData.filter((h) => h.module !== 'rights'), ledgerPath: join(ctx.env.dataDir, LEDGER_FILE) });
    const certificate = await engine.erase(subject, { requestId: `req-seam-${dialect}` }, CLI_ACTOR);

    assert.deepEqual([(await row(pending))?.state, (await row(access))?.state], ['verifying', 'verifying']);
    assert.deepEqual(await noticeKeys([pending]), [`rights_request:${pending}`]);
    assert.ok(!certificate.stores.some((s) => s.module === 'rights'), JSON.stringify(certificate.stores.map((s) => s.store)));
  });
});
