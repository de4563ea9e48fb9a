import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../test/support/databases.ts';
import { main } from '../cli/main.ts';
import { openKernel } from '../kernel.ts';
import { isCandorError } from '../shared/errors.ts';
import { migrateToLatest, openStorage, pendingMigrations, type ModuleMigration } from './index.ts';

const table = (name: string): ModuleMigration => ({
  name,
  async up(db) {
    await db.schema.createTable(`t_${name}`).addColumn('id', 'text').execute();
  },
});

describeEachDialect('migrator', (dialect) => {
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
