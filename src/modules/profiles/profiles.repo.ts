import { sql, type Kysely } from 'kysely';
import { keepOutOfStatistics, StatementTexts, textOrder, type ModuleMigration, type OrderModifiers, type SqlExecutor, type Storage } from '../../storage/index.ts';
import { bucket, chunkSizes, padded } from '../../storage/batching.ts';

/** Traits (current value per key), their append-only history, and computed traits per profile. */
export type ProfilesTables = {
  profiles_traits: {
    profile_id: string;
    key: string;
    /** JSON text, or a field ciphertext of the JSON text when encrypted = 1 */
    value: string;
    encrypted: number;
    category: string;
    updated_at: string;
    source: string;
    message_id: string | null;
  };
  profiles_trait_history: {
    id: string;
    profile_id: string;
    key: string;
    changed_at: string;
    value: string;
    encrypted: number;
    /** null when the trait had no value before */
    previous_value: string | null;
    previous_encrypted: number | null;
    /**
     * When the previous value was last set (its profiles_traits.updated_at then), the clock of its retention: null
     * with the previous value, which the trait's retention sweep clears once this time is past the trait's period.
     */
    previous_updated_at: string | null;
    category: string;
    source: string;
    message_id: string | null;
  };
  profiles_computed: {
    profile_id: string;
    first_seen_at: string;
    last_seen_at: string;
    event_count: number;
    /** every `Order Completed` */
    order_count: number;
    /** the orders whose value is in total_order_value: priced, in the profile's currency or naming none */
    priced_order_count: number;
    total_order_value: number;
    /** the currency of the first priced order that named one; revenue in another is not added */
    currency: string | null;
    /**
     * When Candor received that first priced order naming a currency (null while the profile has no currency, and
     * for profiles that had one before migration 0111: unknown): of a merged person's members, the one whose currency
     * came first gives the person's.
     */
    currency_at: string | null;
    /**
     * The place of that order among the messages Candor received at currency_at (its position in its request), which
     * orders the currencies of members received in one request: null with currency_at, and for profiles that had a
     * currency before migration 0112 (counted as the first of their time).
     */
    currency_position: number | null;
    /**
     * When Candor last received activity of the profile (the receipt of an event; a consent change the inactivity
     * sweep found), whatever time the sender gave: with last_seen_at, the clock of the inactivity rule.
     */
    last_received_at: string;
    /**
     * The day (UTC) of the later of last_seen_at and last_received_at, what the inactivity sweep's index holds: it
     * changes at most once a day per person, so the index is not rewritten at every event as an index on an instant
     * would be.
     */
    last_active_day: string;
  };
};

export type TraitRow = ProfilesTables['profiles_traits'];
export type HistoryRow = ProfilesTables['profiles_trait_history'];
export type ComputedRow = ProfilesTables['profiles_computed'];
/** A batch's activity for one profile, as added to its computed traits (the day of the last activity is derived). */
export type ComputedActivity = Omit<ComputedRow, 'last_active_day'>;

