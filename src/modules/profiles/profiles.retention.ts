// Retention of profiles: people inactive for the configured period are deleted with everything held about them (the
// sweeper's `forget`: every registered subject-data handler, then the data key), and trait values older than the
// tracking plan's retention for their key are deleted with their history, including the previous values that newer
// history entries hold. A trait the plan in force no longer declares keeps the retention of the latest stored plan
// version that declared it; one no stored version declared goes at the next sweep. Registered through
// `Profiles.retention()`.
import { sql, type Kysely } from 'kysely';
import { subtractDuration } from '../../shared/duration.ts';
import type { DataSubject, RetentionHandler, RetentionRule, SweepCount, SweepOptions } from '../../shared/subject-data.ts';
import { padded } from '../../storage/batching.ts';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';
import { LAST_ACTIVE, ProfilesRepo, type ProfilesTables } from './profiles.repo.ts';

/** A trait the tracking plan declares: its key (`traits.<key>`), data category and retention. */
export interface PlannedTrait {
  readonly path: string;
  readonly category: string;
  readonly retention: string;
}

/** A trait only stored plan versions other than the one in force declare, as the latest of them declares it. */
export interface RetiredTrait extends PlannedTrait {
  /** That version. */
  readonly version: number;
}

/** The identify traits of the tracking plan, read at one moment. */
export interface TraitDeclarations {
  /** The version in force. */
  readonly version: number;
  /** The traits the plan in force declares. */
  readonly inForce: readonly PlannedTrait[];
  /** The traits other stored versions declare and the plan in force does not, each as the latest of them declares it. */
  readonly retired: readonly RetiredTrait[];
  /** Whether every stored version could be read: if not, a trait no version is known to declare is left alone. */
  readonly complete: boolean;
  /** The latest stored version these were read from. */
  readonly latest: number;
}

/**
 * Whether, in the caller's transaction, the plan versions a sweep read its trait rules from are still all there are (no
 * version stored since): a key found undeclared may be declared since, and a trait's period changed.
 */
type PlanUnchanged = (tx: SqlExecutor) => Promise<boolean>;

/** What the inactivity rule reads of a consent ledger entry. */
type ConsentEntry = { readonly mechanism: string; readonly at: string; readonly source?: string | null };

export interface ProfilesRetentionDeps {
  storage: Storage;
  /** The identify traits of the plan in force and of the other stored versions (`catalog.declarations()`). */
  traitDeclarations(): Promise<TraitDeclarations>;
  /**
   * The latest stored plan version, read in the caller's transaction holding the publishers' lock (no version can be
   * stored until it ends): a key no version declared is deleted only while no version was stored since it was found.
   */
  latestPlanVersionIn(tx: SqlExecutor): Promise<number>;
  /** A profile's consent ledger entries (`consent.history`): a change the person made counts as activity. */
  consentHistory(profileId: string): Promise<readonly ConsentEntry[]>;
  /** consentHistory read inside the caller's transaction (the deleting one judges the person again). */
  consentHistoryIn(tx: SqlExecutor, profileId: string): Promise<readonly ConsentEntry[]>;
  /**
   * The latest time a rights request of these profiles was received, verified or completed, read on `executor`
   * (`RightsSubjectData.lastActivityIn`); null when there is none. A request the person made counts as activity.
   */
  rightsActivityIn(executor: SqlExecutor, profileIds: readonly string[]): Promise<string | null>;
  /**
   * Whether a restriction of processing (Art. 18) is in force for any of these profiles, read on `executor`
   * (`consent.restrictedIn`): the person asked for their data to be kept, so it is not deleted while it holds.
   */
  restrictedIn(executor: SqlExecutor, profileIds: readonly string[]): Promise<boolean>;
}

/**
 * Consent ledger entries Candor writes by itself, not on a person's choice or signal, are no activity: expiries,
 * merges, the person's own earlier choices written again after a restore (source `restore…`, see
 * Consent.reapplyAfterRestore), which would otherwise restart the inactivity clock at the restore, and the GPC
 * refusals written for a purpose flagged sale/sharing or targeted advertising after the person's signal (source
 * `purpose-flagged:<purpose>`, consent's FLAGGED_SOURCE), which would restart every GPC person's clock at one
 * configuration change.
 */
