import { sql, type Kysely } from 'kysely';
import { randomHexPooled } from '../../shared/random.ts';
import { keepOutOfStatistics, textOrder, type DeferredTx, type ModuleMigration, type OrderModifiers, type SqlExecutor, type Storage } from '../../storage/index.ts';

/** The prefix of the id a kept reduced order gets when its person is deleted: not a profile id (prf_…), nobody's. */
export const DETACHED_PREFIX = 'gone_';

/** The field context the personal envelope of a stored event is bound to (its associated data). */
export const EVENT_DATA_CONTEXT = 'collect.events.data';

export type CollectTables = {
  /** The messageIds of the last day's stored events (migration 0113): kept by a trigger, deleted by retention. */
  collect_recent_ids: {
    source: string;
    message_id: string;
    received_at: string;
  };
  collect_events: {
    id: string;
    source: string;
    message_id: string;
    profile_id: string;
    kind: string;
    event: string | null;
    occurred_at: string;
    received_at: string;
    purposes: string;
    data: string;
    data_enc: string | null;
    plan_version: number;
    /** The sender's own time of the message, '' if it gave none (ParsedMessage.dedupAt): part of the duplicate key. */
    dedup_at: string;
  };
  collect_refusals: { day: string; source: string; event: string; purpose: string; count: number };
};

export type EventRow = CollectTables['collect_events'];

/** The most refusal-count rows one read answers. */
export const MAX_REFUSAL_ROWS = 1000;

/** The key that recognises a stored message again: `source NUL dedupAt NUL messageId`. */
export const messageKey = (source: string, dedupAt: string, messageId: string) => `${source}\u0000${dedupAt}\u0000${messageId}`;

/**
 * The duplicate key of an event stored before 0090, as the parser makes it now: '' when the sender gave no time (the
 * event then took the time it was received), otherwise its time. Not recoverable: the time a sender's originalTimestamp
 * had before Segment's clock-skew correction moved it by sentAt (docs/ingestion.md, Duplicates).
 */
const STORED_DEDUP_AT = sql`CASE WHEN occurred_at = received_at THEN '' ELSE occurred_at END`;

