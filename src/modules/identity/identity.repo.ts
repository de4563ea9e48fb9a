import { sql, type Kysely } from 'kysely';
import { textOrder, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';
import { padded, chunkSizes } from '../../storage/batching.ts';

/** The identity graph's tables. Identifier values appear only as keyed pseudonyms (value_hash). */
export type IdentityTables = {
  identity_profiles: { id: string; created_at: string; merged_into: string | null; merge_id: string | null };
  identity_identifiers: { type: string; value_hash: string; profile_id: string; first_seen_at: string; source: string; message_id: string | null };
  identity_merges: {
    id: string;
    at: string;
    from_profile: string;
    into_profile: string;
    rule: string;
    trigger_type: string;
    trigger_hash: string;
    source: string;
    message_id: string | null;
    undone_at: string | null;
    /** When every onMerge listener had run for this merge; null until then (replayed at the next start). */
    applied_at: string | null;
    /** When every onUnmerge listener had run for this merge's undoing; null until then, and for a merge not undone. */
    unmerge_applied_at: string | null;
  };
  identity_suppressed: { type: string; value_hash: string; at: string; reason: string };
};

export type ProfileRow = IdentityTables['identity_profiles'];
export type IdentifierRow = IdentityTables['identity_identifiers'];
export type MergeRow = IdentityTables['identity_merges'];
export type SuppressedRow = IdentityTables['identity_suppressed'];

export const IDENTITY_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0030_identity_graph',
    async up(db) {
      await db.schema
        .createTable('identity_profiles')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('merged_into', 'text')
        .addColumn('merge_id', 'text')
        .execute();
      await db.schema.createIndex('identity_profiles_merged_into').on('identity_profiles').column('merged_into').execute();
      await db.schema
        .createTable('identity_identifiers')
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('value_hash', 'text', (c) => c.notNull())
        .addColumn('profile_id', 'text', (c) => c.notNull())
        .addColumn('first_seen_at', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text')
        .addPrimaryKeyConstraint('identity_identifiers_pk', ['value_hash', 'type'])
        .execute();
      await db.schema.createIndex('identity_identifiers_profile').on('identity_identifiers').column('profile_id').execute();
      await db.schema
        .createTable('identity_merges')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('from_profile', 'text', (c) => c.notNull())
        .addColumn('into_profile', 'text', (c) => c.notNull())
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('trigger_type', 'text', (c) => c.notNull())
        .addColumn('trigger_hash', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text')
        .addColumn('undone_at', 'text')
        .execute();
      await db.schema.createIndex('identity_merges_from').on('identity_merges').column('from_profile').execute();
      await db.schema.createIndex('identity_merges_into').on('identity_merges').column('into_profile').execute();
      await db.schema.createIndex('identity_merges_undone').on('identity_merges').column('undone_at').execute();
      await db.schema
        .createTable('identity_suppressed')
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('value_hash', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('identity_suppressed_pk', ['value_hash', 'type'])
        .execute();
    },
  },
  {
    name: '0095_identity_merges_applied',
    async up(db) {
      await db.schema.alterTable('identity_merges').addColumn('applied_at', 'text').execute();
      // Merges made before this column existed cannot be told apart: they count as applied.
      await sql`UPDATE identity_merges SET applied_at = at`.execute(db);
      await db.schema.createIndex('identity_merges_pending').on('identity_merges').columns(['at', 'id']).where(sql.ref('applied_at'), 'is', null).execute();
    },
  },
  {
    // An unmerge's listeners (consent: what was withdrawn while merged binds the split-out profile) are replayed at
    // the next start when they failed or the process stopped first, like a merge's.
    name: '0097_identity_unmerges_applied',
    async up(db) {
      await db.schema.alterTable('identity_merges').addColumn('unmerge_applied_at', 'text').execute();
      // Unmerges made before this column existed had no listeners: they count as applied.
      await sql`UPDATE identity_merges SET unmerge_applied_at = undone_at WHERE undone_at IS NOT NULL`.execute(db);
    },
  },
];

/** An unmerge whose onUnmerge listeners have not all run, with the canonical profiles of both sides now. */
export interface PendingUnmergeRow {
  id: string;
  at: string;
  undone_at: string;
  rule: string;
  from_canonical: string | null;
  into_canonical: string | null;
}

/** A merge whose onMerge listeners have not all run, with the canonical profile its from-profile belongs to now. */
export interface PendingMergeRow {
  id: string;
  at: string;
  from_profile: string;
  into_profile: string;
  rule: string;
  holder: string | null;
}

/** A known identifier and the profile it belongs to (its owner) with the owner's canonical profile. */
export interface OwnerRow {
  type: string;
  value_hash: string;
  profile_id: string;
  canonical: string;
}

/** Identifier counts of one member profile, per type (type null: a member without identifiers). */
export interface StatsRow {
  id: string;
  merged_into: string | null;
  created_at: string;
  type: string | null;
  n: number;
}

export type Pair = readonly [type: string, valueHash: string];

/** Longest IN list per statement (well under both backends' parameter limits). */
const MAX_LIST = 2048;

const PG_IDENTITY_LOCK = 0x43446964; // "CDId": serializes identity writers on PostgreSQL
/** "CDEr": an erasure holds it alone, ingestion groups shared, so no erasure commits while a group is being written. */
const PG_ERASURE_LOCK = 0x43444572;

/**
 * Every SQL statement on the identity tables. Statements of the hot path are compiled once per list size by Kysely
 * and run on the executor they are given (the caller's transaction), never on another connection.
 */
export class IdentityRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<IdentityTables>;
  readonly #texts = new Map<string, { sql: string; arity: number }>();

  constructor(storage: Storage) {
    this.#storage = storage;
    this.#db = storage.db.withTables<IdentityTables>();
  }

  /** A statement compiled once: its text and how many parameters it takes (checked on every run). */
  #text(name: string, build: () => { sql: string; parameters: readonly unknown[] }): { sql: string; arity: number } {
    let text = this.#texts.get(name);
    if (text === undefined) {
      const compiled = build();
      text = { sql: compiled.sql, arity: compiled.parameters.length };
      this.#texts.set(name, text);
    }
    return text;
  }

  #all<R>(tx: SqlExecutor, text: { sql: string; arity: number }, params: readonly unknown[]): Promise<R[]> {
    if (params.length !== text.arity) throw new Error(`statement expects ${text.arity} parameters, got ${params.length}`);
    return tx.all<R>(text.sql, params);
  }

  #run(tx: SqlExecutor, text: { sql: string; arity: number }, params: readonly unknown[]): Promise<number> {
    if (params.length !== text.arity) throw new Error(`statement expects ${text.arity} parameters, got ${params.length}`);
    return tx.run(text.sql, params);
  }

  #idList(n: number): string[] {
    return Array.from({ length: n }, () => '');
  }

  /**
   * PostgreSQL: `exclusive` (an erasure) waits for every ingestion group in flight and keeps new ones out until it
   * commits; shared (a group) waits only for an erasure. SQLite's write lock already serializes them.
   */
  async lockAgainstErasure(tx: SqlExecutor, exclusive: boolean): Promise<void> {
    if (this.#storage.dialect !== 'postgres') return;
    const text = this.#text(exclusive ? 'erasureLock' : 'erasureLockShared', () => (exclusive ? sql`select pg_advisory_xact_lock(${PG_ERASURE_LOCK})` : sql`select pg_advisory_xact_lock_shared(${PG_ERASURE_LOCK})`).compile(this.#db));
    await this.#all(tx, text, [PG_ERASURE_LOCK]);
  }

  /** Which of these profiles exist (an erasure deletes them). */
  async existingProfiles(tx: SqlExecutor, profileIds: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (let i = 0; i < profileIds.length; i += MAX_LIST) {
      const list = padded(profileIds.slice(i, i + MAX_LIST));
      const text = this.#text(`profiles-exist:${list.length}`, () => this.#db.selectFrom('identity_profiles').select('id').where('id', 'in', this.#idList(list.length)).compile());
      for (const row of await this.#all<{ id: string }>(tx, text, list)) found.add(row.id);
    }
    return found;
  }

  /** These profiles as they are now (those an erasure deleted do not appear): each with the profile it was merged into. */
  async profilesIn(tx: SqlExecutor, profileIds: readonly string[]): Promise<Pick<ProfileRow, 'id' | 'merged_into'>[]> {
    const rows: Pick<ProfileRow, 'id' | 'merged_into'>[] = [];
    for (let i = 0; i < profileIds.length; i += MAX_LIST) {
      const list = padded(profileIds.slice(i, i + MAX_LIST));
      const text = this.#text(`profiles-in:${list.length}`, () => this.#db.selectFrom('identity_profiles').select(['id', 'merged_into']).where('id', 'in', this.#idList(list.length)).compile());
      rows.push(...(await this.#all<Pick<ProfileRow, 'id' | 'merged_into'>>(tx, text, list)));
    }
    return rows;
  }

  /** Serializes identity writers across processes on PostgreSQL (SQLite's write transaction already does). */
  async lockForWrite(tx: SqlExecutor): Promise<void> {
    if (this.#storage.dialect !== 'postgres') return;
    const text = this.#text('lock', () => sql`select pg_advisory_xact_lock(${PG_IDENTITY_LOCK})`.compile(this.#db));
    await this.#all(tx, text, [PG_IDENTITY_LOCK]);
  }

  /**
   * Pseudonyms to look up, as an IN list on the leading column of the primary key (value_hash, type): both backends
   * answer it with index lookups, where a row-value IN over (type, value_hash) lets PostgreSQL pick a full scan.
   */
  #hashLists(pairs: readonly Pair[]): string[][] {
    const hashes = [...new Set(pairs.map(([, hash]) => hash))];
    const lists: string[][] = [];
    for (let i = 0; i < hashes.length; i += MAX_LIST) lists.push(padded(hashes.slice(i, i + MAX_LIST)));
    return lists;
  }

  /** Rows of exactly the requested (type, value_hash) pairs. */
  #only<R extends { type: string; value_hash: string }>(rows: readonly R[], pairs: readonly Pair[]): R[] {
    const wanted = new Set(pairs.map(([type, hash]) => `${type}\u0000${hash}`));
    return rows.filter((r) => wanted.has(`${r.type}\u0000${r.value_hash}`));
  }

  /** Owners and canonical profiles of these identifiers (only the known ones come back). */
  async owners(tx: SqlExecutor, pairs: readonly Pair[]): Promise<OwnerRow[]> {
    const rows: OwnerRow[] = [];
    for (const list of this.#hashLists(pairs)) {
      const text = this.#text(`owners:${list.length}`, () =>
        this.#db
          .selectFrom('identity_identifiers as i')
          .innerJoin('identity_profiles as p', 'p.id', 'i.profile_id')
          .select(['i.type', 'i.value_hash', 'i.profile_id', (eb) => eb.fn.coalesce('p.merged_into', 'p.id').as('canonical')])
          .where('i.value_hash', 'in', this.#idList(list.length))
          .compile(),
      );
      rows.push(...(await this.#all<OwnerRow>(tx, text, list)));
    }
    return this.#only(rows, pairs);
  }

  /** The whole suppression list, or undefined when it holds more than `limit` identifiers. */
  async suppressedAll(tx: SqlExecutor, limit: number): Promise<Pair[] | undefined> {
    const text = this.#text('suppressed:all', () => this.#db.selectFrom('identity_suppressed').select(['type', 'value_hash']).limit(limit + 1).compile());
    const rows = await this.#all<{ type: string; value_hash: string }>(tx, text, [limit + 1]);
    return rows.length > limit ? undefined : rows.map((r) => [r.type, r.value_hash] as const);
  }

  /** Which of these identifiers are on the suppression list. */
  async suppressedAmong(tx: SqlExecutor, pairs: readonly Pair[]): Promise<Pair[]> {
    const rows: { type: string; value_hash: string }[] = [];
    for (const list of this.#hashLists(pairs)) {
      const text = this.#text(`suppressed:${list.length}`, () =>
        this.#db.selectFrom('identity_suppressed').select(['type', 'value_hash']).where('value_hash', 'in', this.#idList(list.length)).compile(),
      );
      rows.push(...(await this.#all<{ type: string; value_hash: string }>(tx, text, list)));
    }
    return this.#only(rows, pairs).map((r) => [r.type, r.value_hash] as const);
  }

  /** The profiles merged into each of these canonical profiles (those with none do not appear). */
  async mergedInto(tx: SqlExecutor, canonicals: readonly string[]): Promise<{ id: string; merged_into: string }[]> {
    const rows: { id: string; merged_into: string }[] = [];
    for (let i = 0; i < canonicals.length; i += MAX_LIST) {
      const list = padded(canonicals.slice(i, i + MAX_LIST));
      const text = this.#text(`merged-into:${list.length}`, () =>
        this.#db.selectFrom('identity_profiles').select(['id', 'merged_into']).where('merged_into', 'in', this.#idList(list.length)).compile(),
      );
      rows.push(...(await this.#all<{ id: string; merged_into: string }>(tx, text, list)));
    }
    return rows;
  }

  /** Identifier counts per type of every member of these canonical profiles. */
  async stats(tx: SqlExecutor, canonicals: readonly string[]): Promise<StatsRow[]> {
    const rows: StatsRow[] = [];
    for (let i = 0; i < canonicals.length; i += MAX_LIST) {
      const list = padded(canonicals.slice(i, i + MAX_LIST));
      const text = this.#text(`stats:${list.length}`, () => {
        const ids = this.#idList(list.length);
        return this.#db
          .selectFrom('identity_profiles as p')
          .leftJoin('identity_identifiers as i', 'i.profile_id', 'p.id')
          .select(['p.id', 'p.merged_into', 'p.created_at', 'i.type', (eb) => eb.fn.count<number>('i.type').as('n')])
          .where((eb) => eb.or([eb('p.id', 'in', ids), eb('p.merged_into', 'in', ids)]))
          .groupBy(['p.id', 'p.merged_into', 'p.created_at', 'i.type'])
          .compile();
      });
      rows.push(...(await this.#all<StatsRow>(tx, text, [...list, ...list])));
    }
    return rows.map((r) => ({ ...r, n: Number(r.n) }));
  }

  /** Undone merges as pairs of the current canonical profiles on either side. */
  async undonePairs(tx: SqlExecutor): Promise<{ from_canonical: string; into_canonical: string }[]> {
    const text = this.#text('undone', () =>
      this.#db
        .selectFrom('identity_merges as m')
        .innerJoin('identity_profiles as pf', 'pf.id', 'm.from_profile')
        .innerJoin('identity_profiles as pi', 'pi.id', 'm.into_profile')
        .select([(eb) => eb.fn.coalesce('pf.merged_into', 'pf.id').as('from_canonical'), (eb) => eb.fn.coalesce('pi.merged_into', 'pi.id').as('into_canonical')])
        .where('m.undone_at', 'is not', null)
        .compile(),
    );
    return this.#all(tx, text, []);
  }

  async #insert<T extends object>(tx: SqlExecutor, table: keyof IdentityTables, rows: readonly T[], blank: T): Promise<void> {
    const columns = Object.keys(blank) as (keyof T)[];
    let offset = 0;
    for (const size of chunkSizes(rows.length)) {
      const text = this.#text(`insert:${table}:${size}`, () =>
        this.#db
          .insertInto(table)
          .values(Array.from({ length: size }, () => blank) as never)
          .compile(),
      );
      const part = rows.slice(offset, offset + size);
      await this.#run(tx, text, part.flatMap((row) => columns.map((c) => row[c])));
      offset += size;
    }
  }

  insertProfiles(tx: SqlExecutor, rows: readonly ProfileRow[]): Promise<void> {
    return this.#insert(tx, 'identity_profiles', rows, { id: '', created_at: '', merged_into: null, merge_id: null });
  }

  insertIdentifiers(tx: SqlExecutor, rows: readonly IdentifierRow[]): Promise<void> {
    return this.#insert(tx, 'identity_identifiers', rows, { type: '', value_hash: '', profile_id: '', first_seen_at: '', source: '', message_id: null });
  }

  insertMerges(tx: SqlExecutor, rows: readonly MergeRow[]): Promise<void> {
    const blank: MergeRow = {
      id: '',
      at: '',
      from_profile: '',
      into_profile: '',
      rule: '',
      trigger_type: '',
      trigger_hash: '',
      source: '',
      message_id: null,
      undone_at: null,
      applied_at: null,
      unmerge_applied_at: null,
    };
    return this.#insert(tx, 'identity_merges', rows, blank);
  }

  /** A canonical profile loses a merge: it and every profile merged into it now point at the survivor. */
  async repoint(tx: SqlExecutor, from: string, into: string, mergeId: string): Promise<void> {
    const text = this.#text('repoint', () =>
      this.#db
        .updateTable('identity_profiles')
        .set((eb) => ({ merged_into: '', merge_id: eb.case().when('id', '=', '').then('').else(eb.ref('merge_id')).end() }))
        .where((eb) => eb.or([eb('id', '=', ''), eb('merged_into', '=', '')]))
        .compile(),
    );
    await this.#run(tx, text, [into, from, mergeId, from, from]);
  }

  async insertSuppressed(rows: readonly SuppressedRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#db
      .insertInto('identity_suppressed')
      .values([...rows])
      .onConflict((oc) => oc.columns(['value_hash', 'type']).doNothing())
      .execute();
  }

  async profile(tx: SqlExecutor, id: string): Promise<ProfileRow | undefined> {
    const text = this.#text('profile', () => this.#db.selectFrom('identity_profiles').selectAll().where('id', '=', '').compile());
    const rows = await this.#all<ProfileRow>(tx, text, [id]);
    return rows[0];
  }

  /** A page of profiles by id (for jobs that walk everyone): id and the profile it was merged into, if any. */
  async profilesPage(after: string, limit: number): Promise<Pick<ProfileRow, 'id' | 'merged_into'>[]> {
    return this.#db.selectFrom('identity_profiles').select(['id', 'merged_into']).where('id', '>', after).orderBy('id').limit(limit).execute();
  }

  /** The canonical profile and every profile merged into it, oldest first. */
  async members(tx: SqlExecutor, canonical: string): Promise<ProfileRow[]> {
    const text = this.#text('members', () =>
      this.#db
        .selectFrom('identity_profiles')
        .selectAll()
        .where((eb) => eb.or([eb('id', '=', ''), eb('merged_into', '=', '')]))
        .orderBy('created_at')
        .orderBy('id')
        .compile(),
    );
    return this.#all<ProfileRow>(tx, text, [canonical, canonical]);
  }

  /** Identifiers held by the members of a canonical profile, oldest first (then by type and pseudonym, by code point). */
  async identifiersOfMembers(canonical: string): Promise<IdentifierRow[]> {
    const { asc } = textOrder(this.#storage.dialect);
    return this.#db
      .selectFrom('identity_identifiers as i')
      .innerJoin('identity_profiles as p', 'p.id', 'i.profile_id')
      .selectAll('i')
      .where((eb) => eb.or([eb('p.id', '=', canonical), eb('p.merged_into', '=', canonical)]))
      .orderBy('i.first_seen_at')
      .orderBy('i.type', asc)
      .orderBy('i.value_hash', asc)
      .execute();
  }

  /** Merges in which any of these profiles took part, oldest first. */
  async mergesInvolving(profileIds: readonly string[]): Promise<MergeRow[]> {
    if (profileIds.length === 0) return [];
    return this.#db
      .selectFrom('identity_merges')
      .selectAll()
      .where((eb) => eb.or([eb('from_profile', 'in', [...profileIds]), eb('into_profile', 'in', [...profileIds])]))
      .orderBy('at')
      .orderBy('id')
      .execute();
  }

  async merge(tx: SqlExecutor, id: string): Promise<MergeRow | undefined> {
    const text = this.#text('merge', () => this.#db.selectFrom('identity_merges').selectAll().where('id', '=', '').compile());
    const rows = await this.#all<MergeRow>(tx, text, [id]);
    return rows[0];
  }

  async mergesById(tx: SqlExecutor, ids: readonly string[]): Promise<MergeRow[]> {
    const out: MergeRow[] = [];
    for (let i = 0; i < ids.length; i += 256) {
      const list = padded(ids.slice(i, i + 256));
      const text = this.#text(`mergesById:${list.length}`, () =>
        this.#db.selectFrom('identity_merges').selectAll().where('id', 'in', this.#idList(list.length)).compile(),
      );
      out.push(...(await this.#all<MergeRow>(tx, text, list)));
    }
    return out;
  }

  /** Makes a profile canonical again (it no longer points anywhere). */
  async restore(tx: SqlExecutor, id: string): Promise<void> {
    const text = this.#text('restore', () =>
      this.#db.updateTable('identity_profiles').set({ merged_into: null, merge_id: null }).where('id', '=', '').compile(),
    );
    await this.#run(tx, text, [null, null, id]);
  }

  /** Points these profiles at a canonical profile, keeping the merge each of them lost. */
  async pointAt(tx: SqlExecutor, ids: readonly string[], canonical: string): Promise<void> {
    for (let i = 0; i < ids.length; i += 256) {
      const list = padded(ids.slice(i, i + 256));
      const text = this.#text(`pointAt:${list.length}`, () =>
        this.#db.updateTable('identity_profiles').set({ merged_into: '' }).where('id', 'in', this.#idList(list.length)).compile(),
      );
      await this.#run(tx, text, [canonical, ...list]);
    }
  }

  async markUndone(tx: SqlExecutor, mergeId: string, at: string): Promise<void> {
    const text = this.#text('undo', () => this.#db.updateTable('identity_merges').set({ undone_at: '' }).where('id', '=', '').compile());
    await this.#run(tx, text, [at, mergeId]);
  }

  /** Undone merges whose onUnmerge listeners have not all run, in the order they were undone, after the cursor. */
  async pendingUnmerges(after: { undoneAt: string; id: string } | null, limit: number): Promise<PendingUnmergeRow[]> {
    let query = this.#db
      .selectFrom('identity_merges as m')
      .leftJoin('identity_profiles as f', 'f.id', 'm.from_profile')
      .leftJoin('identity_profiles as i', 'i.id', 'm.into_profile')
      .select(['m.id', 'm.at', 'm.undone_at', 'm.rule', (eb) => eb.fn.coalesce('f.merged_into', 'f.id').as('from_canonical'), (eb) => eb.fn.coalesce('i.merged_into', 'i.id').as('into_canonical')])
      .where('m.undone_at', 'is not', null)
      .where('m.unmerge_applied_at', 'is', null);
    if (after) query = query.where((eb) => eb.or([eb('m.undone_at', '>', after.undoneAt), eb.and([eb('m.undone_at', '=', after.undoneAt), eb('m.id', '>', after.id)])]));
    return (await query.orderBy('m.undone_at').orderBy('m.id').limit(limit).execute()) as PendingUnmergeRow[];
  }

  /** Marks an unmerge as applied (every onUnmerge listener has run). */
  async markUnmergeApplied(mergeId: string, at: string): Promise<void> {
    await this.#db.updateTable('identity_merges').set({ unmerge_applied_at: at }).where('id', '=', mergeId).where('unmerge_applied_at', 'is', null).execute();
  }

  /** Marks merges as applied (every onMerge listener has run); a merge already marked keeps its time. */
  async markApplied(mergeIds: readonly string[], at: string): Promise<void> {
    for (let i = 0; i < mergeIds.length; i += 256) {
      const list = padded(mergeIds.slice(i, i + 256));
      const text = this.#text(`applied:${list.length}`, () =>
        this.#db.updateTable('identity_merges').set({ applied_at: '' }).where('applied_at', 'is', null).where('id', 'in', this.#idList(list.length)).compile(),
      );
      await this.#run(this.#storage.raw, text, [at, ...list]);
    }
  }

  #pending() {
    return this.#db
      .selectFrom('identity_merges as m')
      .leftJoin('identity_profiles as p', 'p.id', 'm.from_profile')
      .select(['m.id', 'm.at', 'm.from_profile', 'm.into_profile', 'm.rule', (eb) => eb.fn.coalesce('p.merged_into', 'p.id').as('holder')])
      .where('m.applied_at', 'is', null)
      .where('m.undone_at', 'is', null);
  }

  /** Merges not yet applied and not undone, oldest first, after the (at, id) cursor. */
  async pendingMerges(after: { at: string; id: string } | null, limit: number): Promise<PendingMergeRow[]> {
    let query = this.#pending();
    if (after) query = query.where((eb) => eb.or([eb('m.at', '>', after.at), eb.and([eb('m.at', '=', after.at), eb('m.id', '>', after.id)])]));
    return (await query.orderBy('m.at').orderBy('m.id').limit(limit).execute()) as PendingMergeRow[];
  }

  /** Which of these merges are still not applied and not undone, oldest first. */
  async pendingAmong(mergeIds: readonly string[]): Promise<PendingMergeRow[]> {
    const rows: PendingMergeRow[] = [];
    for (let i = 0; i < mergeIds.length; i += 256) {
      rows.push(...((await this.#pending().where('m.id', 'in', mergeIds.slice(i, i + 256)).execute()) as PendingMergeRow[]));
    }
    return rows.sort((a, b) => (a.at === b.at ? (a.id < b.id ? -1 : 1) : a.at < b.at ? -1 : 1));
  }

  /** Puts pseudonyms on the suppression list inside the caller's transaction (an erasure commits with it). */
  async insertSuppressedIn(tx: SqlExecutor, rows: readonly SuppressedRow[]): Promise<number> {
    let added = 0;
    for (let i = 0; i < rows.length; i += 100) {
      const compiled = this.#db
        .insertInto('identity_suppressed')
        .values(rows.slice(i, i + 100) as SuppressedRow[])
        .onConflict((oc) => oc.columns(['value_hash', 'type']).doNothing())
        .compile();
      added += await tx.run(compiled.sql, compiled.parameters);
    }
    return added;
  }

  /**
   * Deletes these profiles, every identifier they hold and every merge they took part in, inside the caller's
   * transaction. Returns the rows deleted per table.
   */
  async deleteProfiles(tx: SqlExecutor, profileIds: readonly string[]): Promise<{ identifiers: number; merges: number; profiles: number }> {
    const out = { identifiers: 0, merges: 0, profiles: 0 };
    for (let i = 0; i < profileIds.length; i += 256) {
      const ids = profileIds.slice(i, i + 256);
      const identifiers = this.#db.deleteFrom('identity_identifiers').where('profile_id', 'in', ids).compile();
      out.identifiers += await tx.run(identifiers.sql, identifiers.parameters);
      const merges = this.#db
        .deleteFrom('identity_merges')
        .where((eb) => eb.or([eb('from_profile', 'in', ids), eb('into_profile', 'in', ids)]))
        .compile();
      out.merges += await tx.run(merges.sql, merges.parameters);
      const profiles = this.#db.deleteFrom('identity_profiles').where('id', 'in', ids).compile();
      out.profiles += await tx.run(profiles.sql, profiles.parameters);
    }
    return out;
  }

  /** Rows of these profiles (any of them may be merged into another), for an access archive. */
  profilesByIds(profileIds: readonly string[]): Promise<ProfileRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db.selectFrom('identity_profiles').selectAll().where('id', 'in', [...profileIds]).orderBy('created_at').orderBy('id').execute();
  }

  /** Identifiers held by these profiles, oldest first (then by type and pseudonym, by code point); in `tx` when given. */
  identifiersOfProfiles(profileIds: readonly string[], tx?: SqlExecutor): Promise<IdentifierRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    const { asc } = textOrder(this.#storage.dialect);
    const query = this.#db
      .selectFrom('identity_identifiers')
      .selectAll()
      .where('profile_id', 'in', [...profileIds])
      .orderBy('first_seen_at')
      .orderBy('type', asc)
      .orderBy('value_hash', asc);
    if (tx === undefined) return query.execute();
    const compiled = query.compile();
    return tx.all<IdentifierRow>(compiled.sql, compiled.parameters);
  }

  async countIdentifiers(tx: SqlExecutor, profileIds: readonly string[]): Promise<number> {
    let total = 0;
    for (let i = 0; i < profileIds.length; i += 256) {
      const list = [...new Set(profileIds.slice(i, i + 256))];
      const text = this.#text(`countIdentifiers:${list.length}`, () =>
        this.#db
          .selectFrom('identity_identifiers')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('profile_id', 'in', this.#idList(list.length))
          .compile(),
      );
      const rows = await this.#all<{ n: number }>(tx, text, list);
      total += Number(rows[0]?.n ?? 0);
    }
    return total;
  }
}
