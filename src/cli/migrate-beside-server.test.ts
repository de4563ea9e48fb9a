import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { start, stop } from '../../test/support/serve-process.ts';
import { openStorage } from '../storage/index.ts';
import { main } from './main.ts';

// An independent migration that can run again: the one a newer release would bring.
const PENDING = '0108_access_subject_sessions_revoke_write_key';

describeEachDialect('CLI commands beside a running server', (dialect) => {
  let env: TestEnvironment;
  before(async () => {
    env = await createEnvironment(dialect);
  });
  after(async () => {
    await env.cleanup();
  });

  const candor = async (...args: string[]) => {
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), ...args], (l) => lines.push(l), (l) => lines.push(l));
    return { code, text: lines.join('\n') };
  };
  const applied = async () => {
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      return (await sql<{ name: string }>`SELECT name FROM storage_migrations WHERE name = ${PENDING}`.execute(storage.db)).rows.length === 1;
    } finally {
      await storage.close();
    }
  };

  it('run as usual with nothing to migrate; with migrations pending, on SQLite they refuse with SERVE_DATA_DIR_IN_USE instead of migrating under the server', { timeout: 60_000 }, async () => {
    const server = await start(env);
    try {
      const listed = await candor('keys', 'list');
      assert.equal(listed.code, 0, listed.text);
      // As if this were a newer release that brings one more migration.
      const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
      try {
        await sql`DELETE FROM storage_migrations WHERE name = ${PENDING}`.execute(storage.db);
      } finally {
        await storage.close();
      }
      for (const command of [['migrate'], ['keys', 'list']]) {
        const run = await candor(...command);
        if (dialect === 'sqlite') {
          assert.equal(run.code, 1, run.text);
          assert.match(run.text, new RegExp(`error SERVE_DATA_DIR_IN_USE: .*\\{"pid":${server.child.pid},"pendingMigrations":\\["${PENDING}"\\]\\}`));
          assert.equal(await applied(), false);
        } else {
          // PostgreSQL has no data directory lock (several servers share the database): stop them before upgrading.
          assert.equal(run.code, 0, run.text);
          assert.equal(await applied(), true);
        }
      }
    } finally {
      assert.equal(await stop(server), 0);
    }
    const migrated = await candor('migrate');
    assert.equal(migrated.code, 0, migrated.text);
    assert.equal(migrated.text, dialect === 'sqlite' ? `applied ${PENDING}` : 'database is up to date');
    assert.equal(await applied(), true);
  });
});
