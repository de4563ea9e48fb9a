import { createHash } from 'node:crypto';
import { SYSTEM_ACTOR, type Actor } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import type { PlannedField, RetiredFields } from '../../shared/subject-data.ts';
import { Freshness, isUniqueViolation, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Taxonomy } from '../taxonomy/index.ts';
import { CatalogRepo, type PlanRow } from './catalog.repo.ts';
import type { PlanDocument } from './catalog.schemas.ts';
import { StatsCounters, statsRows, StoredPaths, type StatsRecord, type StatsRow } from './catalog.stats.ts';
import { DEFAULT_PLAN } from './default-plan.ts';
import { PlanFieldIndex, RetiredFieldIndex, type VersionFields } from './plan-fields.ts';
import { compilePlanAsync, listDropped, outlineStoredAsync, type CompiledPlan, type EventOccurrence, type KeptField, type MessageKind, type OutlineSection, type PlanInput, type PlanProblem, type PlanResult } from './plan-compiler.ts';

/** A published version, without its document. */
export interface PlanVersion {
  version: number;
  hash: string;
  publishedAt: string;
  publishedBy: string;
}

/** A published version with its document. */
export interface PublishedPlan extends PlanVersion {
  plan: PlanDocument;
}

/** A field the plan in force does not declare, with its annotation in the latest stored version that declares it. */
export interface RetiredField extends KeptField {
  readonly type: string;
  /** That version. */
  readonly version: number;
}

/** The retired fields of one plan section (as in outline(): `event` for track events). */
export interface RetiredSection {
  readonly section: OutlineSection['section'];
  readonly event?: string;
  readonly fields: readonly RetiredField[];
}

/** What declarations() answers: the fields of the plan in force, and those only other stored versions declare. */
export interface Declarations {
  /** The version in force in this process and its outline, as outline() answers them. */
  readonly version: number;
  readonly inForce: readonly OutlineSection[];
  /**
   * Fields of stored versions the plan in force does not declare, each as the latest stored version declares it; not
   * one that a later version which cannot be read may declare otherwise (left alone).
   */
  readonly retired: readonly RetiredSection[];
  /** The latest stored version read. */
  readonly latest: number;
  /**
   * Whether a stored version declared the field personal (`section` and `event` as in outline()): values of it stored
   * then are in events' sealed part, even where a later version declares it not personal.
   */
  everPersonal(section: string, event: string | undefined, path: string): boolean;
  /** Stored versions that could not be read: what they declared is unknown (none, normally). */
  readonly unreadable: readonly number[];
}

interface DeclaredField {
  readonly section: OutlineSection['section'];
  readonly event: string | undefined;
  readonly field: KeptField & { type: string };
  readonly version: number;
  /** Whether any stored version read so far declared it personal. */
  readonly everPersonal: boolean;
}

/** A field's key across versions: its section, event (track only) and path. */
const declaredKey = (section: string, event: string | undefined, path: string) => `${section}\u0000${event ?? ''}\u0000${path}`;

export interface CatalogDeps {
  storage: Storage;
  audit: AuditLog;
  taxonomy: Taxonomy;
}

interface Current extends PlanVersion {
  /** The document as stored (parsed again for every reader, so nobody can change the one in force). */
  text: string;
  compiled: CompiledPlan;
}

const OPERATIONS = 'essential.service.operations';
/**
 * The fields of stored versions other than the one in force, read once per process (versions never change); undefined
 * for a version that cannot be read. Kept beside the class (docs/dev/conventions.md, compile cache).
 */
const STORED_FIELDS = new WeakMap<Catalog, Map<number, Promise<VersionFields | undefined>>>();
/** The largest plan version number: versions are 32-bit integers in the database. */
export const MAX_PLAN_VERSION = 2_147_483_647;

/** JSON with object keys sorted at every level: the same plan always has the same hash. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** SHA-256 (hex) of the canonical JSON of a plan. */
export function planHash(plan: unknown): string {
  return createHash('sha256').update(canonicalJson(plan)).digest('hex');
}

/**
 * The tracking plan in force: validates and minimizes every incoming message against the compiled plan, counts
 * what it accepted, refused and dropped, and publishes new versions.
 */
