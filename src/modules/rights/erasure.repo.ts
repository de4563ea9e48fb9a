import { sql, type Kysely } from 'kysely';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';
import type { DeletionLedgerEntry, IdentifierPseudonym } from '../../shared/subject-data.ts';

/**
 * Erasure bookkeeping. `rights_erasures` holds one row per erasure request with its certificate (JSON) and its
 * state (`keys_pending` until the data keys are destroyed, the ledger file written and SQLite's WAL truncated, then
 * `done`); `rights_deletion_ledger` is the database copy of the deletion ledger; `rights_erased_profiles` answers "was
 * this profile erased?" for a second request. Only profile ids and pseudonyms, never identifier values.
 */
export type ErasureTables = {
  rights_erasures: {
    request_id: string;
    subject: string;
    profile_ids: string;
    identifiers: string;
    state: string;
    started_at: string;
    completed_at: string | null;
    certificate: string;
  };
  rights_deletion_ledger: {
    seq: number;
    request_id: string;
    at: string;
    profile_ids: string;
    identifiers: string;
    prev_hash: string;
    hash: string;
  };
  rights_erased_profiles: { profile_id: string; request_id: string };
};

export type ErasureRow = ErasureTables['rights_erasures'];
export type LedgerRow = ErasureTables['rights_deletion_ledger'];

