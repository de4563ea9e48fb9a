import type { Kysely } from 'kysely';
import type { SweepMark } from '../../shared/subject-data.ts';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';

export type RetentionTables = {
  /** Where each rewrite rule got to, so that a sweep does not walk what an earlier one already did. */
  retention_marks: { rule: string; at: string; last_id: string; updated_at: string };
  /**
   * What is owed after the commit of an inactive person's deletion, one row per person, written in the deleting
   * transaction: the person is gone, so no later sweep would find them again. `keys_pending`: the steps after the
   * commit (caches, keys, files); `truncation_pending`: those ran, SQLite's write-ahead log, which holds the deleted
   * values, is still to be truncated (the row goes once it is). Profile ids and identifier pseudonyms (JSON), never
   * values.
   */
  retention_owed: { profile_id: string; profile_ids: string; identifiers: string; at: string; actor: string; role: string; state: OwedState };
};

export type OwedState = 'keys_pending' | 'truncation_pending';

/** An inactive person's deletion whose steps after the commit are owed. */
export type OwedDeletion = RetentionTables['retention_owed'];

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
  {
    name: '0125_retention_owed',
    async up(db) {
      await db.schema
        .createTable('retention_owed')
        .addColumn('profile_id', 'text', (c) => c.primaryKey())
        .addColumn('profile_ids', 'text', (c) => c.notNull())
        .addColumn('identifiers', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
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

  /** Records, in the deleting transaction, that a person's steps after the commit are owed. */
  async oweIn(tx: SqlExecutor, owed: OwedDeletion): Promise<void> {
    const insert = this.#db.insertInto('retention_owed').values(owed).compile();
    await tx.run(insert.sql, insert.parameters);
  }

  /** The deletions owed in this state, oldest first. */
  owed(state: OwedState): Promise<OwedDeletion[]> {
    return this.#db.selectFrom('retention_owed').selectAll().where('state', '=', state).orderBy('at').orderBy('profile_id').execute();
  }

  /** The steps after a deletion's commit ran: only the truncation of the write-ahead log is owed for the person. */
  async stepsDone(profileId: string): Promise<void> {
    await this.#db.updateTable('retention_owed').set({ state: 'truncation_pending' }).where('profile_id', '=', profileId).execute();
  }

  /** The write-ahead log was truncated after these deletions: nothing is owed for them any more. */
  async settle(profileIds: readonly string[]): Promise<void> {
    for (let i = 0; i < profileIds.length; i += 500) {
      await this.#db.deleteFrom('retention_owed').where('profile_id', 'in', profileIds.slice(i, i + 500)).where('state', '=', 'truncation_pending').execute();
    }
  }
}
