import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../test/support/databases.ts';
import { main } from '../cli/main.ts';
import { MIGRATIONS, openKernel } from '../kernel.ts';
import { isCandorError } from '../shared/errors.ts';
import { migrateToLatest, openStorage, pendingMigrations, type ModuleMigration } from './index.ts';

const table = (name: string): ModuleMigration => ({
  name,
  async up(db) {
    await db.schema.createTable(`t_${name}`).addColumn('id', 'text').execute();
  },
});

it('every migration has its own number and a name of lower-case words, and MIGRATIONS lists them in the order Kysely applies them', () => {
  const names = MIGRATIONS.map((m) => m.name);
  for (const name of names) assert.match(name, /^\d{4}_[a-z0-9]+(_[a-z0-9]+)*$/);
  // One number per migration: the order is the numbers', whatever the rest of the names (or the comparison) is.
  const numbers = names.map((name) => name.slice(0, 4));
  assert.deepEqual(numbers.filter((n, i) => numbers.indexOf(n) !== i), []);
  // Kysely sorts migration names with Array.prototype.sort (code-unit order).
  assert.deepEqual(names, [...names].sort());
});

describeEachDialect('migrator', (dialect) => {
  const open = (env: { databaseUrl: string; dataDir: string }) => openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });

  it('applies a migration added with a name that sorts before migrations the database already has', async () => {
    const env = await createEnvironment(dialect);
    try {
      const storage = await open(env);
      try {
        await migrateToLatest(storage, [table('0001_a'), table('0003_c')]);
        const later = [table('0001_a'), table('0002_b'), table('0003_c'), table('0004_d')];
        assert.deepEqual(await pendingMigrations(storage, later), ['0002_b', '0004_d']);
        assert.deepEqual(await migrateToLatest(storage, later), ['0002_b', '0004_d']);
        assert.deepEqual(await pendingMigrations(storage, later), []);
        await sql`INSERT INTO t_0002_b (id) VALUES ('x')`.execute(storage.db);
      } finally {
        await storage.close();
      }
    } finally {
      await env.cleanup();
    }
  });

  it("upgrades the databases of releases that lacked migrations named before ones they had (0005 and 0013; 0103 and 0108)", async () => {
    // The release of 62befb7 had 0010–0050 but not 0005 or 0013; those of a4bfc4d…bfb199d had 0104–0107 but not 0103
    // or 0108. Each of the four only adds its own table or changes its own module's rows.
    const releases = [
      { had: (name: string) => name < '0060' && name !== '0005_access_subject_sessions' && name !== '0013_consent_restrictions', late: ['0005_access_subject_sessions', '0013_consent_restrictions'] },
      { had: (name: string) => name < '0109' && name !== '0103_collect_events_dedup_repair' && name !== '0108_access_subject_sessions_revoke_write_key', late: ['0103_collect_events_dedup_repair', '0108_access_subject_sessions_revoke_write_key'] },
    ];
    for (const release of releases) {
      const env = await createEnvironment(dialect);
      try {
        const storage = await open(env);
        try {
          await migrateToLatest(storage, MIGRATIONS.filter((m) => release.had(m.name)));
        } finally {
          await storage.close();
        }
        const kernel = await openKernel(env.config);
        try {
          const applied = new Set(kernel.migrationsApplied);
          for (const name of release.late) assert.ok(applied.has(name), `${name} applied`);
          assert.deepEqual(kernel.migrationsApplied, MIGRATIONS.map((m) => m.name).filter((name) => !release.had(name)));
          assert.deepEqual(await pendingMigrations(kernel.storage, MIGRATIONS), []);
        } finally {
          await kernel.close();
        }
      } finally {
        await env.cleanup();
      }
    }
  });

  it('a failed migration is reported with the migration and the reason, also when the migrator fails before running one', async () => {
    const env = await createEnvironment(dialect);
    try {
      const storage = await open(env);
      try {
        const failing: ModuleMigration = {
          name: '0002_failing',
          async up() {
            throw new Error('the failing step');
          },
        };
        await assert.rejects(migrateToLatest(storage, [table('0001_a'), failing]), (e) => isCandorError(e, 'STORAGE_MIGRATION_FAILED') && JSON.stringify(e.details) === JSON.stringify({ migration: '0002_failing', reason: 'the failing step' }));
        // The migrator's own checks fail before any migration runs (here: the list names one twice).
        await assert.rejects(migrateToLatest(storage, [table('0001_a'), table('0001_a')]), (e) => {
          assert.ok(isCandorError(e, 'STORAGE_MIGRATION_FAILED'));
          assert.deepEqual(e.details, { migration: null, reason: 'duplicate migration name 0001_a' });
          return true;
        });
        assert.deepEqual(await pendingMigrations(storage, [table('0001_a')]), ['0001_a']);
      } finally {
        await storage.close();
      }
    } finally {
      await env.cleanup();
    }
  });

  it('refuses a database written by a newer release with STORAGE_NEWER_THAN_CODE, naming its unknown migrations, and changes nothing', async () => {
    const env = await createEnvironment(dialect);
    try {
      const open = () => openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
      const newer = await open();
      try {
        await migrateToLatest(newer, [table('0001_a'), table('0002_b'), table('0003_c')]);
      } finally {
        await newer.close();
      }
      // The older release knows 0001 and has a 0002 of its own that the newer one does not have.
      const older = [table('0001_a'), table('0001_z')];
      const storage = await open();
      try {
        const refused = (e: unknown) => isCandorError(e, 'STORAGE_NEWER_THAN_CODE') && JSON.stringify(e.details) === JSON.stringify({ unknownMigrations: ['0002_b', '0003_c'] });
        await assert.rejects(migrateToLatest(storage, older), refused);
        await assert.rejects(pendingMigrations(storage, older), refused);
        const names = (await sql<{ name: string }>`SELECT name FROM storage_migrations ORDER BY name`.execute(storage.db)).rows.map((r) => r.name);
        assert.deepEqual(names, ['0001_a', '0002_b', '0003_c']);
      } finally {
        await storage.close();
      }
    } finally {
      await env.cleanup();
    }
  });

  it('the server and the CLI name the problem instead of a failed migration', async () => {
    const env = await createEnvironment(dialect);
    try {
      const kernel = await openKernel(env.config);
      try {
        await sql`INSERT INTO storage_migrations (name, timestamp) VALUES ('9999_from_a_newer_release', ${new Date().toISOString()})`.execute(kernel.storage.db);
      } finally {
        await kernel.close();
      }
      await assert.rejects(openKernel(env.config), (e) => isCandorError(e, 'STORAGE_NEWER_THAN_CODE'));
      await assert.rejects(openKernel(env.config, { migrate: false }), (e) => isCandorError(e, 'STORAGE_NEWER_THAN_CODE'));
      const lines: string[] = [];
      const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'migrate'], (l) => lines.push(l), (l) => lines.push(l));
      assert.equal(code, 1);
      assert.match(lines.join('\n'), /error STORAGE_NEWER_THAN_CODE: This database was written by a newer Candor release.*\{"unknownMigrations":\["9999_from_a_newer_release"\]\}/);
    } finally {
      await env.cleanup();
    }
  });
});
