import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { main } from '../../cli/main.ts';
import { MIGRATIONS, openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { SQLITE_FILE } from '../../storage/index.ts';
import { backupDatabase, restoreDatabase } from './index.ts';

const FUTURE = '0999_future_release';

describeEachDialect('restore of a backup made by a newer release', (dialect) => {
  let env: TestEnvironment;
  let newer = '';
  let current = '';

  before(async () => {
    env = await createEnvironment(dialect);
    const stem = join(env.dataDir, '..', basename(env.dataDir));
    newer = `${stem}.newer.backup`;
    current = `${stem}.current.backup`;
    const kernel = await openKernel(env.config);
    try {
      await backupDatabase(env.config, current, CLI_ACTOR);
      // What a newer release leaves in the database: a migration this code does not know, recorded as applied.
      await sql`INSERT INTO storage_migrations (name, timestamp) VALUES (${FUTURE}, ${new Date().toISOString()})`.execute(kernel.storage.db);
      await backupDatabase(env.config, newer, CLI_ACTOR);
      await sql`DELETE FROM storage_migrations WHERE name = ${FUTURE}`.execute(kernel.storage.db);
      // Written after both backups: a restore would take it away.
      await kernel.audit.append({ actor: CLI_ACTOR.id, role: CLI_ACTOR.role, action: 'test.marker', purpose: 'essential.service.security', resource: 'marker:live' });
    } finally {
      await kernel.close();
    }
  });
  after(async () => {
    await env?.cleanup();
  });

  /** The live database as a restore would find it: the SQLite files' bytes, or on PostgreSQL what the checks read. */
  async function liveState(): Promise<unknown> {
    if (dialect === 'sqlite') {
      const path = join(env.dataDir, SQLITE_FILE);
      return [path, `${path}-wal`].map((file) => (existsSync(file) ? readFileSync(file).toString('base64') : null));
    }
    const kernel = await openKernel(env.config, { migrate: false });
    try {
      const head = await sql<{ seq: string; hash: string }>`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`.execute(kernel.storage.db);
      const migrations = await sql<{ name: string }>`SELECT name FROM storage_migrations ORDER BY name`.execute(kernel.storage.db);
      return { head: head.rows[0], migrations: migrations.rows.map((r) => r.name) };
    } finally {
      await kernel.close();
    }
  }

  async function assertUntouched(before: unknown): Promise<void> {
    assert.deepEqual(await liveState(), before);
    const kernel = await openKernel(env.config, { migrate: false });
    try {
      assert.equal((await kernel.audit.list({ action: 'test.marker', limit: 5 })).length, 1, 'the entry written after the backups is still there');
      assert.equal((await kernel.audit.list({ action: 'retention.restore', limit: 5 })).length, 0);
      const names = (await sql<{ name: string }>`SELECT name FROM storage_migrations`.execute(kernel.storage.db)).rows.map((r) => r.name);
      assert.ok(!names.includes(FUTURE));
    } finally {
      await kernel.close();
    }
  }

  it('refuses it with BACKUP_NEWER_THAN_CODE naming the unknown migrations, before changing anything', { timeout: 60_000 }, async () => {
    const before = await liveState();
    await assert.rejects(restoreDatabase(env.config, newer, CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'BACKUP_NEWER_THAN_CODE') && JSON.stringify(e.details) === JSON.stringify({ unknownMigrations: [FUTURE], backup: basename(newer) }));
    await assertUntouched(before);
  });

  it('refuses it from the command line too, and the database still opens', { timeout: 60_000 }, async () => {
    const before = await liveState();
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'restore', newer], (l) => lines.push(l), (l) => lines.push(l));
    assert.equal(code, 1);
    assert.match(lines.join('\n'), new RegExp(`BACKUP_NEWER_THAN_CODE.*${FUTURE}`));
    await assertUntouched(before);
  });

  it('refuses, as an older release, a backup taken after an upgrade', { timeout: 60_000 }, async () => {
    const latest = MIGRATIONS.at(-1)?.name as string;
    const older = MIGRATIONS.filter((m) => m.name !== latest);
    const before = await liveState();
    await assert.rejects(restoreDatabase(env.config, current, CLI_ACTOR, older), (e) => isCandorError(e, 'BACKUP_NEWER_THAN_CODE') && JSON.stringify(e.details?.unknownMigrations) === JSON.stringify([latest]));
    await assertUntouched(before);
  });

  it('restores a backup whose migrations this release all knows', { timeout: 60_000 }, async () => {
    await restoreDatabase(env.config, current, CLI_ACTOR, MIGRATIONS);
    const kernel = await openKernel(env.config);
    try {
      assert.equal((await kernel.audit.list({ action: 'test.marker', limit: 5 })).length, 0, 'the backup predates the marker');
      assert.equal((await kernel.audit.list({ action: 'retention.restore', limit: 5 })).length, 1);
    } finally {
      await kernel.close();
    }
  });
});
