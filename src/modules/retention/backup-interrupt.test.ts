import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
import pg from 'pg';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { backupDatabase } from './index.ts';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'candor.js');

/** How many `retention.backup` entries the audit log holds. */
async function backupEntries(env: TestEnvironment): Promise<number> {
  const kernel = await openKernel(env.config);
  try {
    let n = 0;
    for await (const entry of kernel.audit.scan()) if (entry.action === 'retention.backup') n += 1;
    return n;
  } finally {
    await kernel.close();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describeEachDialect('backup: interrupted', (dialect) => {
  let env: TestEnvironment;
  let dir = '';
  before(async () => {
    env = await createEnvironment(dialect);
    await (await openKernel(env.config)).close();
    dir = join(env.dataDir, 'backups');
    mkdirSync(dir);
  });
  after(async () => {
    await env?.cleanup();
  });

  it('removes its partial copy, records nothing and throws BACKUP_INTERRUPTED naming the signal', async () => {
    const before = await backupEntries(env);
    const interrupt = new AbortController();
    const running = backupDatabase(env.config, join(dir, 'cut.backup'), CLI_ACTOR, { signal: interrupt.signal });
    interrupt.abort('SIGINT');
    await assert.rejects(running, (e) => isCandorError(e, 'BACKUP_INTERRUPTED') && e.details?.signal === 'SIGINT');
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(await backupEntries(env), before);
  });

  it("removes partial copies of killed backups of any name in the target directory, not a live one's", async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'exit');
    // A killed backup of this release (its process is gone), one of an earlier release untouched for an hour, a live
    // one (this process, untouched for an hour: a pg_dump waiting for a lock writes nothing) and a file of another kind.
    const killed = [join(dir, `.nightly.backup.${gone.pid}-0a1b2c3d.partial`), join(dir, `.nightly.backup.${gone.pid}-0a1b2c3d.partial-journal`), join(dir, '.old.backup.0a1b2c3d.partial')];
    const live = `.hourly.backup.${process.pid}-4e5f6a7b.partial`;
    const recentOld = '.recent.backup.5f6a7b8c.partial';
    const other = '.notes.partial';
    for (const path of [...killed, join(dir, live), join(dir, recentOld), join(dir, other)]) writeFileSync(path, 'pages of the database');
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const path of [...killed, join(dir, live), join(dir, other)]) utimesSync(path, hourAgo, hourAgo);
    await backupDatabase(env.config, join(dir, 'weekly.backup'), CLI_ACTOR);
    assert.deepEqual(readdirSync(dir).sort(), [live, other, recentOld, 'weekly.backup'].sort());
  });
});

// PostgreSQL only: SQLite's copy is one step that cannot be held midway (it is let finish; the test above covers it).
describeEachDialect('candor backup: SIGTERM while pg_dump runs', (dialect) => {
  if (dialect === 'postgres') {
    let env: TestEnvironment;
    before(async () => {
      env = await createEnvironment(dialect);
      await (await openKernel(env.config)).close();
    });
    after(async () => {
      await env?.cleanup();
    });

    it('stops pg_dump and waits for it, removes the partial archive, records nothing and exits 143', { timeout: 60_000 }, async () => {
      const dir = join(env.dataDir, 'backups');
      mkdirSync(dir);
      const before = await backupEntries(env);
      // pg_dump waits for this lock (it locks every table it dumps): the backup is held in the middle of the dump.
      const holder = new pg.Client({ connectionString: env.databaseUrl });
      await holder.connect();
      let dumper = 0;
      try {
        await holder.query('BEGIN');
        await holder.query('LOCK TABLE crypto_subject_keys IN ACCESS EXCLUSIVE MODE');
        const cli = spawn(process.execPath, [BIN, 'backup', join(dir, 'held.backup')], {
          env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development', CANDOR_LOG_LEVEL: 'warn', CANDOR_DATA_DIR: env.dataDir, CANDOR_DATABASE_URL: env.databaseUrl },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let err = '';
        cli.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
        const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
        for (;;) {
          // (pg_stat_activity is read afresh only outside the holder's transaction, which would keep its first snapshot.)
          const waiting = await holder.query("SELECT pg_stat_clear_snapshot(), count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'");
          if ((waiting.rows[0] as { n: number }).n > 0) break;
          assert.equal(cli.exitCode, null, err);
          await sleep(20);
        }
        dumper = Number(execFileSync('ps', ['-o', 'pid=', '--ppid', String(cli.pid)], { encoding: 'utf8' }).trim());
        assert.ok(dumper > 0, 'pg_dump runs as the command\'s child');
        cli.kill('SIGTERM');
        assert.equal(await exited, 143, err);
        assert.match(err, /error BACKUP_INTERRUPTED: .*"signal":"SIGTERM"/);
        assert.equal(isAlive(dumper), false, 'pg_dump is gone');
        assert.deepEqual(readdirSync(dir), []);
      } finally {
        await holder.query('ROLLBACK');
        await holder.end();
        if (dumper && isAlive(dumper)) process.kill(dumper, 'SIGKILL');
      }
      assert.equal(await backupEntries(env), before);
      assert.equal(existsSync(join(dir, 'held.backup')), false);
    });
  }
});
