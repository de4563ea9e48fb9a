import type { Kysely } from 'kysely';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';

export type AccessTables = {
  access_tokens: {
    id: string;
    kind: string;
    role: string;
    source: string | null;
    label: string | null;
    salt: string;
    hash: string;
    created_at: string;
    created_by: string;
    revoked_at: string | null;
    revoked_by: string | null;
  };
};

export type TokenRow = AccessTables['access_tokens'];
/** What a revocation found: done, no such credential, revoked before, or the last active owner token (kept). */
export type RevokeOutcome = 'revoked' | 'missing' | 'already' | 'last_owner';

/** The advisory lock ("CDAc") that serializes first starts' checks for a credential on PostgreSQL. */
const PG_FIRST_TOKEN_LOCK = 0x43444163;

/** The statement that lists revoked credentials (`revokedCredentials`): plain SQL, the same on both databases. */
export const REVOKED_CREDENTIALS_SQL = 'SELECT id, revoked_at FROM access_tokens WHERE revoked_at IS NOT NULL ORDER BY id';

/**
 * The credentials a database records as revoked, read with any executor of plain SQL: a restore reads them from the
 * database it is about to replace (SQLite opened read-only, or a PostgreSQL client), before any migration.
 */
export async function revokedCredentials(all: (sql: string) => Promise<readonly Record<string, unknown>[]> | readonly Record<string, unknown>[]): Promise<{ id: string; revokedAt: string }[]> {
  return (await all(REVOKED_CREDENTIALS_SQL)).map((row) => ({ id: String(row.id), revokedAt: String(row.revoked_at) }));
}

export const ACCESS_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0003_access_tokens',
    async up(db) {
      await db.schema
        .createTable('access_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('source', 'text')
        .addColumn('label', 'text')
        .addColumn('salt', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'text')
        .addColumn('revoked_by', 'text')
        .execute();
    },
  },
];

/** Every SQL statement on access_tokens. */
export class AccessRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<AccessTables>;
  readonly #byIdSql: string;

  constructor(storage: Storage) {
    this.#storage = storage;
    this.#db = storage.db.withTables<AccessTables>();
    this.#byIdSql = this.#db.selectFrom('access_tokens').selectAll().where('id', '=', '').compile().sql;
  }

  async byId(id: string): Promise<TokenRow | undefined> {
    const rows = await this.#storage.raw.all<TokenRow>(this.#byIdSql, [id]);
    return rows[0];
  }

  /** Inserts a credential inside the caller's transaction. */
  async insert(tx: SqlExecutor, row: TokenRow): Promise<void> {
    const query = this.#db.insertInto('access_tokens').values(row).compile();
    await tx.run(query.sql, query.parameters);
  }

  /**
   * Revokes a credential unless it is the last active owner token, inside the caller's transaction: the check and the
   * update are one transaction (owner rows locked on PostgreSQL; SQLite write transactions are serial).
   */
  async revoke(tx: SqlExecutor, id: string, by: string): Promise<RevokeOutcome> {
    const lock = this.#storage.dialect === 'postgres';
    const [row] = await tx.all<TokenRow>(this.#byIdSql, [id]);
    if (!row) return 'missing';
    if (row.kind === 'api' && row.role === 'owner') {
      // Lock every active owner row in one order, so concurrent revocations queue instead of deadlocking.
      let owners = this.#db.selectFrom('access_tokens').select('id').where('kind', '=', 'api').where('role', '=', 'owner').where('revoked_at', 'is', null).orderBy('id');
      if (lock) owners = owners.forUpdate();
      const query = owners.compile();
      const active = (await tx.all<{ id: string }>(query.sql, query.parameters)).map((o) => o.id);
      if (!active.includes(id)) return 'already';
      if (active.length <= 1) return 'last_owner';
    } else {
      let current = this.#db.selectFrom('access_tokens').select('revoked_at').where('id', '=', id);
      if (lock) current = current.forUpdate();
      const query = current.compile();
      if ((await tx.all<{ revoked_at: string | null }>(query.sql, query.parameters))[0]?.revoked_at != null) return 'already';
    }
    const update = this.#db.updateTable('access_tokens').set({ revoked_at: new Date().toISOString(), revoked_by: by }).where('id', '=', id).compile();
    await tx.run(update.sql, update.parameters);
    return 'revoked';
  }

  /**
   * Replaces a credential's stored hash, unless it changed since it was read (another server upgraded it first): a
   * compare-and-set, so processes upgrading the same credential at once leave one value.
   */
  async upgradeHash(id: string, from: string, to: string): Promise<boolean> {
    const result = await this.#db.updateTable('access_tokens').set({ salt: '', hash: to }).where('id', '=', id).where('hash', '=', from).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  list(): Promise<TokenRow[]> {
    return this.#db.selectFrom('access_tokens').selectAll().orderBy('created_at').orderBy('id').execute();
  }

  async countAll(): Promise<number> {
    const row = await this.#db.selectFrom('access_tokens').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Whether any credential exists, inside the caller's transaction, which it serializes with every other transaction
   * that asks (PostgreSQL: an advisory lock held to the commit; SQLite write transactions are serial): two servers
   * doing a first start on one database at once then create one first owner token, not two.
   */
  async anyLocked(tx: SqlExecutor): Promise<boolean> {
    if (this.#storage.dialect === 'postgres') await tx.all('select pg_advisory_xact_lock($1)', [PG_FIRST_TOKEN_LOCK]);
    const rows = await tx.all<{ id: string }>('SELECT id FROM access_tokens LIMIT 1', []);
    return rows.length > 0;
  }
}
