// The consent receipt signing key rotated by the CLI beside a running server: the server signs with the new key within
// about a second, without a restart, and a receipt signed before and one signed after both verify against the key set
// it serves, as a verifier outside fetches it.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { main } from '../../src/cli/main.ts';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../support/databases.ts';
import { seedIngestion, start, stop } from '../support/serve-process.ts';

describeEachDialect('a running server and a receipt signing key rotated by the CLI', (dialect) => {
  let env: TestEnvironment;
  let auth: { authorization: string };
  before(async () => {
    env = await createEnvironment(dialect);
    auth = await seedIngestion(env, [{ userId: 'verifier' }], ['analytics.reporting']);
  });
  after(async () => {
    await env.cleanup();
  });

  const candor = async (...args: string[]) => {
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), ...args], (l) => lines.push(l), (l) => lines.push(l));
    return { code, text: lines.join('\n') };
  };

  it('signs with the new key within seconds; receipts signed before and after verify against the served JWKS', { timeout: 60_000 }, async () => {
    const running = await start(env);
    try {
      let state: 'given' | 'withdrawn' = 'withdrawn';
      const receipt = async () => {
        state = state === 'given' ? 'withdrawn' : 'given';
        const response = await fetch(`${running.url}/v1/consent`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ userId: 'verifier', purposes: { 'analytics.reporting': state }, mechanism: 'banner_save' }),
        });
        assert.equal(response.status, 200);
        return ((await response.json()) as { receipt: string }).receipt;
      };
      const kidOf = (jws: string) => decodeProtectedHeader(jws).kid;
      const signedBefore = await receipt();

      const rotated = await candor('keys', 'rotate-receipt-key');
      assert.equal(rotated.code, 0, rotated.text);
      const kid = /signing key (\S+) is active/.exec(rotated.text)?.[1];
      assert.ok(kid && kid !== kidOf(signedBefore), rotated.text);
      assert.match(rotated.text, new RegExp(`retired ${kidOf(signedBefore)}: still published in /\\.well-known/jwks\\.json`));

      const began = Date.now();
      let signedAfter = await receipt();
      while (kidOf(signedAfter) !== kid && Date.now() - began < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        signedAfter = await receipt();
      }
      assert.equal(kidOf(signedAfter), kid, `still the old key after ${Date.now() - began} ms`);
      assert.ok(Date.now() - began < 4_000, `took ${Date.now() - began} ms`);
      for (let i = 0; i < 3; i++) assert.equal(kidOf(await receipt()), kid, 'never the retired key again');

      const keys = createRemoteJWKSet(new URL(`${running.url}/.well-known/jwks.json`));
      for (const jws of [signedBefore, signedAfter]) {
        const { protectedHeader } = await jwtVerify(jws, keys, { algorithms: ['EdDSA'] });
        assert.equal(protectedHeader.kid, kidOf(jws));
      }
    } finally {
      assert.equal(await stop(running), 0);
    }
  });
});
