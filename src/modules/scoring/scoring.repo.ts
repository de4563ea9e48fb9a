import type { Compilable, Kysely } from 'kysely';
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
  /**
   * Clean-ups owed (see Scoring.reconcile): a profile whose consent changed while it had scores, recorded in the
   * change's transaction; or a run (its id) whose saved rows are still to be checked against the consent changes
   * that committed while it saved. `token` tells a row written again since it was read from the one read. Erasure
   * leaves a profile's row (a random id, nothing else) to the next reconcile, which finds nothing to forget and
   * deletes it: deleting it in the erasure's transaction would take its lock after the scoring lock, against a consent
   * change that takes it while holding the person's lock.
   */
  scoring_owed: { kind: OwedKind; subject: string; token: string; at: string };
};

export type ModelRow = ScoringTables['scoring_models'];
/** What an owed row is about: a profile's stored scores, or a run's saved rows. */
export type OwedKind = 'profile' | 'run';
export type Owed = Pick<ScoringTables['scoring_owed'], 'kind' | 'subject' | 'token' | 'at'>;
export type ScoreRow = ScoringTables['scoring_scores'];

/** What a score row was computed from: the models (and statistics) per kind, and the purpose its data was read for. */
export interface Lineage {
  models: Record<string, { id: string; version: number }>;
  stats?: { modelId: string; key: string }[];
  /** Rows written before purposes were recorded were read for the first profiling purpose. */
  purpose?: string;
  summary?: unknown;
}

/** The purpose a row's data was read for. */
export function purposeOfLineage(lineage: Lineage): string {
  return lineage.purpose ?? DEFAULT_PROFILING_PURPOSE;
}

/** The profiling purpose rows without a recorded purpose were read for. */
export const DEFAULT_PROFILING_PURPOSE = 'personalize.profiling';

const PG_SCORING_LOCK = 0x43445363; // "CDSc": serializes writers of scores on PostgreSQL

/** The scores (and reasons) each model kind gives. */
const PARTS: Record<string, readonly string[]> = {
  rfm: ['rfm', 'rfmWithoutAmounts'],
  personas: ['persona'],
  bgnbd: ['pAlive', 'expectedOrders90d', 'churn'],
  gamma_gamma: ['clv', 'clvWithoutAmounts'],
  leads: ['lead'],
};

interface Parts {
  data: Record<string, unknown>;
  reasons: Record<string, unknown>;
  models: Lineage['models'];
  stats: NonNullable<Lineage['stats']>;
}

/** The parts of a stored row that came from models of kinds not refitted now (still current), or undefined. */
function keptParts(old: ScoreRow, lineage: Lineage, refitted: ReadonlySet<string>): Parts | undefined {
  if (Object.keys(lineage.models).every((kind) => refitted.has(kind))) return undefined;
  const data = JSON.parse(old.data) as Record<string, unknown>;
  const reasons = JSON.parse(old.reasons) as Record<string, unknown>;
  const kept: Parts = { data: {}, reasons: {}, models: {}, stats: [] };
  for (const [kind, model] of Object.entries(lineage.models)) {
    if (refitted.has(kind)) continue;
    kept.models[kind] = model;
    for (const key of PARTS[kind] ?? []) {
      if (key in data) kept.data[key] = data[key];
      if (key in reasons) kept.reasons[key] = reasons[key];
    }
    for (const stat of lineage.stats ?? []) if (stat.modelId === model.id) kept.stats.push(stat);
  }
  return Object.keys(kept.models).length > 0 ? kept : undefined;
}

/** The id a run's model carries until its save numbers it: unlike any saved model's id. */
export function pendingModelId(kind: string, runId: string): string {
  return `${kind}@${runId}`;
}

/** A run's score row with its lineage naming the saved ids and versions of the run's models. */
function renumbered(row: ScoreRow, numbered: ReadonlyMap<string, { id: string; version: number }>): ScoreRow {
  if (numbered.size === 0) return row;
  const lineage = JSON.parse(row.lineage) as Lineage;
  const models = Object.fromEntries(Object.entries(lineage.models).map(([kind, m]) => [kind, numbered.get(m.id) ?? m]));
  const stats = lineage.stats?.map((s) => ({ ...s, modelId: numbered.get(s.modelId)?.id ?? s.modelId }));
  return { ...row, lineage: JSON.stringify({ ...lineage, models, ...(stats ? { stats } : {}) }) };
}

/** A new row with kept parts of the old one added. */
function withParts(row: ScoreRow, kept: Parts): ScoreRow {
  const lineage = JSON.parse(row.lineage) as Lineage;
  return {
    ...row,
    data: JSON.stringify({ ...kept.data, ...(JSON.parse(row.data) as Record<string, unknown>) }),
    reasons: JSON.stringify({ ...kept.reasons, ...(JSON.parse(row.reasons) as Record<string, unknown>) }),
    lineage: JSON.stringify({ ...lineage, models: { ...kept.models, ...lineage.models }, stats: [...kept.stats, ...(lineage.stats ?? [])] }),
  };
}

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
  {
    name: '0117_scoring_owed',
    async up(db) {
      await db.schema
        .createTable('scoring_owed')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('scoring_owed_pk', ['kind', 'subject'])
        .execute();
    },
  },
];

