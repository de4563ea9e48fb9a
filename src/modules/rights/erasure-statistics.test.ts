import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { it } from 'node:test';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel, useUpgradedKernel } from '../../../test/support/kernel.ts';
import { ingestPerson, person, sendMessages } from '../../../test/support/subjects.ts';
import { describeCompact } from '../../cli/compact.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { SQLITE_FILE } from '../../storage/index.ts';

/** The columns that hold key material or ciphertexts: PostgreSQL must keep no sample of them in pg_statistic. */
const SEALED_COLUMNS = [
  ['crypto_subject_keys', 'wrapped_key'],
  ['consent_signing_keys', 'private_key'],
  ['profiles_traits', 'value'],
  ['profiles_trait_history', 'value'],
  ['profiles_trait_history', 'previous_value'],
  ['collect_events', 'data_enc'],
  ['rights_requests', 'email'],
  ['rights_requests', 'payload'],
] as const;

/** A field ciphertext anywhere in a text: `c1.<key id>.<key version>.` */
const CIPHERTEXT = /c1\.[0-9a-f]{32}\.\d+\./;

/** Every value PostgreSQL's planner statistics hold for the tables of the current schema (or these), as text. */
async function statistics(db: Kysely<object>, tables?: readonly string[]): Promise<{ table: string; column: string; values: string }[]> {
  const { rows } = await sql<{ table: string; column: string; values: string }>`
    SELECT tablename AS table, attname AS column,
      concat_ws(' ', most_common_vals::text, histogram_bounds::text, most_common_elems::text) AS values
    FROM pg_stats WHERE schemaname = current_schema() ${tables ? sql`AND tablename = ANY(${[...tables]})` : sql``}
    ORDER BY tablename, attname`.execute(db);
  return rows;
}

/** The tables of the current schema and columns whose statistics hold `value`. */
async function holding(db: Kysely<object>, value: string, tables?: readonly string[]): Promise<string[]> {
  return (await statistics(db, tables)).filter((s) => s.values.includes(value)).map((s) => `${s.table}.${s.column}`);
}

/** The tables an erasure's certificate names as having deleted rows from. */
const deletedFrom = (stores: readonly { store: string; deleted: number }[]) => [...new Set(stores.filter((s) => s.deleted > 0).map((s) => s.store))];

const canonical = async (kernel: Kernel, userId: string) => (await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: userId } }))?.profileId ?? '';

