import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { MIGRATIONS, openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { backupDatabase, restoreDatabase } from './index.ts';

describeEachDialect('restore: the backup is read once for its checks', (dialect) => {
  let env: TestEnvironment;
  let file = '';
  before(async () => {
    env = await createEnvironment(dialect);
    file = env.beside('reads.backup');
    await (await openKernel(env.config)).close();
    await backupDatabase(env.config, file, CLI_ACTOR);
  });
  after(async () => {
    await env?.cleanup();
  });

  it('runs pg_restore once to list the archive, once for the rows the checks read, and once to restore', { timeout: 60_000 }, async () => {
    // A pg_restore ahead of the real one on PATH that notes its first argument (the restore finds the tools on PATH).
    const bin = join(env.dataDir, 'shadow-bin');
    const log = join(env.dataDir, 'pg_restore.log');
    mkdirSync(bin);
    const real = dialect === 'postgres' ? execFileSync('sh', ['-c', 'command -v pg_restore'], { encoding: 'utf8' }).trim() : '/bin/false';
    writeFileSync(join(bin, 'pg_restore'), `#!/bin/sh\nprintf '%s\\n' "$1" >> '${log}'\nexec '${real}' "$@"\n`);
    chmodSync(join(bin, 'pg_restore'), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      await restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS);
    } finally {
      process.env.PATH = path;
    }
    const calls = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
    assert.deepEqual(calls, dialect === 'postgres' ? ['--list', '--data-only', '--clean'] : []);
    const kernel = await openKernel(env.config);
    try {
      assert.equal((await kernel.audit.list({ action: 'retention.restore', limit: 5 })).length, 1);
    } finally {
      await kernel.close();
    }
  });
});
