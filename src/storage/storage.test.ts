import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../test/support/databases.ts';
import { MIGRATIONS } from '../kernel.ts';
import { isCandorError } from '../shared/errors.ts';
import { DeferredConflict, isMissingTableOrColumn, isUniqueViolation, migrateToLatest, openStorage, pendingMigrations, SQLITE_FILE, type ModuleMigration, type Storage } from './index.ts';

type Environment = Awaited<ReturnType<typeof createEnvironment>>;
/** A storage on a test environment's database (SQLite's writer thread on unless said otherwise). */
const openIn = (env: Environment, sqliteWriterThread: 'on' | 'off' = 'on') => openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function withStorage(dialect: 'sqlite' | 'postgres', run: (storage: Storage) => Promise<void>): Promise<void> {
  const env = await createEnvironment(dialect);
  const storage = await openIn(env);
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

  it('recognises a statement on a table or column that does not exist, through Kysely and raw statements', () =>
    withStorage(dialect, async (storage) => {
      await sql`CREATE TABLE m (id INTEGER PRIMARY KEY, kept TEXT)`.execute(storage.db);
      const failure = (run: () => Promise<unknown>) => run().then(() => undefined, (e: unknown) => e);
      const missing = [
        await failure(() => sql`SELECT gone FROM m`.execute(storage.db)),
        await failure(() => sql`SELECT id FROM no_such_table`.execute(storage.db)),
        await failure(() => sql`INSERT INTO m (id, gone) VALUES (1, 'x')`.execute(storage.db)),
        await failure(() => sql`UPDATE m SET gone = 'x'`.execute(storage.db)),
        await failure(() => storage.raw.transaction((tx) => tx.run('INSERT INTO m (id, gone) VALUES (1, 2)', []))),
      ];
      for (const error of missing) assert.equal(isMissingTableOrColumn(error), true, String(error));
      await sql`INSERT INTO m (id, kept) VALUES (1, 'x')`.execute(storage.db);
      assert.equal(isMissingTableOrColumn(await failure(() => sql`INSERT INTO m (id, kept) VALUES (1, 'x')`.execute(storage.db))), false);
      assert.equal(isMissingTableOrColumn(new Error('other')), false);
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
            await sleep(1);
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

describeEachDialect('storage: SQLite writer thread', (dialect) => {
  if (dialect !== 'sqlite') {
    it('is SQLite only', () =>
      withStorage(dialect, async (storage) => {
        assert.equal(storage.deferred, undefined);
      }));
    return;
  }

  const setUp = async (storage: Storage) => {
    await sql`CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`.execute(storage.db);
    await storage.raw.run('INSERT INTO t VALUES (?, ?)', ['a', 1]);
  };
  const rows = async (storage: Storage) => (await storage.raw.all<{ id: string; n: number }>('SELECT id, n FROM t ORDER BY id')).map((r) => ({ id: r.id, n: r.n }));

  /** A fresh database for connections the test opens and closes itself. */
  const inEnvironment = async (run: (env: Environment) => Promise<void>) => {
    const env = await createEnvironment(dialect);
    try {
      await run(env);
    } finally {
      await env.cleanup();
    }
  };

  it('reads the committed state at once and commits the recorded writes together, durably', () =>
    inEnvironment(async (env) => {
      const storage = await openIn(env);
      await setUp(storage);
      const deferred = storage.deferred;
      assert.ok(deferred);
      let dispatched = false;
      const seen = await deferred.transaction(async (tx) => {
        const before = await tx.all<{ n: number }>('SELECT n FROM t WHERE id = ?', ['a']);
        assert.ok(Number.isNaN(await tx.run('UPDATE t SET n = n + 1 WHERE id = ?', ['a'])));
        tx.expect('INSERT INTO t VALUES (?, ?), (?, ?)', ['b', 2, 'c', 3], 2);
        // Nothing is written before the function has finished.
        assert.deepEqual(await rows(storage), [{ id: 'a', n: 1 }]);
        await assert.rejects(tx.all('INSERT INTO t VALUES (?, ?) RETURNING id', ['x', 0]));
        return before[0]?.n;
      }, () => (dispatched = true));
      assert.equal(seen, 1);
      assert.ok(dispatched);
      assert.deepEqual(await rows(storage), [{ id: 'a', n: 2 }, { id: 'b', n: 2 }, { id: 'c', n: 3 }]);
      await storage.close();
      // Committed before the promise settled: a new connection reads it.
      const again = await openIn(env, 'off');
      assert.deepEqual(await rows(again), [{ id: 'a', n: 2 }, { id: 'b', n: 2 }, { id: 'c', n: 3 }]);
      assert.equal(again.deferred, undefined);
      await again.close();
    }));

  it('writes nothing when the function throws, or when a write does not change the rows it expected', () =>
    withStorage(dialect, async (storage) => {
      await setUp(storage);
      const deferred = storage.deferred;
      assert.ok(deferred);
      await assert.rejects(
        deferred.transaction(async (tx) => {
          await tx.run('UPDATE t SET n = 10');
          throw new Error('changed my mind');
        }),
        /changed my mind/,
      );
      await assert.rejects(
        deferred.transaction(async (tx) => {
          await tx.run('UPDATE t SET n = 10');
          tx.expect('INSERT INTO t VALUES (?, ?) ON CONFLICT DO NOTHING', ['a', 5], 1);
        }),
        (error) => error instanceof DeferredConflict,
      );
      await assert.rejects(
        deferred.transaction(async (tx) => {
          await tx.run('INSERT INTO t VALUES (?, ?)', ['a', 5]);
        }),
        (error) => isUniqueViolation(error),
      );
      assert.deepEqual(await rows(storage), [{ id: 'a', n: 1 }]);
      // Still usable afterwards, and the main connection's own transactions wait for it instead of failing busy.
      await Promise.all([
        deferred.transaction(async (tx) => {
          await tx.run('INSERT INTO t VALUES (?, ?)', ['d', 4]);
        }),
        storage.raw.transaction(async (tx) => {
          await tx.run('INSERT INTO t VALUES (?, ?)', ['e', 5]);
        }),
        deferred.transaction(async (tx) => {
          await tx.run('INSERT INTO t VALUES (?, ?)', ['f', 6]);
        }),
      ]);
      assert.deepEqual((await rows(storage)).map((r) => r.id), ['a', 'd', 'e', 'f']);
    }));

  it('runs writes on the writer as they are made; a kept lock that lapsed meanwhile is taken back only if nobody wrote', () =>
    inEnvironment(async (env) => {
      const storage = await openIn(env);
      await setUp(storage);
      const deferred = storage.deferred;
      assert.ok(deferred);
      const other = await openIn(env, 'off');
      // A transaction that follows at once uses the lock the writer took back after the last commit; the writer lets
      // it go after 50 ms without news, so a write after a longer pause takes it again.
      await deferred.transaction((tx) => tx.run('UPDATE t SET n = 2'));
      await deferred.transaction(async (tx) => {
        await tx.run('UPDATE t SET n = n + 1');
        await sleep(80);
        await tx.run('INSERT INTO t VALUES (?, ?)', ['b', 1]);
      });
      assert.deepEqual(await rows(other), [{ id: 'a', n: 3 }, { id: 'b', n: 1 }]);
      // Another connection commits in such a pause: what was prepared may be stale, nothing of it is written.
      await deferred.transaction((tx) => tx.run('UPDATE t SET n = 4'));
      await assert.rejects(
        deferred.transaction(async (tx) => {
          await sleep(80);
          await other.raw.run('UPDATE t SET n = 100 WHERE id = ?', ['b']);
          await tx.run('UPDATE t SET n = 0');
          await tx.run('INSERT INTO t VALUES (?, ?)', ['c', 1]);
        }),
        (error) => error instanceof DeferredConflict && error.statement === -1,
      );
      // A write that fails stops the rest: the first failure is the one reported, nothing is written.
      await assert.rejects(
        deferred.transaction(async (tx) => {
          await tx.run('UPDATE t SET n = 7');
          tx.expect('INSERT INTO t VALUES (?, ?) ON CONFLICT DO NOTHING', ['a', 5], 1);
          await tx.run('INSERT INTO t VALUES (?, ?)', ['a', 5]);
          await tx.run('INSERT INTO t VALUES (?, ?)', ['d', 1]);
        }),
        (error) => error instanceof DeferredConflict && error.statement === 1,
      );
      assert.deepEqual(await rows(other), [{ id: 'a', n: 4 }, { id: 'b', n: 100 }]);
      await other.close();
      await storage.close();
    }));

  it('counts commits of other connections as external writes, but not its own writer thread', () =>
    inEnvironment(async (env) => {
      const storage = await openIn(env);
      await setUp(storage);
      const deferred = storage.deferred;
      assert.ok(deferred);
      const before = storage.externalWrites();
      for (let i = 0; i < 3; i++) {
        await deferred.transaction(async (tx) => {
          await tx.run('UPDATE t SET n = n + 1');
        });
        await sleep(2);
        assert.equal(storage.externalWrites(), before);
      }
      const other = await openIn(env, 'off');
      await other.raw.run('UPDATE t SET n = 0');
      await sleep(2);
      assert.notEqual(storage.externalWrites(), before);
      const after = storage.externalWrites();
      // Another connection's commit right after the writer's is seen too.
      await deferred.transaction(async (tx) => {
        await tx.run('UPDATE t SET n = n + 1');
      });
      await other.raw.run('UPDATE t SET n = 0');
      await sleep(2);
      assert.notEqual(storage.externalWrites(), after);
      await other.close();
      await storage.close();
    }));
});

describeEachDialect('storage: commits of other processes', (dialect) => {
  const table: ModuleMigration = {
    name: '9100_notice_test',
    async up(db) {
      await db.schema.createTable('notice_test').addColumn('id', 'text', (c) => c.primaryKey()).addColumn('n', 'integer').execute();
    },
  };
  /** Waits until the count differs from `from` (a notice arrives asynchronously on PostgreSQL); its last value. */
  const changed = async (storage: Storage, from: number | undefined) => {
    for (let i = 0; i < 200 && storage.externalWrites() === from; i++) await sleep(5);
    return storage.externalWrites();
  };

  it('counts every commit of another process, and none of its own', async () => {
    const env = await createEnvironment(dialect);
    const storage = await openIn(env);
    const other = await openIn(env, 'off');
    try {
      await migrateToLatest(storage, [table]);
      await sleep(50);
      const start = storage.externalWrites();
      assert.equal(typeof start, 'number', 'commits of others can be told on both databases');
      // Its own writes, plain and in transactions, on any connection of its pool: no change.
      await storage.raw.run("INSERT INTO notice_test (id, n) VALUES ('a', 1)");
      await storage.raw.transaction(async (tx) => {
        await tx.run("UPDATE notice_test SET n = 2 WHERE id = 'a'");
      });
      await sql`DELETE FROM notice_test WHERE id = 'nobody'`.execute(storage.db);
      await sleep(50);
      assert.equal(storage.externalWrites(), start);
      // Another process's plain write, its transaction, and a write through its query builder: each is seen.
      await other.raw.run("INSERT INTO notice_test (id, n) VALUES ('b', 1)");
      const one = await changed(storage, start);
      assert.notEqual(one, start);
      await other.raw.transaction(async (tx) => {
        await tx.run("UPDATE notice_test SET n = 3 WHERE id = 'b'");
      });
      const two = await changed(storage, one);
      assert.notEqual(two, one);
      await sql`DELETE FROM notice_test WHERE id = 'b'`.execute(other.db);
      assert.notEqual(await changed(storage, two), two);
    } finally {
      await other.close();
      await storage.close();
      await env.cleanup();
    }
  });

  if (dialect === 'postgres') {
    it('hears writes of sessions that are not Candor (psql), and gives every table its trigger', async () => {
      const env = await createEnvironment(dialect);
      const storage = await openIn(env);
      const { default: pg } = await import('pg');
      const psql = new pg.Client({ connectionString: env.databaseUrl, application_name: 'psql' });
      await psql.connect();
      try {
        await migrateToLatest(storage, [...MIGRATIONS, table]);
        const untriggered = await sql<{ name: string }>`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = current_schema() AND c.relkind = 'r'
            AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'candor_commit_notice')`.execute(storage.db);
        assert.deepEqual(untriggered.rows, []);
        await sleep(50);
        const start = storage.externalWrites();
        await psql.query("INSERT INTO notice_test (id, n) VALUES ('p', 1)");
        assert.notEqual(await changed(storage, start), start);
        // A transaction that changes nothing sends nothing.
        const quiet = storage.externalWrites();
        await psql.query('BEGIN');
        await psql.query("UPDATE notice_test SET n = 9 WHERE id = 'p'");
        await psql.query('ROLLBACK');
        await sleep(100);
        assert.equal(storage.externalWrites(), quiet);
        // A table that sends no notices (a trigger not allowed, a database from before them): nothing can be told
        // until the next migration run puts the trigger back.
        await psql.query('DROP TRIGGER candor_commit_notice ON notice_test');
        const later = await openIn(env);
        try {
          assert.equal(later.externalWrites(), undefined);
          await migrateToLatest(later, [...MIGRATIONS, table]);
          assert.equal(typeof later.externalWrites(), 'number');
        } finally {
          await later.close();
        }
        // The listening connection lost: nothing can be told until it is back, and its return counts as a change.
        const before = storage.externalWrites();
        const listeners = await psql.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'candor-%-listen'");
        assert.ok(listeners.rows.length >= 1);
        await psql.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1', ['candor-%-listen']);
        for (let i = 0; i < 100 && storage.externalWrites() !== undefined; i++) await sleep(10);
        assert.equal(storage.externalWrites(), undefined);
        for (let i = 0; i < 300 && storage.externalWrites() === undefined; i++) await sleep(10);
        const back = storage.externalWrites();
        assert.equal(typeof back, 'number');
        assert.notEqual(back, before);
      } finally {
        await psql.end();
        await storage.close();
        await env.cleanup();
      }
    });

    it('counts per table what other processes wrote, and replaces the trigger body of an earlier version', async () => {
      const env = await createEnvironment(dialect);
      const storage = await openIn(env);
      const other = await openIn(env, 'off');
      const second: ModuleMigration = {
        name: '9101_notice_other',
        async up(db) {
          await db.schema.createTable('notice_other').addColumn('id', 'text', (c) => c.primaryKey()).execute();
        },
      };
      try {
        await migrateToLatest(storage, [table, second]);
        await sleep(50);
        const mine = ['notice_test'];
        const start = storage.externalWrites(mine);
        const all = storage.externalWrites();
        // A write to another table moves the count of every table, not the count of this one.
        await other.raw.run("INSERT INTO notice_other (id) VALUES ('x')");
        assert.notEqual(await changed(storage, all), all);
        assert.equal(storage.externalWrites(mine), start);
        await other.raw.run("INSERT INTO notice_test (id, n) VALUES ('y', 1)");
        for (let i = 0; i < 200 && storage.externalWrites(mine) === start; i++) await sleep(5);
        assert.notEqual(storage.externalWrites(mine), start);
        // A database whose triggers an earlier version made (notices naming no table): the next migration run
        // replaces the body; until then such a notice counts as a change of every table.
        await sql`CREATE OR REPLACE FUNCTION candor_commit_notice() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN PERFORM pg_notify('candor_commits', current_setting('application_name')); RETURN NULL; END $$`.execute(other.db);
        const before = storage.externalWrites(mine);
        await other.raw.run("INSERT INTO notice_other (id) VALUES ('z')");
        for (let i = 0; i < 200 && storage.externalWrites(mine) === before; i++) await sleep(5);
        assert.notEqual(storage.externalWrites(mine), before);
        await migrateToLatest(other, [table, second]);
        const body = await sql<{ body: string }>`SELECT prosrc AS body FROM pg_proc WHERE proname = 'candor_commit_notice'`.execute(storage.db);
        assert.match(body.rows[0]?.body ?? '', /TG_TABLE_NAME/);
        await sleep(50);
        const now = storage.externalWrites(mine);
        await other.raw.run("INSERT INTO notice_other (id) VALUES ('w')");
        await sleep(100);
        assert.equal(storage.externalWrites(mine), now);
      } finally {
        await other.close();
        await storage.close();
        await env.cleanup();
      }
    });
  }
});

describeEachDialect('storage: plans of large inserts', (dialect) => {
  if (dialect !== 'postgres') return;
  it('runs a large VALUES insert inside a transaction with a generic plan, and everything else with a plan per execution', async () => {
    const env = await createEnvironment(dialect);
    const storage = await openIn(env);
    try {
      await sql`CREATE TABLE plan_test (id text PRIMARY KEY, a text, b text, c text, d text, e text, f text, g text, h text, i text)`.execute(storage.db);
      const rows = (from: number, n: number) => Array.from({ length: n }, (_, r) => [`id-${from + r}`, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']).flat();
      const insert = (n: number) => `INSERT INTO plan_test (id, a, b, c, d, e, f, g, h, i) VALUES ${Array.from({ length: n }, (_, r) => `(${Array.from({ length: 10 }, (_, k) => `$${r * 10 + k + 1}`).join(', ')})`).join(', ')}`;
      const lookup = 'SELECT id FROM plan_test WHERE id = $1';
      const plans = await storage.raw.transaction(async (tx) => {
        await tx.run(insert(50), rows(0, 50));
        await tx.run(insert(50), rows(50, 50));
        await tx.all(lookup, ['id-3']);
        await tx.run(insert(2), rows(100, 2));
        await tx.all(lookup, ['id-4']);
        return tx.all<{ statement: string; generic_plans: number; custom_plans: number }>('SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE $1', ['%plan_test%']);
      });
      const of = (text: string) => plans.find((p) => p.statement === text);
      assert.deepEqual({ generic: Number(of(insert(50))?.generic_plans), custom: Number(of(insert(50))?.custom_plans) }, { generic: 2, custom: 0 });
      assert.deepEqual({ generic: Number(of(lookup)?.generic_plans), custom: Number(of(lookup)?.custom_plans) }, { generic: 0, custom: 2 });
      // A small insert plans quickly: no switch is made for it.
      assert.equal(Number(of(insert(2))?.generic_plans), 0);
      const stored = await storage.raw.all<{ n: number }>('SELECT count(*)::int AS n FROM plan_test');
      assert.equal(stored[0]?.n, 102);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });
});

describeEachDialect('storage: checkpoint', (dialect) => {
  /** A fresh database with a row whose value the test looks for in the WAL after deleting it. */
  const withTable = (run: (storage: Storage, env: Environment) => Promise<void>) => async () => {
    const env = await createEnvironment(dialect);
    const storage = await openIn(env);
    try {
      await sql`CREATE TABLE wal_test (id TEXT PRIMARY KEY, v TEXT NOT NULL)`.execute(storage.db);
      await sql`INSERT INTO wal_test VALUES (${'a'}, ${'PLAINVALUE-9c41'})`.execute(storage.db);
      await run(storage, env);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  };

  if (dialect === 'postgres') {
    it('is a no-op on PostgreSQL, whatever another connection reads', withTable(async (storage, env) => {
      const { default: pg } = await import('pg');
      const reader = new pg.Client({ connectionString: env.databaseUrl });
      await reader.connect();
      try {
        await reader.query('BEGIN');
        await reader.query('SELECT count(*) FROM wal_test');
        await sql`DELETE FROM wal_test`.execute(storage.db);
        await storage.checkpoint({ waitMs: 0 });
        await reader.query('COMMIT');
      } finally {
        await reader.end();
      }
    }));
    return;
  }

  const wal = (env: Environment) => join(env.dataDir, `${SQLITE_FILE}-wal`);
  /** Another connection to the file with a read transaction open, as a CLI command, a backup or a sqlite3 shell has. */
  const reading = (env: Environment) => {
    const db = new DatabaseSync(join(env.dataDir, SQLITE_FILE));
    db.exec('BEGIN');
    db.prepare('SELECT count(*) AS n FROM wal_test').get();
    return () => {
      db.exec('COMMIT');
      db.close();
    };
  };

  it('fails with STORAGE_CHECKPOINT_BUSY while another connection reads, leaving the WAL as it is, and truncates it once the reader ended', withTable(async (storage, env) => {
    const release = reading(env);
    try {
      await sql`DELETE FROM wal_test`.execute(storage.db);
      await assert.rejects(storage.checkpoint({ waitMs: 30 }), (error) => {
        assert.ok(isCandorError(error, 'STORAGE_CHECKPOINT_BUSY'));
        const details = error.details as { busy: number; log: number; checkpointed: number };
        assert.equal(details.busy, 1);
        assert.ok(details.log > 0);
        return true;
      });
      assert.ok(readFileSync(wal(env)).includes('PLAINVALUE-9c41'), 'the deleted value is still in the WAL');
    } finally {
      release();
    }
    await storage.checkpoint({ waitMs: 0 });
    assert.equal(statSync(wal(env)).size, 0);
    assert.ok(!readFileSync(join(env.dataDir, SQLITE_FILE)).includes('PLAINVALUE-9c41'));
  }));

  it('tries again while a reader ends within the wait, and writes of this process go on meanwhile', withTable(async (storage, env) => {
    const release = reading(env);
    await sql`DELETE FROM wal_test`.execute(storage.db);
    let ended = false;
    const checkpoint = storage.checkpoint({ waitMs: 10_000 }).then(() => assert.ok(ended, 'resolved only after the reader ended'));
    await sql`INSERT INTO wal_test VALUES (${'b'}, ${'meanwhile'})`.execute(storage.db);
    await sleep(30);
    ended = true;
    release();
    await checkpoint;
    assert.equal(statSync(wal(env)).size, 0);
  }));

  it('is never held up by this process\'s own writer thread, even right after its commits', withTable(async (storage, env) => {
    const deferred = storage.deferred;
    assert.ok(deferred);
    for (let i = 0; i < 20; i++) {
      // The writer keeps the write lock after a commit for a transaction that may follow: a checkpoint must not fail on it.
      await deferred.transaction((tx) => tx.run('INSERT INTO wal_test VALUES (?, ?)', [`w${i}`, 'x']));
      await Promise.all([deferred.transaction((tx) => tx.run('UPDATE wal_test SET v = ? WHERE id = ?', ['y', `w${i}`])), storage.checkpoint({ waitMs: 0 })]);
    }
    await storage.checkpoint({ waitMs: 0 });
    assert.equal(statSync(wal(env)).size, 0);
  }));
});