export class ScoringRepo {
  readonly #db: Kysely<ScoringTables>;
  readonly #dialect: Storage['dialect'];

  constructor(storage: Storage) {
    this.#db = storage.db.withTables<ScoringTables>();
    this.#dialect = storage.dialect;
  }

  get db(): Kysely<ScoringTables> {
    return this.#db;
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

  /**
   * Serializes the transactions that write scores (a run's save, forget) on PostgreSQL, so a withdrawal's forget that
   * starts while a run saves waits for it and then sees its rows; SQLite's BEGIN IMMEDIATE does the same.
   */
  async lock(tx: SqlExecutor): Promise<void> {
    if (this.#dialect !== 'postgres') return;
    await tx.all('select pg_advisory_xact_lock($1)', [PG_SCORING_LOCK]);
  }

  /**
   * Saves a run in `tx`: the models it fitted replace the current ones of their kinds; each profile in `purposeOf`
   * (the people profiled, with the purpose their data was read for) gets this run's scores plus what it already had
   * from models of kinds this run did not refit (still current, with their lineage); every other stored row, and a
   * kept part read for another purpose than this run's, is forgotten (statistics decremented).
   * The run's models carry provisional ids (`pendingModelId`); they are numbered here, under the lock, so runs that
   * overlap (two servers, the CLI and a server) both save, the later one with the next versions. Answers the id and
   * version each provisional id was given.
   */
  async saveRun(
    tx: SqlExecutor,
    models: readonly { row: ModelRow; stats: ReadonlyMap<string, number> }[],
    scores: readonly ScoreRow[],
    purposeOf: ReadonlyMap<string, string>,
  ): Promise<{ forgotten: number; numbered: ReadonlyMap<string, { id: string; version: number }> }> {
    const db = this.#db;
    await this.lock(tx);
    const numbered = new Map<string, { id: string; version: number }>();
    for (const { row } of models) {
      const version = (await this.#lastVersion(tx, row.kind)) + 1;
      numbered.set(row.id, { id: `${row.kind}-${version}`, version });
    }
    const refitted = new Set(models.map((m) => m.row.kind));
    for (const { row, stats } of models) {
      const { id, version } = numbered.get(row.id) as { id: string; version: number };
      await this.#run(tx, db.updateTable('scoring_models').set({ current: 0 }).where('kind', '=', row.kind).where('current', '=', 1));
      await this.#run(tx, db.insertInto('scoring_models').values({ ...row, id, version }));
      const entries = [...stats];
      for (let i = 0; i < entries.length; i += 200) {
        await this.#run(tx, db.insertInto('scoring_stats').values(entries.slice(i, i + 200).map(([key, count]) => ({ model_id: id, key, count }))));
      }
    }
    const fresh = new Map(scores.map((s) => [s.profile_id, renumbered(s, numbered)]));
    const out: ScoreRow[] = [];
    const forgotten: string[] = [];
    let after = '';
    for (;;) {
      const page = await this.#all<ScoreRow>(tx, db.selectFrom('scoring_scores').selectAll().where('profile_id', '>', after).orderBy('profile_id').limit(1000));
      const last = page.at(-1);
      if (last === undefined) break;
      after = last.profile_id;
      for (const old of page) {
        const purpose = purposeOf.get(old.profile_id);
        const lineage = JSON.parse(old.lineage) as Lineage;
        // Not profiled any more, or profiled from data read for another purpose now: nothing of the old row stays.
        if (purpose === undefined || purposeOfLineage(lineage) !== purpose) {
          forgotten.push(old.profile_id);
          const row = fresh.get(old.profile_id);
          if (row) out.push(row);
          fresh.delete(old.profile_id);
          continue;
        }
        const kept = keptParts(old, lineage, refitted);
        const row = fresh.get(old.profile_id);
        fresh.delete(old.profile_id);
        if (row) out.push(kept ? withParts(row, kept) : row);
        else if (kept) out.push({ ...old, data: JSON.stringify(kept.data), reasons: JSON.stringify(kept.reasons), lineage: JSON.stringify({ ...lineage, models: kept.models, stats: kept.stats }) });
        // Scores only of refitted kinds, and none this run: the person is no longer scored by them.
        else forgotten.push(old.profile_id);
      }
    }
    out.push(...fresh.values());
    // Forgotten first (their lineage decrements the statistics of still-current models), then written again.
    let removed = 0;
    for (let i = 0; i < forgotten.length; i += 500) removed += (await this.forget(tx, forgotten.slice(i, i + 500))).scores;
    for (let i = 0; i < out.length; i += 100) {
      await this.#run(
        tx,
        db
          .insertInto('scoring_scores')
          .values(out.slice(i, i + 100))
          .onConflict((oc) => oc.column('profile_id').doUpdateSet((eb) => ({ run_id: eb.ref('excluded.run_id'), computed_at: eb.ref('excluded.computed_at'), data: eb.ref('excluded.data'), reasons: eb.ref('excluded.reasons'), lineage: eb.ref('excluded.lineage') }))),
      );
    }
    return { forgotten: removed, numbered };
  }

  /** The highest version of a kind, read in `tx` (0 when none). */
  async #lastVersion(tx: SqlExecutor, kind: string): Promise<number> {
    const rows = await this.#all<{ v: number | string | null }>(tx, this.#db.selectFrom('scoring_models').select((eb) => eb.fn.max('version').as('v')).where('kind', '=', kind));
    return Number(rows[0]?.v ?? 0);
  }

  async #run(tx: SqlExecutor, query: Compilable): Promise<number> {
    const { sql: text, parameters } = query.compile();
    return tx.run(text, parameters);
  }

