/**
 * What every module that holds data about a person registers with `rights` and `retention`, which never switch on
 * module names (DESIGN.md): a handler that exports and erases the module's data about one subject, and the
 * retention rules of its stores.
 */
import type { SqlExecutor } from '../storage/index.ts';
import type { Actor } from './actor.ts';

/** An identifier as stored: its type and keyed HMAC pseudonym, never the value. */
export interface IdentifierPseudonym {
  readonly type: string;
  readonly valueHash: string;
}

/** One person as rights requests see them: every profile merged into them and every identifier linked to them. */
export interface DataSubject {
  /** The canonical profile id. */
  readonly profileId: string;
  /** The canonical profile id and every profile merged into it. */
  readonly profileIds: readonly string[];
  /** Every identifier linked to any of those profiles. */
  readonly identifiers: readonly IdentifierPseudonym[];
}

/** The metadata of GDPR Art. 15(1) for one exported field. */
export interface FieldDisclosure {
  /** Path of the field inside the section's data, e.g. `traits.email` or `events[].properties.total`. */
  readonly field: string;
  /** Data category (fideslang key). */
  readonly category: string;
  /** Purposes (data uses) it serves. */
  readonly purposes: readonly string[];
  /** Where it came from: the source(s) that sent it, or `candor` for what Candor computed. */
  readonly source: string;
  /** Who it is disclosed to (recipients); empty when nobody outside the controller. */
  readonly recipients: readonly string[];
  /** How long it is kept (ISO-8601 duration), or null when kept until erasure. */
  readonly retention: string | null;
}

/** One module's part of an access/portability archive. */
export interface ExportSection {
  /** File stem in the archive: `<module>.json`. */
  readonly module: string;
  /** A heading for the readable summary. */
  readonly title: string;
  /** JSON-serializable data about the subject, decrypted. */
  readonly data: unknown;
  readonly fields: readonly FieldDisclosure[];
  /** A table also written as CSV (events). */
  readonly csv?: { readonly file: string; readonly header: readonly string[]; readonly rows: readonly (readonly (string | number | boolean | null)[])[] };
}

/** confirmed: gone (or reduced to what a legal obligation needs); forwarded: asked of a recipient; not_supported: could not be erased. */
export type StoreStatus = 'confirmed' | 'forwarded' | 'not_supported';

/** What an erasure did to one store (table, file, recipient). */
export interface EraseOutcome {
  readonly store: string;
  readonly status: StoreStatus;
  /** Rows (or items) deleted. */
  readonly deleted: number;
  /** Rows kept because a legal obligation requires them, with the reason. */
  readonly kept?: { readonly count: number; readonly reason: string };
  readonly detail?: string;
}

/**
 * Why a subject's data is deleted: an erasure (GDPR Art. 17, or its replay after a restore), or the retention rule for
 * people inactive too long, which keeps what another rule still holds under a legal obligation (reduced orders).
 */
export type EraseReason = 'erasure' | 'inactivity';

/** One deletion of a subject, as the handlers' `closeIn` and `destroyKeys` see it. */
export interface SubjectDeletion {
  readonly reason: EraseReason;
  /** The erasure request carried out (or replayed after a restore); null when retention deletes an inactive person. */
  readonly requestId: string | null;
  readonly actor: Actor;
  /** When the deletion started (ISO-8601, UTC). */
  readonly at: string;
}

/** An audit entry a handler gives the deletion to append in its transaction (the audit module's `AuditEvent`). */
export interface DeletionAuditEntry {
  readonly actor: string;
  readonly role: string;
  readonly action: string;
  readonly purpose: string;
  readonly subject?: string | null;
  readonly resource?: string | null;
  readonly details?: Readonly<Record<string, string | number | boolean | null | readonly string[]>>;
}

/** What a handler closed for a deletion (`SubjectDataHandler.closeIn`). */
export interface SubjectClosing {
  /** Its line in an erasure's certificate. */
  readonly outcome: EraseOutcome;
  /** Counts for the deletion's own audit entry (retention's `retention.subject.delete`), e.g. `{ requestsClosed: 2 }`. */
  readonly counts: Readonly<Record<string, number>>;
  /** The entries of what it closed, which the caller appends last in the deletion's transaction. */
  readonly audit: readonly DeletionAuditEntry[];
}

