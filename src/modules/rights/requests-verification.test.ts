import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { RefusingMailer, rightsRequests } from '../../../test/support/rights.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import type { Consent } from '../consent/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { ErasureEngine } from './erasure.ts';
import { ERASED_NOTICE_SUBJECT } from './mailer.ts';
import { RequestsRepo, type RequestsTables } from './requests.repo.ts';
import type { RightsRequests, RightsRequestsDeps } from './requests.ts';

/** A mailer whose server refuses messages with a matching subject line, as an SMTP server answering 554 would. */
/** The code in the newest outbox message about a request. */
function codeFromOutbox(dir: string, requestId: string): string {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.eml')).sort().reverse()) {
    const text = readFileSync(join(dir, file), 'utf8');
    const match = /Your code is (\d{6})/.exec(text);
    if (text.includes(requestId) && match) return match[1] as string;
  }
  throw new Error(`no code for ${requestId} in the outbox`);
}

/** How many outbox messages with this subject line are about a request. */
function mailsAbout(dir: string, requestId: string, subject: string): number {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .filter((text) => text.includes(requestId) && text.includes(`Subject: ${subject}`)).length;
}

/** What an error looks like to whoever receives it: its code and details. */
const shown = async (work: Promise<unknown>) => {
  try {
    await work;
  } catch (error) {
    if (isCandorError(error)) return { code: error.code, details: error.details ?? null };
    throw error;
  }
  return { code: 'none', details: null };
};

