import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler, sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { openStorage, type Storage } from './index.ts';
import { compareText, textOrder } from './text-order.ts';

// Mixed case, punctuation, digits, accents, a character past U+FFFF and one just below it (where UTF-16 code units and
// code points disagree), in an order no collation gives.
const TEXTS = ['page', 'a_b', 'Product Viewed', 'ab', 'a.b', '\u{1F600}', 'Zip', '\uFF01', 'a1', 'alias', 'é', 'A', 'e'];
const BY_CODE_POINT = ['A', 'Product Viewed', 'Zip', 'a.b', 'a1', 'a_b', 'ab', 'alias', 'e', 'page', 'é', '\uFF01', '\u{1F600}'];

type Texts = { ordering_texts: { t: string } };

const compilerOf = (dialect: 'sqlite' | 'postgres') =>
  new Kysely<Texts>({
    dialect:
      dialect === 'postgres'
        ? { createAdapter: () => new PostgresAdapter(), createDriver: () => new DummyDriver(), createIntrospector: (db) => new PostgresIntrospector(db), createQueryCompiler: () => new PostgresQueryCompiler() }
        : { createAdapter: () => new SqliteAdapter(), createDriver: () => new DummyDriver(), createIntrospector: (db) => new SqliteIntrospector(db), createQueryCompiler: () => new SqliteQueryCompiler() },
  });

it('textOrder orders by the "C" collation on PostgreSQL and by BINARY on SQLite, ascending or descending', () => {
  const text = (dialect: 'sqlite' | 'postgres') => {
    const order = textOrder(dialect);
    return compilerOf(dialect).selectFrom('ordering_texts').select('t').orderBy('t', order.asc).orderBy('t', order.desc).compile().sql;
  };
  assert.equal(text('postgres'), 'select "t" from "ordering_texts" order by "t" collate "C", "t" collate "C" desc');
  assert.equal(text('sqlite'), 'select "t" from "ordering_texts" order by "t" collate "binary", "t" collate "binary" desc');
});

it('compareText orders by code point (as the UTF-8 bytes compare), not by UTF-16 code unit', () => {
  assert.deepEqual([...TEXTS].sort(compareText), BY_CODE_POINT);
  assert.deepEqual([...TEXTS].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), BY_CODE_POINT);
  assert.ok(compareText('\uFF01', '\u{1F600}') < 0 && '\uFF01' > '\u{1F600}', 'U+FF01 comes first, where < puts the surrogate pair first');
  assert.equal(compareText('ab', 'ab'), 0);
  assert.ok(compareText('ab', 'abc') < 0 && compareText('abc', 'ab') > 0);
});

describeEachDialect('textOrder on a database whose own collation is linguistic (ICU en-US on PostgreSQL)', (dialect) => {
  let env: TestEnvironment;
  let storage: Storage;
  before(async () => {
    env = await createEnvironment(dialect, { icuLocale: 'en-US' });
    storage = await openStorage({ dataDir: env.dataDir, databaseUrl: env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    await sql`CREATE TABLE ordering_texts (t text PRIMARY KEY)`.execute(storage.db);
    const db = storage.db.withTables<Texts>();
    for (const t of TEXTS) await db.insertInto('ordering_texts').values({ t }).execute();
  });
  after(async () => {
    await storage?.close();
    await env?.cleanup();
  });

  it('orders text by code point, as compareText does, both ways', async () => {
    const db = storage.db.withTables<Texts>();
    const order = textOrder(dialect);
    const up = await db.selectFrom('ordering_texts').select('t').orderBy('t', order.asc).execute();
    const down = await db.selectFrom('ordering_texts').select('t').orderBy('t', order.desc).execute();
    assert.deepEqual(up.map((r) => r.t), BY_CODE_POINT);
    assert.deepEqual(down.map((r) => r.t), [...BY_CODE_POINT].reverse());
  });

  it("is needed: the database's own collation orders the same texts linguistically on PostgreSQL", async () => {
    const plain = await storage.db.withTables<Texts>().selectFrom('ordering_texts').select('t').orderBy('t').execute();
    if (dialect === 'postgres') assert.notDeepEqual(plain.map((r) => r.t), BY_CODE_POINT, 'the test database is linguistic');
    else assert.deepEqual(plain.map((r) => r.t), BY_CODE_POINT, "SQLite's default is BINARY");
  });
});
