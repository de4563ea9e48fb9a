import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('consent: rotating the receipt signing key', (dialect) => {
  const ctx = useKernel(dialect);
  const kidOf = (jws: string) => decodeProtectedHeader(jws).kid as string;
  const storedKids = async () => (await ctx.kernel.storage.raw.all<{ kid: string; retired_at: string | null }>('select kid, retired_at from consent_signing_keys order by created_at, kid'));

  it('retires the active key in the audited transaction that makes the new one; every receipt keeps verifying against the JWKS', async () => {
    const { consent, audit } = ctx.kernel;
    const before = await consent.record('prf_rotation_a', [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const oldKid = kidOf(before.receipt as string);

    await failsWhileAuditFails(audit, () => consent.rotateReceiptKey(CLI_ACTOR), 'crypto.signing_key.rotate');
    assert.deepEqual((await storedKids()).map((k) => [k.kid, k.retired_at]), [[oldKid, null]], 'nothing retired, no key added');

    const { kid, retired } = await consent.rotateReceiptKey(CLI_ACTOR);
    assert.notEqual(kid, oldKid);
    assert.deepEqual(retired, [oldKid]);
    const keys = await storedKids();
    assert.deepEqual(keys.map((k) => k.kid), [oldKid, kid]);
    assert.ok(keys[0]?.retired_at !== null && keys[1]?.retired_at === null);

    const after = await consent.record('prf_rotation_a', [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    assert.equal(kidOf(after.receipt as string), kid, 'signed with the new key at once');
    const stored = await ctx.kernel.storage.raw.all<{ kid: string }>('select kid from consent_receipts where id = $1'.replace('$1', dialect === 'postgres' ? '$1' : '?'), [after.receiptId]);
    assert.deepEqual(stored.map((r) => r.kid), [kid]);
    const jwks = createLocalJWKSet(await consent.jwks());
    for (const receipt of [before.receipt, after.receipt]) await jwtVerify(receipt as string, jwks, { algorithms: ['EdDSA'] });

    const [entry, ...more] = await audit.list({ action: 'crypto.signing_key.rotate', limit: 10 });
    assert.equal(more.length, 0);
    assert.deepEqual([entry?.actor, entry?.resource, entry?.purpose], ['cli', `signing_key:${kid}`, 'essential.service.security']);
    assert.deepEqual(JSON.parse(entry?.details ?? '{}').retired, [oldKid]);
    assert.equal((await audit.verify()).ok, true);
  });

  it('is taken up by another process at its next configuration refresh, which never signs with a retired key after', async () => {
    const other = await openKernel(ctx.env.config);
    try {
      const sign = async (kernel: typeof other, state: 'given' | 'withdrawn') =>
        kidOf((await kernel.consent.record('prf_rotation_b', [{ purpose: 'analytics.reporting', state }], { mechanism: 'banner_save' }, CLI_ACTOR)).receipt as string);
      const oldKid = await sign(other, 'given');
      const { kid } = await ctx.kernel.consent.rotateReceiptKey(CLI_ACTOR);
      assert.equal(await sign(other, 'withdrawn'), oldKid, 'no refresh yet: the key it loaded');
      // What `candor serve` does every second: SQLite tells at once, PostgreSQL's commit notice arrives within moments.
      const began = Date.now();
      let seen = oldKid;
      while (seen !== kid && Date.now() - began < 3000) {
        await other.consent.refreshConfigurationIfChanged();
        seen = await sign(other, 'given');
        if (seen !== kid) await sleep(50);
      }
      assert.equal(seen, kid, `still ${seen} after ${Date.now() - began} ms`);
      for (let i = 0; i < 3; i++) {
        await other.consent.refreshConfigurationIfChanged();
        assert.equal(await sign(other, i % 2 ? 'given' : 'withdrawn'), kid);
      }
      const served = (await other.consent.jwks()).keys.map((k) => k.kid);
      assert.ok(served.includes(oldKid) && served.includes(kid), 'retired keys stay published');
    } finally {
      await other.close();
    }
    // A restart loads the active key, never a retired one.
    const restarted = await openKernel(ctx.env.config);
    try {
      const active = (await storedKids()).filter((k) => k.retired_at === null).map((k) => k.kid);
      assert.equal(active.length, 1);
      const receipt = (await restarted.consent.record('prf_rotation_b', [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { mechanism: 'banner_save' }, CLI_ACTOR)).receipt as string;
      assert.equal(kidOf(receipt), active[0]);
    } finally {
      await restarted.close();
    }
  });
});
