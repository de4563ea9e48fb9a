import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { openKernel } from '../kernel.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/**
 * `candor serve` in its own process with the retention sweep it runs at start held back until the test writes `go` to
 * its standard input (the sweep still in progress when the stop comes). Says `SWEEP HELD` when the sweep is called and
 * `SERVE RETURNED` once the server has stopped (its database closed).
 */
const SCRIPT = `
const { enableCompileCache } = await import('node:module');
enableCompileCache(${JSON.stringify(join(ROOT, 'node_modules', '.cache', 'node-compile'))});
const root = ${JSON.stringify(pathToFileURL(ROOT + '/').href)};
const { Retention } = await import(root + 'src/modules/retention/index.ts');
const { main } = await import(root + 'src/cli/main.ts');
const sweep = Retention.prototype.sweep;
let release;
const go = new Promise((resolve) => (release = resolve));
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => chunk.includes('go') && release());
Retention.prototype.sweep = function (...args) {
  console.log('SWEEP HELD');
  return go.then(() => sweep.apply(this, args));
};
process.exitCode = await main(['node', 'candor', 'serve', '--port', '0']);
console.log('SERVE RETURNED');
`;

interface Held {
  child: ChildProcess;
  output: () => string;
  /** Resolves once the output includes one of `texts`, with that text. */
  until: (...texts: string[]) => Promise<string>;
  exited: Promise<number | null>;
}

function startHeld(env: TestEnvironment, extra: Record<string, string>): Held {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development', CANDOR_LOG_LEVEL: 'info', CANDOR_DATA_DIR: env.dataDir, CANDOR_DATABASE_URL: env.databaseUrl, ...extra },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const until = async (...texts: string[]) => {
    for (let waited = 0; ; waited += 20) {
      const found = texts.find((text) => out.includes(text));
      if (found) return found;
      assert.ok(child.exitCode === null && waited < 30_000, `none of ${JSON.stringify(texts)} in: ${out}`);
      await sleep(20);
    }
  };
  return { child, output: () => out, until, exited };
}

/** The server's log lines (JSON) at `level` or above (40: warn). */
function logLines(output: string, level: number): { level: number; msg: string; [key: string]: unknown }[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string })
    .filter((line) => line.level >= level);
}

/** The actions of the environment's audit log, in order, with the phase of each retention sweep entry. */
async function auditActions(env: TestEnvironment): Promise<string[]> {
  const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
  try {
    const actions: string[] = [];
    for await (const entry of kernel.audit.scan()) {
      const phase = entry.action === 'retention.sweep' ? (JSON.parse(entry.details ?? '{}') as { phase?: string }).phase : undefined;
      actions.push(phase ? `${entry.action} ${phase}` : entry.action);
    }
    return actions;
  } finally {
    await kernel.close();
  }
}

describeEachDialect('candor serve: background work at a stop', (dialect) => {
  let env: TestEnvironment;
  before(async () => {
    env = await createEnvironment(dialect);
  });
  after(async () => {
    await env.cleanup();
  });

  it('lets a retention sweep in progress at SIGTERM finish before server.stop is recorded and the database closed', { timeout: 60_000 }, async () => {
    const held = startHeld(env, { CANDOR_SHUTDOWN_TIMEOUT_MS: '600000' });
    try {
      await held.until('API:');
      await held.until('SWEEP HELD');
      held.child.kill('SIGTERM');
      // The server says it waits (a server that does not wait has stopped by now); then the sweep goes on.
      assert.equal(await held.until('waiting for background work to finish', 'SERVE RETURNED'), 'waiting for background work to finish');
      held.child.stdin?.end('go\n');
      assert.equal(await held.exited, 0);
    } finally {
      held.child.kill('SIGKILL');
    }
    const waiting = logLines(held.output(), 30).find((line) => line.msg === 'waiting for background work to finish');
    // (Other start-up work, such as the consent expiry, may be under way too.)
    assert.ok((waiting?.running as string[] | undefined)?.includes('retention sweep'), JSON.stringify(waiting));
    assert.deepEqual(logLines(held.output(), 40), [], 'nothing failed');
    const actions = (await auditActions(env)).filter((action) => action.startsWith('retention.sweep') || action.startsWith('server.'));
    assert.deepEqual(actions, ['server.start', 'retention.sweep started', 'retention.sweep finished', 'server.stop']);
  });

  it('abandons a run still in progress at a second signal, says so, and still closes the database and records server.stop', { timeout: 60_000 }, async () => {
    const before = (await auditActions(env)).filter((action) => action === 'server.stop').length;
    const held = startHeld(env, { CANDOR_SHUTDOWN_TIMEOUT_MS: '600000' });
    try {
      await held.until('API:');
      await held.until('SWEEP HELD');
      held.child.kill('SIGTERM');
      assert.equal(await held.until('waiting for background work to finish', 'SERVE RETURNED'), 'waiting for background work to finish');
      held.child.kill('SIGTERM');
      await held.until('SERVE RETURNED');
      held.child.stdin?.end('go\n');
      assert.equal(await held.exited, 0);
    } finally {
      held.child.kill('SIGKILL');
    }
    const abandoned = logLines(held.output(), 40).find((line) => line.msg === 'background work still running at the shutdown deadline is abandoned');
    assert.ok((abandoned?.abandoned as string[] | undefined)?.includes('retention sweep'), JSON.stringify(abandoned));
    assert.equal((await auditActions(env)).filter((action) => action === 'server.stop').length, before + 1);
  });
});