export class Catalog {
  readonly #repo: CatalogRepo;
  readonly #audit: AuditLog;
  readonly #taxonomy: Taxonomy;
  readonly #counters = new StatsCounters();
  /** The paths stored rows hold, as far as this process read them: writes keep every row within its bound. */
  readonly #storedPaths = new StoredPaths();
  /** Tells whether another process wrote since the plan was last looked for (refreshIfChanged). */
  readonly #freshness: Freshness;
  #fieldIndex: PlanFieldIndex | undefined;
  /**
   * Every field some stored version declares, with the latest such version's annotation: versions are immutable, so
   * each is read once per process (`upTo`: the versions folded in so far).
   */
  readonly #declared = { upTo: 0, fields: new Map<string, DeclaredField>(), unreadable: [] as number[] };
  /** Serialises the folding of newly stored versions into #declared. */
  #folding: Promise<unknown> = Promise.resolve();
  #current!: Current;
  /** Serialises flushes and stats reads so that a count is never in neither place, nor in both. */
  #lock: Promise<unknown> = Promise.resolve();
  /** A flush waiting for its turn; later calls join it. */
  #queuedFlush: Promise<void> | undefined;
  /**
   * Counts ingestion took (takeStats) and has not yet written in its transaction (writeStats) nor put back
   * (restoreStats): no longer in the counters, not yet stored, so stats() adds them in.
   */
  readonly #taken = new Set<readonly StatsRecord[]>();

  private constructor(deps: CatalogDeps) {
    this.#repo = new CatalogRepo(deps.storage);
    this.#freshness = new Freshness(deps.storage, ['catalog_plans']);
    this.#audit = deps.audit;
    this.#taxonomy = deps.taxonomy;
  }

  /** Loads the latest plan; on first open installs the default shop plan as version 1. */
  static async open(deps: CatalogDeps): Promise<Catalog> {
    const catalog = new Catalog(deps);
    const row = await catalog.#repo.latest();
    if (row) {
      catalog.#install(row, await catalog.#compile(row));
      return catalog;
    }
    const first = catalog.#row(1, DEFAULT_PLAN, SYSTEM_ACTOR);
    const compiled = await catalog.#compile(first);
    try {
      catalog.#install((await catalog.#store(DEFAULT_PLAN, SYSTEM_ACTOR, compiled, 0)).row, compiled);
    } catch (error) {
      // Another process installed a first version at the same moment.
      if (!isCandorError(error, 'CATALOG_PLAN_CONFLICT')) throw error;
      const latest = (await catalog.#repo.latest()) as PlanRow;
      catalog.#install(latest, await catalog.#compile(latest));
    }
    return catalog;
  }

  #row(version: number, plan: unknown, actor: Actor, hash = planHash(plan)): PlanRow {
    const doc = plan as PlanDocument;
    return { version, name: doc.name, hash, plan: JSON.stringify(plan), published_at: new Date().toISOString(), published_by: actor.id };
  }

  /**
   * Compiles a stored version, in slices that let ingestion go on meanwhile; categories unknown to this process count
   * as the most restrictive.
   */
  async #compile(row: PlanRow): Promise<CompiledPlan> {
    const { compiled, problems } = await compilePlanAsync(JSON.parse(row.plan), this.#taxonomy, { lenient: true });
    if (!compiled) throw new CandorError('CATALOG_PLAN_INVALID', { version: row.version, problems });
    return compiled;
  }

