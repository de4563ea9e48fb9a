import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
import pg from 'pg';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { openKernel } from '../kernel.ts';
import { SQLITE_FILE } from '../storage/index.ts';
import { main } from './main.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'candor.js');

/** Holds the database's writes (SQLite: its write lock; PostgreSQL: a lock on the events table) until released. */
async function holdWrites(env: TestEnvironment): Promise<() => Promise<void>> {
  if (env.dialect === 'sqlite') {
    const db = new DatabaseSync(join(env.dataDir, SQLITE_FILE));
    db.exec('PRAGMA busy_timeout = 30000');
    db.exec('BEGIN IMMEDIATE');
    return async () => {
      db.exec('ROLLBACK');
      db.close();
    };
  }
  const client = new pg.Client({ connectionString: env.databaseUrl });
  await client.connect();
  await client.query('BEGIN');
  await client.query('LOCK TABLE collect_events IN EXCLUSIVE MODE');
  return async () => {
    await client.query('ROLLBACK');
    await client.end();
  };
}

describeEachDialect('candor import: the report of an interrupted import', (dialect) => {
  let env: TestEnvironment;
  let file = '';
  before(async () => {
    env = await createEnvironment(dialect);
    await (await openKernel(env.config)).close();
    file = join(env.dataDir, 'orders.csv');
    const rows = Array.from({ length: 5000 }, (_, i) => `cust-${i},Order Completed,o-${i},1.50,EUR,2026-10-01T10:00:00Z`);
    writeFileSync(file, ['user_id,event,order_id,total,currency,timestamp', ...rows].join('\n') + '\n');
  });
  after(async () => {
    await env?.cleanup();
  });

  it('is left as REPORT.<pid>.partial, never under the name of a finished report, when the import is killed', { timeout: 60_000 }, async () => {
    const report = `${file}.report.csv`;
    const earlier = 'row,status,code,detail\n2,invalid,COLLECT_MESSAGE_INVALID,an earlier run\n';
    writeFileSync(report, earlier);
    const partial = () => `${report}.${child.pid}.partial`;
    const started = () => existsSync(partial()) || !existsSync(report) || readFileSync(report, 'utf8') !== earlier;
    const child = spawn(process.execPath, [BIN, 'import', 'events', file, '--source', 'shop', '--basis', 'contract', '--batch-size', '100'], {
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development', CANDOR_LOG_LEVEL: 'warn', CANDOR_DATA_DIR: env.dataDir, CANDOR_DATABASE_URL: env.databaseUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    let release: (() => Promise<void>) | undefined;
    try {
      // Once the import has started its report (the earlier report removed), its writes are held: it is midway.
      while (!started()) {
        assert.equal(child.exitCode, null, err);
        await sleep(10);
      }
      release = await holdWrites(env);
      child.kill('SIGINT');
      assert.equal(await exited, 'SIGINT');
    } finally {
      child.kill('SIGKILL');
      await release?.();
    }
    assert.equal(existsSync(report), false, 'no report reads like a finished run');
    assert.match(readFileSync(partial(), 'utf8'), /^row,status,code,detail\n/);
  });

  it('gets its name once the import has ended, and no .partial file is left', async () => {
    const report = `${file}.report.csv`;
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'import', 'events', file, '--source', 'shop', '--basis', 'contract'], () => {}, () => {});
    assert.equal(code, 0);
    // (The killed import's own .partial report, of the test before, stays: it is another process's.)
    assert.equal(existsSync(`${report}.${process.pid}.partial`), false);
    assert.match(readFileSync(report, 'utf8'), /^row,status,code,detail\n/);
  });
});
