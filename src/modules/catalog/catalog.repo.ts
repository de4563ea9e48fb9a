import { sql, type Kysely } from 'kysely';
import { textOrder, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';
import { restated, type StatsRecord, type StatsRowKey, type StoredPath, type StoredStat } from './catalog.stats.ts';

export type CatalogTables = {
  catalog_plans: {
    version: number;
    name: string;
    hash: string;
    plan: string;
    published_at: string;
    published_by: string;
  };
  catalog_stats: {
    source: string;
    kind: string;
    event: string;
    metric: string;
    item: string;
    rule: string;
    count: number;
    updated_at: string;
  };
};

export type PlanRow = CatalogTables['catalog_plans'];
export type PlanVersionRow = Omit<PlanRow, 'plan' | 'name'>;

export const CATALOG_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0020_catalog_plans',
    async up(db) {
      await db.schema
        .createTable('catalog_plans')
        .addColumn('version', 'integer', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('plan', 'text', (c) => c.notNull())
        .addColumn('published_at', 'text', (c) => c.notNull())
        .addColumn('published_by', 'text', (c) => c.notNull())
        .execute();
    },
  },
  {
    name: '0021_catalog_stats',
    async up(db) {
      await db.schema
        .createTable('catalog_stats')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('metric', 'text', (c) => c.notNull())
        .addColumn('item', 'text', (c) => c.notNull())
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('count', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('catalog_stats_pk', ['source', 'kind', 'event', 'metric', 'item', 'rule'])
        .execute();
      await db.schema.createIndex('catalog_stats_event').on('catalog_stats').columns(['event']).execute();
    },
  },
  {
    // Rows written before counts kept key text only for plain keys and 100 paths per row across commits.
    name: '0098_catalog_stats_key_text',
    up: restateStoredStats,
  },
  {
    // Undeclared event names counted by name with digits or an at sign outside ASCII (a phone number in full-width
    // digits, `ada＠example.org`): the rule for names now reads every script's digits and at signs.
    name: '0116_catalog_stats_event_names_unicode',
    up: restateStoredStats,
  },
];

/** Rewrites the stored counts as this version keeps them (`restated`): the rows it changes are deleted and written again. */
async function restateStoredStats(db: Kysely<any>): Promise<void> { // eslint-disable-line @typescript-eslint/no-explicit-any -- a migration sees the schema of its time
  const plans = (await db.selectFrom('catalog_plans').select('plan').execute()) as { plan: string }[];
  const rows = ((await db.selectFrom('catalog_stats').selectAll().execute()) as StoredStat[]).map((r) => ({ ...r, count: Number(r.count) }));
  const keyOf = (r: StoredStat) => JSON.stringify([r.source, r.kind, r.event, r.metric, r.item, r.rule]);
  const before = new Map(rows.map((r) => [keyOf(r), r]));
  const after = new Map(restated(rows, plans.map((p) => JSON.parse(p.plan) as unknown)).map((r) => [keyOf(r), r]));
  for (const [key, r] of before) {
    if (after.get(key)?.count === r.count) continue;
    await db
      .deleteFrom('catalog_stats')
      .where('source', '=', r.source)
      .where('kind', '=', r.kind)
      .where('event', '=', r.event)
      .where('metric', '=', r.metric)
      .where('item', '=', r.item)
      .where('rule', '=', r.rule)
      .execute();
  }
  const changed = [...after].filter(([key, r]) => before.get(key)?.count !== r.count).map(([, r]) => r);
  for (let i = 0; i < changed.length; i += 100) await db.insertInto('catalog_stats').values(changed.slice(i, i + 100)).execute();
}

const VERSION_COLUMNS = ['version', 'hash', 'published_at', 'published_by'] as const;
const STATS_KEY = ['source', 'kind', 'event', 'metric', 'item', 'rule'] as const;
/** Writers that may add paths to stored rows take it on PostgreSQL ("CDSt"). */
const PG_STATS_LOCK = 0x43445374;
/** Publishers take it on PostgreSQL ("CDPl"), so that reading the latest version and inserting the next are one step. */
const PG_PLANS_LOCK = 0x4344506c;

/** Every SQL statement on catalog_plans and catalog_stats. */
export class CatalogRepo {
  readonly #db: Kysely<CatalogTables>;
  readonly #storage: Storage;
  readonly #statsTexts = new Map<number, string>();

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<CatalogTables>();
    this.#storage = storage;
  }

  latest(): Promise<PlanRow | undefined> {
    return this.#db.selectFrom('catalog_plans').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
  }

  byVersion(version: number): Promise<PlanRow | undefined> {
    return this.#db.selectFrom('catalog_plans').selectAll().where('version', '=', version).executeTakeFirst();
  }

  /** The first stored version after `version` (versions are read one at a time: a document may be large). */
  after(version: number): Promise<PlanRow | undefined> {
    return this.#db.selectFrom('catalog_plans').selectAll().where('version', '>', version).orderBy('version', 'asc').limit(1).executeTakeFirst();
  }

  async versions(): Promise<PlanVersionRow[]> {
    const rows = await this.#db.selectFrom('catalog_plans').select(VERSION_COLUMNS).orderBy('version', 'asc').execute();
    return rows.map((r) => ({ ...r, version: Number(r.version) }));
  }

  /**
   * The latest version, read in the caller's transaction after taking the publishers' lock (held until the commit on
   * PostgreSQL; SQLite's write transaction already is one at a time): no other publish can insert until this one ends.
   */
  async latestLockedIn(tx: SqlExecutor): Promise<PlanRow | undefined> {
    await this.#lockPlans(tx);
    const query = this.#db.selectFrom('catalog_plans').selectAll().orderBy('version', 'desc').limit(1).compile();
    return (await tx.all<PlanRow>(query.sql, query.parameters))[0];
  }

  /** The latest version's number, read as latestLockedIn reads it (the publishers' lock held), without its document. */
  async latestVersionLockedIn(tx: SqlExecutor): Promise<number> {
    await this.#lockPlans(tx);
    const query = this.#db.selectFrom('catalog_plans').select('version').orderBy('version', 'desc').limit(1).compile();
    return Number((await tx.all<{ version: number | string }>(query.sql, query.parameters))[0]?.version ?? 0);
  }

  /** Takes the publishers' lock on PostgreSQL, held until the commit (SQLite's write transaction already is one at a time). */
  async #lockPlans(tx: SqlExecutor): Promise<void> {
    if (this.#storage.dialect !== 'postgres') return;
    const lock = sql`select pg_advisory_xact_lock(${PG_PLANS_LOCK})`.compile(this.#db);
    await tx.all(lock.sql, lock.parameters);
  }

  /** Inserts a plan version in the caller's transaction; a version taken meanwhile fails with a unique violation. */
  async insertPlanIn(tx: SqlExecutor, row: PlanRow): Promise<void> {
    const query = this.#db.insertInto('catalog_plans').values(row).compile();
    await tx.run(query.sql, query.parameters);
  }

  /** Runs fn in one write transaction (a publish, a flush of the counts). */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#storage.raw.transaction(fn);
  }

  /**
   * The paths stored for rows, read in the writer's transaction; on PostgreSQL it first takes a lock held until the
   * commit, so that writers that may add paths to a row read and write one after the other (SQLite's write
   * transaction already does).
   */
  async storedPaths(tx: SqlExecutor, rows: readonly StatsRowKey[]): Promise<StoredPath[]> {
    if (this.#storage.dialect === 'postgres') {
      const lock = sql`select pg_advisory_xact_lock(${PG_STATS_LOCK})`.compile(this.#db);
      await tx.all(lock.sql, lock.parameters);
    }
    const out: StoredPath[] = [];
    for (let i = 0; i < rows.length; i += 100) {
      const part = rows.slice(i, i + 100);
      const query = this.#db
        .selectFrom('catalog_stats')
        .select(['source', 'kind', 'event', 'metric', 'item', 'rule'])
        .where((eb) => eb.or(part.map((r) => eb.and([eb('source', '=', r.source), eb('kind', '=', r.kind), eb('event', '=', r.event), eb('metric', '=', r.metric)]))))
        .compile();
      out.push(...(await tx.all<StoredPath>(query.sql, query.parameters)));
    }
    return out;
  }

  /** Adds counts to the stored ones on the caller's transaction (insert, or add to the existing row). */
  async addStatsIn(tx: SqlExecutor, records: readonly StatsRecord[], at: string): Promise<void> {
    for (let i = 0; i < records.length; i += 100) {
      const part = records.slice(i, i + 100);
      let text = this.#statsTexts.get(part.length);
      if (text === undefined) {
        const blank = { source: '', kind: '', event: '', metric: '', item: '', rule: '', count: 0, updated_at: '' };
        text = this.#db
          .insertInto('catalog_stats')
          .values(part.map(() => blank))
          .onConflict((oc) => oc.columns(STATS_KEY).doUpdateSet((eb) => ({ count: eb('catalog_stats.count', '+', eb.ref('excluded.count')), updated_at: eb.ref('excluded.updated_at') })))
          .compile().sql;
        this.#statsTexts.set(part.length, text);
      }
      await tx.run(text, part.flatMap((r) => [r.source, r.kind, r.event, r.metric, r.item, r.rule, r.count, at]));
    }
  }

  /**
   * Stored counts in one order on both databases, by their key (source, kind, event, metric, item, rule; by code
   * point): statsRows takes a row's paths in this order, which decides the ones it counts under OTHER past MAX_PATHS.
   */
  async stats(filter: { source?: string | undefined; event?: string | undefined }): Promise<StatsRecord[]> {
    const { asc } = textOrder(this.#storage.dialect);
    let query = this.#db.selectFrom('catalog_stats').select(['source', 'kind', 'event', 'metric', 'item', 'rule', 'count']);
    if (filter.source !== undefined) query = query.where('source', '=', filter.source);
    if (filter.event !== undefined) query = query.where('event', '=', filter.event);
    for (const column of STATS_KEY) query = query.orderBy(column, asc);
    const rows = await query.execute();
    return rows.map((r) => ({ ...r, metric: r.metric as StatsRecord['metric'], count: Number(r.count) }));
  }
}