const NOT_ACTIVITY: ReadonlySet<string> = new Set(['expiry', 'merge']);
const isActivity = (entry: { mechanism: string; source?: string | null }) => {
  if (NOT_ACTIVITY.has(entry.mechanism)) return false;
  const source = entry.source ?? '';
  if (entry.mechanism === 'import') return source !== 'restore' && !source.startsWith('restore:');
  if (entry.mechanism === 'gpc') return !source.startsWith('purpose-flagged:');
  return true;
};

/** What a person did besides sending events, as the inactivity rule counts it. */
interface OtherActivity {
  /** The latest consent change they made, or time a rights request of theirs was received, verified or completed ('' for none). */
  readonly latest: string;
  /** A restriction of processing is in force: they asked for their data to be kept (Art. 18(1)(b), (c)). */
  readonly restricted: boolean;
}

/**
 * A person's activity besides their events, read on `executor` and with `history` (in the deleting transaction: what
 * is committed then).
 */
async function otherActivity(deps: ProfilesRetentionDeps, executor: SqlExecutor, profileIds: readonly string[], history: (profileId: string) => Promise<readonly ConsentEntry[]>): Promise<OtherActivity> {
  if (await deps.restrictedIn(executor, profileIds)) return { latest: '', restricted: true };
  let latest = (await deps.rightsActivityIn(executor, profileIds)) ?? '';
  for (const id of profileIds) {
    for (const entry of await history(id)) if (isActivity(entry) && entry.at > latest) latest = entry.at;
  }
  return { latest, restricted: false };
}

/**
 * The people among `subjects` with no activity besides their events since the cutoff (see otherActivity). For those
 * with a later consent change or rights request, its time is recorded as activity on their computed traits (not in a
 * dry run), so that later sweeps pass over them until it is as old as the cutoff. A restriction has no such time: its
 * person is judged again at every sweep while it holds.
 */
async function withoutOtherActivity(deps: ProfilesRetentionDeps, repo: ProfilesRepo, subjects: readonly DataSubject[], cutoff: string, dryRun: boolean): Promise<DataSubject[]> {
  const out: DataSubject[] = [];
  for (const subject of subjects) {
    const { latest, restricted } = await otherActivity(deps, deps.storage.raw, subject.profileIds, (id) => deps.consentHistory(id));
    if (restricted) continue;
    if (latest < cutoff) out.push(subject);
    else if (!dryRun) await deps.storage.raw.transaction((tx) => repo.receivedActivity(tx, subject.profileIds, latest));
  }
  return out;
}

export interface ProfileRetentionPolicy {
  /** People with no activity for this long are deleted. */
  readonly inactiveProfiles: string;
}

/** The index the inactivity sweep walks. */
export const PROFILES_RETENTION_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0072_profiles_computed_by_last_seen',
    async up(db) {
      await db.schema.createIndex('profiles_computed_last_seen').on('profiles_computed').columns(['last_seen_at', 'profile_id']).execute();
    },
  },
  {
    // Trait expiry looks for values of one key older than its retention: without these it read every trait row.
    name: '0073_profiles_traits_by_key_time',
    async up(db) {
      await db.schema.createIndex('profiles_traits_key_updated').on('profiles_traits').columns(['key', 'updated_at']).execute();
      await db.schema.createIndex('profiles_trait_history_key_changed').on('profiles_trait_history').columns(['key', 'changed_at']).execute();
    },
  },
  {
    // The sweep's index holds the day of the last activity instead of its instant: an index on last_seen_at had its
    // entry moved by every event (a random page written per event and commit); the day moves once a day at most.
    name: '0091_profiles_computed_by_last_seen_day',
    async up(db) {
      await sql`ALTER TABLE profiles_computed ADD COLUMN last_seen_day text NOT NULL DEFAULT ''`.execute(db);
      await sql`UPDATE profiles_computed SET last_seen_day = substr(last_seen_at, 1, 10)`.execute(db);
      await db.schema.dropIndex('profiles_computed_last_seen').execute();
      await db.schema.createIndex('profiles_computed_last_seen_day').on('profiles_computed').columns(['last_seen_day', 'profile_id']).execute();
    },
  },
  {
    // Inactivity counted from the sender's time deleted people active today who sent one back-dated event (an imported
    // history, an offline queue): it counts from the later of that and the time Candor received the activity. Stored
    // rows have no receipt time; theirs is their last seen time (what the sweep used until now).
    name: '0109_profiles_computed_last_received',
    async up(db) {
      await sql`ALTER TABLE profiles_computed ADD COLUMN last_received_at text NOT NULL DEFAULT ''`.execute(db);
      await sql`UPDATE profiles_computed SET last_received_at = last_seen_at`.execute(db);
      await db.schema.dropIndex('profiles_computed_last_seen_day').execute();
      await sql`ALTER TABLE profiles_computed RENAME COLUMN last_seen_day TO last_active_day`.execute(db);
      await db.schema.createIndex('profiles_computed_last_active_day').on('profiles_computed').columns(['last_active_day', 'profile_id']).execute();
    },
  },
];

