import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { rightsRequests } from '../../../test/support/rights.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { Mailer } from './mailer.ts';
import { assertTransition, TRANSITIONS, type RequestState, type RightsRequests } from './requests.ts';

/** The code in the newest outbox message about a request. */
export function codeFromOutbox(dir: string, requestId: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.eml')).sort();
  for (const file of files.reverse()) {
    const text = readFileSync(join(dir, file), 'utf8');
    const match = /Your code is (\d{6})/.exec(text);
    if (text.includes(requestId) && match) return match[1] as string;
  }
  throw new Error(`no code for ${requestId} in the outbox`);
}

describe('request state machine', () => {
  it('allows only the documented transitions, and a retry keeps a request in progress', () => {
    assertTransition('received', 'verifying');
    assertTransition('verifying', 'in_progress');
    assertTransition('in_progress', 'in_progress');
    assertTransition('in_progress', 'partially_completed');
    assertTransition('partially_completed', 'in_progress');
    const illegal: [RequestState, RequestState][] = [
      ['completed', 'in_progress'],
      ['denied', 'in_progress'],
      ['verifying', 'completed'],
      ['received', 'completed'],
      ['completed', 'denied'],
    ];
    for (const [from, to] of illegal) assert.throws(() => assertTransition(from, to), (e) => isCandorError(e, 'RIGHTS_TRANSITION_INVALID'), `${from} -> ${to}`);
    assert.deepEqual(TRANSITIONS.completed, []);
  });
});