describeEachDialect('data-subject request verification and runs under stress', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let outbox = '';
  let client = 0;
  let mailer: RefusingMailer;
  let rights: RightsRequests;
  const send = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const person = async (userId: string, email: string, purposes: Record<string, string> = {}) => {
    if (Object.keys(purposes).length > 0) assert.equal((await send('/v1/consent', { userId, mechanism: 'banner_save', purposes })).statusCode, 200);
    const identified = await send('/v1/identify', { userId, traits: { email, first_name: 'Ada' } });
    assert.equal((identified.json() as { results: { status: string }[] }).results[0]?.status, 'stored', identified.body);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: userId } });
    assert.ok(subject);
    return subject.profileId;
  };
  const workflow = (overrides: Partial<RightsRequestsDeps> = {}) => rightsRequests(ctx.kernel, { mailer, ...overrides });
  const row = async (id: string) => ctx.kernel.storage.db.withTables<RequestsTables>().selectFrom('rights_requests').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  /** A started request of `type` for `email` whose code mail was written; returns its id and code. */
  const started = async (type: string, email: string) => {
    const answer = await rights.start({ type, email, client: `10.9.${dialect.length}.${++client}` });
    await rights.settled();
    return { id: answer.requestId, code: codeFromOutbox(outbox, answer.requestId) };
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    mailer = new RefusingMailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox });
    rights = workflow();
  });
  after(async () => {
    await rights.close();
    await server.app.close();
    rmSync(outbox, { recursive: true, force: true });
  });

  it('compares no more than three of many wrong codes sent at once, then stays locked for the right one', async () => {
    await person('s-1', 's1@candor-example.dev');
    const { id, code } = await started('restriction', 's1@candor-example.dev');
    const wrong = code === '000000' ? '000001' : '000000';
    const answers = await Promise.all(Array.from({ length: 30 }, () => shown(rights.verify(id, wrong))));
    assert.equal(answers.filter((a) => a.code === 'RIGHTS_CODE_INVALID').length, 3);
    assert.equal(answers.filter((a) => a.code === 'RIGHTS_VERIFICATION_LOCKED').length, 27);
    assert.equal((await shown(rights.verify(id, code))).code, 'RIGHTS_VERIFICATION_LOCKED');
    assert.deepEqual([(await row(id)).state, Number((await row(id)).code_attempts)], ['verifying', 3]);
  });

  it('lets the right code through among wrong ones sent at once only within the first three attempts', async () => {
    await person('s-2', 's2@candor-example.dev', { 'analytics.reporting': 'given' });
    const { id, code } = await started('erasure', 's2@candor-example.dev');
    const wrong = code === '000000' ? '000001' : '000000';
    const guesses = [...Array.from({ length: 30 }, () => wrong), code];
    const answers = await Promise.all(guesses.map((c) => shown(rights.verify(id, c))));
    // Every answer but the locked ones was a comparison: three at most, whichever came first.
    const compared = answers.filter((a) => a.code !== 'RIGHTS_VERIFICATION_LOCKED' && a.code !== 'RIGHTS_TRANSITION_INVALID');
    assert.ok(compared.length <= 3, JSON.stringify(answers.map((a) => a.code)));
    assert.ok(Number((await row(id)).code_attempts) <= 3);
    const erased = (await row(id)).state !== 'verifying';
    assert.equal(erased, answers.at(-1)?.code === 'none');
  });

  it('says how many attempts are left after a wrong code or a wrong second identifier', async () => {
    await person('s-3', 's3@candor-example.dev');
    const { id, code } = await started('access', 's3@candor-example.dev');
    const wrong = code === '000000' ? '000001' : '000000';
    assert.deepEqual(await shown(rights.verify(id, code, { secondIdentifier: { type: 'user_id', value: 'someone-else' } })), { code: 'RIGHTS_SECOND_FACTOR_INVALID', details: { attemptsLeft: 2 } });
    assert.deepEqual(await shown(rights.verify(id, wrong, { secondIdentifier: { type: 'user_id', value: 's-3' } })), { code: 'RIGHTS_CODE_INVALID', details: { attemptsLeft: 1 } });
    assert.deepEqual(await shown(rights.verify(id, code, { secondIdentifier: { type: 'user_id', value: 'nobody' } })), { code: 'RIGHTS_SECOND_FACTOR_INVALID', details: { attemptsLeft: 0 } });
    assert.equal((await shown(rights.verify(id, code, { secondIdentifier: { type: 'user_id', value: 's-3' } }))).code, 'RIGHTS_VERIFICATION_LOCKED');
  });

  it('answers verifying a request that needs none the same way for a known and an unknown address', async () => {
    await person('s-4', 's4@candor-example.dev', { third_party_sharing: 'given' });
    for (const type of ['withdraw_consent', 'opt_out_sale_sharing', 'limit_sensitive']) {
      const known = await rights.start({ type, email: 's4@candor-example.dev', client: `10.8.${dialect.length}.${++client}` });
      const unknown = await rights.start({ type, email: `nobody-${type}@candor-example.dev`, client: `10.8.${dialect.length}.${++client}` });
      await rights.settled();
      assert.equal((await row(known.requestId)).state, 'completed');
      assert.equal((await row(unknown.requestId)).state, 'denied');
      const a = await shown(rights.verify(known.requestId, '123456'));
      const b = await shown(rights.verify(unknown.requestId, '123456'));
      assert.equal(a.code, 'RIGHTS_TRANSITION_INVALID');
      assert.deepEqual(a, b, type);
      assert.ok(!JSON.stringify(a).includes('from'), 'no state is named');
    }
  });

  it('issues the download link of a verified access request once, and shows its expiry in the request', async () => {
    await person('s-5', 's5@candor-example.dev');
    const { id, code } = await started('access', 's5@candor-example.dev');
    const verified = await rights.verify(id, code, { secondIdentifier: { type: 'user_id', value: 's-5' } });
    assert.ok(verified.download);
    assert.equal(verified.request.downloadExpiresAt, verified.download.expiresAt);
    assert.equal(mailsAbout(outbox, id, 'Your data is ready'), 1);
  });

  it('answers an old download link of a person erased since as an invalid link', async () => {
    const profileId = await person('s-6', 's6@candor-example.dev');
    const { id, code } = await started('access', 's6@candor-example.dev');
    const verified = await rights.verify(id, code, { secondIdentifier: { type: 'user_id', value: 's-6' } });
    assert.ok(verified.download);
    const erased = await rights.startForSession(profileId, { type: 'erasure' }, CLI_ACTOR);
    assert.equal(erased.request.state, 'completed');
    assert.equal((await shown(rights.download(verified.download.token))).code, 'RIGHTS_DOWNLOAD_INVALID');
  });

  it('runs an opt-out and a consent withdrawal from the privacy center even when the receipt cannot be mailed', async () => {
    const profileId = await person('s-7', 's7@candor-example.dev', { third_party_sharing: 'given', 'analytics.reporting': 'given' });
    mailer.refuse = /We received your request/;
    try {
      const optOut = await rights.start({ type: 'opt_out_sale_sharing', email: 's7@candor-example.dev', client: `10.7.${dialect.length}.${++client}` });
      const withdraw = await rights.start({ type: 'withdraw_consent', email: 's7@candor-example.dev', client: `10.7.${dialect.length}.${++client}` });
      await rights.settled();
      for (const id of [optOut.requestId, withdraw.requestId]) {
        const done = await row(id);
        assert.deepEqual([done.state, Number(done.attempts), done.last_error, done.run_lease_until, done.acknowledged_at], ['completed', 1, null, null, null]);
      }
      const state = await ctx.kernel.consent.state(profileId);
      assert.equal(state.third_party_sharing?.allowed, false);
      assert.equal(state['analytics.reporting']?.allowed, false);
    } finally {
      mailer.refuse = null;
    }
    // When mail works, the receipt follows the run.
    const later = await rights.start({ type: 'limit_sensitive', email: 's7@candor-example.dev', client: `10.7.${dialect.length}.${++client}` });
    await rights.settled();
    assert.equal((await row(later.requestId)).state, 'completed');
    assert.ok((await row(later.requestId)).acknowledged_at);
    assert.equal(mailsAbout(outbox, later.requestId, 'We received your request'), 1);
  });

  it('stores an opt-out from the privacy center with its run claimed, so a crash before the run leaves it to be resumed', async () => {
    const profileId = await person('s-8', 's8@candor-example.dev', { third_party_sharing: 'given' });
    const keyring = ctx.kernel.keyring;
    // The process dies after answering, before its background work (preparing the keys that seal the address) got anywhere.
    const dying = new Proxy(keyring, {
      get(target, property) {
        if (property === 'encrypt' || property === 'prepare') return () => Promise.reject(new Error('process killed'));
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as Keyring;
    const crashed = workflow({ keyring: dying, runLeaseMs: 50 });
    const answer = await crashed.start({ type: 'opt_out_sale_sharing', email: 's8@candor-example.dev', client: `10.6.${dialect.length}.${++client}` });
    await crashed.close();
    const stored = await row(answer.requestId);
    assert.deepEqual([stored.state, Number(stored.attempts)], ['in_progress', 1]);
    assert.ok(stored.run_lease_until);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal((await rights.resumeInterrupted()).resumed, 1);
    assert.equal((await row(answer.requestId)).state, 'completed');
    assert.equal((await ctx.kernel.consent.state(profileId)).third_party_sharing?.allowed, false);
  });

  it('keeps an erasure request open with its address when the notice cannot be sent, and sends it on retry before shredding the address', async () => {
    const profileId = await person('s-9', 's9@candor-example.dev');
    const { id, code } = await started('erasure', 's9@candor-example.dev');
    mailer.refuse = /Your data was erased/;
    let failed;
    try {
      failed = await rights.verify(id, code);
    } finally {
      mailer.refuse = null;
    }
    assert.deepEqual([failed.request.state, failed.request.lastError], ['in_progress', 'RIGHTS_MAIL_FAILED']);
    assert.equal((await ctx.kernel.erasure.certificate(id))?.status, 'complete');
    await assert.rejects(ctx.kernel.erasure.findSubject({ profileId }), (e) => isCandorError(e, 'RIGHTS_SUBJECT_ERASED'));
    assert.ok((await row(id)).email, 'the sealed address is kept for the notice');
    assert.equal(mailsAbout(outbox, id, 'Your data was erased'), 0);
    const retried = await rights.retry(id, CLI_ACTOR);
    assert.deepEqual([retried.state, retried.lastError], ['completed', null]);
    assert.equal(mailsAbout(outbox, id, 'Your data was erased'), 1);
    assert.equal((await row(id)).email, null);
    assert.equal((await ctx.kernel.erasure.ledger()).filter((e) => e.requestId === id).length, 1, 'erased once');
  });

  it('keeps a denial that cannot be mailed, with the sealed address, shows it to staff and sends it on retry', async () => {
    await person('s-10', 's10@candor-example.dev');
    const { id } = await started('erasure', 's10@candor-example.dev');
    const sealed = (await row(id)).email;
    assert.ok(sealed);
    mailer.refuse = /About your request/;
    let denied;
    try {
      denied = await rights.deny(id, 'We could not verify the request', CLI_ACTOR);
      assert.deepEqual([denied.state, denied.lastError, denied.denialReason], ['denied', 'RIGHTS_MAIL_FAILED', 'We could not verify the request']);
      assert.equal((await row(id)).email, sealed, 'the sealed address is kept for the notice');
      assert.equal(await ctx.kernel.keyring.decrypt(sealed, 'rights.requests.email'), 's10@candor-example.dev');
      assert.ok((await rights.get(id)).events.some((e) => e.to === 'denied' && (e.detail as { noticeFailed?: string }).noticeFailed === 'RIGHTS_MAIL_FAILED'));
      assert.ok((await rights.queue()).some((v) => v.id === id && v.lastError === 'RIGHTS_MAIL_FAILED'), 'the staff queue lists it');
      // Refused again: still denied, still waiting for its notice.
      assert.deepEqual([(await rights.retry(id, CLI_ACTOR)).lastError, (await row(id)).email], ['RIGHTS_MAIL_FAILED', sealed]);
    } finally {
      mailer.refuse = null;
    }
    assert.equal(mailsAbout(outbox, id, 'About your request'), 0);
    const sent = await rights.retry(id, CLI_ACTOR);
    assert.deepEqual([sent.state, sent.lastError, sent.denialReason], ['denied', null, 'We could not verify the request']);
    assert.equal(mailsAbout(outbox, id, 'About your request'), 1);
    assert.equal((await row(id)).email, null);
    await assert.rejects(ctx.kernel.keyring.decrypt(sealed, 'rights.requests.email'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
    assert.ok((await rights.get(id)).events.some((e) => (e.detail as { noticeSent?: boolean }).noticeSent === true));
    assert.ok(!(await rights.queue()).some((v) => v.id === id));
    assert.equal((await shown(rights.retry(id, CLI_ACTOR))).code, 'RIGHTS_TRANSITION_INVALID');
  });

  it('destroys the sealed address key of an erasure request that found nothing to erase', async () => {
    await person('s-11', 's11@candor-example.dev');
    const erasure = ctx.kernel.erasure;
    // The person's data is gone by the time the run looks (nothing held under the profile).
    const empty = new Proxy(erasure, {
      get(target, property) {
        if (property === 'findSubject') return (by: Parameters<ErasureEngine['findSubject']>[0]) => ('profileId' in by ? Promise.resolve(null) : target.findSubject(by));
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as ErasureEngine;
    const nothing = workflow({ erasure: empty });
    try {
      const answer = await nothing.start({ type: 'erasure', email: 's11@candor-example.dev', client: `10.5.${dialect.length}.${++client}` });
      await nothing.settled();
      const sealed = (await row(answer.requestId)).email;
      assert.ok(sealed);
      const done = await nothing.verify(answer.requestId, codeFromOutbox(outbox, answer.requestId));
      assert.deepEqual([done.request.state, done.request.outcome], ['completed', { erased: false, reason: 'nothing_held' }]);
      assert.equal((await row(answer.requestId)).email, null);
      await assert.rejects(ctx.kernel.keyring.decrypt(sealed, 'rights.requests.email'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
      assert.equal(mailsAbout(outbox, answer.requestId, ERASED_NOTICE_SUBJECT), 0);
    } finally {
      await nothing.close();
    }
  });

  it('renews the lease only while the run holds it: a renewal landing after a failed run ended changes nothing', async () => {
    await person('s-12', 's12@candor-example.dev');
    // `phone` is declared by the plan but this person has none: the run fails at approval.
    const answer = await rights.start({ type: 'rectification', email: 's12@candor-example.dev', changes: [{ key: 'phone', value: '+33 1 23 45 67 89' }], client: `10.4.${dialect.length}.${++client}` });
    await rights.settled();
    await rights.verify(answer.requestId, codeFromOutbox(outbox, answer.requestId), { secondIdentifier: { type: 'user_id', value: 's-12' } });
    const failed = await rights.approve(answer.requestId, CLI_ACTOR);
    assert.deepEqual([failed.state, failed.attempts, failed.lastError], ['in_progress', 1, 'PROFILES_TRAIT_UNKNOWN']);
    const repo = new RequestsRepo(ctx.kernel.storage);
    const later = new Date(Date.now() + 30_000).toISOString();
    // The heartbeat's renewal of attempt 1, landing after its end (a PostgreSQL pool runs it on another connection).
    assert.equal(await repo.renewLease(answer.requestId, 1, later), false);
    assert.equal((await row(answer.requestId)).run_lease_until, null);
    // So retry does not answer `running`, and the next start does not run it again.
    assert.deepEqual(await rights.resumeInterrupted(), { resumed: 0, deferred: 0 });
    const again = await rights.retry(answer.requestId, CLI_ACTOR);
    assert.deepEqual([again.state, again.attempts, again.lastError], ['in_progress', 2, 'PROFILES_TRAIT_UNKNOWN']);
    // A run that holds its lease renews it; an older attempt's renewal does not.
    await ctx.kernel.storage.db.withTables<RequestsTables>().updateTable('rights_requests').set({ run_lease_until: new Date().toISOString() }).where('id', '=', answer.requestId).execute();
    assert.equal(await repo.renewLease(answer.requestId, 1, later), false);
    assert.equal(await repo.renewLease(answer.requestId, 2, later), true);
    assert.equal((await row(answer.requestId)).run_lease_until, later);
    await ctx.kernel.storage.db.withTables<RequestsTables>().updateTable('rights_requests').set({ run_lease_until: null }).where('id', '=', answer.requestId).execute();
  });

  it('renews the lease while a slow run goes on and leaves none once it failed', async () => {
    await person('s-13', 's13@candor-example.dev');
    const leases: (string | null)[] = [];
    let id = '';
    const consent = new Proxy(ctx.kernel.consent, {
      get(target, property) {
        if (property === 'restrict') {
          return async () => {
            for (let i = 0; i < 4; i++) {
              leases.push((await row(id)).run_lease_until);
              await new Promise((resolve) => setTimeout(resolve, 40));
            }
            throw new CandorError('INTERNAL_ERROR');
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as Consent;
    const slow = workflow({ consent, runLeaseMs: 60 });
    try {
      const answer = await slow.start({ type: 'restriction', email: 's13@candor-example.dev', client: `10.3.${dialect.length}.${++client}` });
      id = answer.requestId;
      await slow.settled();
      const view = (await slow.verify(id, codeFromOutbox(outbox, id))).request;
      assert.deepEqual([view.state, view.lastError], ['in_progress', 'INTERNAL_ERROR']);
      assert.ok(new Set(leases).size > 1, 'the heartbeat renewed the lease');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await row(id)).run_lease_until, null);
    } finally {
      await slow.close();
    }
  });
});
