import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';
import { rightsRequests } from '../../../test/support/rights.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { buildServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { Mailer } from './mailer.ts';
import type { RequestsTables } from './requests.repo.ts';

/** How many outbox messages of this kind (subject line) are about a request. */
function mailsAbout(dataDir: string, requestId: string, subject: string): number {
  const dir = join(dataDir, 'outbox');
  if (!existsSync(dir)) return 0;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .filter((text) => text.includes(requestId) && text.includes(`Subject: ${subject}`)).length;
}

describeEachDialect('data-subject requests cut off by a crash', (dialect) => {
  let env: TestEnvironment;
  let kernel: Kernel;
  let client = 0;

  const tables = (k: Kernel) => k.storage.db.withTables<RequestsTables>();
  const row = async (k: Kernel, id: string) => (await tables(k).selectFrom('rights_requests').selectAll().where('id', '=', id).executeTakeFirstOrThrow());
  /** A server's start: the kernel opens, then the server resumes the interrupted runs (candor serve does it after listen). */
  const restart = async () => {
    await kernel.close();
    kernel = await openKernel(env.config);
    await kernel.rights.resumeInterrupted();
  };
  /** A person known by an address, with a few stored traits; returns their profile id. */
  const person = async (userId: string, email: string) => {
    const server = await buildServer(kernel);
    try {
      const key = (await kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
      const answer = await server.app.inject({
        method: 'POST',
        url: '/v1/identify',
        headers: { authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ userId, traits: { email, first_name: 'Ada' } }),
      });
      assert.equal((answer.json() as { results: { status: string }[] }).results[0]?.status, 'stored', answer.body);
    } finally {
      await server.app.close();
    }
    const subject = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: userId } });
    assert.ok(subject);
    return subject.profileId;
  };
  /**
   * A request of `type` left as the move to in_progress commits it (verified, its run claimed) by a process killed
   * before the run ended: its lease ran out `ago` ms before now (negative: still live).
   */
  const cutOff = async (type: string, email: string, ago = 60_000) => {
    const started = await kernel.rights.start({ type, email, client: `10.77.0.${++client}` });
    await kernel.rights.settled();
    const at = new Date().toISOString();
    await tables(kernel)
      .updateTable('rights_requests')
      .set({ state: 'in_progress', verified_at: at, code_hash: null, attempts: 1, run_lease_until: new Date(Date.now() - ago).toISOString(), updated_at: at })
      .where('id', '=', started.requestId)
      .execute();
    return started.requestId;
  };

  before(async () => {
    env = await createEnvironment(dialect);
    kernel = await openKernel(env.config);
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
  });

  it('completes at the next start an erasure whose run was cut off before it erased anything, and mails the notice once', async () => {
    const profileId = await person('crash-1', 'crash1@candor-example.dev');
    const id = await cutOff('erasure', 'crash1@candor-example.dev');
    assert.equal(await kernel.erasure.certificate(id), null);
    await restart();
    const done = await row(kernel, id);
    assert.deepEqual([done.state, Number(done.attempts), done.last_error, done.run_lease_until, done.email], ['completed', 2, null, null, null]);
    assert.equal((await kernel.erasure.certificate(id))?.status, 'complete');
    await assert.rejects(kernel.erasure.findSubject({ profileId }), (e) => isCandorError(e, 'RIGHTS_SUBJECT_ERASED'));
    assert.equal(mailsAbout(env.dataDir, id, 'Your data was erased'), 1);
    const events = (await kernel.rights.get(id)).events;
    assert.ok(events.some((e) => (e.detail as { resumed?: boolean }).resumed === true));
    // Another start finds nothing left to do.
    await restart();
    assert.equal((await row(kernel, id)).state, 'completed');
    assert.equal(mailsAbout(env.dataDir, id, 'Your data was erased'), 1);
  });

  it('completes without erasing again a request whose erasure committed before the crash, and still mails the notice', async () => {
    const profileId = await person('crash-2', 'crash2@candor-example.dev');
    const id = await cutOff('erasure', 'crash2@candor-example.dev');
    const subject = await kernel.erasure.findSubject({ profileId });
    assert.ok(subject);
    await kernel.erasure.erase(subject, { requestId: id }, CLI_ACTOR);
    // Killed right after the erasure's commit: its keys and ledger line still owed (the start finishes them first).
    await kernel.storage.db.withTables<{ rights_erasures: { request_id: string; state: string } }>().updateTable('rights_erasures').set({ state: 'keys_pending' }).where('request_id', '=', id).execute();
    await restart();
    const done = await row(kernel, id);
    assert.deepEqual([done.state, done.last_error, done.email], ['completed', null, null]);
    assert.equal((await kernel.erasure.certificate(id))?.status, 'complete');
    assert.equal(mailsAbout(env.dataDir, id, 'Your data was erased'), 1);
    assert.deepEqual((await kernel.erasure.ledger()).filter((e) => e.requestId === id).length, 1);
  });

  it('resumes a verification-free request (withdraw consent) cut off before it ran', async () => {
    await person('crash-3', 'crash3@candor-example.dev');
    const id = await cutOff('withdraw_consent', 'crash3@candor-example.dev');
    await restart();
    const done = await row(kernel, id);
    assert.deepEqual([done.state, Number(done.attempts), done.run_lease_until], ['completed', 2, null]);
  });

  it('issues and mails the download link of an access request resumed after a crash, or retried by staff', async () => {
    await person('crash-7', 'crash7@candor-example.dev');
    const id = await cutOff('access', 'crash7@candor-example.dev');
    await restart();
    const done = await row(kernel, id);
    assert.deepEqual([done.state, done.last_error], ['completed', null]);
    assert.ok(done.download_hash);
    assert.ok(done.download_expires_at);
    assert.equal(mailsAbout(env.dataDir, id, 'Your data is ready'), 1);

    await person('crash-8', 'crash8@candor-example.dev');
    const retried = await cutOff('portability', 'crash8@candor-example.dev');
    const view = await kernel.rights.retry(retried, CLI_ACTOR);
    assert.equal(view.state, 'completed');
    assert.ok(view.downloadExpiresAt);
    assert.equal(mailsAbout(env.dataDir, retried, 'Your data is ready'), 1);
  });

  it('lets staff retry an interrupted request, but not one whose run is still under way', async () => {
    await person('crash-4', 'crash4@candor-example.dev');
    const running = await cutOff('restriction', 'crash4@candor-example.dev', -60_000);
    await assert.rejects(kernel.rights.retry(running, CLI_ACTOR), (e) => isCandorError(e, 'RIGHTS_TRANSITION_INVALID') && (e.details as { reason?: string }).reason === 'running');
    await tables(kernel).updateTable('rights_requests').set({ run_lease_until: new Date(Date.now() - 1000).toISOString() }).where('id', '=', running).execute();
    const retried = await kernel.rights.retry(running, CLI_ACTOR);
    assert.deepEqual([retried.state, retried.attempts, retried.lastError], ['completed', 2, null]);
  });

  // Two servers share a PostgreSQL database; on SQLite one server holds the data directory (a CLI process racing it
  // runs the same compare-and-set), and two connections in one process cannot interleave writes (node:sqlite waits
  // for a lock synchronously, blocking the holder).
  it('runs a resumed request once when two servers on the same database both resume it', { skip: dialect !== 'postgres' }, async () => {
    await person('crash-5', 'crash5@candor-example.dev');
    // Both servers are up before the request is left interrupted (each resumes what it finds at its own start).
    const other = await openKernel(env.config);
    let id = '';
    try {
      id = await cutOff('erasure', 'crash5@candor-example.dev');
      const [a, b] = await Promise.all([kernel.rights.resumeInterrupted(), other.rights.resumeInterrupted()]);
      assert.equal(a.resumed + b.resumed, 1);
    } finally {
      await other.close();
    }
    const done = await row(kernel, id);
    assert.deepEqual([done.state, Number(done.attempts), done.last_error], ['completed', 2, null]);
    assert.equal((await kernel.rights.get(id)).events.filter((e) => (e.detail as { resumed?: boolean }).resumed === true).length, 1);
    assert.equal(mailsAbout(env.dataDir, id, 'Your data was erased'), 1);
  });

  it('leaves a run whose lease is live to its process, and resumes it once the lease ran out', async () => {
    await person('crash-6', 'crash6@candor-example.dev');
    const id = await cutOff('objection', 'crash6@candor-example.dev', -300);
    const k = kernel;
    const rights = rightsRequests(k, { mailer: new Mailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: join(env.dataDir, 'outbox') }), runLeaseMs: 300 });
    try {
      assert.deepEqual(await rights.resumeInterrupted(), { resumed: 0, deferred: 1 });
      assert.equal((await row(k, id)).state, 'in_progress');
      await new Promise((resolve) => setTimeout(resolve, 700));
      await rights.settled();
      assert.equal((await row(k, id)).state, 'completed');
    } finally {
      await rights.close();
    }
  });
});

