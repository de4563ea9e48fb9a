import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

describeEachDialect('access: changes audited in their own transaction', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');
  const entries = async (action: string, resource: string) => (await ctx.kernel.audit.list({ action, limit: 1000 })).filter((e) => e.resource === resource);

  it('creates no token or write key whose audit entry cannot be written', async () => {
    const before = (await ctx.kernel.access.list()).length;
    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.access.createToken('analyst', 'unaudited', CLI_ACTOR));
    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.access.createWriteKey('web', 'unaudited', CLI_ACTOR));
    assert.equal((await ctx.kernel.access.list()).length, before, 'nothing stored');
    const token = await ctx.kernel.access.createToken('analyst', null, CLI_ACTOR);
    const key = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    assert.equal((await entries('access.token.create', `credential:${token.id}`)).length, 1);
    assert.equal((await entries('access.write_key.create', `credential:${key.id}`)).length, 1);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('leaves a credential working when its revocation cannot be audited', async () => {
    const key = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    // Read and verified once, so this process holds its row.
    assert.equal((await ctx.kernel.access.authenticate(key.secret)).source, 'web');
    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.access.revoke(key.id, CLI_ACTOR));
    assert.equal((await ctx.kernel.access.list()).find((c) => c.id === key.id)?.revokedAt, null);
    assert.equal((await ctx.kernel.access.authenticate(key.secret)).source, 'web');
    assert.equal((await entries('access.credential.revoke', `credential:${key.id}`)).length, 0);
    await ctx.kernel.access.revoke(key.id, CLI_ACTOR);
    await assert.rejects(ctx.kernel.access.authenticate(key.secret), (e) => isCandorError(e, 'AUTH_CREDENTIAL_REVOKED'));
    assert.equal((await entries('access.credential.revoke', `credential:${key.id}`)).length, 1);
  });

  it('issues no subject session whose audit entry cannot be written', async () => {
    const count = async () => Number((await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from access_subject_sessions where profile_id = ${p(1)}`, ['prf_audited']))[0]?.n);
    const issue = () => ctx.kernel.subjectSessions.issue('prf_audited', 'subject-pseudonym', { ttlSeconds: 600, via: 'test' }, CLI_ACTOR);
    await failsWhileAuditFails(ctx.kernel.audit, issue);
    assert.equal(await count(), 0, 'nothing stored');
    const issued = await issue();
    assert.equal((await ctx.kernel.subjectSessions.authenticate(issued.token)).profileId, 'prf_audited');
    const id = issued.token.split('_')[1] as string;
    assert.equal((await entries('access.subject_session.issue', `subject_session:${id}`)).length, 1);
  });
});
