import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { RefusingMailer, rightsRequests } from '../../../test/support/rights.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError, type CandorError } from '../../shared/errors.ts';
import { ERASED_NOTICE_SUBJECT } from './mailer.ts';
import type { RightsRequests } from './requests.ts';

/** A mailer whose server refuses the messages whose subject matches `refuse`. */
function mails(dir: string, requestId: string, subject: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .filter((text) => text.includes(requestId) && text.includes(`Subject: ${subject}`));
}

const codeOf = (dir: string, requestId: string) => /Your code is (\d{6})/.exec(mails(dir, requestId, '').join('\n'))?.[1] ?? '';

describeEachDialect('data-subject requests: erasures at once, refused notices, retries at once', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let outbox = '';
  let mailer: RefusingMailer;
  let rights: RightsRequests;
  let client = 0;
  const identify = async (userId: string, email: string) => {
    const answer = await server.app.inject({
      method: 'POST',
      url: '/v1/identify',
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ userId, traits: { email, first_name: 'Ada' } }),
    });
    assert.equal(answer.statusCode, 200, answer.body);
  };
  const start = async (type: string, email: string) => {
    const started = await rights.start({ type, email, client: `10.88.0.${++client}` });
    await rights.settled();
    return started.requestId;
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    mailer = new RefusingMailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox });
    const k = ctx.kernel;
    rights = rightsRequests(k, { mailer });
  });
  after(async () => {
    await rights.close();
    await server.app.close();
    rmSync(outbox, { recursive: true, force: true });
  });

  it('hands back no session for an erasure whose notice was refused after it erased (the session could gather consent again)', async () => {
    await identify('cc-1', 'cc1@candor-example.dev');
    const id = await start('erasure', 'cc1@candor-example.dev');
    mailer.refuse = new RegExp(ERASED_NOTICE_SUBJECT);
    try {
      const verified = await rights.verify(id, codeOf(outbox, id));
      assert.equal(verified.request.lastError, 'RIGHTS_MAIL_FAILED');
      assert.equal(verified.session, null);
    } finally {
      mailer.refuse = null;
    }
  });

  it('closes both of two erasure requests of one person verified at once: one erases, the other finds it done', async () => {
    await identify('cc-2', 'cc2@candor-example.dev');
    const ids = [await start('erasure', 'cc2@candor-example.dev'), await start('erasure', 'cc2@candor-example.dev')];
    const codes = ids.map((id) => codeOf(outbox, id));
    const answers = await Promise.allSettled(ids.map((id, i) => rights.verify(id, codes[i] as string)));
    // The second is closed as the first one's duplicate (seen open, already erased: RIGHTS_SUBJECT_ERASED, or closed by
    // the erasure before its verification moved it: RIGHTS_TRANSITION_INVALID) or finds the person erased during its run
    // (completed, `already_erased`): which, depends on timing. Neither is left open or gets a session.
    const seen = answers.map((a) => {
      if (a.status === 'rejected') {
        assert.ok(isCandorError(a.reason, 'RIGHTS_SUBJECT_ERASED') || isCandorError(a.reason, 'RIGHTS_TRANSITION_INVALID'), String(a.reason));
        return 'closed';
      }
      assert.equal(a.value.session, null);
      if (a.value.duplicate) return 'duplicate';
      assert.equal(a.value.request.state, 'completed');
      return (a.value.request.outcome as { reason?: string } | null)?.reason ?? 'erased';
    });
    assert.equal(seen.filter((x) => x === 'erased').length, 1, JSON.stringify(seen));
    for (const id of ids) await assert.rejects(rights.retry(id, CLI_ACTOR), (e) => isCandorError(e, 'RIGHTS_TRANSITION_INVALID'));
    // Whichever way the second ended, no key that could open the person's address is left.
    const keys = await ctx.kernel.storage.raw.all<{ subject_id: string }>(`SELECT subject_id FROM crypto_subject_keys WHERE subject_id IN (${dialect === 'postgres' ? '$1, $2' : '?, ?'})`, ids.map((id) => `rights_request:${id}`));
    assert.deepEqual(keys, []);
  });

  it('sends a refused denial once when staff retry it several times at once', async () => {
    await identify('cc-3', 'cc3@candor-example.dev');
    for (const type of ['restriction', 'erasure']) {
      const id = await start(type, 'cc3@candor-example.dev');
      mailer.refuse = /About your request/;
      try {
        await rights.deny(id, 'We could not verify the request.', CLI_ACTOR);
      } finally {
        mailer.refuse = null;
      }
      const retries = await Promise.allSettled([rights.retry(id, CLI_ACTOR), rights.retry(id, CLI_ACTOR), rights.retry(id, CLI_ACTOR)]);
      assert.equal(retries.filter((r) => r.status === 'fulfilled').length, 1, `${type}: ${JSON.stringify(retries.map((r) => (r.status === 'fulfilled' ? r.value.state : (r.reason as CandorError).code)))}`);
      for (const r of retries) if (r.status === 'rejected') assert.ok(isCandorError(r.reason, 'RIGHTS_TRANSITION_INVALID'), String(r.reason));
      assert.equal(mails(outbox, id, 'About your request').length, 1, type);
    }
  });
});