export const PROFILES_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0040_profiles_traits',
    async up(db) {
      await db.schema
        .createTable('profiles_traits')
        .addColumn('profile_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('encrypted', 'integer', (c) => c.notNull())
        .addColumn('category', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text')
        .addPrimaryKeyConstraint('profiles_traits_pk', ['profile_id', 'key'])
        .execute();
      await db.schema
        .createTable('profiles_trait_history')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('profile_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('changed_at', 'text', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('encrypted', 'integer', (c) => c.notNull())
        .addColumn('previous_value', 'text')
        .addColumn('previous_encrypted', 'integer')
        .addColumn('category', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text')
        .execute();
      await db.schema.createIndex('profiles_trait_history_profile').on('profiles_trait_history').columns(['profile_id', 'key', 'changed_at']).execute();
      await db.schema
        .createTable('profiles_computed')
        .addColumn('profile_id', 'text', (c) => c.primaryKey())
        .addColumn('first_seen_at', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text', (c) => c.notNull())
        .addColumn('event_count', 'bigint', (c) => c.notNull())
        .addColumn('order_count', 'bigint', (c) => c.notNull())
        .addColumn('total_order_value', 'real', (c) => c.notNull())
        .addColumn('currency', 'text')
        .execute();
    },
  },
  {
    // The average order value divides the total by the orders in it, not by every order (unpriced ones, other
    // currencies). Stored rows cannot tell which of their orders were priced: a non-zero total is taken as all of
    // them (the average stays what it was), a zero total as none (no average rather than 0).
    name: '0093_profiles_computed_priced_orders',
    async up(db) {
      await db.schema.alterTable('profiles_computed').addColumn('priced_order_count', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
      await sql`UPDATE profiles_computed SET priced_order_count = order_count WHERE total_order_value <> 0`.execute(db);
    },
  },
  {
    // `real` is an 8-byte float on SQLite but a 4-byte one on PostgreSQL, which kept ~7 digits of an order total
    // (16,777,216 + 1 stayed 16,777,216): both now hold the same double. Stored totals keep what float4 had kept.
    name: '0099_profiles_computed_total_double',
    async up(db, dialect) {
      if (dialect === 'postgres') await sql`ALTER TABLE profiles_computed ALTER COLUMN total_order_value TYPE double precision`.execute(db);
    },
  },
  {
    // A merged person's currency is that of the first priced order naming one across the members, as one profile's
    // is: each member keeps when it received the order that gave it its currency. Stored rows cannot tell; theirs stays
    // null (unknown), and a merged read takes the member's first seen time for it.
    name: '0111_profiles_computed_currency_at',
    async up(db) {
      await db.schema.alterTable('profiles_computed').addColumn('currency_at', 'text').execute();
    },
  },
  {
    // The messages of one request are received at one time: a merged person's currency is that of the member whose
    // order came first in the request, not of the lower profile id. Stored rows keep null (counted as first).
    name: '0112_profiles_computed_currency_position',
    async up(db) {
      await db.schema.alterTable('profiles_computed').addColumn('currency_position', 'integer').execute();
    },
  },
  {
    // A history entry kept the value it replaced for as long as the entry itself, past that value's retention: each
    // entry now records when the value it replaced was last set, and the trait's sweep clears the previous value once
    // that is past the period (indexed per key for it). Stored entries take the time of their profile's next older
    // entry of the key, which set that value (a later re-send moved no entry, so this errs early), or their own time
    // where the previous value is their own (an entry of a merged person's shown value); with no older entry left
    // (retention deleted it) the time is unknown and the empty text, cleared at the next sweep.
    name: '0114_profiles_trait_history_previous_updated_at',
    async up(db) {
      await db.schema.alterTable('profiles_trait_history').addColumn('previous_updated_at', 'text').execute();
      await sql`UPDATE profiles_trait_history SET previous_updated_at = CASE WHEN previous_value = value THEN changed_at ELSE coalesce((
        SELECT max(o.changed_at) FROM profiles_trait_history AS o
        WHERE o.profile_id = profiles_trait_history.profile_id AND o.key = profiles_trait_history.key AND o.changed_at < profiles_trait_history.changed_at
      ), '') END WHERE previous_value IS NOT NULL`.execute(db);
      await db.schema.createIndex('profiles_trait_history_key_previous').on('profiles_trait_history').columns(['key', 'previous_updated_at']).execute();
    },
  },
  {
    // ANALYZE copies sample values into pg_statistic, readable through pg_stats and kept after their rows are deleted:
    // none of the trait values (personal ones are ciphertexts), current or past (keepOutOfStatistics).
    name: '0122_profiles_traits_no_statistics',
    async up(db, dialect) {
      await keepOutOfStatistics(db, dialect, 'profiles_traits', ['value']);
      await keepOutOfStatistics(db, dialect, 'profiles_trait_history', ['value', 'previous_value']);
    },
  },
];

const BLANK_TRAIT: TraitRow = { profile_id: '', key: '', value: '', encrypted: 0, category: '', updated_at: '', source: '', message_id: null };
const BLANK_HISTORY: HistoryRow = {
  id: '',
  profile_id: '',
  key: '',
  changed_at: '',
  value: '',
  encrypted: 0,
  previous_value: null,
  previous_encrypted: null,
  previous_updated_at: null,
  category: '',
  source: '',
  message_id: null,
};
const HISTORY_COLUMNS = Object.keys(BLANK_HISTORY) as (keyof HistoryRow)[];
/** A profile's computed traits before any activity: what a first event's row starts from. */
export const NO_ACTIVITY: ComputedActivity = {
  profile_id: '',
  first_seen_at: '',
  last_seen_at: '',
  event_count: 0,
  order_count: 0,
  priced_order_count: 0,
  total_order_value: 0,
  currency: null,
  currency_at: null,
  currency_position: null,
  last_received_at: '',
};
const BLANK_COMPUTED: ComputedRow = { ...NO_ACTIVITY, last_active_day: '' };
/** The later of a row's last_seen_at and last_received_at, the instant of its last activity. */
export const LAST_ACTIVE = sql<string>`case when last_received_at > last_seen_at then last_received_at else last_seen_at end`;
/** The day of the last activity, as the SQL `substr(LAST_ACTIVE, 1, 10)` of activeDayCatchUp gives it. */
const activeDayOf = (row: ComputedActivity) => (row.last_received_at > row.last_seen_at ? row.last_received_at : row.last_seen_at).slice(0, 10);

/** Rows in profile order (the order concurrent writers lock them in). */
const byProfile = (a: { profile_id: string }, b: { profile_id: string }) => (a.profile_id < b.profile_id ? -1 : a.profile_id > b.profile_id ? 1 : 0);

/**
 * Every SQL statement on the profiles tables. Batch statements are compiled once per size by Kysely and run on the
 * caller's transaction.
 */
/** A computed row with its counts as numbers (PostgreSQL's bigint and numeric columns come back as text). */
const computedNumbers = (r: ComputedRow): ComputedRow => ({
  ...r,
  event_count: Number(r.event_count),
  order_count: Number(r.order_count),
  priced_order_count: Number(r.priced_order_count),
  total_order_value: Number(r.total_order_value),
  currency_position: r.currency_position === null ? null : Number(r.currency_position),
});

export class ProfilesRepo {
  readonly #db: Kysely<ProfilesTables>;
  readonly #texts = new StatementTexts();
  readonly #byText: OrderModifiers;
  readonly #dialect: Storage['dialect'];

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<ProfilesTables>();
    this.#byText = textOrder(storage.dialect).asc;
    this.#dialect = storage.dialect;
  }

  /**
   * Computed rows of these profiles in `tx`, locked until its end on PostgreSQL (SQLite's writer holds the whole
   * database already), so a change written from them does not lose an ingestion's additions of the moment.
   */
  async computedForUpdate(tx: SqlExecutor, profileIds: readonly string[]): Promise<ComputedRow[]> {
    const out: ComputedRow[] = [];
    // One order for all (ingestion upserts its rows sorted too), so two writers never wait for each other in a circle.
    const ids = [...new Set(profileIds)].sort();
    for (let i = 0; i < ids.length; i += 256) {
      const part = ids.slice(i, i + 256);
      const query = this.#db.selectFrom('profiles_computed').selectAll().where('profile_id', 'in', part).orderBy('profile_id');
      const compiled = (this.#dialect === 'postgres' ? query.forUpdate() : query).compile();
      for (const r of await tx.all<ComputedRow>(compiled.sql, compiled.parameters)) out.push(computedNumbers(r));
    }
    return out;
  }

  /** Writes the counts, order value, currency and first seen time of computed rows (see Profiles.reviseActivityIn). */
  async reviseComputed(tx: SqlExecutor, rows: readonly ComputedRow[]): Promise<void> {
    for (const row of rows) {
      const compiled = this.#db
        .updateTable('profiles_computed')
        .set({
          first_seen_at: row.first_seen_at,
          event_count: row.event_count,
          order_count: row.order_count,
          priced_order_count: row.priced_order_count,
          total_order_value: row.total_order_value,
          currency: row.currency,
          currency_at: row.currency_at,
          currency_position: row.currency_position,
        })
        .where('profile_id', '=', row.profile_id)
        .compile();
      await tx.run(compiled.sql, compiled.parameters);
    }
  }

  /** Current traits of these profiles (every key). */
  async currentTraits(tx: SqlExecutor, profileIds: readonly string[]): Promise<TraitRow[]> {
    const out: TraitRow[] = [];
    for (let i = 0; i < profileIds.length; i += 256) {
      const part = profileIds.slice(i, i + 256);
      const list = [...part, ...Array.from({ length: bucket(part.length) - part.length }, () => part[part.length - 1] as string)];
      const text = this.#texts.get(`current:${list.length}`, () =>
        this.#db
          .selectFrom('profiles_traits')
          .selectAll()
          .where('profile_id', 'in', list.map(() => ''))
          .compile().sql,
      );
      out.push(...(await tx.all<TraitRow>(text, list)));
    }
    return out;
  }

  async #write<T extends object>(tx: SqlExecutor, name: string, rows: readonly T[], blank: T, build: (blanks: T[]) => string): Promise<void> {
    const columns = Object.keys(blank) as (keyof T)[];
    let offset = 0;
    for (const size of chunkSizes(rows.length)) {
      const text = this.#texts.get(`${name}:${size}`, () => build(Array.from({ length: size }, () => blank)));
      await tx.run(text, rows.slice(offset, offset + size).flatMap((row) => columns.map((c) => row[c])));
      offset += size;
    }
  }

  /**
   * Inserts or replaces current trait values (one row per profile and key in `rows`); a stored value newer than the
   * one given stays. (The caller skips older values already; this guards the writer that read the current values
   * before another process, on PostgreSQL, stored a newer one.)
   */
  upsertTraits(tx: SqlExecutor, rows: readonly TraitRow[]): Promise<void> {
    return this.#write(tx, 'upsertTraits', rows, BLANK_TRAIT, (blanks) =>
      this.#db
        .insertInto('profiles_traits')
        .values(blanks)
        .onConflict((oc) =>
          oc
            .columns(['profile_id', 'key'])
            .doUpdateSet((eb) => ({
              value: eb.ref('excluded.value'),
              encrypted: eb.ref('excluded.encrypted'),
              category: eb.ref('excluded.category'),
              updated_at: eb.ref('excluded.updated_at'),
              source: eb.ref('excluded.source'),
              message_id: eb.ref('excluded.message_id'),
            }))
            .where((eb) => eb('excluded.updated_at', '>=', eb.ref('profiles_traits.updated_at'))),
        )
        .compile().sql,
    );
  }

  insertHistory(tx: SqlExecutor, rows: readonly HistoryRow[]): Promise<void> {
    return this.#write(tx, 'insertHistory', rows, BLANK_HISTORY, (blanks) => this.#db.insertInto('profiles_trait_history').values(blanks).compile().sql);
  }

  /**
   * Adds a batch's activity to each profile's computed traits: earliest first seen, latest last seen, counts added,
   * and the order total and priced orders added when their currency matches the stored one (or either has none); a
   * profile without a currency takes the batch's, with its currency_at.
   * `activity` has one row per profile; `moreOrderValues` (rare: a batch with several currencies for one profile)
   * adds further totals after it, in order, each applied the same way to the currency stored by then.
   */
  async upsertComputed(tx: SqlExecutor, activity: readonly ComputedActivity[], moreOrderValues: readonly ComputedActivity[] = []): Promise<void> {
    // In profile order: concurrent writers (two servers on one PostgreSQL database) then lock the rows in one order and
    // wait for each other instead of deadlocking.
    const rows = activity.map((a): ComputedRow => ({ ...a, last_active_day: activeDayOf(a) })).sort(byProfile);
    // One statement may not update a row twice (PostgreSQL refuses): a profile's further totals go in later rounds.
    const rounds: ComputedRow[][] = [rows];
    const occurrences = new Map<string, number>();
    for (const more of moreOrderValues) {
      const round = (occurrences.get(more.profile_id) ?? 0) + 1;
      occurrences.set(more.profile_id, round);
      (rounds[round] ??= []).push({ ...more, last_active_day: activeDayOf(more) });
    }
    for (const round of rounds.slice(1)) round.sort(byProfile);
    const sameCurrency = sql`excluded.currency is null or profiles_computed.currency is null or excluded.currency = profiles_computed.currency`;
    for (const round of rounds) {
      await this.#write(tx, 'upsertComputed', round, BLANK_COMPUTED, (blanks) =>
        this.#db
          .insertInto('profiles_computed')
          .values(blanks)
          .onConflict((oc) =>
            oc.column('profile_id').doUpdateSet({
              first_seen_at: sql`case when excluded.first_seen_at < profiles_computed.first_seen_at then excluded.first_seen_at else profiles_computed.first_seen_at end`,
              last_seen_at: sql`case when excluded.last_seen_at > profiles_computed.last_seen_at then excluded.last_seen_at else profiles_computed.last_seen_at end`,
              last_received_at: sql`case when excluded.last_received_at > profiles_computed.last_received_at then excluded.last_received_at else profiles_computed.last_received_at end`,
              event_count: sql`profiles_computed.event_count + excluded.event_count`,
              order_count: sql`profiles_computed.order_count + excluded.order_count`,
              priced_order_count: sql`profiles_computed.priced_order_count + case when ${sameCurrency} then excluded.priced_order_count else 0 end`,
              total_order_value: sql`profiles_computed.total_order_value + case when ${sameCurrency} then excluded.total_order_value else 0 end`,
              currency: sql`coalesce(profiles_computed.currency, excluded.currency)`,
              // Set with the currency, once: a row's currency_at is null whenever its currency is.
              currency_at: sql`case when profiles_computed.currency is null then excluded.currency_at else profiles_computed.currency_at end`,
              currency_position: sql`case when profiles_computed.currency is null then excluded.currency_position else profiles_computed.currency_position end`,
              // last_active_day is left out on purpose: an update that names an indexed column rewrites its index
              // entry even when the value stays, so it is brought up to date below, only where the day moved.
            }),
          )
          .compile().sql,
      );
    }
    await this.#activeDayCatchUp(tx, rows.map((r) => r.profile_id));
  }

  /** The first activity of a new day moves the profile in the inactivity index; every other one leaves it alone. */
  async #activeDayCatchUp(tx: SqlExecutor, profileIds: readonly string[]): Promise<void> {
    let offset = 0;
    for (const size of chunkSizes(profileIds.length)) {
      const text = this.#texts.get(`activeDayCatchUp:${size}`, () =>
        this.#db
          .updateTable('profiles_computed')
          .set({ last_active_day: sql`substr(${LAST_ACTIVE}, 1, 10)` })
          .where('profile_id', 'in', Array.from({ length: size }, () => ''))
          .where('last_active_day', '<>', sql<string>`substr(${LAST_ACTIVE}, 1, 10)`)
          .compile().sql,
      );
      await tx.run(text, profileIds.slice(offset, offset + size));
      offset += size;
    }
  }

  /**
   * Records activity received at `at` on these profiles' computed traits (those that have them) where it is later
   * than what they hold: a consent change the inactivity sweep found. Rows in profile order, as upsertComputed.
   */
  async receivedActivity(tx: SqlExecutor, profileIds: readonly string[], at: string): Promise<void> {
    const ids = [...profileIds].sort();
    for (let i = 0; i < ids.length; i += 256) {
      const part = ids.slice(i, i + 256);
      const compiled = this.#db.updateTable('profiles_computed').set({ last_received_at: at }).where('profile_id', 'in', part).where('last_received_at', '<', at).compile();
      await tx.run(compiled.sql, compiled.parameters);
      await this.#activeDayCatchUp(tx, part);
    }
  }

  /** One trait of many profiles. */
  traitOfMany(profileIds: readonly string[], key: string): Promise<Pick<TraitRow, 'profile_id' | 'value' | 'encrypted' | 'updated_at'>[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db.selectFrom('profiles_traits').select(['profile_id', 'value', 'encrypted', 'updated_at']).where('profile_id', 'in', [...profileIds]).where('key', '=', key).execute();
  }

  /** Traits of these profiles, by key (by code point), then profile. */
  traitsOf(profileIds: readonly string[]): Promise<TraitRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db.selectFrom('profiles_traits').selectAll().where('profile_id', 'in', [...profileIds]).orderBy('key', this.#byText).orderBy('profile_id').execute();
  }

  encryptedTraitsOf(profileIds: readonly string[]): Promise<TraitRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db.selectFrom('profiles_traits').selectAll().where('profile_id', 'in', [...profileIds]).where('encrypted', '=', 1).execute();
  }

  async computedOf(profileIds: readonly string[]): Promise<ComputedRow[]> {
    if (profileIds.length === 0) return [];
    const rows = await this.#db.selectFrom('profiles_computed').selectAll().where('profile_id', 'in', [...profileIds]).execute();
    return rows.map(computedNumbers);
  }

  /** History rows of these profiles (one key or all), newest first; with `before`, only those older than that row. */
  historyOf(profileIds: readonly string[], key: string | undefined, limit: number, before?: { changedAt: string; id: string }): Promise<HistoryRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    let query = this.#db.selectFrom('profiles_trait_history').selectAll().where('profile_id', 'in', [...profileIds]);
    if (key !== undefined) query = query.where('key', '=', key);
    if (before) query = query.where((eb) => eb.or([eb('changed_at', '<', before.changedAt), eb.and([eb('changed_at', '=', before.changedAt), eb('id', '<', before.id)])]));
    return query.orderBy('changed_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
  }

  /**
   * The newest history entry (by event time, then recording order) of each of these profiles for each of these keys
   * that has one, on `executor`: one statement per 256 profiles and 1024 keys, each pair looked up in the index as a
   * per-key query would be (not every entry of the keys read).
   */
  async newestEntries(executor: SqlExecutor, profileIds: readonly string[], keys: readonly string[]): Promise<HistoryRow[]> {
    const out: HistoryRow[] = [];
    const values = (n: number) => sql.join(Array.from({ length: n }, () => sql`(${''})`));
    for (let i = 0; i < profileIds.length; i += 256) {
      const ids = padded(profileIds.slice(i, i + 256));
      for (let j = 0; j < keys.length; j += 1024) {
        const keyList = padded(keys.slice(j, j + 1024));
        const text = this.#texts.get(`newestEntries:${ids.length}:${keyList.length}`, () => {
          const [h, p, k] = ['h', 'p', 'k'].map((alias) => sql.id(alias));
          const newest = sql`select ${sql.ref('h.id')} from profiles_trait_history as ${h} where ${sql.ref('h.profile_id')} = ${sql.ref('p.column1')} and ${sql.ref('h.key')} = ${sql.ref('k.column1')} order by ${sql.ref('h.changed_at')} desc, ${sql.ref('h.id')} desc limit 1`;
          const pairs = sql<string>`(select (${newest}) from (values ${values(ids.length)}) as ${p} cross join (values ${values(keyList.length)}) as ${k})`;
          return this.#db.selectFrom('profiles_trait_history').select(HISTORY_COLUMNS).where('id', 'in', pairs).compile().sql;
        });
        out.push(...(await executor.all<HistoryRow>(text, [...ids, ...keyList])));
      }
    }
    return out;
  }

  /**
   * For values of one key held at one time by several profiles (`ties`), the id of each holder's last recorded history
   * entry of that key at exactly that time (none for a holder without one), on `executor`: one statement per 256 ties
   * and 256 holders. Rows for a holder, key and time of different ties may come too; callers look up what they need.
   */
  async lastRecordedAt(executor: SqlExecutor, ties: readonly { key: string; changedAt: string; profileIds: readonly string[] }[]): Promise<Pick<HistoryRow, 'profile_id' | 'key' | 'changed_at' | 'id'>[]> {
    const out: Pick<HistoryRow, 'profile_id' | 'key' | 'changed_at' | 'id'>[] = [];
    for (let i = 0; i < ties.length; i += 256) {
      const part = ties.slice(i, i + 256);
      const holders = [...new Set(part.flatMap((tie) => tie.profileIds))];
      const keys = padded([...new Set(part.map((tie) => tie.key))]);
      const times = padded([...new Set(part.map((tie) => tie.changedAt))]);
      for (let j = 0; j < holders.length; j += 256) {
        const ids = padded(holders.slice(j, j + 256));
        const text = this.#texts.get(`lastRecordedAt:${ids.length}:${keys.length}:${times.length}`, () =>
          this.#db
            .selectFrom('profiles_trait_history')
            .select(['profile_id', 'key', 'changed_at'])
            .select((eb) => eb.fn.max('id').as('id'))
            .where('profile_id', 'in', ids.map(() => ''))
            .where('key', 'in', keys.map(() => ''))
            .where('changed_at', 'in', times.map(() => ''))
            .groupBy(['profile_id', 'key', 'changed_at'])
            .compile().sql,
        );
        out.push(...(await executor.all<Pick<HistoryRow, 'profile_id' | 'key' | 'changed_at' | 'id'>>(text, [...ids, ...keys, ...times])));
      }
    }
    return out;
  }

  /** The history entries of these profiles from one message and source (a rectification's request id), inside the caller's transaction. */
  async historyOfMessage(tx: SqlExecutor, profileIds: readonly string[], messageId: string, source: string): Promise<Pick<HistoryRow, 'id' | 'key'>[]> {
    const out: Pick<HistoryRow, 'id' | 'key'>[] = [];
    for (let i = 0; i < profileIds.length; i += 256) {
      const query = this.#db
        .selectFrom('profiles_trait_history')
        .select(['id', 'key'])
        .where('profile_id', 'in', profileIds.slice(i, i + 256))
        .where('message_id', '=', messageId)
        .where('source', '=', source)
        .compile();
      out.push(...(await tx.all<Pick<HistoryRow, 'id' | 'key'>>(query.sql, query.parameters)));
    }
    return out;
  }

  /** Deletes every row of these profiles in the three tables inside the caller's transaction; rows per table. */
  async deleteProfiles(tx: SqlExecutor, profileIds: readonly string[]): Promise<{ traits: number; history: number; computed: number }> {
    const out = { traits: 0, history: 0, computed: 0 };
    for (let i = 0; i < profileIds.length; i += 256) {
      const ids = profileIds.slice(i, i + 256);
      const traits = this.#db.deleteFrom('profiles_traits').where('profile_id', 'in', ids).compile();
      out.traits += await tx.run(traits.sql, traits.parameters);
      const history = this.#db.deleteFrom('profiles_trait_history').where('profile_id', 'in', ids).compile();
      out.history += await tx.run(history.sql, history.parameters);
      const computed = this.#db.deleteFrom('profiles_computed').where('profile_id', 'in', ids).compile();
      out.computed += await tx.run(computed.sql, computed.parameters);
    }
    return out;
  }

  /** Deletes every row of a profile in the three tables, in one transaction. */
  async forget(profileId: string): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('profiles_traits').where('profile_id', '=', profileId).execute();
      await trx.deleteFrom('profiles_trait_history').where('profile_id', '=', profileId).execute();
      await trx.deleteFrom('profiles_computed').where('profile_id', '=', profileId).execute();
    });
  }
}
