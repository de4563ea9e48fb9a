import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, it, type TestContext } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { start, stop } from '../../test/support/serve-process.ts';
import { MIGRATIONS, openKernel } from '../kernel.ts';
import { claimDataDir, restoreDatabase } from '../modules/retention/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { isCandorError } from '../shared/errors.ts';
import { main } from './main.ts';

describeEachDialect('candor serve: one server per data directory', (dialect) => {
  let env: TestEnvironment;
  before(async () => {
    env = await createEnvironment(dialect);
  });
  after(async () => {
    await env.cleanup();
  });

  it('starts after a crash even when the server.pid left behind names a live process that is not Candor', { timeout: 60_000 }, async () => {
    const crashed = await start(env);
    await stop(crashed, 'SIGKILL');
    // After a reboot or a container restart the crashed server's process id can belong to any other process.
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      writeFileSync(join(env.dataDir, 'server.pid'), String(other.pid));
      const again = await start(env);
      try {
        assert.equal(readFileSync(join(env.dataDir, 'server.pid'), 'utf8'), String(again.child.pid));
      } finally {
        assert.equal(await stop(again), 0);
      }
    } finally {
      other.kill();
    }
  });

  it('leaves nothing behind when it cannot listen: no signal handlers, no database connections, no lock on the data directory', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    const handlers = process.listenerCount('SIGTERM');
    try {
      const lines: string[] = [];
      const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'serve', '--host', '127.0.0.1', '--port', String(port)], (l) => lines.push(l), (l) => lines.push(l));
      assert.equal(code, 1, lines.join('\n'));
      // A setting of the operator's, named by its own code, not an internal error.
      assert.match(lines.join('\n'), /SERVE_LISTEN_FAILED/);
      assert.match(lines.join('\n'), /EADDRINUSE/);
      assert.doesNotMatch(lines.join('\n'), /INTERNAL_ERROR/);
      assert.equal(process.listenerCount('SIGTERM'), handlers);
      claimDataDir(env.dataDir)();
    } finally {
      busy.close();
    }
  });

  it('refuses a second server with SERVE_DATA_DIR_IN_USE and a restore with BACKUP_SERVER_RUNNING while one runs', { timeout: 60_000 }, async () => {
    const first = await start(env);
    try {
      await assert.rejects(start(env), (e: Error & { exitCode?: number; stderr?: string }) => {
        assert.equal(e.exitCode, 1);
        assert.match(e.stderr ?? '', new RegExp(`error SERVE_DATA_DIR_IN_USE: Another Candor server .*\\{"pid":${first.child.pid}\\}`));
        return true;
      });
      await assert.rejects(restoreDatabase(env.config, join(env.dataDir, 'no-such.backup'), CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'BACKUP_SERVER_RUNNING'));
      const lines: string[] = [];
      const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'restore', join(env.dataDir, 'no-such.backup')], (l) => lines.push(l), (l) => lines.push(l));
      assert.equal(code, 1);
      assert.match(lines.join('\n'), /error BACKUP_SERVER_RUNNING/);
    } finally {
      assert.equal(await stop(first), 0);
    }
    // Stopped: the data directory is free again.
    await assert.rejects(restoreDatabase(env.config, join(env.dataDir, 'no-such.backup'), CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'BACKUP_CORRUPT'));
    await stop(await start(env));
  });
});

describeEachDialect('candor serve: what a first start prints', (dialect) => {
  // A fresh data directory and database for each test: each is a first start.
  const fresh = async (t: TestContext) => {
    const env = await createEnvironment(dialect);
    t.after(() => env.cleanup());
    return env;
  };

  it('prints the owner token and the key file reminder at the next start when the first one could not listen', { timeout: 60_000 }, async (t) => {
    const env = await fresh(t);
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const lines: string[] = [];
      const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'serve', '--host', '127.0.0.1', '--port', String((busy.address() as AddressInfo).port)], (l) => lines.push(l), (l) => lines.push(l));
      assert.equal(code, 1, lines.join('\n'));
      assert.doesNotMatch(lines.join('\n'), /owner API token|generated now/);
    } finally {
      busy.close();
    }
    const running = await start(env);
    let ownerToken = '';
    try {
      const out = running.stdout();
      ownerToken = /owner API token \(shown once, store it now\): (cnd_\S+)/.exec(out)?.[1] ?? '';
      assert.ok(ownerToken, out);
      assert.match(out, /master key: .*master\.key \(generated now/);
      const me = await fetch(`${running.url}/v1/admin/me`, { headers: { authorization: `Bearer ${ownerToken}` } });
      assert.equal(me.status, 200);
    } finally {
      assert.equal(await stop(running), 0);
    }
    // The printed token is the only credential: the failed start left none behind.
    const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
    try {
      assert.deepEqual((await kernel.access.list()).map((c) => [c.role, c.label, c.revokedAt]), [['owner', 'created on first start', null]]);
    } finally {
      await kernel.close();
    }
    // Printed once: the start after prints neither.
    const again = await start(env);
    try {
      assert.doesNotMatch(again.stdout(), /owner API token|generated now/);
    } finally {
      assert.equal(await stop(again), 0);
    }
    assert.equal(existsSync(join(env.dataDir, 'master.key.generated')), false);
  });

  it('prints the key file reminder at the first start after a CLI command generated the key file', { timeout: 60_000 }, async (t) => {
    const env = await fresh(t);
    const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
    assert.equal(kernel.keyFileGenerated, true);
    await kernel.close();
    const running = await start(env);
    try {
      assert.match(running.stdout(), /master key: .*master\.key \(generated now/);
    } finally {
      assert.equal(await stop(running), 0);
    }
    const again = await start(env);
    try {
      assert.doesNotMatch(again.stdout(), /generated now/);
    } finally {
      assert.equal(await stop(again), 0);
    }
  });
});
