import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { openKernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import type { TestEnvironment } from './databases.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'candor.js');

/** `candor serve` running in its own process, as a user starts it. */
export interface Running {
  child: ChildProcess;
  url: string;
  stdout: () => string;
}

/** Starts `candor serve` on a free port over the environment's data directory and database; resolves once it listens. */
export function start(env: TestEnvironment, extra: Record<string, string> = {}): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], {
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development', CANDOR_LOG_LEVEL: 'warn', CANDOR_DATA_DIR: env.dataDir, CANDOR_DATABASE_URL: env.databaseUrl, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out} ${err}`)), 15_000);
    child.stdout?.on('data', () => {
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (url && out.includes('API:')) {
        clearTimeout(timer);
        resolve({ child, url, stdout: () => out });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`server exited with ${code}: ${err}`), { exitCode: code, stderr: err }));
    });
  });
}

/** Stops the server with `signal` (SIGKILL: no shutdown at all); resolves with its exit code. */
export function stop(running: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    running.child.removeAllListeners('exit');
    running.child.on('exit', (code) => resolve(code));
    running.child.kill(signal);
  });
}

/**
 * Prepares a database for a server to ingest into, as its operator would beforehand: the people (user id, and anonymous
 * id when given) with consent to `purposes`, and a write key of source `web`; returns the write key's HTTP Basic header.
 */
export async function seedIngestion(env: TestEnvironment, people: readonly { userId: string; anonymousId?: string }[], purposes: readonly string[]): Promise<{ authorization: string }> {
  const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
  try {
    const at = new Date().toISOString();
    const items = people.map((p) => ({ identifiers: [{ type: 'user_id', value: p.userId }, ...(p.anonymousId ? [{ type: 'anonymous_id', value: p.anonymousId }] : [])], source: 'web', at }));
    const resolved = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, items));
    for (const r of resolved) await kernel.consent.record(r.profileId as string, purposes.map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_accept' }, CLI_ACTOR);
    const { secret } = await kernel.access.createWriteKey('web', 'test', CLI_ACTOR);
    return { authorization: `Basic ${Buffer.from(`${secret}:`).toString('base64')}` };
  } finally {
    await kernel.close();
  }
}