export const COLLECT_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0050_collect_events',
    async up(db) {
      await db.schema
        .createTable('collect_events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text', (c) => c.notNull())
        .addColumn('profile_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('event', 'text')
        .addColumn('occurred_at', 'text', (c) => c.notNull())
        .addColumn('received_at', 'text', (c) => c.notNull())
        .addColumn('purposes', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('data_enc', 'text')
        .addColumn('plan_version', 'integer', (c) => c.notNull())
        .addUniqueConstraint('collect_events_message', ['source', 'message_id'])
        .execute();
      await db.schema.createIndex('collect_events_profile').on('collect_events').columns(['profile_id', 'occurred_at']).execute();
      await db.schema
        .createTable('collect_refusals')
        .addColumn('day', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('count', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('collect_refusals_pk', ['day', 'source', 'event', 'purpose'])
        .execute();
    },
  },
  {
    // Duplicates are recognised by (source, the sender's own time, messageId) instead of (source, messageId): live
    // traffic then inserts near the end of the unique index instead of at a random place (messageIds are random
    // UUIDs), so a group commit dirties a few pages of it instead of about one per event (docs/adr/0004).
    name: '0090_collect_events_dedup_by_time',
    async up(db, dialect) {
      if (dialect === 'postgres') {
        // The old constraint goes first, so the update of every stored row does not maintain it too.
        await sql`ALTER TABLE collect_events DROP CONSTRAINT collect_events_message`.execute(db);
        await sql`ALTER TABLE collect_events ADD COLUMN dedup_at text NOT NULL DEFAULT ''`.execute(db);
        await sql`UPDATE collect_events SET dedup_at = ${STORED_DEDUP_AT}`.execute(db);
        await sql`ALTER TABLE collect_events ALTER COLUMN dedup_at DROP DEFAULT`.execute(db);
        await sql`ALTER TABLE collect_events ADD CONSTRAINT collect_events_message UNIQUE (source, dedup_at, message_id)`.execute(db);
        return;
      }
      // SQLite cannot drop a table's UNIQUE constraint: the table is built again with the new one.
      await db.schema
        .createTable('collect_events_next')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text', (c) => c.notNull())
        .addColumn('profile_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('event', 'text')
        .addColumn('occurred_at', 'text', (c) => c.notNull())
        .addColumn('received_at', 'text', (c) => c.notNull())
        .addColumn('purposes', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('data_enc', 'text')
        .addColumn('plan_version', 'integer', (c) => c.notNull())
        .addColumn('dedup_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('collect_events_message', ['source', 'dedup_at', 'message_id'])
        .execute();
      // The columns as they were then, written out: a migration must not change when the live schema does.
      const kept = sql.join(['id', 'source', 'message_id', 'profile_id', 'kind', 'event', 'occurred_at', 'received_at', 'purposes', 'data', 'data_enc', 'plan_version'].map((c) => sql.ref(c)));
      await sql`INSERT INTO collect_events_next (${kept}, dedup_at) SELECT ${kept}, ${STORED_DEDUP_AT} FROM collect_events ORDER BY id`.execute(db);
      await db.schema.dropTable('collect_events').execute();
      await sql`ALTER TABLE collect_events_next RENAME TO collect_events`.execute(db);
      await db.schema.createIndex('collect_events_profile').on('collect_events').columns(['profile_id', 'occurred_at']).execute();
      await db.schema.createIndex('collect_events_occurred').on('collect_events').columns(['occurred_at', 'id']).execute();
    },
  },
  {
    // 0090 as first released keyed every stored event by its time, also those whose sender gave none (the parser keys
    // those by ''): their retries, and re-imported CSV rows, were stored again. Events received before 0090 ran that
    // took the time they were received get '' — unless a retry already stored since holds that key (it stays the
    // event's second copy, and the older one keeps its time).
    name: '0103_collect_events_dedup_repair',
    async up(db) {
      const ran = (await sql<{ timestamp: string }>`SELECT "timestamp" FROM storage_migrations WHERE name = '0090_collect_events_dedup_by_time'`.execute(db)).rows[0]?.timestamp;
      if (ran === undefined) return;
      await sql`UPDATE collect_events SET dedup_at = ''
        WHERE dedup_at = occurred_at AND occurred_at = received_at AND received_at < ${ran}
          AND NOT EXISTS (SELECT 1 FROM collect_events AS later WHERE later.source = collect_events.source AND later.dedup_at = '' AND later.message_id = collect_events.message_id)`.execute(db);
    },
  },
  {
    // A messageId a source stored in the last day is a duplicate whatever its time (docs/ingestion.md, Duplicates):
    // senders that set their own messageId to make a call idempotent get a new timestamp from the client library on
    // every call. A trigger keeps the ids of the events it inserts and skips an event whose id is kept already, for
    // every insert (ingestion, imports), as a duplicate on the table's own key is skipped (not returned, not counted).
    // The retention sweep deletes ids older than the window (collect.recent_ids).
    name: '0113_collect_recent_message_ids',
    async up(db, dialect) {
      await db.schema
        .createTable('collect_recent_ids')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text', (c) => c.notNull())
        .addColumn('received_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('collect_recent_ids_pk', ['source', 'message_id'])
        .modifyEnd(dialect === 'sqlite' ? sql`WITHOUT ROWID` : sql``)
        .execute();
      await db.schema.createIndex('collect_recent_ids_received').on('collect_recent_ids').columns(['received_at']).execute();
      if (dialect === 'postgres') {
        await sql`CREATE FUNCTION collect_events_recent_id() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            -- The very same message again: skipped by the table's own key, without keeping its id once more.
            IF EXISTS (SELECT 1 FROM collect_events WHERE source = NEW.source AND dedup_at = NEW.dedup_at AND message_id = NEW.message_id) THEN RETURN NULL; END IF;
            -- Kept here, before the row: a transaction inserting the same id waits for this one, then skips its row.
            INSERT INTO collect_recent_ids (source, message_id, received_at) VALUES (NEW.source, NEW.message_id, NEW.received_at) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN RETURN NULL; END IF;
            RETURN NEW;
          END $$`.execute(db);
        await sql`CREATE TRIGGER collect_events_recent_id BEFORE INSERT ON collect_events FOR EACH ROW EXECUTE FUNCTION collect_events_recent_id()`.execute(db);
      } else {
        await sql`CREATE TRIGGER collect_events_recent_id BEFORE INSERT ON collect_events
          WHEN EXISTS (SELECT 1 FROM collect_recent_ids WHERE source = NEW.source AND message_id = NEW.message_id)
          BEGIN SELECT RAISE(IGNORE); END`.execute(db);
        await sql`CREATE TRIGGER collect_events_recent_id_kept AFTER INSERT ON collect_events
          BEGIN INSERT INTO collect_recent_ids (source, message_id, received_at) VALUES (NEW.source, NEW.message_id, NEW.received_at) ON CONFLICT DO NOTHING; END`.execute(db);
      }
      // The ids of the last day's events, so the window holds from the upgrade on.
      const since = new Date(Date.now() - 86_400_000).toISOString();
      await sql`INSERT INTO collect_recent_ids (source, message_id, received_at) SELECT source, message_id, max(received_at) FROM collect_events WHERE received_at >= ${since} GROUP BY source, message_id`.execute(db);
    },
  },
  {
    // ANALYZE copies sample values into pg_statistic, readable through pg_stats and kept after their rows are deleted:
    // none of the events' sealed personal parts (keepOutOfStatistics).
    name: '0123_collect_events_no_statistics',
    async up(db, dialect) {
      await keepOutOfStatistics(db, dialect, 'collect_events', ['data_enc']);
    },
  },
];

/** A row of blanks: its keys give the column order of the compiled insert, and so of its parameters. */
const blankEvent: EventRow = {
  id: '', source: '', message_id: '', profile_id: '', kind: '', event: null, occurred_at: '', received_at: '', purposes: '', data: '', data_enc: null, plan_version: 0, dedup_at: '',
};
const EVENT_COLUMNS = Object.keys(blankEvent) as (keyof EventRow)[];

/** The parameters of a multi-row insert of `rows`, in column order, in one array (no array per row). */
function eventParams(rows: readonly EventRow[]): unknown[] {
  const params: unknown[] = new Array(rows.length * EVENT_COLUMNS.length);
  let i = 0;
  for (const r of rows) for (const column of EVENT_COLUMNS) params[i++] = r[column];
  return params;
}

/** Every SQL statement on the collect tables; hot-path statements compiled once per batch size. */
export class CollectRepo {
  readonly #db: Kysely<CollectTables>;
  readonly #insert = new Map<number, string>();
  readonly #refusalSql: string;
  readonly #byText: OrderModifiers;

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<CollectTables>();
    this.#byText = textOrder(storage.dialect).asc;
    this.#refusalSql = this.#db
      .insertInto('collect_refusals')
      .values({ day: '', source: '', event: '', purpose: '', count: 0 })
      .onConflict((oc) => oc.columns(['day', 'source', 'event', 'purpose']).doUpdateSet((eb) => ({ count: eb('collect_refusals.count', '+', eb.ref('excluded.count')) })))
      .compile().sql;
  }

  #insertText(n: number, returning: boolean): string {
    const key = returning ? n : -n;
    let text = this.#insert.get(key);
    if (!text) {
      const insert = this.#db
        .insertInto('collect_events')
        .values(Array.from({ length: n }, () => blankEvent))
        .onConflict((oc) => oc.columns(['source', 'dedup_at', 'message_id']).doNothing());
      text = returning ? insert.returning(['source', 'dedup_at', 'message_id']).compile().sql : insert.compile().sql;
      this.#insert.set(key, text);
    }
    return text;
  }

  /**
   * Inserts events (distinct message keys among themselves); one already stored is skipped by the database. Returns
   * the message keys (`messageKey`) that were inserted.
   */
  async insertEvents(tx: SqlExecutor | DeferredTx, rows: readonly EventRow[]): Promise<Set<string>> {
    const inserted = new Set<string>();
    for (let i = 0; i < rows.length; i += 100) {
      const part = rows.slice(i, i + 100);
      const params = eventParams(part);
      if ('expect' in tx) {
        // Deferred: every row must be new, or the whole transaction rolls back (DeferredConflict) and the caller
        // stores the group again the usual way, which tells the duplicates apart.
        tx.expect(this.#insertText(part.length, false), params, part.length);
        for (const r of part) inserted.add(messageKey(r.source, r.dedup_at, r.message_id));
        continue;
      }
      for (const row of await tx.all<{ source: string; dedup_at: string; message_id: string }>(this.#insertText(part.length, true), params)) {
        inserted.add(messageKey(row.source, row.dedup_at, row.message_id));
      }
    }
    return inserted;
  }

  async addRefusals(tx: SqlExecutor, counts: ReadonlyMap<string, number>): Promise<void> {
    for (const [key, count] of counts) {
      const [day, source, event, purpose] = key.split('\u0000') as [string, string, string, string];
      await tx.run(this.#refusalSql, [day, source, event, purpose, count]);
    }
  }

  /** Refusal counts, newest day first, then by source, event and purpose (by code point); at most MAX_REFUSAL_ROWS. */
  refusals(filter: { source?: string | undefined; since?: string | undefined }): Promise<CollectTables['collect_refusals'][]> {
    let q = this.#db.selectFrom('collect_refusals').selectAll();
    if (filter.source) q = q.where('source', '=', filter.source);
    if (filter.since) q = q.where('day', '>=', filter.since);
    return q.orderBy('day', 'desc').orderBy('source', this.#byText).orderBy('event', this.#byText).orderBy('purpose', this.#byText).limit(MAX_REFUSAL_ROWS).execute();
  }

  /**
   * The latest `limit` events of these profiles, newest first: by event time, then time received, then id (ids grow
   * with the time they were made), so events of one instant come in one order on both databases, and `limit` cuts it.
   */
  eventsOf(profileIds: readonly string[], limit: number): Promise<EventRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db
      .selectFrom('collect_events')
      .selectAll()
      .where('profile_id', 'in', profileIds)
      .orderBy('occurred_at', 'desc')
      .orderBy('received_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }

  /** Every event of these profiles, oldest first (an access archive). */
  allEventsOf(profileIds: readonly string[]): Promise<EventRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db.selectFrom('collect_events').selectAll().where('profile_id', 'in', [...profileIds]).orderBy('occurred_at').orderBy('id').execute();
  }

  /**
   * The track events named `event` of these profiles that happened at `since` or later and do not serve exactly
   * `purposes` (orders not reduced yet, for a deletion that reduces them first), in the transaction.
   */
  async eventsNotServingOnly(tx: SqlExecutor, profileIds: readonly string[], event: string, purposes: string, since: string): Promise<Pick<EventRow, 'id' | 'data'>[]> {
    const rows: Pick<EventRow, 'id' | 'data'>[] = [];
    for (let i = 0; i < profileIds.length; i += 256) {
      const compiled = this.#db
        .selectFrom('collect_events')
        .select(['id', 'data'])
        .where('profile_id', 'in', profileIds.slice(i, i + 256))
        .where('kind', '=', 'track')
        .where('event', '=', event)
        .where('purposes', '<>', purposes)
        .where('occurred_at', '>=', since)
        .compile();
      rows.push(...(await tx.all<Pick<EventRow, 'id' | 'data'>>(compiled.sql, compiled.parameters)));
    }
    return rows;
  }

  /** Rewrites a stored event's plain part and purposes and drops its personal envelope, in the transaction. */
  async rewritePlain(tx: SqlExecutor, id: string, data: string, purposes: string): Promise<void> {
    const compiled = this.#db.updateTable('collect_events').set({ data, data_enc: null, purposes }).where('id', '=', id).compile();
    await tx.run(compiled.sql, compiled.parameters);
  }

  /**
   * Deletes the events of these profiles inside the caller's transaction; returns how many. With `keep`, events of
   * that name stored for exactly those purposes stay (their personal part, if any, is dropped): `kept` counts them.
   */
  async deleteEventsOf(tx: SqlExecutor, profileIds: readonly string[], keep?: { event: string; purposes: string }): Promise<{ deleted: number; kept: number }> {
    let deleted = 0;
    let kept = 0;
    for (let i = 0; i < profileIds.length; i += 256) {
      const ids = profileIds.slice(i, i + 256);
      // Their messageIds kept for duplicate detection go too (a sender may have put something of the person in one).
      const messages = this.#db.selectFrom('collect_events').select(['source', 'message_id']).where('profile_id', 'in', ids).compile();
      const forget = this.#db.deleteFrom('collect_recent_ids').where('source', '=', '').where('message_id', '=', '').compile().sql;
      for (const m of await tx.all<{ source: string; message_id: string }>(messages.sql, messages.parameters)) await tx.run(forget, [m.source, m.message_id]);
      let del = this.#db.deleteFrom('collect_events').where('profile_id', 'in', ids);
      if (keep) del = del.where((eb) => eb.or([eb('event', 'is', null), eb('event', '<>', keep.event), eb('purposes', '<>', keep.purposes)]));
      const compiled = del.compile();
      deleted += await tx.run(compiled.sql, compiled.parameters);
      if (!keep) continue;
      const drop = this.#db.updateTable('collect_events').set({ data_enc: null }).where('profile_id', 'in', ids).where('data_enc', 'is not', null).compile();
      await tx.run(drop.sql, drop.parameters);
      // Each kept order is detached from the person: its own new, wholly random id instead of the deleted profile's
      // (no time or sequence in it, which would group one person's orders and date them to the deletion's audit
      // entry), so the kept records neither group one person's orders together nor join the ledger's pseudonym.
      const left = this.#db.selectFrom('collect_events').select('id').where('profile_id', 'in', ids).compile();
      const detach = this.#db.updateTable('collect_events').set({ profile_id: '' }).where('id', '=', '').compile().sql;
      for (const row of await tx.all<{ id: string }>(left.sql, left.parameters)) {
        await tx.run(detach, [`${DETACHED_PREFIX}${randomHexPooled(16)}`, row.id]);
        kept++;
      }
    }
    return { deleted, kept };
  }

  /**
   * Events of one name stored for a purpose (plain part only, with the plan version each was stored under: which of
   * its fields the purpose may read), for purpose-bound reads by jobs; by profile, time and id (code point order).
   */
  purposeBoundEvents(profileIds: readonly string[], event: string, purpose: string): Promise<Pick<EventRow, 'profile_id' | 'occurred_at' | 'data' | 'plan_version'>[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db
      .selectFrom('collect_events')
      .select(['profile_id', 'occurred_at', 'data', 'plan_version'])
      .where('profile_id', 'in', profileIds)
      .where('kind', '=', 'track')
      .where('event', '=', event)
      .where('purposes', 'like', `%${JSON.stringify(purpose)}%`)
      // Models fitted on what jobs read depend on its order (seeded k-means++ over customers in the order first read,
      // sums in row order): the same rows come in the same order on both databases, whatever their collation or the
      // table's physical order (a copy, a restore, VACUUM FULL). SQLite's index serves all but the id; PostgreSQL sorts.
      .orderBy('profile_id', this.#byText)
      .orderBy('occurred_at', this.#byText)
      .orderBy('id', this.#byText)
      .execute();
  }

  /** Page views and product views stored for a purpose (times only), for behavioural features; as purposeBoundEvents orders them. */
  purposeBoundActivity(profileIds: readonly string[], purpose: string): Promise<Pick<EventRow, 'profile_id' | 'occurred_at' | 'kind'>[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db
      .selectFrom('collect_events')
      .select(['profile_id', 'occurred_at', 'kind'])
      .where('profile_id', 'in', profileIds)
      .where((eb) => eb.or([eb('kind', '=', 'page'), eb.and([eb('kind', '=', 'track'), eb('event', '=', 'Product Viewed')])]))
      .where('purposes', 'like', `%${JSON.stringify(purpose)}%`)
      .orderBy('profile_id', this.#byText)
      .orderBy('occurred_at', this.#byText)
      .orderBy('id', this.#byText)
      .execute();
  }

  /**
   * Of these messages, the keys (`messageKey`) of those an insert now would skip as duplicates: the same key stored,
   * or the same source and message id among the recent ids (read only, as the insert's trigger reads them).
   */
  async storedKeys(messages: readonly { source: string; dedupAt: string; messageId: string }[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (let i = 0; i < messages.length; i += 100) {
      const part = messages.slice(i, i + 100);
      const stored = await this.#db
        .selectFrom('collect_events')
        .select(['source', 'dedup_at', 'message_id'])
        .where((eb) => eb.or(part.map((m) => eb.and([eb('source', '=', m.source), eb('dedup_at', '=', m.dedupAt), eb('message_id', '=', m.messageId)]))))
        .execute();
      for (const r of stored) found.add(messageKey(r.source, r.dedup_at, r.message_id));
      const recent = await this.#db
        .selectFrom('collect_recent_ids')
        .select(['source', 'message_id'])
        .where((eb) => eb.or(part.map((m) => eb.and([eb('source', '=', m.source), eb('message_id', '=', m.messageId)]))))
        .execute();
      const kept = new Set(recent.map((r) => `${r.source}\u0000${r.message_id}`));
      for (const m of part) if (kept.has(`${m.source}\u0000${m.messageId}`)) found.add(messageKey(m.source, m.dedupAt, m.messageId));
    }
    return found;
  }

  async countEvents(): Promise<number> {
    const row = await this.#db.selectFrom('collect_events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