describeEachDialect('planner statistics and deleted people', (dialect) => {
  const ctx = useKernel(dialect);
  const pgOnly = dialect !== 'postgres' && 'PostgreSQL keeps samples of column values in pg_statistic; SQLite: below';
  const lite = dialect !== 'sqlite' && 'a SQLite matter';
  const analyze = () => ctx.kernel.storage.raw.run('ANALYZE');

  it('PostgreSQL: keeps key material and ciphertexts out of pg_stats, even after ANALYZE', { skip: pgOnly, timeout: 120_000 }, async () => {
    const { kernel } = ctx;
    for (let i = 0; i < 24; i++) assert.ok((await ingestPerson(kernel, person(`stats${i}`), 3)).every((r) => r.status === 'stored'));
    // New addresses: the traits' history holds ciphertexts as the value and as the previous value.
    const changed = await sendMessages(kernel, Array.from({ length: 12 }, (_, i) => ({ type: 'identify', messageId: `stats-moved-${i}`, userId: person(`stats${i}`).userId, traits: { email: `moved.${i}.stats@quillmail.org` } })));
    assert.ok(changed.every((r) => r.status === 'stored'), JSON.stringify(changed));
    // Rights requests: their address and their changes are sealed.
    for (let i = 12; i < 20; i++) await kernel.rights.start({ type: 'rectification', email: person(`stats${i}`).email, changes: [{ key: 'first_name', value: `Renamed${i}` }], client: `10.9.0.${i}` });
    await kernel.rights.settled();
    const sealed = await sql<{ n: number }>`SELECT count(*)::int AS n FROM rights_requests WHERE email IS NOT NULL AND payload IS NOT NULL`.execute(kernel.storage.db);
    assert.equal(sealed.rows[0]?.n, 8);
    await analyze();

    const stats = await statistics(kernel.storage.db);
    assert.ok(stats.some((s) => s.table === 'collect_events' && s.column === 'profile_id'), 'ANALYZE gathered statistics');
    const kept = SEALED_COLUMNS.filter(([table, column]) => stats.some((s) => s.table === table && s.column === column)).map(([t, c]) => `${t}.${c}`);
    assert.deepEqual(kept, [], 'no statistics of a column holding key material or ciphertexts');
    assert.deepEqual(stats.filter((s) => CIPHERTEXT.test(s.values)).map((s) => `${s.table}.${s.column}`), [], 'no ciphertext in any statistics');
    const wrapped = (await sql<{ key: string }>`SELECT wrapped_key AS key FROM crypto_subject_keys`.execute(kernel.storage.db)).rows.map((r) => r.key);
    assert.ok(wrapped.length >= 24);
    assert.deepEqual(stats.filter((s) => wrapped.some((w) => s.values.includes(w))).map((s) => `${s.table}.${s.column}`), [], 'no wrapped data key in any statistics');
    const targets = await sql<{ column: string; target: number }>`
      SELECT c.relname || '.' || a.attname AS column, a.attstattarget AS target FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND a.attstattarget = 0 ORDER BY 1`.execute(kernel.storage.db);
    assert.deepEqual(targets.rows.map((r) => r.column), SEALED_COLUMNS.map(([t, c]) => `${t}.${c}`).sort());
  });

  it('PostgreSQL: an erasure renews the statistics of the tables it deleted from, so pg_stats holds nothing of the erased person, nor after candor compact', { skip: pgOnly, timeout: 120_000 }, async () => {
    const { kernel } = ctx;
    const ada = person('statsada');
    assert.ok((await ingestPerson(kernel, ada, 8)).every((r) => r.status === 'stored'));
    const profileId = await canonical(kernel, ada.userId);
    // As the server's start-up refresh or autovacuum would: the person's values are sampled.
    await analyze();
    assert.ok((await holding(kernel.storage.db, profileId)).includes('collect_events.profile_id'), 'the person is in the statistics before the erasure');

    const subject = await kernel.erasure.findSubject({ profileId });
    assert.ok(subject);
    const certificate = await kernel.erasure.erase(subject, { requestId: 'req-stats-ada' }, CLI_ACTOR);
    assert.equal(certificate.status, 'complete');
    const tables = deletedFrom(certificate.stores);
    assert.ok(tables.includes('collect_events') && tables.includes('crypto_subject_keys') && tables.includes('identity_identifiers'), JSON.stringify(tables));
    assert.deepEqual(await holding(kernel.storage.db, profileId, tables), [], 'the profile id');
    assert.deepEqual(await holding(kernel.storage.db, ada.productId, tables), [], 'the plain product id of their events');
    assert.match(certificate.stores.find((s) => s.module === 'storage')?.detail ?? '', /planner statistics/);

    const compacted = await kernel.erasure.compact(CLI_ACTOR);
    assert.ok(compacted.tables.some((t) => t.table === 'collect_events'));
    assert.deepEqual(await holding(kernel.storage.db, profileId, tables), [], 'the profile id, after compact');
  });

  it('PostgreSQL: candor compact renews the statistics of the tables it rewrites (rows deleted without a renewal: an erasure by an older release)', { skip: pgOnly, timeout: 120_000 }, async () => {
    const { kernel } = ctx;
    const bea = person('statsbea');
    assert.ok((await ingestPerson(kernel, bea, 8)).every((r) => r.status === 'stored'));
    const profileId = await canonical(kernel, bea.userId);
    await analyze();
    await kernel.storage.raw.run('DELETE FROM collect_events WHERE profile_id = $1', [profileId]);
    assert.ok((await holding(kernel.storage.db, profileId)).includes('collect_events.profile_id'), 'a deletion alone leaves the statistics as they were');
    const catalogFile = () => kernel.storage.raw.all<{ file: number }>("SELECT pg_relation_filenode('pg_catalog.pg_statistic') AS file");
    const [fileBefore] = await catalogFile();
    const compacted = await kernel.erasure.compact(CLI_ACTOR);
    assert.ok(compacted.tables.some((t) => t.table === 'collect_events'));
    assert.deepEqual(await holding(kernel.storage.db, profileId, ['collect_events']), []);
    // The tests' role is a superuser: the statistics rows ANALYZE replaced leave pg_statistic's file with it.
    assert.equal(compacted.statisticsCatalog, 'rewritten');
    assert.notEqual((await catalogFile())[0]?.file, fileBefore?.file);
    assert.match(describeCompact(compacted).join('\n'), /pg_statistic rewritten/);
    assert.match(describeCompact({ ...compacted, statisticsCatalog: 'not_allowed' }).join('\n'), /pg_statistic was not rewritten \(only a superuser may\)/);

    // A transaction that read pg_stats holds the catalog: compact waits a second for it, not until it ends.
    const reader = new pg.Client({ connectionString: ctx.env.databaseUrl });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM pg_stats');
      const started = Date.now();
      const held = await kernel.erasure.compact(CLI_ACTOR);
      assert.equal(held.statisticsCatalog, 'busy');
      assert.ok(Date.now() - started < 20_000);
      assert.match(describeCompact(held).join('\n'), /pg_statistic was not rewritten: a session held it for more than 1 s/);
    } finally {
      await reader.query('COMMIT').catch(() => undefined);
      await reader.end();
    }
  });

  it('PostgreSQL: a retention sweep that deletes an inactive person renews the statistics of the tables it deleted from', { skip: pgOnly, timeout: 120_000 }, async () => {
    const { kernel } = ctx;
    const userId = 'u-stats-inactive';
    const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = resolved?.profileId ?? '';
    const longAgo = new Date(Date.now() - 30 * 30 * 86_400_000).toISOString();
    await kernel.storage.raw.transaction((tx) => kernel.profiles.recordActivityBatch(tx, [{ profileId, at: longAgo, receivedAt: longAgo, kind: 'track' }]));
    await analyze();
    assert.ok((await holding(kernel.storage.db, profileId)).includes('profiles_computed.profile_id'), 'the person is in the statistics before the sweep');
    const report = await kernel.retention.sweep({ now: new Date() });
    assert.equal(report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0), 1);
    const tables = [...new Set(report.counts.filter((c) => c.count > 0).map((c) => c.store.split('.')[0] ?? ''))];
    assert.ok(tables.includes('profiles_computed') && tables.includes('identity_profiles'), JSON.stringify(tables));
    assert.deepEqual(await holding(kernel.storage.db, profileId, [...tables, 'crypto_subject_keys']), []);
  });

  it('SQLite: Candor’s SQLite keeps no sample of any value (node:sqlite is built without STAT4)', { skip: lite }, async () => {
    await analyze();
    const stat = await ctx.kernel.storage.raw.all<{ name: string }>("SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%' ORDER BY name");
    assert.deepEqual(stat.map((r) => r.name), ['sqlite_stat1'], 'row counts per index, no values');
    const options = await ctx.kernel.storage.raw.all<{ compile_options: string }>('PRAGMA compile_options');
    assert.ok(!options.some((o) => o.compile_options.includes('STAT4')));
  });

  it('SQLite: an erasure deletes what sqlite_stat4 (written by another SQLite build) holds of the tables it deleted from', { skip: lite, timeout: 60_000 }, async () => {
    const env = await createEnvironment('sqlite');
    const cid = person('statscid');
    let kernel = await openKernel(env.config);
    try {
      assert.ok((await ingestPerson(kernel, cid, 3)).every((r) => r.status === 'stored'));
      const profileId = await canonical(kernel, cid.userId);
      await kernel.close();
      // What ANALYZE by a SQLite built with SQLITE_ENABLE_STAT4 leaves: samples of index keys, the person's among them.
      const file = new DatabaseSync(join(env.dataDir, SQLITE_FILE), { defensive: false });
      try {
        file.exec('CREATE TABLE stat4_probe (tbl, idx, neq, nlt, ndlt, sample)');
        const sample = file.prepare('INSERT INTO stat4_probe VALUES (?, ?, ?, ?, ?, ?)');
        sample.run('collect_events', 'collect_events_profile', '1 1', '0 0', '0 0', Buffer.from(`\u0003${profileId}`));
        sample.run('catalog_plans', 'catalog_plans_pkey', '1', '0', '0', Buffer.from('\u0001\u0001'));
        file.exec('PRAGMA writable_schema = ON');
        file.exec("UPDATE sqlite_schema SET name = 'sqlite_stat4', tbl_name = 'sqlite_stat4', sql = replace(sql, 'stat4_probe', 'sqlite_stat4') WHERE name = 'stat4_probe'");
        file.exec('PRAGMA writable_schema = OFF');
      } finally {
        file.close();
      }
      kernel = await openKernel(env.config);
      const subject = await kernel.erasure.findSubject({ profileId });
      assert.ok(subject);
      const certificate = await kernel.erasure.erase(subject, { requestId: 'req-stats-cid' }, CLI_ACTOR);
      assert.equal(certificate.status, 'complete');
      const left = await kernel.storage.raw.all<{ tbl: string }>('SELECT tbl FROM sqlite_stat4 ORDER BY tbl');
      assert.deepEqual(left.map((r) => r.tbl), ['catalog_plans'], 'the samples of tables the erasure did not delete from stay');
    } finally {
      await kernel.close();
      await env.cleanup();
    }
  });
});