describeEachDialect('data-subject requests left cut off by a release before runs were claimed', (dialect) => {
  const at = '2026-03-02T10:00:00.000Z';
  const request = (id: string, state: string, awaiting: number, lastError: string | null) => ({
    id,
    type: 'access',
    jurisdiction: 'gdpr',
    state,
    profile_id: 'prf_upgraded',
    subject: 'sub_upgraded',
    email: null,
    payload: null,
    channel: 'email',
    received_at: at,
    due_at: '2026-04-02T23:59:59.999Z',
    acknowledge_by: null,
    acknowledged_at: at,
    extended_at: null,
    extension_reason: null,
    code_hash: null,
    code_expires_at: null,
    code_attempts: 0,
    verified_at: at,
    awaiting_approval: awaiting,
    attempts: lastError === null ? 0 : 1,
    last_error: lastError,
    denial_reason: null,
    duplicate_of: null,
    outcome: null,
    download_hash: null,
    download_expires_at: null,
    completed_at: null,
    updated_at: at,
  });
  const ctx = useUpgradedKernel(dialect, '0107_rights_request_runs', async (db) => {
    await db
      .withTables<{ rights_requests: ReturnType<typeof request> }>()
      .insertInto('rights_requests')
      .values([request('rr_stuck', 'in_progress', 0, null), request('rr_failed', 'in_progress', 0, 'INTERNAL_ERROR'), request('rr_waiting', 'in_progress', 1, null)])
      .execute();
  });

  it('resumes at the first start the requests an interrupted run left in progress, and only those', async () => {
    await ctx.kernel.rights.resumeInterrupted();
    const rows = await ctx.kernel.storage.db.withTables<RequestsTables>().selectFrom('rights_requests').select(['id', 'state', 'attempts', 'last_error', 'run_lease_until']).orderBy('id').execute();
    assert.deepEqual(
      rows.map((r) => [r.id, r.state, Number(r.attempts), r.last_error, r.run_lease_until]),
      [
        ['rr_failed', 'in_progress', 1, 'INTERNAL_ERROR', null],
        ['rr_stuck', 'completed', 1, null, null],
        ['rr_waiting', 'in_progress', 0, null, null],
      ],
    );
  });
});
