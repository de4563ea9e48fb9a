import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { withStorage } from '../../../test/support/with-storage.ts';
import { MIGRATIONS, openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { migrateToLatest, type Storage } from '../../storage/index.ts';
import { backupDatabase, restoreDatabase } from './index.ts';

/** The first migration the older release lacks: it adds a table (collect_recent_ids), a function and triggers. */
const FIRST_NEWER = '0113_collect_recent_message_ids';
const OLDER = MIGRATIONS.filter((m) => m.name < FIRST_NEWER);

/** Every object of the database's schema, by kind and name (tables, indexes, triggers, functions, sequences, views). */
async function schemaObjects(storage: Storage): Promise<string[]> {
  if (storage.dialect === 'sqlite') {
    const rows = await sql<{ type: string; name: string }>`SELECT type, name FROM sqlite_master ORDER BY type, name`.execute(storage.db);
    return rows.rows.map((r) => `${r.type} ${r.name}`);
  }
  const rows = await sql<{ object: string }>`
    SELECT 'relation ' || c.relkind::text || ' ' || c.relname AS object FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
    UNION ALL SELECT 'function ' || p.proname FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
    UNION ALL SELECT 'trigger ' || t.tgname || ' on ' || c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
    ORDER BY 1`.execute(storage.db);
  return rows.rows.map((r) => r.object);
}

const migrationsOf = async (storage: Storage) => (await sql<{ name: string }>`SELECT name FROM storage_migrations ORDER BY name`.execute(storage.db)).rows.map((r) => r.name);

describeEachDialect('restore of a backup an older release made', (dialect) => {
  let env: TestEnvironment;
  let file = '';
  /** The older release's database, as the backup holds it. */
  let olderObjects: string[] = [];

  before(async () => {
    assert.ok(MIGRATIONS.some((m) => m.name === FIRST_NEWER));
    env = await createEnvironment(dialect);
    file = env.beside('older.backup');
    olderObjects = await withStorage(env, async (storage) => {
      await migrateToLatest(storage, OLDER);
      return schemaObjects(storage);
    });
    await backupDatabase(env.config, file, CLI_ACTOR);
  });
  after(async () => {
    await env?.cleanup();
  });

  /** The upgrade to this release, and writes after the backup: to a table the upgrade added, and to an older one. */
  async function upgradeAndWrite(): Promise<void> {
    const kernel = await openKernel(env.config);
    try {
      await sql`INSERT INTO collect_recent_ids (source, message_id, received_at) VALUES ('web', 'after-the-backup', ${new Date().toISOString()}) ON CONFLICT DO NOTHING`.execute(kernel.storage.db);
      await kernel.audit.append({ actor: CLI_ACTOR.id, role: CLI_ACTOR.role, action: 'test.marker', purpose: 'essential.service.security', resource: 'marker:after-backup' });
    } finally {
      await kernel.close();
    }
  }

  it("puts back exactly the backup's schema: what later migrations added is gone, with the rows written to it since", { timeout: 120_000 }, async () => {
    await upgradeAndWrite();
    await restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS);
    await withStorage(env, async (storage) => {
      assert.deepEqual(await schemaObjects(storage), olderObjects);
      assert.deepEqual(await migrationsOf(storage), OLDER.map((m) => m.name));
    });
  });

  it('the next start applies the migrations the backup lacks', { timeout: 120_000 }, async () => {
    const kernel = await openKernel(env.config);
    try {
      assert.deepEqual(await migrationsOf(kernel.storage), MIGRATIONS.map((m) => m.name).sort());
      const kept = await sql<{ message_id: string }>`SELECT message_id FROM collect_recent_ids`.execute(kernel.storage.db);
      assert.deepEqual(kept.rows, [], 'the row written after the backup is not back');
      assert.equal((await kernel.audit.list({ action: 'test.marker', limit: 5 })).length, 0);
      assert.equal((await kernel.audit.list({ action: 'retention.restore', limit: 5 })).length, 1);
    } finally {
      await kernel.close();
    }
  });

  /** The live database, as a failed restore must leave it. */
  async function liveState(): Promise<unknown> {
    return withStorage(env, async (storage) => ({
      objects: await schemaObjects(storage),
      migrations: await migrationsOf(storage),
      recent: (await sql`SELECT source, message_id FROM collect_recent_ids`.execute(storage.db)).rows,
      head: (await sql`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`.execute(storage.db)).rows,
    }));
  }

  /**
   * Runs a restore with a pg_restore ahead of the real one on PATH whose restoring run (the one that starts with
   * --clean) writes what `shell` makes of the real one's output (`$SCRIPT`), then exits as `shell` does.
   */
  async function restoreWithShadow(shell: string): Promise<unknown> {
    const bin = join(env.dataDir, 'shadow-bin');
    mkdirSync(bin, { recursive: true });
    const real = execFileSync('sh', ['-c', 'command -v pg_restore'], { encoding: 'utf8' }).trim();
    const script = join(env.dataDir, 'restore.sql');
    writeFileSync(join(bin, 'pg_restore'), `#!/bin/sh\n[ "$1" = --clean ] || exec '${real}' "$@"\nSCRIPT='${script}'\n'${real}' "$@" > "$SCRIPT" || exit 1\n${shell}\n`);
    chmodSync(join(bin, 'pg_restore'), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      await restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS);
      return undefined;
    } catch (error) {
      return error;
    } finally {
      process.env.PATH = path;
    }
  }

  it('leaves the upgraded database as it was when pg_restore stops partway through its output', { timeout: 120_000, skip: dialect !== 'postgres' && 'a PostgreSQL matter' }, async () => {
    await upgradeAndWrite();
    const before = await liveState();
    // Its script up to the end of the first table's data: every statement in it complete, then no more.
    const error = await restoreWithShadow(`sed '/^\\\\\\.$/q' "$SCRIPT"; exit 1`);
    assert.ok(isCandorError(error, 'BACKUP_FAILED') && error.details?.tool === 'pg_restore', String(error));
    assert.deepEqual(await liveState(), before);
  });

  it("leaves the upgraded database as it was when the restore's last statement fails", { timeout: 120_000, skip: dialect !== 'postgres' && 'a PostgreSQL matter' }, async () => {
    const before = await liveState();
    // Everything restored, then a failing statement right before the script's COMMIT.
    const error = await restoreWithShadow(`sed 's/^COMMIT;$/SELECT 1 \\/ 0;\\nCOMMIT;/' "$SCRIPT"`);
    assert.ok(isCandorError(error, 'BACKUP_FAILED') && error.details?.tool === 'psql' && /division by zero/.test(String(error.details.message)), String(error));
    assert.deepEqual(await liveState(), before);
  });

  it('refuses with BACKUP_TOOL_MISSING naming psql when only pg_dump and pg_restore are installed, changing nothing', { timeout: 120_000, skip: dialect !== 'postgres' && 'a PostgreSQL matter' }, async () => {
    const before = await liveState();
    const bin = join(env.dataDir, 'no-psql-bin');
    mkdirSync(bin, { recursive: true });
    symlinkSync(execFileSync('sh', ['-c', 'command -v pg_restore'], { encoding: 'utf8' }).trim(), join(bin, 'pg_restore'));
    const path = process.env.PATH;
    process.env.PATH = bin;
    try {
      await assert.rejects(restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'BACKUP_TOOL_MISSING') && e.details?.tool === 'psql');
    } finally {
      process.env.PATH = path;
    }
    assert.deepEqual(await liveState(), before);
  });
});
