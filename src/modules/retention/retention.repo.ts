import type { Kysely } from 'kysely';
import type { SweepMark } from '../../shared/subject-data.ts';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';

/** Where each rewrite rule got to, so that a sweep does not walk what an earlier one already did. */
export type RetentionTables = {
  retention_marks: { rule: string; at: string; last_id: string; updated_at: string };
};

export const RETENTION_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0070_retention_marks',
    async up(db) {
      await db.schema
        .createTable('retention_marks')
        .addColumn('rule', 'text', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('last_id', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
];

/** Every SQL statement on the retention tables. */
export class RetentionRepo {
  readonly #db: Kysely<RetentionTables>;
  readonly #upsert: string;

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<RetentionTables>();
    this.#upsert = this.#db
      .insertInto('retention_marks')
      .values({ rule: '', at: '', last_id: '', updated_at: '' })
      .onConflict((oc) => oc.column('rule').doUpdateSet((eb) => ({ at: eb.ref('excluded.at'), last_id: eb.ref('excluded.last_id'), updated_at: eb.ref('excluded.updated_at') })))
      .compile().sql;
  }

  async mark(rule: string): Promise<SweepMark | null> {
    const row = await this.#db.selectFrom('retention_marks').select(['at', 'last_id']).where('rule', '=', rule).executeTakeFirst();
    return row ? { at: row.at, id: row.last_id } : null;
  }

  async setMark(tx: SqlExecutor, rule: string, mark: SweepMark): Promise<void> {
    await tx.run(this.#upsert, [rule, mark.at, mark.id, new Date().toISOString()]);
  }
}