/** Registered by each module that holds data about a person. */
export interface SubjectDataHandler {
  readonly module: string;
  /** What the module holds about the subject, decrypted where the caller may see it, for access and portability. */
  export(subject: DataSubject): Promise<ExportSection>;
  /**
   * Deletes what the module holds about the subject (or reduces it to what a legal obligation needs, saying so), using
   * only `tx`. Running it twice is harmless: the second run deletes nothing and still confirms. `reason` is `erasure`
   * when not given; `at` is the time the deletion is made at by the retention rules (a sweep's `now`; the clock when
   * not given).
   */
  erase(tx: SqlExecutor, subject: DataSubject, reason?: EraseReason, at?: Date): Promise<EraseOutcome[]>;
  /**
   * Optional: closes what is still open on the subject's behalf (the rights module: their other requests), in the
   * deletion's transaction once every handler has erased. An erasure and retention's deletion of an inactive person
   * both run it.
   */
  closeIn?(tx: SqlExecutor, subject: DataSubject, deletion: SubjectDeletion): Promise<SubjectClosing>;
  /** Optional: drops what the module caches about the subject, once the erasure's transaction has committed. */
  afterErase?(subject: DataSubject): Promise<void>;
  /**
   * Optional: after the deletion's commit (and, at an erasure, the destruction of the subject's data keys), destroys
   * the other keys the module sealed the subject's data with; returns how many. Run again when an erasure is resumed:
   * a second run destroys nothing.
   */
  destroyKeys?(subject: DataSubject, deletion: SubjectDeletion): Promise<number>;
}

/**
 * One line of the deletion ledger. The ledger lives in the database and, append-only, in
 * `<dataDir>/deletion-ledger.jsonl` outside it, so that a backup restored from before an erasure has the erasure
 * replayed before anything else runs. It holds only profile ids and pseudonyms.
 */
export interface DeletionLedgerEntry {
  readonly seq: number;
  readonly requestId: string;
  readonly at: string;
  readonly profileIds: readonly string[];
  readonly identifiers: readonly IdentifierPseudonym[];
  /** SHA-256 of the previous line (64 zeros for the first) and of this one: a chain like the audit log's. */
  readonly prevHash: string;
  readonly hash: string;
}

/**
 * One retention rule a module enforces on one of its stores: after `period` (ISO-8601 duration) counted from the
 * row's clock, the rows go (`delete`), are reduced to what a legal obligation needs (`reduce`), or lose the fields
 * named (`remove_fields`). Listed by `candor retention policies`; each sweep counts under the rule's id.
 */
export interface RetentionRule {
  /** Stable id, e.g. `collect.events.raw`; deletion evidence is counted under it. */
  readonly id: string;
  readonly module: string;
  /** The table (or file) the rule applies to. */
  readonly store: string;
  /** Data category (fideslang key) of what the rule deletes. */
  readonly category: string;
  /** ISO-8601 duration. */
  readonly period: string;
  /** What starts the clock, e.g. `occurred_at`, `last activity`, `expires_at`. */
  readonly clock: string;
  readonly action: 'delete' | 'reduce' | 'remove_fields';
  /** Where the period comes from: a configured per-purpose policy, the tracking plan, or the module itself. */
  readonly source: 'policy' | 'plan' | 'module';
  /** One sentence for people: what goes and why. */
  readonly description: string;
  /** For `remove_fields`: the field paths removed; for `reduce`: the field paths kept. */
  readonly fields?: readonly string[];
}

/** What one sweep did (or, in a dry run, would do) under one rule. */
export interface SweepCount {
  readonly rule: string;
  readonly store: string;
  readonly category: string;
  /** Rows deleted, reduced or rewritten. */
  readonly count: number;
}

/** Where a rewrite rule got to, so that the next sweep starts there: rows before `at` (and ids up to `id`) are done. */
export interface SweepMark {
  readonly at: string;
  readonly id: string;
}