describeEachDialect('planner statistics of a database an older release left', (dialect) => {
  const before = { files: new Map<string, number>(), sampled: [] as string[] };
  const ctx = useUpgradedKernel(dialect, '0120_crypto_subject_keys_no_statistics', async (db) => {
    if (dialect !== 'postgres') return;
    await sql`INSERT INTO crypto_subject_keys SELECT 'prf_' || g, md5(g::text), 1, 1, encode(sha256(g::text::bytea), 'base64'), now()::text FROM generate_series(1, 300) g`.execute(db);
    await sql`INSERT INTO profiles_traits SELECT 'prf_' || g, 'email', 'c1.' || md5(g::text) || '.1.' || md5((g * 7)::text), 1, 'user.contact.email', now()::text, 'web', NULL FROM generate_series(1, 300) g`.execute(db);
    await sql`ANALYZE crypto_subject_keys`.execute(db);
    await sql`ANALYZE profiles_traits`.execute(db);
    before.sampled = (await statistics(db, ['crypto_subject_keys', 'profiles_traits'])).filter((s) => s.column === 'wrapped_key' || s.column === 'value').map((s) => `${s.table}.${s.column}`);
    const files = await sql<{ name: string; file: number }>`
      SELECT relname AS name, relfilenode AS file FROM pg_class
      WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'i')`.execute(db);
    for (const r of files.rows) before.files.set(r.name, Number(r.file));
  });

  it('PostgreSQL: the migration drops the statistics already gathered for those columns, without rewriting a table or an index', { skip: dialect !== 'postgres' && 'no planner statistics of values on SQLite' }, async () => {
    assert.deepEqual(before.sampled, ['crypto_subject_keys.wrapped_key', 'profiles_traits.value'], 'the older release had them sampled');
    const db = ctx.kernel.storage.db;
    assert.deepEqual(await statistics(db, ['crypto_subject_keys', 'profiles_traits']).then((s) => s.filter((x) => x.column === 'wrapped_key' || x.column === 'value')), []);
    await sql`ANALYZE`.execute(db);
    const stats = await statistics(db);
    assert.ok(stats.some((s) => s.table === 'crypto_subject_keys' && s.column === 'subject_id'), 'other columns are sampled as before');
    assert.deepEqual(stats.filter((s) => CIPHERTEXT.test(s.values)).map((s) => `${s.table}.${s.column}`), []);
    const files = await sql<{ name: string; file: number }>`
      SELECT relname AS name, relfilenode AS file FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'i')`.execute(db);
    const rewritten = files.rows.filter((r) => before.files.has(r.name) && before.files.get(r.name) !== Number(r.file)).map((r) => r.name);
    assert.deepEqual(rewritten, [], 'no table or index was rewritten');
  });
});
