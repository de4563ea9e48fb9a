import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { rightsRequests } from '../../../test/support/rights.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { Mailer } from './mailer.ts';
import type { RightsRequests } from './requests.ts';

describeEachDialect('rights requests: every change audited in its own transaction', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let outbox = '';
  let rights: RightsRequests;
  const count = async (table: string) => Number((await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from ${table}`))[0]?.n);
  const audited = async (action: string, requestId: string) => (await ctx.kernel.audit.list({ action, limit: 1000 })).filter((e) => e.resource === `rights_request:${requestId}`);
  const person = async (userId: string, email: string) => {
    const identified = await server.app.inject({
      method: 'POST',
      url: '/v1/identify',
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` },
      payload: { userId, traits: { email } },
    });
    assert.equal((identified.json() as { results: { status: string }[] }).results[0]?.status, 'stored', identified.body);
    return (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]))[0] as string;
  };
  /** A request of a known person waiting for its code, with the address on file. */
  const verifying = async (userId: string, email: string) => {
    await person(userId, email);
    const started = await rights.start({ type: 'erasure', email, client: userId });
    await rights.settled();
    assert.equal((await rights.get(started.requestId)).state, 'verifying');
    return started.requestId;
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    rights = rightsRequests(ctx.kernel, { mailer: new Mailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox }) });
  });
  after(async () => {
    await rights.settled();
    await server.app.close();
    rmSync(outbox, { recursive: true, force: true });
  });

  it('stores no request whose audit entry cannot be written', async () => {
    const profileId = await person('a-1', 'a1@candor-example.dev');
    const [requests, events] = [await count('rights_requests'), await count('rights_request_events')];
    await failsWhileAuditFails(ctx.kernel.audit, () => rights.start({ type: 'erasure', email: 'a1@candor-example.dev', client: 'a-1' }));
    await failsWhileAuditFails(ctx.kernel.audit, () => rights.startForSession(profileId, { type: 'restriction' }, { id: `subject:${profileId}`, role: 'subject' }));
    await rights.settled();
    assert.deepEqual([await count('rights_requests'), await count('rights_request_events')], [requests, events], 'nothing stored');
    const started = await rights.start({ type: 'erasure', email: 'a1@candor-example.dev', client: 'a-1' });
    assert.equal((await audited('rights.request.verifying', started.requestId)).length, 1);
  });

  it('leaves a request as it was when its move cannot be audited', async () => {
    const requestId = await verifying('d-1', 'd1@candor-example.dev');
    const events = (await rights.get(requestId)).events.length;
    await failsWhileAuditFails(ctx.kernel.audit, () => rights.deny(requestId, 'Not our customer.', CLI_ACTOR));
    const after = await rights.get(requestId);
    assert.equal(after.state, 'verifying');
    assert.equal(after.events.length, events, 'no event recorded');
    assert.equal((await audited('rights.request.denied', requestId)).length, 0);
    await rights.deny(requestId, 'Not our customer.', CLI_ACTOR);
    assert.equal((await rights.get(requestId)).state, 'denied');
    assert.equal((await audited('rights.request.denied', requestId)).length, 1);
  });

  it('records no extension whose audit entry cannot be written', async () => {
    const requestId = await verifying('e-1', 'e1@candor-example.dev');
    const before = await rights.get(requestId);
    await failsWhileAuditFails(ctx.kernel.audit, () => rights.extend(requestId, 'Many records to gather.', CLI_ACTOR));
    const after = await rights.get(requestId);
    assert.deepEqual([after.extended, after.dueAt, after.events.length], [false, before.dueAt, before.events.length]);
    await rights.extend(requestId, 'Many records to gather.', CLI_ACTOR);
    assert.equal((await rights.get(requestId)).extended, true);
    assert.equal((await audited('rights.request.extend', requestId)).length, 1);
  });
});
