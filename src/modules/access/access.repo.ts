import type { Kysely } from 'kysely';
import type { ModuleMigration, Storage } from '../../storage/index.ts';

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

  async insert(row: TokenRow): Promise<void> {
    await this.#db.insertInto('access_tokens').values(row).execute();
  }

  async revoke(id: string, by: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('access_tokens')
      .set({ revoked_at: new Date().toISOString(), revoked_by: by })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  list(): Promise<TokenRow[]> {
    return this.#db.selectFrom('access_tokens').selectAll().orderBy('created_at').orderBy('id').execute();
  }

  async countAll(): Promise<number> {
    const row = await this.#db.selectFrom('access_tokens').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async countActiveOwners(): Promise<number> {
    const row = await this.#db
      .selectFrom('access_tokens')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('kind', '=', 'api')
      .where('role', '=', 'owner')
      .where('revoked_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