  async #all<R>(tx: SqlExecutor, query: Compilable): Promise<R[]> {
    const { sql: text, parameters } = query.compile();
    return tx.all<R>(text, parameters);
  }

  /** Stored rows of these profiles with their lineage, read in `tx`. */
  async rowsIn(tx: SqlExecutor, profileIds: readonly string[]): Promise<Pick<ScoreRow, 'profile_id' | 'lineage'>[]> {
    if (profileIds.length === 0) return [];
    return this.#all(tx, this.#db.selectFrom('scoring_scores').select(['profile_id', 'lineage']).where('profile_id', 'in', profileIds));
  }

  async scores(profileIds: readonly string[]): Promise<ScoreRow[]> {
    if (profileIds.length === 0) return [];
    return this.#db.selectFrom('scoring_scores').selectAll().where('profile_id', 'in', profileIds).execute();
  }

  async allScores(): Promise<Pick<ScoreRow, 'profile_id' | 'data' | 'lineage'>[]> {
    return this.#db.selectFrom('scoring_scores').select(['profile_id', 'data', 'lineage']).execute();
  }

  /**
   * Records in `tx` (a consent change's) that these profiles' stored scores are owed a check against their consent:
   * only profiles with a stored row, one row each, its token replaced when already owed.
   */
  async oweIn(tx: SqlExecutor, profileIds: readonly string[], token: string, at: string): Promise<void> {
    for (let i = 0; i < profileIds.length; i += 500) {
      const ids = profileIds.slice(i, i + 500);
      await this.#run(
        tx,
        this.#db
          .insertInto('scoring_owed')
          .columns(['kind', 'subject', 'token', 'at'])
          .expression((eb) => eb.selectFrom('scoring_scores').select((s) => [s.val('profile').as('kind'), 'profile_id', s.val(token).as('token'), s.val(at).as('at')]).where('profile_id', 'in', ids))
          .onConflict((oc) => oc.columns(['kind', 'subject']).doUpdateSet((eb) => ({ token: eb.ref('excluded.token'), at: eb.ref('excluded.at') }))),
      );
    }
  }

  /** Records in `tx` (a run's save) that the run's rows are owed a check against consent once it has committed. */
  async oweRunIn(tx: SqlExecutor, runId: string, at: string): Promise<void> {
    await this.#run(tx, this.#db.insertInto('scoring_owed').values({ kind: 'run', subject: runId, token: runId, at }));
  }

  /** Owed rows of these profiles, or (without) up to `limit` rows of `kind` after `after` in subject order. */
  async owed(kind: OwedKind, subjects: readonly string[] | undefined, after = '', limit = 500): Promise<Owed[]> {
    const rows = this.#db.selectFrom('scoring_owed').select(['kind', 'subject', 'token', 'at']).where('kind', '=', kind);
    if (subjects !== undefined) return subjects.length === 0 ? [] : rows.where('subject', 'in', subjects).execute();
    return rows.where('subject', '>', after).orderBy('subject').limit(limit).execute();
  }

  /** Profile ids of the stored rows a run wrote, up to `limit` after `after`. */
  async rowsOfRun(runId: string, after: string, limit: number): Promise<string[]> {
    const rows = await this.#db.selectFrom('scoring_scores').select('profile_id').where('run_id', '=', runId).where('profile_id', '>', after).orderBy('profile_id').limit(limit).execute();
    return rows.map((r) => r.profile_id);
  }

  /**
   * Deletes an owed row unless it was written again since it was read (another token). One statement per row: it
   * holds no other row's lock meanwhile, so it cannot deadlock with a consent change recording several.
   */
  async settleOwed(owed: Pick<Owed, 'kind' | 'subject' | 'token'>): Promise<void> {
    await this.#db.deleteFrom('scoring_owed').where('kind', '=', owed.kind).where('subject', '=', owed.subject).where('token', '=', owed.token).execute();
  }

  /** Removes profiles' scores and decrements what they contributed to the models' statistics, using only `tx`. */
  async forget(tx: SqlExecutor, profileIds: readonly string[]): Promise<{ scores: number; statistics: number }> {
    if (profileIds.length === 0) return { scores: 0, statistics: 0 };
    const db = this.#db;
    await this.lock(tx);
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