/** What the sweeper lends a handler: the people behind profile ids, deleting people, and progress marks. */
export interface SweepContext {
  /** The people (canonical profile, members, identifiers) the profile ids belong to, without duplicates. */
  subjects(profileIds: readonly string[]): Promise<DataSubject[]>;
  /**
   * Deletes everything held about these people through every registered `SubjectDataHandler` and destroys their
   * data keys (after each person's commit, as an erasure does), without suppressing their identifiers (a returning customer starts fresh). Each person is checked again
   * inside the transaction that deletes them, with ingestion kept out until it commits: a person whose profiles
   * changed since (a merge, an unmerge) or for whom `stillDue` answers false is left alone. Returns rows deleted per
   * store and the number of people deleted.
   */
  forget(subjects: readonly DataSubject[], reason: string, stillDue?: (tx: SqlExecutor, subject: DataSubject) => Promise<boolean>): Promise<{ outcomes: EraseOutcome[]; people: number }>;
  /** The mark a rewrite rule reached in an earlier sweep, or null. */
  mark(rule: string): Promise<SweepMark | null>;
  /** Records a rule's mark inside the transaction of the batch that reached it. */
  setMark(tx: SqlExecutor, rule: string, mark: SweepMark): Promise<void>;
}

export interface SweepOptions {
  /** Count what would go, change nothing. */
  readonly dryRun: boolean;
  /** Rows per batch; each batch is its own short transaction. */
  readonly batchSize: number;
  readonly context: SweepContext;
}

/** Registered by each module that keeps something on a clock. */
export interface RetentionHandler {
  readonly module: string;
  /** The rules in force now (the tracking plan can change between calls). */
  rules(): Promise<readonly RetentionRule[]>;
  /** Deletes (or reduces) what expired at `now`, in batches; a second sweep at the same `now` finds nothing. */
  sweep(now: Date, options: SweepOptions): Promise<SweepCount[]>;
}

/** A declared field's annotation in the tracking plan in force (category, purposes, retention, personal). */
export interface PlannedField {
  readonly category: string;
  readonly purposes: readonly string[];
  readonly retention: string;
  /** The plan declares the field personal: stored encrypted from now on, and masked for readers who may not decrypt. */
  readonly personal: boolean;
}

/**
 * How handlers find a field's annotation for FieldDisclosure: `section` is `identify` (traits), `track`, `page`,
 * `screen`, `group` or `context`; `event` names the track event; `path` is the field path, e.g. `traits.email`.
 */
export interface FieldPlanLookup {
  plannedField(section: string, event: string | null, path: string): PlannedField | undefined;
}

/** A field the plan in force no longer declares, as the latest stored version that declared it did. */
export interface RetiredPlannedField extends PlannedField {
  /** That version. */
  readonly version: number;
}

/**
 * The fields stored plan versions declared and the plan in force does not, read at one moment (`field` looks them up as
 * FieldPlanLookup does): their stored values are kept by the latest declaration's retention. `complete` is false while a
 * stored version cannot be read (what it declared is unknown).
 */
export interface RetiredFields {
  field(section: string, event: string | null, path: string): RetiredPlannedField | undefined;
  readonly complete: boolean;
}

/** Where handlers find the fields the plan in force no longer declares (`catalog.retiredFields()`). */
export interface RetiredFieldLookup {
  retiredFields(): Promise<RetiredFields>;
}

/** The fields one version of the tracking plan declares, looked up as in FieldPlanLookup. */
export interface PlanFields extends FieldPlanLookup {
  /**
   * Whether the plan declares fields inside `path`: an object or an array of objects (`properties.products`, its items
   * `properties.products[]`), or a part of an event (`properties`, `traits`, `context`).
   */
  declaresInside(section: string, event: string | null, path: string): boolean;
}

/**
 * The tracking plan in force, for reads that mask by it: a read takes the fields once, so that one answer follows one
 * version (and looks the plan up once).
 */
export interface PlanInForce {
  fieldsInForce(): PlanFields;
}