export const RIGHTS_ERASURE_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0060_rights_erasure',
    async up(db) {
      await db.schema
        .createTable('rights_erasures')
        .addColumn('request_id', 'text', (c) => c.primaryKey())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('profile_ids', 'text', (c) => c.notNull())
        .addColumn('identifiers', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('completed_at', 'text')
        .addColumn('certificate', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('rights_erasures_state').on('rights_erasures').column('state').execute();
      await db.schema
        .createTable('rights_deletion_ledger')
        .addColumn('seq', 'integer', (c) => c.primaryKey())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('profile_ids', 'text', (c) => c.notNull())
        .addColumn('identifiers', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('rights_erased_profiles')
        .addColumn('profile_id', 'text', (c) => c.primaryKey())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .execute();
    },
  },
];

/** The SQLSTATE of a PostgreSQL error, also when the storage layer coded it (its details or its cause). */
function sqlstateOf(error: unknown): unknown {
  const e = error as { code?: unknown; details?: { sqlstate?: unknown }; cause?: { code?: unknown } } | null;
  return e?.details?.sqlstate ?? e?.cause?.code ?? e?.code;
}

export function ledgerEntryOf(row: LedgerRow): DeletionLedgerEntry {
  return {
    seq: Number(row.seq),
    requestId: row.request_id,
    at: row.at,
    profileIds: JSON.parse(row.profile_ids) as string[],
    identifiers: JSON.parse(row.identifiers) as IdentifierPseudonym[],
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Every SQL statement on the erasure tables; writes take the caller's transaction. */
export class ErasureRepo {
  readonly #db: Kysely<ErasureTables>;

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<ErasureTables>();
  }

  async #run(tx: SqlExecutor, compiled: { sql: string; parameters: readonly unknown[] }): Promise<number> {
    return tx.run(compiled.sql, compiled.parameters);
  }

  insertErasure(tx: SqlExecutor, row: ErasureRow): Promise<number> {
    return this.#run(tx, this.#db.insertInto('rights_erasures').values(row).compile());
  }

  async finishErasure(requestId: string, completedAt: string, certificate: string): Promise<void> {
    await this.#db.updateTable('rights_erasures').set({ state: 'done', completed_at: completedAt, certificate }).where('request_id', '=', requestId).execute();
  }

  /** Replaces the certificate of an erasure still `keys_pending` (never that of one another attempt finished meanwhile). */
  async pendingCertificate(requestId: string, certificate: string): Promise<void> {
    await this.#db.updateTable('rights_erasures').set({ certificate }).where('request_id', '=', requestId).where('state', '=', 'keys_pending').execute();
  }

  /** The erasure row of a request (read on `tx` when given: Kysely must not be used inside a raw transaction). */
  async erasure(requestId: string, tx?: SqlExecutor): Promise<ErasureRow | undefined> {
    const compiled = this.#db.selectFrom('rights_erasures').selectAll().where('request_id', '=', requestId).compile();
    const rows = tx ? await tx.all<ErasureRow>(compiled.sql, compiled.parameters) : (await this.#db.executeQuery(compiled)).rows;
    return rows[0];
  }

  /** Erasures whose keys or ledger file line are still owed (interrupted after their commit). */
  pending(): Promise<ErasureRow[]> {
    return this.#db.selectFrom('rights_erasures').selectAll().where('state', '=', 'keys_pending').orderBy('started_at').execute();
  }

  async markErased(tx: SqlExecutor, profileIds: readonly string[], requestId: string): Promise<void> {
    for (let i = 0; i < profileIds.length; i += 100) {
      const rows = profileIds.slice(i, i + 100).map((profile_id) => ({ profile_id, request_id: requestId }));
      await this.#run(tx, this.#db.insertInto('rights_erased_profiles').values(rows).onConflict((oc) => oc.column('profile_id').doNothing()).compile());
    }
  }

  /** The request that erased any of these profiles, if one did (read on `tx` when given). */
  async erasedBy(profileIds: readonly string[], tx?: SqlExecutor): Promise<string | undefined> {
    for (let i = 0; i < profileIds.length; i += 256) {
      const compiled = this.#db.selectFrom('rights_erased_profiles').select('request_id').where('profile_id', 'in', profileIds.slice(i, i + 256)).limit(1).compile();
      const rows = tx ? await tx.all<{ request_id: string }>(compiled.sql, compiled.parameters) : (await this.#db.executeQuery(compiled)).rows;
      if (rows[0]) return rows[0].request_id;
    }
    return undefined;
  }

  async insertLedger(tx: SqlExecutor, entry: DeletionLedgerEntry): Promise<void> {
    await this.#run(
      tx,
      this.#db
        .insertInto('rights_deletion_ledger')
        .values({
          seq: entry.seq,
          request_id: entry.requestId,
          at: entry.at,
          profile_ids: JSON.stringify(entry.profileIds),
          identifiers: JSON.stringify(entry.identifiers),
          prev_hash: entry.prevHash,
          hash: entry.hash,
        })
        .compile(),
    );
  }

  async lastLedger(tx: SqlExecutor): Promise<DeletionLedgerEntry | undefined> {
    const compiled = this.#db.selectFrom('rights_deletion_ledger').selectAll().orderBy('seq', 'desc').limit(1).compile();
    const rows = await tx.all<LedgerRow>(compiled.sql, compiled.parameters);
    return rows[0] ? ledgerEntryOf(rows[0]) : undefined;
  }

  async ledger(): Promise<DeletionLedgerEntry[]> {
    const rows = await this.#db.selectFrom('rights_deletion_ledger').selectAll().orderBy('seq').execute();
    return rows.map(ledgerEntryOf);
  }

  /**
   * PostgreSQL: the tables of the current schema that an erasure's certificate names as a store — where erasures
   * delete or change rows — by name.
   */
  async erasedTables(): Promise<string[]> {
    const { rows } = await sql<{ name: string }>`
      SELECT tablename AS name FROM pg_tables
      WHERE schemaname = current_schema()
        AND tablename IN (SELECT jsonb_array_elements(certificate::jsonb -> 'stores') ->> 'store' FROM rights_erasures)
      ORDER BY tablename`.execute(this.#db);
    return rows.map((r) => r.name);
  }

  /**
   * PostgreSQL: what keeps rows deleted by the last erasure from being removed by a rewrite (VACUUM FULL copies a
   * deleted row that a transaction still running may see): transactions of the whole server open since before that
   * erasure ended, prepared transactions as old, and replication slots that hold back removal (`xmin`). Sessions of
   * other users are seen only with the pg_read_all_stats role. None when no erasure was done.
   */
  async removalHolders(): Promise<{ kind: 'transaction' | 'prepared_transaction' | 'replication_slot'; name: string; database: string | null; since: string | null }[]> {
    const { rows } = await sql<{ kind: 'transaction' | 'prepared_transaction' | 'replication_slot'; name: string; database: string | null; since: string | null }>`
      WITH last AS (SELECT max(completed_at)::timestamptz AS at FROM rights_erasures WHERE state = 'done')
      SELECT 'transaction' AS kind, 'pid ' || a.pid AS name, a.datname AS database, a.xact_start::text AS since
        FROM pg_stat_activity a, last
        WHERE a.pid <> pg_backend_pid() AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL) AND a.xact_start < last.at
      UNION ALL
      SELECT 'prepared_transaction', p.gid, p.database, p.prepared::text FROM pg_prepared_xacts p, last WHERE p.prepared < last.at
      UNION ALL
      SELECT 'replication_slot', r.slot_name, r.database, NULL FROM pg_replication_slots r, last WHERE r.xmin IS NOT NULL AND last.at IS NOT NULL
      ORDER BY 4, 2`.execute(this.#db);
    return rows;
  }

  /** PostgreSQL: the bytes a table of the current schema takes on disk, with its indexes and TOAST data. */
  async tableBytes(table: string): Promise<number> {
    const { rows } = await sql<{ bytes: number | string }>`
      SELECT pg_total_relation_size(c.oid) AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relname = ${table}`.execute(this.#db);
    return Number(rows[0]?.bytes ?? 0);
  }

  /**
   * PostgreSQL: rewrites a table into new files (VACUUM FULL; its indexes are rebuilt), so the bytes of its deleted
   * rows leave the data files, and takes its planner statistics again from the rows left (ANALYZE), so their values
   * leave pg_stats too. The table is locked (ACCESS EXCLUSIVE) while it is rewritten. Not in a transaction.
   */
  async rewriteTable(table: string): Promise<void> {
    await sql`VACUUM (FULL, ANALYZE) ${sql.table(table)}`.execute(this.#db);
  }

  /** PostgreSQL: whether this role may rewrite the pg_statistic catalog: a superuser, or a member of its owner. */
  async mayRewriteStatistics(): Promise<boolean> {
    const { rows } = await sql<{ may: boolean }>`
      SELECT r.rolsuper OR pg_has_role(current_user, c.relowner, 'MEMBER') AS may
      FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'pg_catalog.pg_statistic'::regclass`.execute(this.#db);
    return rows[0]?.may === true;
  }

  /**
   * PostgreSQL: rewrites the pg_statistic catalog (VACUUM FULL), so the statistics rows that ANALYZE replaced (with
   * sample values of deleted rows) leave its file; false, with nothing done, when its lock was not had within
   * `waitMs` (a session reading pg_stats in a transaction still open holds it). While the rewrite waits for the lock
   * and while it runs (milliseconds), planning that reads statistics in this database waits too: hence the bound.
   * Not in a transaction.
   */
  async rewriteStatistics(waitMs: number): Promise<boolean> {
    return this.#db.connection().execute(async (db) => {
      await sql`SELECT set_config('lock_timeout', ${`${waitMs}ms`}, false)`.execute(db);
      try {
        await sql`VACUUM FULL pg_catalog.pg_statistic`.execute(db);
        return true;
      } catch (error) {
        if (sqlstateOf(error) === '55P03') return false;
        throw error;
      } finally {
        await sql`RESET lock_timeout`.execute(db);
      }
    });
  }

  async ledgerOf(requestId: string): Promise<DeletionLedgerEntry | undefined> {
    const row = await this.#db.selectFrom('rights_deletion_ledger').selectAll().where('request_id', '=', requestId).executeTakeFirst();
    return row ? ledgerEntryOf(row) : undefined;
  }
}
