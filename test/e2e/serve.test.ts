import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../support/databases.ts';
import { start, stop } from '../support/serve-process.ts';

describeEachDialect('candor serve over a real socket', (dialect) => {
  let env: TestEnvironment;
  let ownerToken = '';
  before(async () => {
    // A data directory that does not exist yet, as on a fresh checkout (`npm start` makes it).
    const created = await createEnvironment(dialect);
    env = { ...created, dataDir: join(created.dataDir, 'fresh', 'data') };
  });
  after(async () => {
    await env.cleanup();
  });

  it('first start creates the data directory, a private key file and an owner token printed once', async () => {
    const running = await start(env);
    try {
      const out = running.stdout();
      ownerToken = /owner API token \(shown once, store it now\): (cnd_\S+)/.exec(out)?.[1] ?? '';
      assert.ok(ownerToken, out);
      assert.match(out, /master key: .*master\.key \(generated now/);
      assert.equal(statSync(join(env.dataDir, 'master.key')).mode & 0o777, 0o600);
      assert.equal(statSync(env.dataDir).mode & 0o777, 0o700);
      const me = await fetch(`${running.url}/v1/admin/me`, { headers: { authorization: `Bearer ${ownerToken}` } });
      assert.equal(me.status, 200);
      assert.equal(((await me.json()) as { role: string }).role, 'owner');
      const ready = await fetch(`${running.url}/readyz`);
      assert.equal(ready.status, 200);
    } finally {
      assert.equal(await stop(running), 0);
    }
  });

  it('does not print a token again on the next start', async () => {
    const running = await start(env);
    try {
      assert.doesNotMatch(running.stdout(), /owner API token/);
      assert.doesNotMatch(running.stdout(), /generated now/);
    } finally {
      await stop(running);
    }
  });

  it('keeps an acknowledged write after the process is killed', async () => {
    const running = await start(env);
    const created = await fetch(`${running.url}/v1/admin/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'analyst' }),
    });
    assert.equal(created.status, 201);
    const { secret } = (await created.json()) as { secret: string };
    await stop(running, 'SIGKILL');
    const again = await start(env);
    try {
      const me = await fetch(`${again.url}/v1/admin/me`, { headers: { authorization: `Bearer ${secret}` } });
      assert.equal(me.status, 200);
    } finally {
      await stop(again);
    }
  });

  it('refuses to start with a tampered key file, naming the problem', async () => {
    const path = join(env.dataDir, 'master.key');
    const original = readFileSync(path, 'utf8');
    const parsed = JSON.parse(original) as { masterKeys: { key: string }[] };
    (parsed.masterKeys[0] as { key: string }).key = Buffer.alloc(32, 1).toString('base64');
    writeFileSync(path, JSON.stringify(parsed), { mode: 0o600 });
    try {
      await assert.rejects(start(env), (e: Error & { exitCode?: number; stderr?: string }) => e.exitCode === 1 && /CRYPTO_KEYFILE_TAMPERED/.test(e.stderr ?? ''));
    } finally {
      writeFileSync(path, original, { mode: 0o600 });
    }
  });

  it('refuses production without an explicitly configured key, and never generates one there', async () => {
    await assert.rejects(start(env, { NODE_ENV: 'production' }), (e: Error & { exitCode?: number; stderr?: string }) => e.exitCode === 1 && /CONFIG_MASTER_KEY_REQUIRED/.test(e.stderr ?? ''));
    const fresh = await createEnvironment(dialect);
    try {
      const missing = join(fresh.dataDir, 'nowhere.key');
      await assert.rejects(start(fresh, { NODE_ENV: 'production', CANDOR_KEY_FILE: missing }), (e: Error & { stderr?: string }) => /CRYPTO_KEYFILE_MISSING/.test(e.stderr ?? ''));
    } finally {
      await fresh.cleanup();
    }
  });
});
