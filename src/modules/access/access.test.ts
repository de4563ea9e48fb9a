import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

describeEachDialect('access control', (dialect) => {
  const ctx = useKernel(dialect);

  it('creates a token whose secret authenticates and is never listed', async () => {
    const created = await ctx.kernel.access.createToken('analyst', 'reports', CLI_ACTOR);
    assert.match(created.secret, /^cnd_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const principal = await ctx.kernel.access.authenticate(created.secret);
    assert.deepEqual(principal, { tokenId: created.id, kind: 'api', role: 'analyst', source: null });
    // Second call uses the verified-digest cache and must agree.
    assert.deepEqual(await ctx.kernel.access.authenticate(created.secret), principal);
    const listed = JSON.stringify(await ctx.kernel.access.list());
    assert.ok(!listed.includes(created.secret.slice(21)));
  });

  it('rejects a wrong secret for a real token id, and malformed tokens', async () => {
    const created = await ctx.kernel.access.createToken('marketer', null, CLI_ACTOR);
    const wrong = created.secret.slice(0, -3) + (created.secret.endsWith('aaa') ? 'bbb' : 'aaa');
    await assert.rejects(ctx.kernel.access.authenticate(wrong), (e) => isCandorError(e, 'AUTH_CREDENTIAL_INVALID'));
    await assert.rejects(ctx.kernel.access.authenticate('garbage'), (e) => isCandorError(e, 'AUTH_CREDENTIAL_INVALID'));
    await assert.rejects(ctx.kernel.access.authenticate(created.secret.replace('cnd_', 'cwk_')), (e) => isCandorError(e, 'AUTH_CREDENTIAL_INVALID'));
  });

  it('stops a revoked credential on the next request and audits the revocation', async () => {
    const key = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    assert.equal((await ctx.kernel.access.authenticate(key.secret)).source, 'web');
    await ctx.kernel.access.revoke(key.id, CLI_ACTOR);
    await assert.rejects(ctx.kernel.access.authenticate(key.secret), (e) => isCandorError(e, 'AUTH_CREDENTIAL_REVOKED'));
    await assert.rejects(ctx.kernel.access.revoke(key.id, CLI_ACTOR), (e) => isCandorError(e, 'ACCESS_TOKEN_ALREADY_REVOKED'));
    const entries = await ctx.kernel.audit.list({ action: 'access.credential.revoke', limit: 10 });
    assert.equal(entries.at(-1)?.resource, `credential:${key.id}`);
  });

  it('answers a revoked credential id with a wrong secret as invalid, not revoked', async () => {
    for (const created of [await ctx.kernel.access.createToken('analyst', null, CLI_ACTOR), await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)]) {
      // Verified once, so the process holds the right secret's digest too.
      await ctx.kernel.access.authenticate(created.secret);
      await ctx.kernel.access.revoke(created.id, CLI_ACTOR);
      const forged = created.secret.slice(0, -43) + 'A'.repeat(43);
      await assert.rejects(ctx.kernel.access.authenticate(forged), (e) => isCandorError(e, 'AUTH_CREDENTIAL_INVALID'));
      await assert.rejects(ctx.kernel.access.authenticate(created.secret), (e) => isCandorError(e, 'AUTH_CREDENTIAL_REVOKED'));
    }
  });

  it('stops a credential revoked through another connection (the CLI) on its next request', async () => {
    const key = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    // Read and verified once, so this process holds its row.
    assert.equal((await ctx.kernel.access.authenticate(key.secret)).source, 'web');
    assert.equal((await ctx.kernel.access.authenticate(key.secret)).source, 'web');
    const cli = await openKernel(ctx.env.config);
    try {
      await cli.access.revoke(key.id, CLI_ACTOR);
    } finally {
      await cli.close();
    }
    // Another connection's writes are looked for at most once a millisecond.
    await new Promise((resolve) => setTimeout(resolve, 5));
    await assert.rejects(ctx.kernel.access.authenticate(key.secret), (e) => isCandorError(e, 'AUTH_CREDENTIAL_REVOKED'));
  });

  it('refuses unknown roles, bad source names and revoking the last owner', async () => {
    await assert.rejects(ctx.kernel.access.createToken('root', null, CLI_ACTOR), (e) => isCandorError(e, 'ACCESS_ROLE_UNKNOWN'));
    await assert.rejects(ctx.kernel.access.createWriteKey('bad source!', null, CLI_ACTOR), (e) => isCandorError(e, 'ACCESS_SOURCE_NAME_INVALID'));
    const owner = await ctx.kernel.access.createToken('owner', null, CLI_ACTOR);
    await assert.rejects(ctx.kernel.access.revoke(owner.id, CLI_ACTOR), (e) => isCandorError(e, 'ACCESS_LAST_OWNER'));
    await assert.rejects(ctx.kernel.access.revoke('0000000000000000', CLI_ACTOR), (e) => isCandorError(e, 'ACCESS_TOKEN_NOT_FOUND'));
  });

  it('never lets concurrent revocations remove every owner', async () => {
    const owners = await Promise.all([1, 2, 3].map(() => ctx.kernel.access.createToken('owner', null, CLI_ACTOR)));
    const active = async () => (await ctx.kernel.access.list()).filter((c) => c.role === 'owner' && c.kind === 'api' && !c.revokedAt);
    const all = await active();
    const results = await Promise.allSettled(all.map((c) => ctx.kernel.access.revoke(c.id, CLI_ACTOR)));
    assert.equal((await active()).length, 1);
    assert.equal(results.filter((r) => r.status === 'rejected').length, 1);
    assert.ok(owners.length === 3);
  });
});
