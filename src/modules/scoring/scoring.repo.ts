import type { Kysely } from 'kysely';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';

/**
 * Fitted models (parameters, version, what they were fitted on), their sufficient statistics (how many customers
 * share each summary: erasing one decrements a count, and refitting on the counts gives exactly the model without
 * them), and each profile's scores with reasons and lineage. JSON columns are text.
 */
export type ScoringTables = {
  scoring_models: {
    id: string;
    kind: string;
    version: number;
    params: string;
    details: string;
    customers: number;
    fitted_at: string;
    current: number;
    /** 1 when statistics changed (an erasure) since the parameters were fitted. */
    stale: number;
  };
  scoring_stats: { model_id: string; key: string; count: number };
  scoring_scores: {
    profile_id: string;
    run_id: string;
    computed_at: string;
    /** Scores: RFM, segment, persona, P(alive), churn, CLV. */
    data: string;
    /** Reasons in words, one per score. */
    reasons: string;
    /** Model ids and the statistics keys this profile contributed (for decrementing on erasure or withdrawal). */
    lineage: string;
  };
};

export type ModelRow = ScoringTables['scoring_models'];
export type ScoreRow = ScoringTables['scoring_scores'];

export const SCORING_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0080_scoring_models',
    async up(db) {
      await db.schema
        .createTable('scoring_models')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('details', 'text', (c) => c.notNull())
        .addColumn('customers', 'integer', (c) => c.notNull())
        .addColumn('fitted_at', 'text', (c) => c.notNull())
        .addColumn('current', 'integer', (c) => c.notNull())
        .addColumn('stale', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('scoring_models_kind').on('scoring_models').columns(['kind', 'current']).execute();
      await db.schema
        .createTable('scoring_stats')
        .addColumn('model_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('count', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('scoring_stats_pk', ['model_id', 'key'])
        .execute();
      await db.schema
        .createTable('scoring_scores')
        .addColumn('profile_id', 'text', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('computed_at', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('reasons', 'text', (c) => c.notNull())
        .addColumn('lineage', 'text', (c) => c.notNull())
        .execute();
    },
  },
];

export class ScoringRepo {
  readonly #db: Kysely<ScoringTables>;

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<ScoringTables>();
  }

  get db(): Kysely<ScoringTables> {
    return this.#db;
  }

  async nextVersion(kind: string): Promise<number> {
    const row = await this.#db.selectFrom('scoring_models').select((eb) => eb.fn.max('version').as('v')).where('kind', '=', kind).executeTakeFirst();
    return Number(row?.v ?? 0) + 1;
  }

  async currentModels(): Promise<ModelRow[]> {
    return this.#db.selectFrom('scoring_models').selectAll().where('current', '=', 1).orderBy('kind').execute();
  }

  async model(id: string): Promise<ModelRow | undefined> {
    return this.#db.selectFrom('scoring_models').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async staleModels(): Promise<ModelRow[]> {
    return this.#db.selectFrom('scoring_models').selectAll().where('current', '=', 1).where('stale', '=', 1).execute();
  }

  async stats(modelId: string): Promise<{ key: string; count: number }[]> {
    const rows = await this.#db.selectFrom('scoring_stats').select(['key', 'count']).where('model_id', '=', modelId).where('count', '>', 0).execute();
    return rows.map((r) => ({ key: r.key, count: Number(r.count) }));
  }

  /** Replaces the current model of each kind and all scores with a run's results, in one transaction. */
  async saveRun(models: readonly { row: ModelRow; stats: ReadonlyMap<string, number> }[], scores: readonly ScoreRow[], profiled: ReadonlySet<string>): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      for (const { row, stats } of models) {
        await trx.updateTable('scoring_models').set({ current: 0 }).where('kind', '=', row.kind).where('current', '=', 1).execute();
        await trx.insertInto('scoring_models').values(row).execute();
        const entries = [...stats];
        for (let i = 0; i < entries.length; i += 200) {
          await trx
            .insertInto('scoring_stats')
            .values(entries.slice(i, i + 200).map(([key, count]) => ({ model_id: row.id, key, count })))
            .execute();
        }
      }
      // Scores of people no longer profiled go; everyone profiled gets this run's scores.
      const existing = await trx.selectFrom('scoring_scores').select('profile_id').execute();
      const gone = existing.map((r) => r.profile_id).filter((id) => !profiled.has(id));
      for (let i = 0; i < gone.length; i += 500) await trx.deleteFrom('scoring_scores').where('profile_id', 'in', gone.slice(i, i + 500)).execute();
      for (let i = 0; i < scores.length; i += 100) {
        const part = scores.slice(i, i + 100);
        await trx
          .insertInto('scoring_scores')
          .values(part)
          .onConflict((oc) => oc.column('profile_id').doUpdateSet((eb) => ({ run_id: eb.ref('excluded.run_id'), computed_at: eb.ref('excluded.computed_at'), data: eb.ref('excluded.data'), reasons: eb.ref('excluded.reasons'), lineage: eb.ref('excluded.lineage') })))
          .execute();
      }
    });
  }

  async scores(profileIds: readonly string[]): Promise<ScoreRow[]> {
    if (profileIds.length === 0) return [];
    return this.#db.selectFrom('scoring_scores').selectAll().where('profile_id', 'in', profileIds).execute();
  }

  async allScores(): Promise<Pick<ScoreRow, 'profile_id' | 'data'>[]> {
    return this.#db.selectFrom('scoring_scores').select(['profile_id', 'data']).execute();
  }

  /** Removes profiles' scores and decrements what they contributed to the models' statistics, using only `tx`. */
  async forget(tx: SqlExecutor, profileIds: readonly string[]): Promise<{ scores: number; statistics: number }> {
    if (profileIds.length === 0) return { scores: 0, statistics: 0 };
    const db = this.#db;
    const select = db.selectFrom('scoring_scores').select(['profile_id', 'lineage']).where('profile_id', 'in', profileIds).compile();
    const rows = await tx.all<{ profile_id: string; lineage: string }>(select.sql, select.parameters);
    let statistics = 0;
    for (const row of rows) {
      const lineage = JSON.parse(row.lineage) as { stats?: { modelId: string; key: string }[] };
      for (const { modelId, key } of lineage.stats ?? []) {
        const decrement = db
          .updateTable('scoring_stats')
          .set((eb) => ({ count: eb('count', '-', 1) }))
          .where('model_id', '=', modelId)
          .where('key', '=', key)
          .where('count', '>', 0)
          .compile();
        statistics += await tx.run(decrement.sql, decrement.parameters);
        const mark = db
          .updateTable('scoring_models')
          .set((eb) => ({ stale: 1, customers: eb('customers', '-', 1) }))
          .where('id', '=', modelId)
          .where('customers', '>', 0)
          .compile();
        await tx.run(mark.sql, mark.parameters);
      }
    }
    const remove = db.deleteFrom('scoring_scores').where('profile_id', 'in', profileIds).compile();
    const scores = await tx.run(remove.sql, remove.parameters);
    return { scores, statistics };
  }

  async updateParams(id: string, params: string, details: string): Promise<void> {
    await this.#db.updateTable('scoring_models').set({ params, details, stale: 0 }).where('id', '=', id).execute();
  }
}