const INACTIVE = 'profiles.inactive';
/**
 * A control character or an unpaired surrogate: a plan version published before such names were refused is read with
 * those fields left out, so a key holding one may be declared by a stored version; it is never deleted as undeclared.
 */
const UNUSABLE_NAME = /[\p{Cc}\p{Cs}]/u;

/** Whether a trait key holds a character a plan name may no longer hold (UNUSABLE_NAME): it has no retention rule. */
export const unusableKey = (key: string): boolean => UNUSABLE_NAME.test(key);
/** Values of trait keys no stored plan version declared: counted together, the keys (not the plan's names) unnamed. */
const UNDECLARED = 'profiles.traits.undeclared';

/** How long a trait's values are kept: its rule, category and retention. */
interface TraitRule {
  readonly id: string;
  readonly key: string;
  readonly category: string;
  readonly retention: string;
  /** The stored version that gives the retention of a trait the plan in force no longer declares. */
  readonly version?: number;
}

/** A trait of a plan section that is stored as a trait: a plain key, not under an array. */
const storedAsTrait = (t: PlannedTrait) => t.path.startsWith('traits.') && !t.path.includes('[]');
const keyOf = (t: PlannedTrait) => t.path.slice('traits.'.length);

/** The retention handler of profiles (inactivity) and of trait values (the plan's retention per trait). */
export class ProfilesRetention implements RetentionHandler {
  readonly module = 'profiles';
  readonly #storage: Storage;
  readonly #db: Kysely<ProfilesTables>;
  readonly #deps: ProfilesRetentionDeps;
  readonly #policy: ProfileRetentionPolicy;
  readonly #repo: ProfilesRepo;

  constructor(deps: ProfilesRetentionDeps, policy: ProfileRetentionPolicy) {
    this.#storage = deps.storage;
    this.#db = deps.storage.db.withTables<ProfilesTables>();
    this.#repo = new ProfilesRepo(deps.storage);
    this.#deps = deps;
    this.#policy = policy;
  }

  async rules(): Promise<RetentionRule[]> {
    const period = this.#policy.inactiveProfiles;
    const rules: RetentionRule[] = [
      {
        id: INACTIVE, module: 'profiles', store: 'every store (subject-data handlers)', category: 'user', period,
        clock: 'last activity of every merged profile: the later of when Candor last received an event of it (profiles_computed.last_received_at) and the latest time its events carry (last_seen_at), or the last consent change the person made, or the last time a rights request of theirs was received, verified or completed; never while a restriction of processing is in force',
        action: 'delete', source: 'policy',
        description: `A person with no activity for ${period} is deleted with everything held about them and their data key, except reduced orders (kept until collect.events.orders); their identifiers are not suppressed, so a returning customer starts fresh.`,
      },
    ];
    const { rules: traits, version } = await this.#traitRules();
    for (const trait of traits) {
      const what = `The trait ${trait.key} (current value, history and the previous value each change replaced)`;
      rules.push({
        id: trait.id, module: 'profiles', store: 'profiles_traits, profiles_trait_history', category: trait.category, period: trait.retention, clock: 'updated_at / changed_at / previous_updated_at', action: 'delete', source: 'plan',
        description:
          trait.version === undefined
            ? `${what} is deleted ${trait.retention} after it was last set (tracking plan).`
            : `${what} is no longer declared by the plan in force (version ${version}); its values are deleted ${trait.retention} after they were last set, the retention of plan version ${trait.version}, the latest that declared it.`,
      });
    }
    rules.push({
      id: UNDECLARED, module: 'profiles', store: 'profiles_traits, profiles_trait_history', category: 'user', period: 'PT0S', clock: 'none', action: 'delete', source: 'plan',
      description: 'Values, history and previous values of a trait no stored version of the tracking plan declares (no declared purpose ever needed them) are deleted at the next sweep, whenever they were set; none while a stored version cannot be read.',
    });
    return rules;
  }

