import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../test/support/databases.ts';
import { MIGRATIONS } from '../kernel.ts';
import { isCandorError } from '../shared/errors.ts';
import { isUniqueViolation, migrateToLatest, openStorage, pendingMigrations, type ModuleMigration, type Storage } from './index.ts';

async function withStorage(dialect: 'sqlite' | 'postgres', run: (storage: Storage) => Promise<void>): Promise<void> {
  const env = await createEnvironment(dialect);
  const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL' });
  try {
    await run(storage);
  } finally {
    await storage.close();
    await env.cleanup();
  }
}

async function tableExists(storage: Storage, name: string): Promise<boolean> {
  const tables = await storage.db.introspection.getTables();
  return tables.some((t) => t.name === name);
}

describeEachDialect('storage', (dialect) => {
  it('applies every migration once and reports nothing pending afterwards', () =>
    withStorage(dialect, async (storage) => {
      const applied = await migrateToLatest(storage, MIGRATIONS);
      assert.deepEqual(applied, MIGRATIONS.map((m) => m.name));
      assert.deepEqual(await pendingMigrations(storage, MIGRATIONS), []);
      assert.deepEqual(await migrateToLatest(storage, MIGRATIONS), []);
      for (const table of ['audit_log', 'crypto_subject_keys', 'access_tokens', 'taxonomy_custom_entries']) {
        assert.ok(await tableExists(storage, table), table);
      }
    }));

  it('leaves the database as it was when a migration of the batch fails', () =>
    withStorage(dialect, async (storage) => {
      await migrateToLatest(storage, MIGRATIONS);
      const good: ModuleMigration = {
        name: '9001_good',
        async up(db) {
          await db.schema.createTable('later_good').addColumn('id', 'text').execute();
        },
      };
      const bad: ModuleMigration = {
        name: '9002_bad',
        async up(db) {
          await db.schema.createTable('later_bad').addColumn('id', 'text').execute();
          await sql`INSERT INTO no_such_table VALUES (1)`.execute(db);
        },
      };
      await assert.rejects(migrateToLatest(storage, [...MIGRATIONS, good, bad]), (error) => isCandorError(error, 'STORAGE_MIGRATION_FAILED') && error.details?.migration === '9002_bad');
      assert.equal(await tableExists(storage, 'later_good'), false);
      assert.equal(await tableExists(storage, 'later_bad'), false);
      assert.deepEqual(await pendingMigrations(storage, [...MIGRATIONS, good, bad]), ['9001_good', '9002_bad']);
    }));

  it('rolls back a raw transaction that throws and keeps one that commits', () =>
    withStorage(dialect, async (storage) => {
      await sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`.execute(storage.db);
      const insert = storage.db.withTables<{ t: { id: number; v: string } }>().insertInto('t').values({ id: 0, v: '' }).compile().sql;
      await storage.raw.transaction(async (tx) => {
        await tx.run(insert, [1, 'kept']);
      });
      await assert.rejects(
        storage.raw.transaction(async (tx) => {
          await tx.run(insert, [2, 'lost']);
          throw new Error('boom');
        }),
        /boom/,
      );
      const rows = await storage.raw.all<{ id: number }>('SELECT id FROM t ORDER BY id');
      assert.deepEqual(rows.map((r) => Number(r.id)), [1]);
    }));

  it('recognises unique violations on this backend', () =>
    withStorage(dialect, async (storage) => {
      await sql`CREATE TABLE u (id INTEGER PRIMARY KEY)`.execute(storage.db);
      await sql`INSERT INTO u VALUES (1)`.execute(storage.db);
      const error = await sql`INSERT INTO u VALUES (1)`.execute(storage.db).then(() => undefined, (e: unknown) => e);
      assert.equal(isUniqueViolation(error), true);
      assert.equal(isUniqueViolation(new Error('other')), false);
    }));

  it('keeps interleaved Kysely transactions and raw statements apart', () =>
    withStorage(dialect, async (storage) => {
      await sql`CREATE TABLE c (id INTEGER PRIMARY KEY)`.execute(storage.db);
      const db = storage.db.withTables<{ c: { id: number } }>();
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        work.push(
          db.transaction().execute(async (trx) => {
            await trx.insertInto('c').values({ id: i * 2 }).execute();
            await new Promise((resolve) => setTimeout(resolve, 1));
            if (i % 5 === 0) throw new Error('rollback');
          }).catch(() => undefined),
        );
        work.push(storage.raw.run(db.insertInto('c').values({ id: 0 }).compile().sql, [i * 2 + 1]));
      }
      await Promise.all(work);
      const ids = (await db.selectFrom('c').select('id').orderBy('id').execute()).map((r) => Number(r.id));
      const expected = [];
      for (let i = 0; i < 20; i++) {
        if (i % 5 !== 0) expected.push(i * 2);
        expected.push(i * 2 + 1);
      }
      assert.deepEqual(ids, expected.sort((a, b) => a - b));
    }));
});