describeEachDialect('data-subject requests', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let outbox = '';
  let clock = new Date('2026-03-02T10:00:00.000Z');
  let rights: RightsRequests;
  const send = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const person = async (userId: string, email: string, purposes: Record<string, string> = {}) => {
    if (Object.keys(purposes).length > 0) assert.equal((await send('/v1/consent', { userId, mechanism: 'banner_save', purposes })).statusCode, 200);
    const identified = await send('/v1/identify', { userId, traits: { email, first_name: 'Ada' } });
    assert.equal((identified.json() as { results: { status: string }[] }).results[0]?.status, 'stored', identified.body);
    return (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]))[0] as string;
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    const k = ctx.kernel;
    rights = rightsRequests(k, {
      mailer: new Mailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox }),
      rateLimits: { perIdentifier: 3, perClient: 6, windowMs: 3_600_000 },
      now: () => clock,
    });
  });
  after(async () => {
    await rights.settled();
    await server.app.close();
    rmSync(outbox, { recursive: true, force: true });
  });

  it('sends a code only to a known address, stores it hashed, and expires it after ten minutes', async () => {
    await person('v-1', 'v1@candor-example.dev');
    const started = await rights.start({ type: 'erasure', email: 'V1@Candor-Example.dev', client: '10.0.0.1' });
    assert.deepEqual(Object.keys(started).sort(), ['next', 'requestId', 'verification']);
    assert.equal(started.next, 'verify');
    await rights.settled();
    const code = codeFromOutbox(outbox, started.requestId);
    const stored = await ctx.kernel.storage.raw.all<{ code_hash: string; email: string }>('SELECT code_hash, email FROM rights_requests WHERE id = $1'.replace('$1', dialect === 'postgres' ? '$1' : '?'), [started.requestId]);
    assert.ok(!stored[0]?.code_hash.includes(code));
    assert.ok(!stored[0]?.email.includes('v1@candor-example.dev'));
    clock = new Date(clock.getTime() + 10 * 60_000 + 1);
    await assert.rejects(rights.verify(started.requestId, code), (e) => isCandorError(e, 'RIGHTS_CODE_EXPIRED'));
    clock = new Date('2026-03-02T10:00:00.000Z');
  });

  it('locks after three wrong codes, even for the right one', async () => {
    await person('v-2', 'v2@candor-example.dev');
    const started = await rights.start({ type: 'restriction', email: 'v2@candor-example.dev', client: '10.0.0.2' });
    await rights.settled();
    const code = codeFromOutbox(outbox, started.requestId);
    const wrong = code === '000000' ? '000001' : '000000';
    for (let i = 0; i < 3; i++) await assert.rejects(rights.verify(started.requestId, wrong), (e) => isCandorError(e, 'RIGHTS_CODE_INVALID'));
    await assert.rejects(rights.verify(started.requestId, code), (e) => isCandorError(e, 'RIGHTS_VERIFICATION_LOCKED'));
  });

  it('answers an unknown address exactly like a known one and sends nothing', async () => {
    const before = readdirSync(outbox).length;
    const unknown = await rights.start({ type: 'erasure', email: 'nobody@candor-example.dev', client: '10.0.0.3' });
    await rights.settled();
    assert.equal(readdirSync(outbox).length, before);
    assert.deepEqual({ ...unknown, requestId: 'x' }, { requestId: 'x', verification: 'code', next: 'verify' });
    assert.match(unknown.requestId, /^rr_/);
    for (let i = 0; i < 3; i++) await assert.rejects(rights.verify(unknown.requestId, '123456'), (e) => isCandorError(e, 'RIGHTS_CODE_INVALID'));
    await assert.rejects(rights.verify(unknown.requestId, '123456'), (e) => isCandorError(e, 'RIGHTS_VERIFICATION_LOCKED'));
    // An opt-out needs no verification: same answer whether or not the address is known.
    await person('v-3', 'v3@candor-example.dev', { third_party_sharing: 'given' });
    const known = await rights.start({ type: 'opt_out_sale_sharing', email: 'v3@candor-example.dev', client: '10.0.0.3' });
    const nobody = await rights.start({ type: 'opt_out_sale_sharing', email: 'nobody2@candor-example.dev', client: '10.0.0.3' });
    assert.deepEqual({ ...known, requestId: '' }, { ...nobody, requestId: '' });
    await rights.settled();
    const id = (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'v-3' }], source: 'web', at: new Date().toISOString() }]))[0] as string;
    assert.equal((await ctx.kernel.consent.state(id)).third_party_sharing?.allowed, false);
    assert.equal((await rights.mineOne(id, known.requestId)).state, 'completed');
  });

  it('closes a second erasure request as its duplicate when the first erases the person, so its code opens nothing and no session', async () => {
    await person('v-twice', 'twice@candor-example.dev');
    const first = await rights.start({ type: 'erasure', email: 'twice@candor-example.dev', client: '10.0.9.1' });
    const second = await rights.start({ type: 'erasure', email: 'twice@candor-example.dev', client: '10.0.9.2' });
    await rights.settled();
    const codes = [codeFromOutbox(outbox, first.requestId), codeFromOutbox(outbox, second.requestId)] as const;
    const erased = await rights.verify(first.requestId, codes[0]);
    assert.equal(erased.request.state, 'completed');
    assert.equal(erased.session, null, 'the erasure ended the person\'s sessions: none is handed back');
    // The erasure closed it, in its own transaction, and shredded the address it held.
    const q = 'SELECT state, denial_reason, duplicate_of, email FROM rights_requests WHERE id = $1'.replace('$1', dialect === 'postgres' ? '$1' : '?');
    const [row] = await ctx.kernel.storage.raw.all<{ state: string; denial_reason: string; duplicate_of: string; email: string | null }>(q, [second.requestId]);
    assert.deepEqual({ ...row }, { state: 'denied', denial_reason: 'duplicate', duplicate_of: first.requestId, email: null });
    await assert.rejects(rights.verify(second.requestId, codes[1]), (e) => isCandorError(e, 'RIGHTS_TRANSITION_INVALID'));
  });

  it('rate-limits starts per address and per client', async () => {
    for (let i = 0; i < 3; i++) await rights.start({ type: 'erasure', email: 'limited@candor-example.dev', client: `10.1.0.${i}` });
    await assert.rejects(rights.start({ type: 'erasure', email: 'limited@candor-example.dev', client: '10.1.0.9' }), (e) => isCandorError(e, 'RIGHTS_RATE_LIMITED'));
    for (let i = 0; i < 6; i++) await rights.start({ type: 'erasure', email: `c${i}@candor-example.dev`, client: '10.2.0.1' });
    await assert.rejects(rights.start({ type: 'erasure', email: 'c9@candor-example.dev', client: '10.2.0.1' }), (e) => isCandorError(e, 'RIGHTS_RATE_LIMITED'));
  });

  it('accepts no more starts than the limits when they arrive at the same time', async () => {
    const accepted = async (starts: { email: string; client: string }[]) => {
      const results = await Promise.allSettled(starts.map((s) => rights.start({ type: 'erasure', ...s })));
      for (const r of results) if (r.status === 'rejected') assert.ok(isCandorError(r.reason, 'RIGHTS_RATE_LIMITED'), String(r.reason));
      return results.filter((r) => r.status === 'fulfilled').length;
    };
    // One address from many clients: 3 an hour; one client for many addresses: 6 an hour.
    assert.equal(await accepted(Array.from({ length: 16 }, (_, i) => ({ email: 'race@candor-example.dev', client: `10.93.0.${i}` }))), 3);
    assert.equal(await accepted(Array.from({ length: 16 }, (_, i) => ({ email: `race-${i}@candor-example.dev`, client: '10.94.0.1' }))), 6);
    await rights.settled();
  });

  it('needs a second identifier for access, and answers a repeated request with the first, flagged duplicate', async () => {
    const id = await person('v-4', 'v4@candor-example.dev');
    const first = await rights.start({ type: 'access', email: 'v4@candor-example.dev', client: '10.3.0.1' });
    await rights.settled();
    const code = codeFromOutbox(outbox, first.requestId);
    await assert.rejects(rights.verify(first.requestId, code), (e) => isCandorError(e, 'RIGHTS_SECOND_FACTOR_REQUIRED'));
    await assert.rejects(rights.verify(first.requestId, code, { secondIdentifier: { type: 'user_id', value: 'v-1' } }), (e) => isCandorError(e, 'RIGHTS_SECOND_FACTOR_INVALID'));
    const verified = await rights.verify(first.requestId, code, { secondIdentifier: { type: 'user_id', value: 'v-4' } });
    assert.equal(verified.request.state, 'completed');
    assert.equal(verified.duplicate, false);
    assert.match(verified.session?.token ?? '', /^css_/);
    assert.ok(verified.download);
    const archive = await rights.download(verified.download.token);
    assert.equal(archive.requestId, first.requestId);
    assert.ok(archive.archive.byteLength > 100);

    const second = await rights.start({ type: 'access', email: 'v4@candor-example.dev', client: '10.3.0.1' });
    await rights.settled();
    const again = await rights.verify(second.requestId, codeFromOutbox(outbox, second.requestId), { secondIdentifier: { type: 'user_id', value: 'v-4' } });
    assert.equal(again.duplicate, true);
    assert.equal(again.request.id, first.requestId);
    const mine = await rights.mine(id);
    assert.equal(mine.find((r) => r.id === second.requestId)?.denialReason, 'duplicate');
    assert.equal(mine.find((r) => r.id === second.requestId)?.duplicateOf, first.requestId);

    clock = new Date(clock.getTime() + 24 * 3_600_000 + 1);
    await assert.rejects(rights.download(verified.download.token), (e) => isCandorError(e, 'RIGHTS_DOWNLOAD_INVALID'));
    clock = new Date('2026-03-02T10:00:00.000Z');
  });

  it('answers a signed-in start of access without an address linked to the person as an invalid request (400), alike for anyone else’s and an unknown one', async () => {
    const id = await person('v-9', 'v9@candor-example.dev');
    await person('v-10', 'v10@candor-example.dev');
    const { token } = await ctx.kernel.subjectSessions.issue(id, ctx.kernel.keyring.pseudonym('subject', id), { ttlSeconds: 900, via: 'test' }, CLI_ACTOR);
    const startAs = (payload: Record<string, unknown>) => server.app.inject({ method: 'POST', url: '/v1/me/rights/requests', headers: { authorization: `Bearer ${token}` }, payload });
    const cases: [string | undefined, string][] = [
      [undefined, 'email_required'],
      ['not an address', 'email_required'],
      ['v10@candor-example.dev', 'email_not_linked'],
      ['nobody-at-all@candor-example.dev', 'email_not_linked'],
    ];
    for (const [email, reason] of cases) {
      const answer = await startAs({ type: 'access', ...(email === undefined ? {} : { email }) });
      const body = answer.json() as { code: string; details?: { reason?: string } };
      assert.deepEqual([answer.statusCode, body.code, body.details?.reason], [400, 'RIGHTS_REQUEST_INVALID', reason], `${email}: ${answer.body}`);
    }
    const own = await startAs({ type: 'access', email: 'V9@candor-example.dev' });
    assert.equal(own.statusCode, 201, own.body);
    assert.equal((own.json() as { request: { state: string } }).request.state, 'verifying');
  });

  it('runs rectification after staff approval, recording the change with its request id; failures stay in progress', async () => {
    const id = await person('v-6', 'v6@candor-example.dev');
    // `phone` is a trait the plan declares, but this person has none to correct: the run fails at approval.
    const started = await rights.start({ type: 'rectification', email: 'v6@candor-example.dev', changes: [{ key: 'first_name', value: 'Adah' }, { key: 'phone', value: '+33 1 23 45 67 89' }], client: '10.4.0.1' });
    await rights.settled();
    const verified = await rights.verify(started.requestId, codeFromOutbox(outbox, started.requestId), { secondIdentifier: { type: 'user_id', value: 'v-6' } });
    assert.equal(verified.request.state, 'in_progress');
    assert.equal(verified.request.awaitingApproval, true);
    const failed = await rights.approve(started.requestId, CLI_ACTOR);
    assert.deepEqual([failed.state, failed.attempts, failed.lastError], ['in_progress', 1, 'PROFILES_TRAIT_UNKNOWN']);
    const again = await rights.retry(started.requestId, CLI_ACTOR);
    assert.deepEqual([again.state, again.attempts, again.lastError], ['in_progress', 2, 'PROFILES_TRAIT_UNKNOWN']);
    const detail = await rights.get(started.requestId);
    // verified; approved (its run claimed); failed; retried (claimed again); failed again.
    assert.deepEqual(detail.events.map((e) => e.to), ['verifying', 'in_progress', 'in_progress', 'in_progress', 'in_progress', 'in_progress']);
    // A correct rectification:
    const fixed = await rights.startForSession(id, { type: 'rectification', email: 'v6@candor-example.dev', changes: [{ key: 'first_name', value: 'Adah' }] }, CLI_ACTOR);
    assert.equal(fixed.duplicate, true, 'the failed one is still open');
    await rights.deny(started.requestId, 'Superseded', CLI_ACTOR);
    const next = await rights.startForSession(id, { type: 'rectification', email: 'v6@candor-example.dev', changes: [{ key: 'first_name', value: 'Adah' }] }, CLI_ACTOR);
    await rights.settled();
    await rights.verify(next.request.id, codeFromOutbox(outbox, next.request.id));
    const done = await rights.approve(next.request.id, CLI_ACTOR);
    assert.equal(done.state, 'completed');
    assert.deepEqual(done.outcome?.recipients, []);
    const history = await ctx.kernel.profiles.traitHistory([id], 'first_name', { decrypt: true });
    assert.equal(history[0]?.value, 'Adah');
    assert.equal(history[0]?.source, 'rectification');
    assert.equal(history[0]?.messageId, next.request.id);
  });

  it('lists overdue and due-soon requests, and extends only inside the first month with a notice', async () => {
    const id = await person('v-7', 'v7@candor-example.dev');
    clock = new Date('2026-01-31T09:00:00.000Z');
    const r = await rights.startForSession(id, { type: 'erasure', email: 'v7@candor-example.dev' }, CLI_ACTOR);
    assert.equal(r.request.dueAt, '2026-02-28T23:59:59.999Z');
    // Erasure ran at once (a session counts as verification).
    assert.equal(r.request.state, 'completed');
    const certificate = await rights.certificate(r.request.id);
    assert.equal(certificate.requestId, r.request.id);

    // Requests waiting for staff approval stay open.
    const waiting = async (userId: string, email: string) => {
      const profile = await person(userId, email);
      const started = await rights.startForSession(profile, { type: 'rectification', email, changes: [{ key: 'first_name', value: 'Corrected' }] }, CLI_ACTOR);
      await rights.settled();
      const verified = await rights.verify(started.request.id, codeFromOutbox(outbox, started.request.id));
      assert.equal(verified.request.state, 'in_progress');
      return verified.request;
    };
    const open = { request: await waiting('v-8', 'v8@candor-example.dev') };
    clock = new Date('2026-02-25T00:00:00.000Z');
    assert.ok((await rights.queue({ due: 'due_soon' })).some((v) => v.id === open.request.id));
    assert.ok(!(await rights.queue({ due: 'overdue' })).some((v) => v.id === open.request.id));
    const extended = await rights.extend(open.request.id, 'Complex request', CLI_ACTOR);
    assert.equal(extended.dueAt, '2026-04-30T23:59:59.999Z');
    await assert.rejects(rights.extend(open.request.id, 'Again', CLI_ACTOR), (e) => isCandorError(e, 'RIGHTS_EXTENSION_ALREADY_USED'));
    clock = new Date('2026-01-31T09:00:00.000Z');
    const late = { request: await waiting('v-9', 'v9@candor-example.dev') };
    clock = new Date('2026-03-01T00:00:00.000Z');
    await assert.rejects(rights.extend(late.request.id, 'Too late', CLI_ACTOR), (e) => isCandorError(e, 'RIGHTS_EXTENSION_TOO_LATE'));
    clock = new Date('2026-05-01T00:00:00.000Z');
    const overdue = await rights.queue({ due: 'overdue' });
    assert.ok(overdue.some((v) => v.id === late.request.id));
    const notice = readdirSync(outbox).map((f) => readFileSync(join(outbox, f), 'utf8')).find((t) => t.includes('We extended the deadline') && t.includes(open.request.id));
    assert.ok(notice);
    clock = new Date('2026-03-02T10:00:00.000Z');
  });
});