  /**
   * The rule of every trait: those the plan in force declares, those still stored that only other stored versions
   * declare (the latest of them gives the retention), and one for the stored keys no version declares. The stored keys
   * are read before the plan's versions: a trait is only written under a version stored before it, so every key found
   * is declared by a version read after.
   */
  async #traitRules(): Promise<{ rules: TraitRule[]; undeclared: string[]; version: number; latest: number }> {
    const stored = await this.#storedKeys();
    const plan = await this.#deps.traitDeclarations();
    const rules: TraitRule[] = plan.inForce.filter(storedAsTrait).map((t) => ({ id: `profiles.traits:${keyOf(t)}`, key: keyOf(t), category: t.category, retention: t.retention }));
    const inForce = new Set(rules.map((r) => r.key));
    const retired = new Map(plan.retired.filter(storedAsTrait).map((t) => [keyOf(t), t]));
    const undeclared: string[] = [];
    for (const key of stored) {
      if (inForce.has(key)) continue;
      const trait = retired.get(key);
      if (trait !== undefined) rules.push({ id: `profiles.traits:${key}`, key, category: trait.category, retention: trait.retention, version: trait.version });
      else if (plan.complete && !unusableKey(key)) undeclared.push(key);
    }
    return { rules, undeclared, version: plan.version, latest: plan.latest };
  }

  /**
   * Every key that has a value or a history entry, in one statement per table: a walk of the key indexes from one key
   * to the next (a look-up per distinct key, however many rows each has).
   */
  async #storedKeys(): Promise<string[]> {
    const keys = new Set<string>();
    for (const table of ['profiles_traits', 'profiles_trait_history'] as const) {
      const column = sql.ref(`${table}.key`);
      const first = sql`(SELECT ${column} FROM ${sql.table(table)} ORDER BY ${column} LIMIT 1)`;
      const next = sql`(SELECT ${column} FROM ${sql.table(table)} WHERE ${column} > ${sql.ref('stored.key')} ORDER BY ${column} LIMIT 1)`;
      const walk = sql<{ key: string }>`WITH RECURSIVE ${sql.ref('stored')}(${sql.ref('key')}) AS (SELECT ${first} UNION ALL SELECT ${next} FROM ${sql.ref('stored')} WHERE ${sql.ref('stored.key')} IS NOT NULL) SELECT ${sql.ref('key')} FROM ${sql.ref('stored')} WHERE ${sql.ref('key')} IS NOT NULL`.compile(this.#db);
      for (const row of await this.#storage.raw.all<{ key: string }>(walk.sql, walk.parameters)) keys.add(row.key);
    }
    return [...keys];
  }

  async sweep(now: Date, options: SweepOptions): Promise<SweepCount[]> {
    const counts: SweepCount[] = [];
    const { rules, undeclared, latest } = await this.#traitRules();
    // Each batch only while no plan version was stored since the rules were read, checked in the batch's transaction
    // under the publishers' lock: a version published meanwhile may give a trait a longer period (values past the old
    // cutoff must then stay) or declare a key found undeclared (values written under it must not go). Once one was, the
    // rules of the sweep delete nothing more; the next sweep reads the new ones.
    const unchanged: PlanUnchanged = async (tx) => (await this.#deps.latestPlanVersionIn(tx)) === latest;
    for (const trait of rules) {
      const cutoff = subtractDuration(now, trait.retention).toISOString();
      const rule = trait.id;
      counts.push({ rule, store: 'profiles_traits', category: trait.category, count: await this.#expireTraits(trait.key, cutoff, options, unchanged) });
      counts.push({ rule, store: 'profiles_trait_history', category: trait.category, count: await this.#expireHistory(trait.key, cutoff, options, unchanged) });
      counts.push({ rule, store: 'profiles_trait_history.previous_value', category: trait.category, count: await this.#expirePrevious(trait.key, cutoff, options, unchanged) });
    }
    // No declared purpose ever needed them: every value and history entry goes, whatever its time (previous values with their entries).
    const gone = { traits: 0, history: 0 };
    for (const key of undeclared) {
      gone.traits += await this.#expireTraits(key, undefined, options, unchanged);
      gone.history += await this.#expireHistory(key, undefined, options, unchanged);
    }
    if (undeclared.length > 0) {
      counts.push({ rule: UNDECLARED, store: 'profiles_traits', category: 'user', count: gone.traits });
      counts.push({ rule: UNDECLARED, store: 'profiles_trait_history', category: 'user', count: gone.history });
    }
    counts.push(...(await this.#inactive(subtractDuration(now, this.#policy.inactiveProfiles).toISOString(), options)));
    return counts;
  }

  /**
   * Deletes the values of a key last set before the cutoff (without one: all of them), a batch per transaction, each
   * only while `guard` holds in that transaction (no plan version stored since the rule was read), else no more.
   */
  async #expireTraits(key: string, cutoff: string | undefined, options: SweepOptions, guard: PlanUnchanged): Promise<number> {
    const timed = cutoff !== undefined;
    const at = cutoff ?? '';
    let n = 0;
    for (;;) {
      if (options.dryRun) {
        const [row] = await this.#run(this.#db.selectFrom('profiles_traits').select((eb) => eb.fn.countAll<number>().as('n')).where('key', '=', key).$if(timed, (q) => q.where('updated_at', '<', at)));
        return Number(row?.n ?? 0);
      }
      const rows = await this.#run(this.#db.selectFrom('profiles_traits').select('profile_id').where('key', '=', key).$if(timed, (q) => q.where('updated_at', '<', at)).limit(options.batchSize));
      if (rows.length === 0) return n;
      const ids = padded(rows.map((r) => r.profile_id));
      const del = this.#db.deleteFrom('profiles_traits').where('key', '=', key).$if(timed, (q) => q.where('updated_at', '<', at)).where('profile_id', 'in', ids).compile();
      const deleted = await this.#storage.raw.transaction(async (tx) => ((await guard(tx)) ? tx.run(del.sql, del.parameters) : undefined));
      if (deleted === undefined) return n;
      n += deleted;
      if (rows.length < options.batchSize) return n;
    }
  }

  /** Deletes the history entries of a key made before the cutoff (without one: all of them) as #expireTraits its values. */
  async #expireHistory(key: string, cutoff: string | undefined, options: SweepOptions, guard: PlanUnchanged): Promise<number> {
    const timed = cutoff !== undefined;
    const at = cutoff ?? '';
    let n = 0;
    for (;;) {
      if (options.dryRun) {
        const [row] = await this.#run(this.#db.selectFrom('profiles_trait_history').select((eb) => eb.fn.countAll<number>().as('n')).where('key', '=', key).$if(timed, (q) => q.where('changed_at', '<', at)));
        return Number(row?.n ?? 0);
      }
      const rows = await this.#run(this.#db.selectFrom('profiles_trait_history').select('id').where('key', '=', key).$if(timed, (q) => q.where('changed_at', '<', at)).limit(options.batchSize));
      if (rows.length === 0) return n;
      const del = this.#db.deleteFrom('profiles_trait_history').where('id', 'in', padded(rows.map((r) => r.id))).compile();
      const deleted = await this.#storage.raw.transaction(async (tx) => ((await guard(tx)) ? tx.run(del.sql, del.parameters) : undefined));
      if (deleted === undefined) return n;
      n += deleted;
      if (rows.length < options.batchSize) return n;
    }
  }

  /**
   * Clears the previous value of the entries left whose replaced value was last set before the cutoff: the entry that
   * set it may be gone, but the value would otherwise stay, and be read as the previous value, as long as the entry
   * that replaced it. Entries older than the cutoff are not counted: `#expireHistory` deletes them.
   */
  async #expirePrevious(key: string, cutoff: string, options: SweepOptions, guard: PlanUnchanged): Promise<number> {
    let n = 0;
    for (;;) {
      if (options.dryRun) {
        const [row] = await this.#run(this.#db.selectFrom('profiles_trait_history').select((eb) => eb.fn.countAll<number>().as('n')).where('key', '=', key).where('previous_updated_at', '<', cutoff).where('changed_at', '>=', cutoff));
        return Number(row?.n ?? 0);
      }
      const rows = await this.#run(this.#db.selectFrom('profiles_trait_history').select('id').where('key', '=', key).where('previous_updated_at', '<', cutoff).limit(options.batchSize));
      if (rows.length === 0) return n;
      const clear = this.#db
        .updateTable('profiles_trait_history')
        .set({ previous_value: null, previous_encrypted: null, previous_updated_at: null })
        .where('id', 'in', padded(rows.map((r) => r.id)))
        .compile();
      const cleared = await this.#storage.raw.transaction(async (tx) => ((await guard(tx)) ? tx.run(clear.sql, clear.parameters) : undefined));
      if (cleared === undefined) return n;
      n += cleared;
      if (rows.length < options.batchSize) return n;
    }
  }

  async #run<R>(query: { compile(): { sql: string; parameters: readonly unknown[] } } & { execute(): Promise<R[]> }): Promise<R[]> {
    const compiled = query.compile();
    return this.#storage.raw.all<R>(compiled.sql, compiled.parameters);
  }

  /**
   * People whose every profile was last active before the cutoff, in batches by last activity: each batch is handed
   * to the sweeper's `forget` (its own transaction per person), which reports what it deleted per store. Activity is
   * an event received (or, from a sender's clock ahead of ours, dated) since the cutoff, a consent change the person
   * made or a rights request of theirs received, verified or completed since then, or a restriction of processing in
   * force (see otherActivity).
   */
  async #inactive(cutoff: string, options: SweepOptions): Promise<SweepCount[]> {
    const { context, batchSize, dryRun } = options;
    const perStore = new Map<string, number>();
    let people = 0;
    let from = { day: '', id: '' };
    const seen = new Set<string>();
    for (;;) {
      // By the day of the last activity (the index), up to the cutoff's day; the instant decides on that day.
      const rows = await this.#run(
        this.#db
          .selectFrom('profiles_computed')
          .select(['profile_id', 'last_active_day'])
          .where((eb) => eb(eb.refTuple('last_active_day', 'profile_id'), '>', eb.tuple(from.day, from.id)))
          .where('last_active_day', '<=', cutoff.slice(0, 10))
          .where('last_seen_at', '<', cutoff)
          .where('last_received_at', '<', cutoff)
          .orderBy('last_active_day')
          .orderBy('profile_id')
          .limit(batchSize),
      );
      if (rows.length === 0) break;
      const last = rows[rows.length - 1] as { profile_id: string; last_active_day: string };
      from = { day: last.last_active_day, id: last.profile_id };
      const subjects = (await context.subjects(rows.map((r) => r.profile_id))).filter((s) => !seen.has(s.profileId));
      for (const s of subjects) seen.add(s.profileId);
      const inactive = await withoutOtherActivity(this.#deps, this.#repo, await this.#allInactive(subjects, cutoff), cutoff, dryRun);
      if (dryRun) people += inactive.length;
      else if (inactive.length > 0) {
        // Judged again inside each person's deleting transaction: an event stored since counts as activity.
        const done = await context.forget(inactive, `no activity since before ${cutoff} (${this.#policy.inactiveProfiles})`, (tx, subject) => this.#stillInactiveIn(tx, subject, cutoff));
        people += done.people;
        for (const outcome of done.outcomes) perStore.set(outcome.store, (perStore.get(outcome.store) ?? 0) + outcome.deleted);
      }
      if (rows.length < batchSize) break;
    }
    return [{ rule: INACTIVE, store: 'people', category: 'user', count: people }, ...[...perStore].map(([store, count]) => ({ rule: INACTIVE, store, category: 'user', count }))];
  }

  /** The people none of whose profiles was active since the cutoff. */
  async #allInactive(subjects: readonly DataSubject[], cutoff: string): Promise<DataSubject[]> {
    const active = await this.#activeIn(this.#storage.raw, subjects.flatMap((s) => s.profileIds), cutoff);
    return subjects.filter((s) => s.profileIds.every((id) => !active.has(id)));
  }

  /**
   * Inside the transaction that deletes a person (ingestion kept out): whether they are still inactive, on what is
   * committed now — no event stored, no consent change made and no rights request received, verified or completed
   * since the cutoff, and no restriction of processing in force.
   */
  async #stillInactiveIn(tx: SqlExecutor, subject: DataSubject, cutoff: string): Promise<boolean> {
    if ((await this.#activeIn(tx, subject.profileIds, cutoff)).size > 0) return false;
    const other = await otherActivity(this.#deps, tx, subject.profileIds, (id) => this.#deps.consentHistoryIn(tx, id));
    return !other.restricted && other.latest < cutoff;
  }

  /** The profiles among `profileIds` active since the cutoff, read on `executor`. */
  async #activeIn(executor: SqlExecutor, profileIds: readonly string[], cutoff: string): Promise<Set<string>> {
    const active = new Set<string>();
    for (let i = 0; i < profileIds.length; i += 500) {
      const compiled = this.#db.selectFrom('profiles_computed').select('profile_id').where('profile_id', 'in', padded(profileIds.slice(i, i + 500))).where(LAST_ACTIVE, '>=', cutoff).compile();
      for (const r of await executor.all<{ profile_id: string }>(compiled.sql, compiled.parameters)) active.add(r.profile_id);
    }
    return active;
  }
}