  #install(row: PlanRow, compiled: CompiledPlan): void {
    this.#current = { version: Number(row.version), hash: row.hash, publishedAt: row.published_at, publishedBy: row.published_by, text: row.plan, compiled };
    this.#fieldIndex = undefined;
  }

  /**
   * Stores a plan as the version after the latest, with its audit entry, in one transaction: the two commit together
   * or not at all. The latest version is read under the publishers' lock, so that no publish comes between that read
   * and the insert. The document of the latest version answers that version, unchanged; `baseVersion`, when given,
   * must be the latest version (0: none yet), else CATALOG_PLAN_CONFLICT.
   */
  async #store(plan: unknown, actor: Actor, compiled: CompiledPlan, baseVersion: number | undefined): Promise<{ row: PlanRow; unchanged: boolean }> {
    const hash = planHash(plan);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#repo.transaction(async (tx) => {
          const latest = await this.#repo.latestLockedIn(tx);
          if (latest && latest.hash === hash) return { row: latest, unchanged: true };
          const latestVersion = Number(latest?.version ?? 0);
          if (baseVersion !== undefined && baseVersion !== latestVersion) throw new CandorError('CATALOG_PLAN_CONFLICT', { baseVersion, latestVersion });
          const row = this.#row(latestVersion + 1, plan, actor, hash);
          await this.#repo.insertPlanIn(tx, row);
          const size = compiled.size();
          await this.#audit.appendIn(tx, [
            {
              actor: actor.id,
              role: actor.role,
              action: 'catalog.plan.publish',
              purpose: OPERATIONS,
              resource: `catalog:plan:${row.version}`,
              details: { version: row.version, hash: row.hash, events: size.events, fields: size.fields },
            },
          ]);
          return { row, unchanged: false };
        });
      } catch (error) {
        // A process of an older release published the same version number without the lock: number this one after it.
        if (isUniqueViolation(error) && attempt < 3) continue;
        if (isUniqueViolation(error)) throw new CandorError('CATALOG_PLAN_CONFLICT');
        throw error;
      }
    }
  }

  /**
   * Validates and minimizes one message against the plan in force, and counts the outcome for its source.
   * Synchronous: the hot path of ingestion.
   */
  process(kind: MessageKind, name: string | undefined, message: PlanInput, source: string): PlanResult {
    const result = this.#current.compiled.process(kind, name, message);
    // Every dropped path is counted; the result lists the first ones.
    this.#counters.count(source, kind, name, result);
    return listDropped(result);
  }

  /** What process() would answer for a message, without counting it (a check before the pipeline processes it). */
  check(kind: MessageKind, name: string | undefined, message: PlanInput): PlanResult {
    return listDropped(this.#current.compiled.process(kind, name, message));
  }

  /** The version number of the plan in force. */
  version(): number {
    return this.#current.version;
  }

  /** A published version (the one in force by default). */
  async plan(version?: number): Promise<PublishedPlan> {
    const current = this.#current;
    if (version === undefined || version === current.version) {
      return { version: current.version, hash: current.hash, plan: JSON.parse(current.text) as PlanDocument, publishedAt: current.publishedAt, publishedBy: current.publishedBy };
    }
    const row = await this.#storedVersion(version);
    if (!row) throw new CandorError('CATALOG_PLAN_VERSION_NOT_FOUND', { version });
    return { version: Number(row.version), hash: row.hash, plan: JSON.parse(row.plan) as PlanDocument, publishedAt: row.published_at, publishedBy: row.published_by };
  }

  /** Every published version, oldest first. */
  async versions(): Promise<PlanVersion[]> {
    const rows = await this.#repo.versions();
    return rows.map((r) => ({ version: r.version, hash: r.hash, publishedAt: r.published_at, publishedBy: r.published_by }));
  }

  /**
   * Every problem of a plan at once: meta-schema, size, unknown categories and purposes, retention, schema compilation.
   * Compiles in slices, letting ingestion go on meanwhile.
   */
  async validatePlan(plan: unknown, options: WarningOptions = {}): Promise<{ ok: boolean; problems: PlanProblem[]; warnings?: PlanWarning[] }> {
    const { compiled, problems } = await compilePlanAsync(plan, this.#taxonomy);
    const warnings = compiled && options.purposes ? planWarnings(compiled.outline(), options.purposes, options.describes, options.aboutTheSystem) : undefined;
    return { ok: problems.length === 0, problems, ...(warnings ? { warnings } : {}) };
  }

  /**
   * Publishes a plan as a new version and puts it in force at once (audited in the same transaction). Publishing the
   * document of the latest version again changes nothing and answers that version with `unchanged: true`. With
   * `baseVersion` (the version the document was edited from) it is published only if that is still the latest
   * version, else CATALOG_PLAN_CONFLICT: so that a change published meanwhile is not undone unseen.
   */
  async publish(
    plan: unknown,
    actor: Actor,
    options: { baseVersion?: number | undefined } & WarningOptions = {},
  ): Promise<{ version: number; hash: string; unchanged?: boolean; warnings?: PlanWarning[] }> {
    const { compiled, problems } = await compilePlanAsync(plan, this.#taxonomy);
    if (!compiled) throw new CandorError('CATALOG_PLAN_INVALID', { problems });
    const { row, unchanged } = await this.#store(plan, actor, compiled, options.baseVersion);
    const version = Number(row.version);
    if (version > this.#current.version) this.#install(row, compiled);
    const warnings = options.purposes ? { warnings: planWarnings(compiled.outline(), options.purposes, options.describes, options.aboutTheSystem) } : {};
    return unchanged ? { version, hash: row.hash, unchanged, ...warnings } : { version, hash: row.hash, ...warnings };
  }

  /**
   * refresh(), when another process may have written since the last look (the database tells: SQLite's data_version,
   * PostgreSQL's commit notices); when that cannot be told, at every call. Costs no query while nobody else writes.
   */
  async refreshIfChanged(): Promise<number> {
    return this.#freshness.lookAgain() ? this.refresh() : this.#current.version;
  }

  /** Puts in force a newer version published by another process, if any; returns the version in force. */
  async refresh(): Promise<number> {
    const latest = await this.#repo.latest();
    if (latest && Number(latest.version) > this.#current.version) {
      const compiled = await this.#compile(latest);
      // Another refresh or a publish may have put a newer version in force while this one compiled.
      if (Number(latest.version) > this.#current.version) this.#install(latest, compiled);
    }
    return this.#current.version;
  }

  /**
   * The taxonomy has entries this process did not hold (added by another process): the plan in force is compiled again,
   * as a category it did not know was read as the most restrictive (special, so refused without explicit consent), and
   * the stored versions are folded again for `declarations()`. Answers the version in force.
   */
  async taxonomyChanged(): Promise<number> {
    const current = this.#current;
    const row: PlanRow = { version: current.version, name: (JSON.parse(current.text) as PlanDocument).name, hash: current.hash, plan: current.text, published_at: current.publishedAt, published_by: current.publishedBy };
    const compiled = await this.#compile(row);
    // A refresh or a publish may have put another version in force while this one compiled: it was compiled since.
    if (this.#current === current) this.#install(row, compiled);
    const refold = this.#folding.then(() => {
      this.#declared.upTo = 0;
      this.#declared.fields.clear();
      this.#declared.unreadable.length = 0;
    });
    this.#folding = refold.catch(() => undefined);
    await refold;
    return this.#current.version;
  }

  /** A stored version's row; undefined for a number no version can have (versions are 32-bit integers in the database, and PostgreSQL refuses to compare them with a larger one). */
  #storedVersion(version: number) {
    return Number.isInteger(version) && version >= 1 && version <= MAX_PLAN_VERSION ? this.#repo.byVersion(version) : Promise.resolve(undefined);
  }

  /** A version (the one in force by default) as lists of annotated fields per section. */
  async outline(version?: number): Promise<OutlineSection[]> {
    if (version === undefined || version === this.#current.version) return this.#current.compiled.outline();
    const row = await this.#storedVersion(version);
    if (!row) throw new CandorError('CATALOG_PLAN_VERSION_NOT_FOUND', { version });
    return (await this.#compile(row)).outline();
  }

  /**
   * The fields of the plan in force, and those stored versions declared that it does not (removed since, or declared by
   * a version newer than the one in force in this process) each with its annotation in the latest stored version that
   * declares it: what the retention sweeper keeps stored values of a field by. Both read at one moment, so a field is in
   * one list or the other whatever is published meanwhile. Each version is read once per process, without compiling
   * its validators.
   */
  async declarations(): Promise<Declarations> {
    const fold = this.#folding.then(() => this.#foldVersions());
    this.#folding = fold.catch(() => undefined);
    await fold;
    const current = this.#current;
    const outline = current.compiled.outline();
    const inForce = this.fieldsInForce();
    const sections = new Map<string, { section: OutlineSection['section']; event?: string; fields: RetiredField[] }>();
    const unreadable = this.#declared.unreadable;
    for (const declared of this.#declared.fields.values()) {
      if (inForce.plannedField(declared.section, declared.event ?? null, declared.field.path) !== undefined) continue;
      // A version after this declaration that cannot be read may declare the field for longer: left alone.
      if (unreadable.some((v) => v > declared.version)) continue;
      const at = declaredKey(declared.section, declared.event, '');
      let section = sections.get(at);
      if (section === undefined) {
        section = { section: declared.section, ...(declared.event === undefined ? {} : { event: declared.event }), fields: [] };
        sections.set(at, section);
      }
      section.fields.push({ ...declared.field, version: declared.version });
    }
    const fields = this.#declared.fields;
    const everPersonal = (section: string, event: string | undefined, path: string) => fields.get(declaredKey(section, event, path))?.everPersonal === true;
    return { version: current.version, inForce: outline, retired: [...sections.values()], latest: this.#declared.upTo, unreadable: [...unreadable], everPersonal };
  }

  /**
   * The latest stored version, read in the caller's transaction holding the publishers' lock (PostgreSQL; SQLite's write
   * transactions are serial): no version is stored until that transaction ends.
   */
  async latestVersionIn(tx: SqlExecutor): Promise<number> {
    return this.#repo.latestVersionLockedIn(tx);
  }

  /** The fields the plan in force no longer declares, for look-ups (declarations()' `retired`): an access archive's disclosures. */
  async retiredFields(): Promise<RetiredFields> {
    const declared = await this.declarations();
    return new RetiredFieldIndex(declared.retired, declared.unreadable.length === 0);
  }

  /** Folds the versions stored since the last call into #declared, oldest first, so that the latest declaration wins. */
  async #foldVersions(): Promise<void> {
    const declared = this.#declared;
    for (;;) {
      const row = await this.#repo.after(declared.upTo);
      if (!row) return;
      const version = Number(row.version);
      let outline: OutlineSection[] | undefined;
      if (version === this.#current.version) outline = this.#current.compiled.outline();
      else {
        try {
          outline = await outlineStoredAsync(JSON.parse(row.plan), this.#taxonomy);
        } catch {
          outline = undefined;
        }
      }
      if (outline === undefined) declared.unreadable.push(version);
      for (const s of outline ?? []) {
        for (const field of s.fields) {
          const key = declaredKey(s.section, s.event, field.path);
          const everPersonal = field.personal || declared.fields.get(key)?.everPersonal === true;
          declared.fields.set(key, { section: s.section, event: s.event, field, version, everPersonal });
        }
      }
      declared.upTo = version;
    }
  }

  /**
   * A declared field's annotation in the plan in force (for the Art. 15(1) metadata of an access archive, and for
   * masking what the plan declares personal, and the audit attributes of fairness reports): `section` as in outline(), `event` for track events, `path` like
   * `traits.email` or `properties.total`.
   */
  plannedField(section: string, event: string | null, path: string): PlannedField | undefined {
    return this.fieldsInForce().plannedField(section, event, path);
  }

  /**
   * The fields of the plan in force, indexed once per version and never changed: a read that takes them once masks all
   * it shows by one version, even if another is put in force meanwhile.
   */
  fieldsInForce(): VersionFields {
    if (this.#fieldIndex?.version !== this.#current.version) this.#fieldIndex = new PlanFieldIndex(this.#current.version, this.#current.compiled.outline());
    return this.#fieldIndex;
  }

  /**
   * The fields and occurrences a stored version declares (the one in force: fieldsInForce()), read without compiling
   * its validators, once per process; undefined when the version is not stored or cannot be read (what it declared is
   * unknown). For masking an event the plan in force no longer declares by the version it was stored under.
   */
  async fieldsOf(version: number): Promise<VersionFields | undefined> {
    if (version === this.#current.version) return this.fieldsInForce();
    let cache = STORED_FIELDS.get(this);
    if (cache === undefined) STORED_FIELDS.set(this, (cache = new Map()));
    let fields = cache.get(version);
    if (fields === undefined) {
      fields = this.#storedVersion(version).then(async (row) => {
        if (!row) return undefined;
        let outline: OutlineSection[] | undefined;
        try {
          outline = await outlineStoredAsync(JSON.parse(row.plan), this.#taxonomy);
        } catch {
          outline = undefined;
        }
        return outline === undefined ? undefined : new PlanFieldIndex(version, outline);
      });
      cache.set(version, fields);
      // A failed read (the database) is tried again by the next caller.
      fields.catch(() => cache.delete(version));
    }
    return fields;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /** Counts per source, kind and event: stored ones plus those of this process not written yet (taken ones included). */
  stats(filter: { source?: string | undefined; event?: string | undefined } = {}): Promise<StatsRow[]> {
    return this.#exclusive(async () => {
      const stored = await this.#repo.stats(filter);
      // In the order they were or will be written: statsRows bounds the paths of a row as the writes do.
      return statsRows([...stored, ...[...this.#taken].flat(), ...this.#counters.records()], filter);
    });
  }

  /**
   * Takes the counts not written yet, for a caller that writes them in its own transaction (ingestion, with the
   * events they describe); `restoreStats` puts them back if that transaction fails. Until one of the two, stats() still
   * counts them.
   */
  takeStats(): StatsRecord[] {
    const records = this.#counters.take();
    this.#taken.add(records);
    return records;
  }

  /** Puts back counts that takeStats handed out and that were not committed. */
  restoreStats(records: readonly StatsRecord[]): void {
    this.#taken.delete(records);
    this.#counters.restore(records);
  }

  /**
   * Writes taken counts on the caller's transaction. From then on stats() leaves them to the database: until the
   * commit a read may miss them, never count them twice; a rollback must be followed by restoreStats.
   */
  async writeStats(tx: SqlExecutor, records: readonly StatsRecord[]): Promise<void> {
    if (records.length > 0) await this.#write(tx, records);
    // Only once the write went through: if it failed, the counts stay taken until the caller puts them back.
    this.#taken.delete(records);
  }

  /**
   * Adds counts to the stored ones in the caller's transaction. A path new to a stored row makes it read that row's
   * paths first, so that each row keeps at most 100 of them whatever wrote it before; the rest count under `*other*`.
   */
  async #write(tx: SqlExecutor, records: readonly StatsRecord[]): Promise<void> {
    const rows = this.#storedPaths.unknownRows(records);
    if (rows.length > 0) this.#storedPaths.learn(rows, await this.#repo.storedPaths(tx, rows));
    await this.#repo.addStatsIn(tx, this.#storedPaths.fit(records), new Date().toISOString());
  }

  /**
   * Adds this process's counts to catalog_stats and resets them; on failure they are kept for the next flush.
   * Calls made while a flush waits to start share it, so calling after every commit costs at most one write at a time.
   */
  flushStats(): Promise<void> {
    if (this.#queuedFlush) return this.#queuedFlush;
    const flush = this.#exclusive(async () => {
      this.#queuedFlush = undefined;
      const records = this.#counters.take();
      try {
        if (records.length > 0) await this.#repo.transaction((tx) => this.#write(tx, records));
      } catch (error) {
        this.#counters.restore(records);
        throw error;
      }
    });
    this.#queuedFlush = flush;
    return flush;
  }
}

/**
 * What planWarnings checks a plan against: the purposes configured now, what the notice in force describes, and which
 * categories are about the system (Consent.aboutTheSystem).
 */
export interface WarningOptions {
  purposes?: readonly ConfiguredPurpose[];
  describes?: (purpose: string, category: string) => boolean;
  aboutTheSystem?: (category: string) => boolean;
}

/** A purpose as the consent configuration has it, for planWarnings. */
export interface ConfiguredPurpose {
  key: string;
  explicit: boolean;
}

/**
 * A declared field that no purpose configured now can let through (the gate leaves it out of every event), or that is
 * left out for some of its purposes; or an event whose occurrence is so (no `path`).
 */
export interface PlanWarning {
  section: OutlineSection['section'];
  event?: string;
  /** The field; absent for the event's occurrence (its `category`). */
  path?: string;
  warning: string;
}

type Annotated = Pick<EventOccurrence, 'category' | 'purposes' | 'special' | 'preciseLocation'>;

/**
 * The fields of a plan the consent gate can never store, or cannot store for some of their purposes, with the purposes
 * and notice in force now: a field none of whose purposes is configured; a special-category or precise-location field
 * none of whose purposes asks for explicit consent; and a field whose category the notice does not describe for one of
 * its consent-based purposes (`describes`, Consent.describes: the gate keeps it only for the others). An event's
 * occurrence (its `category`, for the event's purposes) is checked the same way: where it is not kept for a purpose,
 * the event is stored for that purpose only through a field kept for it. A field about the system (`aboutTheSystem`, a
 * library's name) serves no purpose by itself: it is kept only in an event stored for one of its purposes, so it is
 * never stored when none of them is the event's or one of the event's fields about the person (for a context field:
 * of any section of the plan). A stored version's occurrence about the system, read as DEFAULT_EVENT_CATEGORY, is
 * listed too. Publishing is not refused for them (a purpose may be configured, or a notice published, later); the
 * answer lists them, so a plan that collects nothing where it meant to is seen at once.
 */
export function planWarnings(
  sections: readonly OutlineSection[],
  purposes: readonly ConfiguredPurpose[],
  describes: (purpose: string, category: string) => boolean = () => true,
  aboutTheSystem: (category: string) => boolean = () => false,
): PlanWarning[] {
  const configured = new Set(purposes.map((p) => p.key));
  const explicit = new Set(purposes.filter((p) => p.explicit).map((p) => p.key));
  /** Why an annotated field or occurrence is never kept (`never`) or not kept for some purposes (`some`). */
  const problem = (annotated: Annotated): { never: boolean; why: string } | undefined => {
    const listed = annotated.purposes.join(', ');
    const strict = annotated.special || annotated.preciseLocation;
    const usable = annotated.purposes.filter((p) => (strict ? explicit : configured).has(p));
    const undescribed = usable.filter((p) => !describes(p, annotated.category));
    if (!annotated.purposes.some((p) => configured.has(p))) return { never: true, why: `none of its purposes (${listed}) is configured` };
    if (usable.length === 0) {
      const what = annotated.special ? 'a special category' : 'precise location';
      return { never: true, why: `${what} needs explicit consent, and none of its purposes (${listed}) asks for it` };
    }
    if (undescribed.length === usable.length) return { never: true, why: `the notice in force does not describe ${annotated.category} for its purposes (${undescribed.join(', ')})` };
    if (undescribed.length > 0) return { never: false, why: `${undescribed.join(', ')}: the notice in force does not describe ${annotated.category} for ${undescribed.length === 1 ? 'it' : 'them'}` };
    return undefined;
  };
  /** The purposes a message of a section can be stored for: its event's, and those of its fields about the person. */
  const storable = (section: OutlineSection): Set<string> => {
    const out = new Set(section.purposes);
    for (const field of section.fields) if (!aboutTheSystem(field.category)) for (const p of field.purposes) out.add(p);
    return out;
  };
  const bySection = new Map(sections.map((section) => [section, storable(section)]));
  // A context field comes with every call: what any section (and the context's own fields about the person) is for.
  const anySection = new Set([...bySection.values()].flatMap((purposesOf) => [...purposesOf]));
  const warnings: PlanWarning[] = [];
  for (const section of sections) {
    const where = { section: section.section, ...(section.event === undefined ? {} : { event: section.event }) };
    const occurrence = section.occurrence;
    const found = occurrence && problem(occurrence);
    // An event that declares no category, or one about the system (a stored version), is read as DEFAULT_EVENT_CATEGORY:
    // say so, the fix is often to declare one.
    const read =
      occurrence?.aboutTheSystem !== undefined
        ? ` (the event's category ${occurrence.aboutTheSystem} is about the system, not something the person did: read as ${occurrence.category})`
        : occurrence?.declared === false
          ? ` (the event declares no category: read as ${occurrence.category})`
          : '';
    if (occurrence && found) {
      warnings.push({ ...where, warning: found.never ? `occurrence never kept for the event's purposes: ${found.why}${read}` : `occurrence not kept for ${found.why}${read}` });
    } else if (occurrence?.aboutTheSystem !== undefined) {
      warnings.push({ ...where, warning: `occurrence category ${occurrence.aboutTheSystem} is about the system, not something the person did: read as ${occurrence.category}` });
    }
    const served = section.section === 'context' ? anySection : (bySection.get(section) as Set<string>);
    for (const field of section.fields) {
      const about = problem(field);
      if (about?.never) warnings.push({ ...where, path: field.path, warning: `never stored: ${about.why}` });
      else if (aboutTheSystem(field.category) && !field.purposes.some((p) => served.has(p))) {
        const none = section.section === 'context' ? 'no event, page or screen of the plan is stored for any of them' : `${section.section === 'track' ? 'the event' : `a ${section.section} call`} is stored for none of them`;
        warnings.push({ ...where, path: field.path, warning: `never stored: ${field.category} is about the system, kept only in an event stored for one of its purposes (${field.purposes.join(', ')}), and ${none}` });
      } else if (about) warnings.push({ ...where, path: field.path, warning: `not kept for ${about.why}` });
    }
  }
  return warnings;
}
