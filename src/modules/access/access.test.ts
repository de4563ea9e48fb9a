import assert from 'node:assert/strict';
import { createHash, randomBytes, scryptSync } from 'node:crypto';
import { it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import type { Storage } from '../../storage/index.ts';
import { AccessRepo } from './access.repo.ts';
import { AccessControl, type Scrypt } from './access.service.ts';

const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/** scrypt that runs only when the test releases a call, counting the calls and how many were unreleased at once. */
class HeldScrypt {
  readonly pending: (() => void)[] = [];
  calls = 0;
  mostAtOnce = 0;
  readonly fn: Scrypt = (password, salt, keylen, options) =>
    new Promise((resolve) => {
      this.calls++;
      this.pending.push(() => resolve(scryptSync(password, salt, keylen, options)));
      this.mostAtOnce = Math.max(this.mostAtOnce, this.pending.length);
    });
  release(): void {
    this.pending.shift()?.();
  }
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i > 100_000) throw new Error('condition never met');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A credential as releases before the SHA-256 form stored it: a salted scrypt hash. */
async function olderCredential(storage: Storage, kind: 'api' | 'write_key'): Promise<{ id: string; secret: string; presented: string }> {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const salt = randomBytes(16);
  const hash = scryptSync(secret, salt, 32, SCRYPT).toString('base64');
  const [role, source] = kind === 'api' ? ['analyst', null] : ['ingest', 'web'];
  await sql`INSERT INTO access_tokens (id, kind, role, source, label, salt, hash, created_at, created_by, revoked_at, revoked_by)
    VALUES (${id}, ${kind}, ${role}, ${source}, ${null}, ${salt.toString('base64')}, ${hash}, ${new Date().toISOString()}, 'cli', ${null}, ${null})`.execute(storage.db);
  return { id, secret, presented: `${kind === 'api' ? 'cnd' : 'cwk'}_${id}_${secret}` };
}

async function storedHash(storage: Storage, id: string): Promise<{ salt: string; hash: string }> {
  const rows = (await sql<{ salt: string; hash: string }>`SELECT salt, hash FROM access_tokens WHERE id = ${id}`.execute(storage.db)).rows;
  return { ...(rows[0] as { salt: string; hash: string }) };
}

const sha256 = (secret: string) => `sha256:${createHash('sha256').update(secret).digest('base64')}`;

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
    // Another connection's writes are looked for at most once a millisecond on SQLite; on PostgreSQL its commit notice
    // arrives a few milliseconds later (more on a loaded machine), and the request after it is refused.
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (dialect === 'postgres') {
      const until = Date.now() + 5_000;
      while (Date.now() < until && (await ctx.kernel.access.authenticate(key.secret).then(() => true, () => false))) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
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

describeEachDialect('the first start\'s owner token', (dialect) => {
  it('is created once when servers do a first start on one database at once, and never beside another credential', async () => {
    const env = await createEnvironment(dialect);
    const kernels: Kernel[] = [];
    try {
      for (let i = 0; i < 3; i++) kernels.push(await openKernel(env.config));
      const first = (k: Kernel) => k.access.createFirstOwnerToken('created on first start', CLI_ACTOR);
      // On PostgreSQL the three transactions run at once. SQLite connections of one process wait for each other's write
      // lock synchronously (a deadlock in one thread); their write transactions begin IMMEDIATE, serial by construction.
      const made = dialect === 'postgres' ? await Promise.all(kernels.map(first)) : [await first(kernels[0]!), await first(kernels[1]!), await first(kernels[2]!)];
      const secrets = made.filter((m) => m !== undefined);
      assert.equal(secrets.length, 1);
      const listed = await kernels[0]!.access.list();
      assert.deepEqual(listed.map((c) => [c.role, c.id]), [['owner', secrets[0]!.id]]);
      assert.equal((await kernels[1]!.access.authenticate(secrets[0]!.secret)).role, 'owner');
      assert.equal(await kernels[2]!.access.createFirstOwnerToken('created on first start', CLI_ACTOR), undefined);
    } finally {
      await Promise.all(kernels.map((k) => k.close()));
      await env.cleanup();
    }
  });
});

describeEachDialect('credential hashes: SHA-256, and scrypt hashes of older releases', (dialect) => {
  const ctx = useKernel(dialect);

  it('stores a new token and write key as the SHA-256 of the secret, and verifies them without scrypt', async () => {
    const scrypt = new HeldScrypt();
    const access = new AccessControl(ctx.kernel.storage, ctx.kernel.audit, { scrypt: scrypt.fn });
    for (const created of [await access.createToken('analyst', null, CLI_ACTOR), await access.createWriteKey('web', null, CLI_ACTOR)]) {
      const secret = created.secret.slice(21);
      assert.deepEqual(await storedHash(ctx.kernel.storage, created.id), { salt: '', hash: sha256(secret) });
      assert.equal((await access.authenticate(created.secret)).tokenId, created.id);
      await assert.rejects(access.authenticate(created.secret.slice(0, 21) + 'A'.repeat(43)), (e) => isCandorError(e, 'AUTH_CREDENTIAL_INVALID'));
      // The kernel's own instance (another process's, in effect) agrees.
      assert.equal((await ctx.kernel.access.authenticate(created.secret)).tokenId, created.id);
    }
    assert.equal(scrypt.calls, 0);
  });

  it('accepts a token and a write key stored with scrypt, and stores them as SHA-256 on their first successful check', async () => {
    const scrypt = new HeldScrypt();
    const access = new AccessControl(ctx.kernel.storage, ctx.kernel.audit, { scrypt: scrypt.fn });
    for (const kind of ['api', 'write_key'] as const) {
      const older = await olderCredential(ctx.kernel.storage, kind);
      const calls = scrypt.calls;
      const checked = access.authenticate(older.presented);
      await until(() => scrypt.pending.length === 1);
      scrypt.release();
      assert.deepEqual(await checked, { tokenId: older.id, kind, role: kind === 'api' ? 'analyst' : 'ingest', source: kind === 'api' ? null : 'web' });
      assert.deepEqual(await storedHash(ctx.kernel.storage, older.id), { salt: '', hash: sha256(older.secret) });
      // From now on without scrypt, in this process and in others.
      assert.equal((await access.authenticate(older.presented)).tokenId, older.id);
      await assert.rejects(access.authenticate(older.presented.slice(0, 21) + 'A'.repeat(43)), (e) => isCandorError(e, 'AUTH_CREDENTIAL_INVALID'));
      assert.equal((await ctx.kernel.access.authenticate(older.presented)).tokenId, older.id);
      assert.equal(scrypt.calls, calls + 1);
    }
  });

  it('upgrades a scrypt hash once when several servers check the right secret at the same time', async () => {
    const older = await olderCredential(ctx.kernel.storage, 'write_key');
    const servers = [1, 2, 3].map(() => new AccessControl(ctx.kernel.storage, ctx.kernel.audit));
    const principals = await Promise.all(servers.map((s) => s.authenticate(older.presented)));
    assert.deepEqual(new Set(principals.map((p) => p.tokenId)), new Set([older.id]));
    assert.deepEqual(await storedHash(ctx.kernel.storage, older.id), { salt: '', hash: sha256(older.secret) });
    // The write is a compare-and-set on the hash read: a server that read the scrypt hash before changes nothing.
    const repo = new AccessRepo(ctx.kernel.storage);
    assert.equal(await repo.upgradeHash(older.id, 'an older hash', 'sha256:something else'), false);
    assert.deepEqual(await storedHash(ctx.kernel.storage, older.id), { salt: '', hash: sha256(older.secret) });
  });

  it('runs one scrypt at a time for a credential stored with scrypt, and none for the secret it refused last', async () => {
    const older = await olderCredential(ctx.kernel.storage, 'write_key');
    // Count the credential reads that finished: once every check has read the row, any check not held back is in scrypt.
    let reads = 0;
    const raw = ctx.kernel.storage.raw;
    const all = async <R>(text: string, params?: readonly unknown[]) => {
      const rows = await raw.all<R>(text, params);
      if (text.includes('access_tokens')) reads++;
      return rows;
    };
    const counted = new Proxy(ctx.kernel.storage, { get: (target, property) => (property === 'raw' ? { ...raw, all } : Reflect.get(target, property)) });
    const wrong = (c: string) => `cwk_${older.id}_${c.repeat(43)}`;
    /** Checks the secrets at once in a process that has not read the credential, releasing its scrypt calls one by one. */
    const check = async (presented: string[]) => {
      const scrypt = new HeldScrypt();
      const access = new AccessControl(counted, ctx.kernel.audit, { scrypt: scrypt.fn });
      const before = reads;
      const results = Promise.allSettled(presented.map((p) => access.authenticate(p)));
      let settled = false;
      void results.then(() => (settled = true));
      await until(() => settled || (reads - before >= presented.length && scrypt.pending.length > 0));
      await new Promise((resolve) => setImmediate(resolve));
      while (!settled) {
        assert.equal(scrypt.pending.length, 1);
        scrypt.release();
        await until(() => settled || scrypt.pending.length > 0);
      }
      const answers = (await results).map((r) => (r.status === 'fulfilled' ? r.value.tokenId : (r.reason as { code?: string }).code));
      return { answers, calls: scrypt.calls, mostAtOnce: scrypt.mostAtOnce };
    };

    // Different wrong secrets: each needs its scrypt, one after the other.
    assert.deepEqual(await check(['A', 'B', 'C', 'D', 'E'].map(wrong)), { answers: Array(5).fill('AUTH_CREDENTIAL_INVALID'), calls: 5, mostAtOnce: 1 });
    // The same wrong secret again and again (a client with an outdated key): one scrypt.
    assert.deepEqual(await check(Array(4).fill(wrong('F'))), { answers: Array(4).fill('AUTH_CREDENTIAL_INVALID'), calls: 1, mostAtOnce: 1 });
    // The right secret among wrong ones is accepted; the wrong ones checked after it need no scrypt.
    const mixed = await check([wrong('G'), older.presented, wrong('H'), wrong('I')]);
    assert.deepEqual(mixed.answers, ['AUTH_CREDENTIAL_INVALID', older.id, 'AUTH_CREDENTIAL_INVALID', 'AUTH_CREDENTIAL_INVALID']);
    assert.equal(mixed.mostAtOnce, 1);
    assert.ok(mixed.calls >= 1 && mixed.calls <= 4);
    assert.deepEqual(await storedHash(ctx.kernel.storage, older.id), { salt: '', hash: sha256(older.secret) });
  });
});
