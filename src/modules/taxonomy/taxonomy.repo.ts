import type { Kysely } from 'kysely';
import { textOrder, type ModuleMigration, type OrderModifiers, type SqlExecutor, type Storage } from '../../storage/index.ts';

export type TaxonomyTables = {
  taxonomy_custom_entries: {
    kind: string;
    key: string;
    name: string;
    description: string;
    parent_key: string | null;
    attributes: string;
    created_at: string;
    created_by: string;
  };
};

export type CustomEntryRow = TaxonomyTables['taxonomy_custom_entries'];

export const TAXONOMY_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0004_taxonomy_custom_entries',
    async up(db) {
      await db.schema
        .createTable('taxonomy_custom_entries')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('parent_key', 'text')
        .addColumn('attributes', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('taxonomy_custom_entries_pk', ['kind', 'key'])
        .execute();
    },
  },
];

/** Every SQL statement on the taxonomy tables. */
export class TaxonomyRepo {
  readonly #db: Kysely<TaxonomyTables>;
  /** Text in code point order on this database (textOrder); public: a new private member of an existing class breaks warm compile caches (docs/dev/conventions.md). */
  readonly byText: OrderModifiers;

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<TaxonomyTables>();
    this.byText = textOrder(storage.dialect).asc;
  }

  /** Every custom entry, by list and key in code point order (not the database's collation). */
  all(): Promise<CustomEntryRow[]> {
    return this.#db.selectFrom('taxonomy_custom_entries').selectAll().orderBy('kind', this.byText).orderBy('key', this.byText).execute();
  }

  /** Inserts a custom entry inside the caller's transaction. */
  async insert(tx: SqlExecutor, row: CustomEntryRow): Promise<void> {
    const query = this.#db.insertInto('taxonomy_custom_entries').values(row).compile();
    await tx.run(query.sql, query.parameters);
  }
}
