import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { seedIngestion, start, type Running } from '../../test/support/serve-process.ts';
import { openKernel } from '../kernel.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** Resolves with the exit code once the process has exited; rejects after `ms` (a bound for correctness, far above the deadline). */
function exited(child: ChildProcess, ms = 30_000): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server was still running ${ms} ms after the signal`)), ms);
    child.removeAllListeners('exit');
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/**
 * A client that sends a request's headers and never its body. With `Expect: 100-continue` the server says when it
 * has read the headers and handed the request on (so the connection is one with a request in progress, not idle).
 */
async function stalledRequest(url: string, authorization: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let received = '';
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (received.includes('100 Continue')) resolve();
    });
    socket.once('close', () => reject(new Error(`closed before the headers were taken: ${received}`)));
    socket.write(`POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: ${authorization}\r\nContent-Type: application/json\r\nContent-Length: 200\r\nExpect: 100-continue\r\n\r\n`);
  });
  return { socket, closed };
}

/** The `server.stop` entries of the environment's audit log, with their details. */
async function stopEntries(env: TestEnvironment): Promise<unknown[]> {
  const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
  try {
    const entries: unknown[] = [];
    for await (const entry of kernel.audit.scan()) if (entry.action === 'server.stop') entries.push(JSON.parse(entry.details ?? '{}') as unknown);
    return entries;
  } finally {
    await kernel.close();
  }
}

describeEachDialect('candor serve: a signalled server stops within its shutdown timeout', (dialect) => {
  let env: TestEnvironment;
  let authorization = '';
  before(async () => {
    env = await createEnvironment(dialect);
    ({ authorization } = await seedIngestion(env, [{ userId: 'u-1' }], ['analytics.reporting']));
  });
  after(async () => {
    await env.cleanup();
  });

  it('closes a connection whose request body never comes at the deadline, then closes the database and records server.stop', { timeout: 60_000 }, async () => {
    const running: Running = await start(env, { CANDOR_SHUTDOWN_TIMEOUT_MS: '500' });
    const stalled = await stalledRequest(running.url, authorization);
    try {
      running.child.kill('SIGTERM');
      assert.equal(await exited(running.child), 0);
      await stalled.closed;
    } finally {
      stalled.socket.destroy();
      running.child.kill('SIGKILL');
    }
    assert.equal(existsSync(join(env.dataDir, 'server.pid')), false, 'the data directory is released');
    assert.deepEqual(await stopEntries(env), [{ connectionsClosedAtDeadline: 1 }]);
  });

  it('stops at once on a second signal during the drain, and still records server.stop', { timeout: 60_000 }, async () => {
    const before = (await stopEntries(env)).length;
    const running = await start(env, { CANDOR_SHUTDOWN_TIMEOUT_MS: '600000' });
    const stalled = await stalledRequest(running.url, authorization);
    try {
      running.child.kill('SIGTERM');
      while (!running.stdout().includes('Candor is stopping')) await sleep(20);
      running.child.kill('SIGTERM');
      assert.equal(await exited(running.child), 0);
      await stalled.closed;
    } finally {
      stalled.socket.destroy();
      running.child.kill('SIGKILL');
    }
    const entries = await stopEntries(env);
    assert.equal(entries.length, before + 1);
    assert.deepEqual(entries.at(-1), { connectionsClosedAtDeadline: 1 });
  });
});

describe('npm start', () => {
  let env: TestEnvironment;
  before(async () => {
    env = await createEnvironment('sqlite');
  });
  after(async () => {
    await env.cleanup();
  });

  it('passes a SIGTERM sent to npm on to the server (as docker stop or a supervisor sends it), and flags after -- to serve', { timeout: 60_000 }, async () => {
    const npm = spawn('npm', ['start', '--', '--port', '0', '--data-dir', env.dataDir], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_ENV: 'development', CANDOR_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npm.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    npm.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    let server = 0;
    try {
      while (!out.includes('API:')) {
        assert.equal(npm.exitCode, null, out);
        await sleep(20);
      }
      server = Number(readFileSync(join(env.dataDir, 'server.pid'), 'utf8'));
      assert.notEqual(server, npm.pid);
      npm.kill('SIGTERM');
      await exited(npm);
      // The server is not npm's child once npm has gone: it is watched by its process id.
      for (let waited = 0; isAlive(server); waited += 50) {
        assert.ok(waited < 30_000, `the server (pid ${server}) still runs after npm was stopped: ${out}`);
        await sleep(50);
      }
      assert.match(out, /Candor is stopping/);
    } finally {
      npm.kill('SIGKILL');
      if (server && isAlive(server)) process.kill(server, 'SIGKILL');
    }
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
