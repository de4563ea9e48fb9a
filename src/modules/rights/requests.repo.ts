import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { keepOutOfStatistics, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';

/**
 * The request workflow's tables. Personal values (the subject's e-mail address, rectified values) are stored only
 * encrypted with the subject's data key, so an erasure shreds them too; subjects appear as profile ids and pseudonyms.
 */
export type RequestsTables = {
  rights_requests: {
    id: string;
    type: string;
    jurisdiction: string;
    state: string;
    /** The canonical profile once known; null for an address nobody holds (the request can never be verified). */
    profile_id: string | null;
    subject: string | null;
    /** The e-mail address, encrypted with the subject's data key (context `rights.requests.email`). */
    email: string | null;
    /** What the subject asked for (rectification: the traits and values), encrypted like the address. */
    payload: string | null;
    channel: string;
    received_at: string;
    due_at: string;
    acknowledge_by: string | null;
    acknowledged_at: string | null;
    extended_at: string | null;
    extension_reason: string | null;
    code_hash: string | null;
    code_expires_at: string | null;
    code_attempts: number;
    verified_at: string | null;
    /** 1 when the request waits for a staff decision before it runs. */
    awaiting_approval: number;
    attempts: number;
    last_error: string | null;
    denial_reason: string | null;
    duplicate_of: string | null;
    outcome: string | null;
    download_hash: string | null;
    download_expires_at: string | null;
    completed_at: string | null;
    updated_at: string;
    /**
     * While a run of the request is under way: until when the running process holds it (renewed by its heartbeat).
     * Null when no run is under way; a time in the past on an open request is a run that was interrupted.
     */
    run_lease_until: string | null;
  };
  rights_request_events: {
    id: string;
    request_id: string;
    at: string;
    from_state: string | null;
    to_state: string;
    actor: string;
    role: string;
    /** JSON of codes, counts and ids; never personal values. */
    detail: string;
  };
  rights_rate_events: {
    key: string;
    at: string;
  };
};

export type RequestRow = RequestsTables['rights_requests'];
export type RequestEventRow = RequestsTables['rights_request_events'];

export const RIGHTS_REQUEST_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0065_rights_requests',
    async up(db) {
      await db.schema
        .createTable('rights_requests')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('jurisdiction', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('profile_id', 'text')
        .addColumn('subject', 'text')
        .addColumn('email', 'text')
        .addColumn('payload', 'text')
        .addColumn('channel', 'text', (c) => c.notNull())
        .addColumn('received_at', 'text', (c) => c.notNull())
        .addColumn('due_at', 'text', (c) => c.notNull())
        .addColumn('acknowledge_by', 'text')
        .addColumn('acknowledged_at', 'text')
        .addColumn('extended_at', 'text')
        .addColumn('extension_reason', 'text')
        .addColumn('code_hash', 'text')
        .addColumn('code_expires_at', 'text')
        .addColumn('code_attempts', 'integer', (c) => c.notNull())
        .addColumn('verified_at', 'text')
        .addColumn('awaiting_approval', 'integer', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('last_error', 'text')
        .addColumn('denial_reason', 'text')
        .addColumn('duplicate_of', 'text')
        .addColumn('outcome', 'text')
        .addColumn('download_hash', 'text')
        .addColumn('download_expires_at', 'text')
        .addColumn('completed_at', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('rights_requests_subject').on('rights_requests').columns(['profile_id', 'type', 'received_at']).execute();
      await db.schema.createIndex('rights_requests_queue').on('rights_requests').columns(['state', 'due_at']).execute();
      await db.schema.createIndex('rights_requests_download').on('rights_requests').column('download_hash').execute();
      await db.schema
        .createTable('rights_request_events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('from_state', 'text')
        .addColumn('to_state', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('rights_request_events_request').on('rights_request_events').columns(['request_id', 'at']).execute();
      // Starts of verification per keyed pseudonym of an address or a client, for the rate limit.
      await db.schema.createTable('rights_rate_events').addColumn('key', 'text', (c) => c.notNull()).addColumn('at', 'text', (c) => c.notNull()).execute();
      await db.schema.createIndex('rights_rate_events_key').on('rights_rate_events').columns(['key', 'at']).execute();
    },
  },
  {
    // A run is claimed in the same transaction as the move that starts it, so a run cut off by a crash is found and
    // resumed at the next start.
    name: '0107_rights_request_runs',
    async up(db) {
      await db.schema.alterTable('rights_requests').addColumn('run_lease_until', 'text').execute();
      // Before this column, a request in progress that neither waited for approval nor recorded a failure had been
      // cut off while it ran: its lease has run out.
      await sql`UPDATE rights_requests SET run_lease_until = updated_at WHERE state = 'in_progress' AND awaiting_approval = 0 AND last_error IS NULL`.execute(db);
    },
  },
  {
    // ANALYZE copies sample values into pg_statistic, readable through pg_stats and kept after their rows are deleted:
    // none of the requests' sealed addresses and changes (keepOutOfStatistics).
    name: '0124_rights_requests_no_statistics',
    async up(db, dialect) {
      await keepOutOfStatistics(db, dialect, 'rights_requests', ['email', 'payload']);
    },
  },
];

/** States a request stays open in. */
export const OPEN_STATES = ['received', 'verifying', 'in_progress'] as const;

/**
 * The data key that seals an erasure request's address: it outlives the person's own key, so the notice that their
 * data was erased can be sent even when the run was cut off after the erasure; it is destroyed once the notice is (or
 * when the request closes without one).
 */
export const noticeKey = (requestId: string) => `rights_request:${requestId}`;

/** The denial reasons Candor itself writes (codes); any other denial reason is a staff member's free text. */
export const DENIAL_CODES = ['not_verified', 'duplicate', 'unknown_subject', 'subject_erased'] as const;
/** What replaces a staff member's free-text denial or extension reason when the person is erased. */
export const REASON_REMOVED = '[removed at erasure]';

/** Every SQL statement on the request tables. */
/** Ids per `in` list: well under the parameter limits of both databases. */
const CHUNK = 256;
/**
 * The class of PostgreSQL's two-key advisory locks that serialize the starts counted under one rate-limit key ("CDRr");
 * the second key is a hash of the rate-limit key. The one-key locks elsewhere are another key space.
 */
const PG_RATE_LOCK_CLASS = 0x43445272;

/** The second advisory-lock key of a rate-limit key: the first 32 bits of its SHA-256, signed as PostgreSQL's integer. */
const rateLockKey = (key: string) => createHash('sha256').update(key).digest().readInt32BE(0);

export class RequestsRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<RequestsTables>;

  constructor(storage: Storage) {
    this.#storage = storage;
    this.#db = storage.db.withTables<RequestsTables>();
  }

  /** Runs `fn` in one write transaction (the statements below that take `tx`, and the audit entries of the change). */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#storage.raw.transaction(fn);
  }

  /** Inserts a request with its first event, inside the caller's transaction. */
  async insert(tx: SqlExecutor, row: RequestRow, event: RequestEventRow): Promise<void> {
    for (const query of [this.#db.insertInto('rights_requests').values(row).compile(), this.#db.insertInto('rights_request_events').values(event).compile()]) {
      await tx.run(query.sql, query.parameters);
    }
  }

  get(id: string): Promise<RequestRow | undefined> {
    return this.#db.selectFrom('rights_requests').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /**
   * Changes a request only if it is still in `from` (compare-and-set, so two staff members or two nodes never both
   * move it) and, when `attempts` is given, still has that many run attempts (so only one process claims a run and
   * only the claimer finishes it), with the event in the same transaction. Returns whether it changed.
   */
  async update(id: string, from: string, changes: Partial<RequestRow>, event: RequestEventRow | null, attempts?: number): Promise<boolean> {
    return this.transaction((tx) => this.updateIn(tx, id, from, changes, event, attempts));
  }

  /**
   * update() inside the caller's transaction. With `maxCodeAttempts`, the change also counts the verification attempt
   * it ends, and is made only while fewer than that many were counted: a verification and its attempt commit together.
   */
  async updateIn(tx: SqlExecutor, id: string, from: string, changes: Partial<RequestRow>, event: RequestEventRow | null, attempts?: number, maxCodeAttempts?: number): Promise<boolean> {
    let query = this.#db.updateTable('rights_requests').set(changes).where('id', '=', id).where('state', '=', from);
    if (attempts !== undefined) query = query.where('attempts', '=', attempts);
    if (maxCodeAttempts !== undefined) query = query.set((eb) => ({ code_attempts: eb('code_attempts', '+', 1) })).where('code_attempts', '<', maxCodeAttempts);
    const update = query.compile();
    if ((await tx.run(update.sql, update.parameters)) !== 1) return false;
    if (event) {
      const insert = this.#db.insertInto('rights_request_events').values(event).compile();
      await tx.run(insert.sql, insert.parameters);
    }
    return true;
  }

  /**
   * Renews the lease of a run still under way: only while the request is in progress at this attempt and its lease is
   * still held (the run's end clears it), so a renewal that lands after the end, or after another attempt took the run
   * over, changes nothing. Returns whether it renewed.
   */
  async renewLease(id: string, attempts: number, until: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('rights_requests')
      .set({ run_lease_until: until })
      .where('id', '=', id)
      .where('state', '=', 'in_progress')
      .where('attempts', '=', attempts)
      .where('run_lease_until', 'is not', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Counts one failed verification attempt (a wrong or expired code, a wrong second identifier) in a single statement
   * that commits by itself, before anything else is written: the request must still be verifying and have attempts
   * left. Returns this attempt's number (1 for the first), or undefined when it is no longer verifying or its attempts
   * are used up. Parallel attempts each get their own number, so no more than `max` are ever counted.
   */
  async countCodeAttempt(id: string, max: number, at: string): Promise<number | undefined> {
    const row = await this.#db
      .updateTable('rights_requests')
      .set((eb) => ({ code_attempts: eb('code_attempts', '+', 1), updated_at: at }))
      .where('id', '=', id)
      .where('state', '=', 'verifying')
      .where('code_attempts', '<', max)
      .returning('code_attempts')
      .executeTakeFirst();
    return row === undefined ? undefined : Number(row.code_attempts);
  }

  /** Records an event that goes with no change of the request itself. */
  async addEvent(event: RequestEventRow): Promise<void> {
    await this.#db.insertInto('rights_request_events').values(event).execute();
  }

  events(requestId: string): Promise<RequestEventRow[]> {
    return this.#db.selectFrom('rights_request_events').selectAll().where('request_id', '=', requestId).orderBy('at').orderBy('id').execute();
  }

  /** The requests of these profiles, newest first. */
  ofProfiles(profileIds: readonly string[]): Promise<RequestRow[]> {
    if (profileIds.length === 0) return Promise.resolve([]);
    return this.#db.selectFrom('rights_requests').selectAll().where('profile_id', 'in', [...profileIds]).orderBy('received_at', 'desc').orderBy('id', 'desc').limit(500).execute();
  }

  /** Every request of these profiles, oldest first (a person's export: no limit). */
  async allOfProfiles(profileIds: readonly string[]): Promise<RequestRow[]> {
    const out: RequestRow[] = [];
    for (let i = 0; i < profileIds.length; i += CHUNK) {
      out.push(...(await this.#db.selectFrom('rights_requests').selectAll().where('profile_id', 'in', profileIds.slice(i, i + CHUNK)).execute()));
    }
    return out.sort((a, b) => (a.received_at < b.received_at ? -1 : a.received_at > b.received_at ? 1 : a.id < b.id ? -1 : 1));
  }

  /**
   * The latest time a request of these profiles was received, verified or completed (`completed` or
   * `partially_completed`: a denial is no answer the person asked for), read on `executor`; null when they have none.
   */
  async lastActivityIn(executor: SqlExecutor, profileIds: readonly string[]): Promise<string | null> {
    let latest: string | null = null;
    for (let i = 0; i < profileIds.length; i += CHUNK) {
      const compiled = this.#db.selectFrom('rights_requests').select(['state', 'received_at', 'verified_at', 'completed_at']).where('profile_id', 'in', profileIds.slice(i, i + CHUNK)).compile();
      for (const row of await executor.all<Pick<RequestRow, 'state' | 'received_at' | 'verified_at' | 'completed_at'>>(compiled.sql, compiled.parameters)) {
        const answered = row.state === 'completed' || row.state === 'partially_completed' ? row.completed_at : null;
        for (const at of [row.received_at, row.verified_at, answered]) if (at !== null && (latest === null || at > latest)) latest = at;
      }
    }
    return latest;
  }

  /** The events of these requests, each request's in order. */
  async eventsOf(requestIds: readonly string[]): Promise<Map<string, RequestEventRow[]>> {
    const out = new Map<string, RequestEventRow[]>();
    for (let i = 0; i < requestIds.length; i += CHUNK) {
      const rows = await this.#db.selectFrom('rights_request_events').selectAll().where('request_id', 'in', requestIds.slice(i, i + CHUNK)).orderBy('at').orderBy('id').execute();
      for (const row of rows) out.set(row.request_id, [...(out.get(row.request_id) ?? []), row]);
    }
    return out;
  }

  /** The ids of every request of these profiles. */
  async idsOfProfiles(profileIds: readonly string[]): Promise<string[]> {
    if (profileIds.length === 0) return [];
    return (await this.#db.selectFrom('rights_requests').select('id').where('profile_id', 'in', [...profileIds]).execute()).map((r) => r.id);
  }

  /** An earlier request of the same type and profile, open or received since `since`, excluding `except`. */
  async earlier(profileIds: readonly string[], type: string, since: string, except: string): Promise<RequestRow | undefined> {
    if (profileIds.length === 0) return undefined;
    return this.#db
      .selectFrom('rights_requests')
      .selectAll()
      .where('profile_id', 'in', [...profileIds])
      .where('type', '=', type)
      .where('id', '!=', except)
      .where('duplicate_of', 'is', null)
      .where('state', '!=', 'verifying')
      .where((eb) => eb.or([eb('state', 'in', ['received', 'in_progress']), eb('received_at', '>=', since)]))
      .where('state', '!=', 'denied')
      .orderBy('received_at')
      .executeTakeFirst();
  }

  /** Requests in progress with a run under way or interrupted (a lease, live or run out), oldest lease first. */
  runs(limit: number): Promise<RequestRow[]> {
    return this.#db
      .selectFrom('rights_requests')
      .selectAll()
      .where('state', '=', 'in_progress')
      .where('awaiting_approval', '=', 0)
      .where('run_lease_until', 'is not', null)
      .orderBy('run_lease_until')
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /** Requests in progress whose last run failed with this error code (no lease: no run under way), oldest first. */
  failedWith(code: string, limit: number): Promise<RequestRow[]> {
    return this.#db
      .selectFrom('rights_requests')
      .selectAll()
      .where('state', '=', 'in_progress')
      .where('awaiting_approval', '=', 0)
      .where('run_lease_until', 'is', null)
      .where('last_error', '=', code)
      .orderBy('updated_at')
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /** The staff queue: requests in the given states (and denied ones whose last error is `deniedWithError`), soonest due first. */
  queue(states: readonly string[], limit: number, deniedWithError?: string): Promise<RequestRow[]> {
    return this.#db
      .selectFrom('rights_requests')
      .selectAll()
      .where((eb) => (deniedWithError === undefined ? eb('state', 'in', [...states]) : eb.or([eb('state', 'in', [...states]), eb.and([eb('state', '=', 'denied'), eb('last_error', '=', deniedWithError)])])))
      .orderBy('due_at')
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /**
   * The other requests of these profiles that an erasure closes, read on its transaction: the open ones without a run
   * under way or cut off (a run in progress ends by itself), and denied erasure requests whose notice is still owed
   * (their address kept, sealed with their own key, for the retry). `except`: the erasing request, if any.
   */
  async closableIn(tx: SqlExecutor, profileIds: readonly string[], except: string | null): Promise<RequestRow[]> {
    const out: RequestRow[] = [];
    for (let i = 0; i < profileIds.length; i += CHUNK) {
      const query = this.#db
        .selectFrom('rights_requests')
        .selectAll()
        .where('profile_id', 'in', profileIds.slice(i, i + CHUNK))
        .where('id', '!=', except ?? '')
        .where((eb) =>
          eb.or([
            eb('state', 'in', ['received', 'verifying']),
            eb.and([eb('state', '=', 'in_progress'), eb('run_lease_until', 'is', null)]),
            eb.and([eb('state', '=', 'denied'), eb('type', '=', 'erasure'), eb('email', 'is not', null)]),
          ]),
        )
        .orderBy('id')
        .compile();
      out.push(...(await tx.all<RequestRow>(query.sql, query.parameters)));
    }
    return out;
  }

  /** The ids of these profiles' denied erasure requests (but `except`, if any) whose address is still stored, sealed with their own key. */
  async sealedAddresses(profileIds: readonly string[], except: string | null): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < profileIds.length; i += CHUNK) {
      const rows = await this.#db
        .selectFrom('rights_requests')
        .select('id')
        .where('profile_id', 'in', profileIds.slice(i, i + CHUNK))
        .where('id', '!=', except ?? '')
        .where('type', '=', 'erasure')
        .where('state', '=', 'denied')
        .where('email', 'is not', null)
        .execute();
      ids.push(...rows.map((r) => r.id));
    }
    return ids;
  }

  /** Clears a request's stored address (once the key sealing it is destroyed). */
  async clearAddress(id: string): Promise<void> {
    await this.#db.updateTable('rights_requests').set({ email: null }).where('id', '=', id).execute();
  }

  /**
   * Replaces staff members' free-text reasons (denial, extension) on these profiles' requests with REASON_REMOVED,
   * inside the erasure's transaction; the codes Candor writes stay. Returns how many reasons were replaced.
   */
  async removeStaffReasonsIn(tx: SqlExecutor, profileIds: readonly string[]): Promise<number> {
    let count = 0;
    for (let i = 0; i < profileIds.length; i += CHUNK) {
      const ids = profileIds.slice(i, i + CHUNK);
      const denial = this.#db
        .updateTable('rights_requests')
        .set({ denial_reason: REASON_REMOVED })
        .where('profile_id', 'in', ids)
        .where('denial_reason', 'is not', null)
        .where('denial_reason', 'not in', [...DENIAL_CODES, REASON_REMOVED])
        .compile();
      count += await tx.run(denial.sql, denial.parameters);
      const extension = this.#db
        .updateTable('rights_requests')
        .set({ extension_reason: REASON_REMOVED })
        .where('profile_id', 'in', ids)
        .where('extension_reason', 'is not', null)
        .where('extension_reason', '!=', REASON_REMOVED)
        .compile();
      count += await tx.run(extension.sql, extension.parameters);
    }
    return count;
  }

  byDownloadHash(hash: string): Promise<RequestRow | undefined> {
    return this.#db.selectFrom('rights_requests').selectAll().where('download_hash', '=', hash).executeTakeFirst();
  }

  /** Forgets the starts counted under these keys. */
  async deleteStarts(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += CHUNK) await this.#db.deleteFrom('rights_rate_events').where('key', 'in', keys.slice(i, i + CHUNK)).execute();
  }

  /** How many starts are older than `cutoff`. */
  async countStartsBefore(cutoff: string): Promise<number> {
    const row = await this.#db.selectFrom('rights_rate_events').select((eb) => eb.fn.countAll<number>().as('n')).where('at', '<', cutoff).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** Deletes the starts older than `cutoff`, about `batchSize` at a time; how many. */
  async deleteStartsBefore(cutoff: string, batchSize: number): Promise<number> {
    let count = 0;
    for (;;) {
      // The rows have no id: a batch is every expired start up to the batch's last time (ties go with it).
      const last = await this.#db.selectFrom('rights_rate_events').select('at').where('at', '<', cutoff).orderBy('at').offset(batchSize - 1).limit(1).executeTakeFirst();
      const result = await this.#db.deleteFrom('rights_rate_events').where('at', '<', cutoff).where('at', '<=', last?.at ?? cutoff).executeTakeFirst();
      count += Number(result.numDeletedRows);
      if (!last) return count;
    }
  }

  /**
   * Records a start under each key unless a key already made its `limit` of starts since `since`; false, with nothing
   * recorded, then. The counts and the insert are one transaction that holds each key's lock (PostgreSQL: an advisory
   * lock per key, taken in one order so that starts sharing keys queue instead of deadlocking; SQLite: its write
   * lock), so concurrent starts cannot all pass a count none of them has added to yet. Starts older than `since` are
   * forgotten afterwards (they say nothing any more).
   */
  async recordStart(keys: readonly { key: string; limit: number }[], at: string, since: string): Promise<boolean> {
    const recorded = await this.#storage.raw.transaction(async (tx) => {
      if (this.#storage.dialect === 'postgres') {
        for (const lock of [...new Set(keys.map((k) => rateLockKey(k.key)))].sort((a, b) => a - b)) {
          await tx.all('select pg_advisory_xact_lock($1, $2)', [PG_RATE_LOCK_CLASS, lock]);
        }
      }
      for (const { key, limit } of keys) {
        const count = this.#db.selectFrom('rights_rate_events').select((eb) => eb.fn.countAll<number>().as('n')).where('key', '=', key).where('at', '>=', since).compile();
        const [row] = await tx.all<{ n: number | string }>(count.sql, count.parameters);
        if (Number(row?.n ?? 0) >= limit) return false;
      }
      const insert = this.#db.insertInto('rights_rate_events').values(keys.map(({ key }) => ({ key, at }))).compile();
      await tx.run(insert.sql, insert.parameters);
      return true;
    });
    if (recorded) await this.#db.deleteFrom('rights_rate_events').where('at', '<', since).execute();
    return recorded;
  }
}
