import { randomBytes, randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { JWTPayload } from 'jose';
import type { Actor } from '../../shared/actor.ts';
import { SYSTEM_ACTOR } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import { GroupCommit } from '../../shared/group-commit.ts';
import { randomHexPooled } from '../../shared/random.ts';
import { Freshness, isTransientFailure, isUniqueViolation, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { AuditEvent, AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Taxonomy } from '../taxonomy/index.ts';
import type { SubjectDataHandler } from '../../shared/subject-data.ts';
import { ConsentSubjectData } from './consent.subject-data.ts';
import { CHUNK, ConsentRepo, type CurrentRow, type NoticeRow, type PurposeRow, type RestrictionKind, type RestrictionRow } from './consent.repo.ts';
import {
  CALLER_MECHANISMS,
  CONFIGURED_BASES,
  type ConsentMechanism,
  type ConsentState,
  type Decision,
  type LawfulBasis,
  type LedgerEntry,
  type Notice,
  type KeptConsent,
  type NoticePurpose,
  type OptOutNoticeResult,
  type PurposeConfig,
  type PurposeState,
  type Receipt,
  type RecordMeta,
  type GpcMeta,
  type RecordResult,
  type ReappliedAfterRestore,
  type RejectedChange,
  type RestrictiveConsentStates,
} from './consent.types.ts';
import { addMonths, decideFor, isDirectMarketing, isOptOut, NO_FLAGS, unionFlags, UNKNOWN_PURPOSE, type Current, type PurposeRuntime, type SubjectFlags } from './decide.ts';
import { DEFAULT_NOTICE_PURPOSES, DEFAULT_NOTICE_TEXT, DEFAULT_PURPOSES } from './defaults.ts';
import { isCovered, lineage, materialChanges, noticeHash, normalizePurposes } from './notices.ts';
import { receiptPayload, type ReceiptItem } from './receipt-payload.ts';
import { FLAGGED_SOURCE, ownSource, recordedSource, sourceProblem } from './source.ts';
import { ReceiptSigner, type PublicJwk } from './receipts.ts';
import { KeyedLock, SubjectCache, type SubjectState } from './subject-cache.ts';

/** A signed receipt as stored: the JWS and the pseudonyms it concerns (the principal first). */
export interface StoredReceipt {
  receiptId: string;
  receipt: string;
  subject: string;
  subjects: string[];
  mechanism: ConsentMechanism;
  at: string;
}

/** A cached subject state is read again after this long even when no other connection wrote (a safety net). */
const MAX_STATE_AGE_MS = 60_000;

export interface ConsentDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  taxonomy: Taxonomy;
  /** A given consent stops counting this many calendar months after it was given. */
  expiryMonths: number;
  /** Subjects whose state is kept in memory (oldest dropped first). */
  cacheSubjects?: number | undefined;
  /** load() re-reads a cached subject after this many milliseconds, so other processes' changes are seen. */
  refreshAfterMs?: number | undefined;
  /** The controller named in receipts. */
  controllerName?: string | undefined;
  /** Where the privacy notice is published, named in receipts. */
  policyUrl?: string | undefined;
  /** Where to ask the controller about privacy (an e-mail address or URL), named in receipts. */
  controllerContact?: string | undefined;
}

const JURISDICTION = /^[A-Z]{2}(-[A-Z0-9]{1,3})?$/;
const MAX_SUBJECT_ID = 512;
const EXPIRY_PAGE = 500;
/** How many times a change is written when PostgreSQL ends its transaction as a deadlock victim or unserializable. */
const WRITE_ATTEMPTS = 4;
const EMPTY: ReadonlyMap<string, Current> = new Map();
/** For what the notice describes a category for a purpose (bits of #describesNow): a field (Consent.describes) … */
const DESCRIBED = 1;
/** … and an event's occurrence, never through data about the system (Consent.describes of an occurrence). */
const DESCRIBED_AS_PERSONAL = 2;
/** Consent.aboutTheSystem's answers per category, kept beside the describes() answers they are dropped with. */
const aboutTheSystemAnswers = new WeakMap<object, Map<string, boolean>>();
const NO_IDS: ReadonlySet<string> = new Set();
const NO_SOURCES: readonly PendingSource[] = [];
/** The flags a decision takes when a profile whose opt-outs bind the subject is not in memory: nothing but a legal obligation. */
const UNKNOWN_SOURCE_FLAGS: SubjectFlags = Object.freeze({ restricted: true, objectedMarketing: true });
const CHANGE_STATES = new Set(['given', 'refused', 'withdrawn']);

/** A profile whose opt-outs bind a subject while a merge's or unmerge's propagation is pending (see PendingMergeSources). */
interface PendingSource {
  readonly profileId: string;
  readonly since?: string;
}

/**
 * Where merges and unmerges whose propagation to consent (mergeSubjects, run after their commit) is pending bind a
 * subject meanwhile (the kernel wires it to identity): a survivor by its merged-away profile's opt-outs, a split-out
 * profile by its other side's of the merged time.
 */
export interface PendingMergeSources {
  /** The profiles whose opt-outs bind this subject now (from `since` on, when given); undefined for none. Synchronous. */
  sourcesOf(subjectId: string): readonly PendingSource[] | undefined;
  /** Moves whenever sourcesOf may answer otherwise. */
  version(): number;
  /** Brings sourcesOf up to date with what other processes committed; undefined when there is nothing to read. */
  refresh(): Promise<void> | undefined;
}

/**
 * Each Consent's pending merges' sources (see gatePendingMerges), kept outside the class: members added to it broke
 * started processes whose modules came from Node's compile cache ("Receiver must be class #…").
 */
const pendingMergesOf = new WeakMap<Consent, PendingMergeSources>();

/**
 * Each Consent's listeners called inside a change's transaction (see onChangeIn), kept outside the class for the same
 * reason as pendingMergesOf.
 */
const changeInListenersOf = new WeakMap<Consent, ((tx: SqlExecutor, subjectIds: readonly string[]) => Promise<void>)[]>();

type AddEntry = (fields: EntryFields) => LedgerEntry;
/** One change for #write: its subjects and what it writes (see #write). */
interface WriteJob {
  subjects: readonly { id: string | null; pseudonym: string }[];
  plan: (states: Map<string, Map<string, Current>>, add: AddEntry) => void;
  changeFlags: ((tx: SqlExecutor, flags: ReadonlyMap<string, SubjectFlags>) => Promise<void>) | undefined;
  sign: ((tx: SqlExecutor, entries: readonly LedgerEntry[]) => Promise<void>) | undefined;
  audit: ((tx: SqlExecutor, entries: readonly LedgerEntry[]) => Promise<readonly AuditEvent[]> | readonly AuditEvent[]) | undefined;
}
/** What a change wrote: its entries, its subjects' states after it, and the cache epoch it took. */
interface WriteDone {
  entries: LedgerEntry[];
  states: Map<string, Map<string, Current>>;
  epoch: number;
}
/** A change's outcome in its group: what it wrote, or the error it failed with alone (nothing of it was stored). */
type WriteOutcome = { done: WriteDone } | { failed: unknown };
/** How many merges in a row a change follows (see #followMerges). */
const FOLLOW_ROUNDS = 3;
/** How many times following one merge is tried after a failure, and the pause before each retry (times the attempt). */
const FOLLOW_ATTEMPTS = 3;
const FOLLOW_RETRY_MS = 50;
const NO_HOLDERS: ReadonlyMap<string, Iterable<string>> = new Map();
/** The holders of a change's subject (see RecordMeta.holder), for #followMerges. */
const holdersOf = (subjectId: string, holder: string | undefined): ReadonlyMap<string, Iterable<string>> => (holder === undefined || holder === subjectId ? NO_HOLDERS : new Map([[subjectId, [holder]]]));
/** Most changes written in one transaction (a bound on its locks and on the time a change waits behind the others). */
const GROUP_CHANGES = 64;
/** Each change of a group is written inside a savepoint of its own (one at a time: the name is reused). */
const SAVEPOINT = 'SAVEPOINT consent_change';
const RELEASE = 'RELEASE SAVEPOINT consent_change';
const ROLLBACK_TO = 'ROLLBACK TO SAVEPOINT consent_change';
interface EntryFields {
  subject: string;
  purpose: string;
  state: ConsentState;
  basis: LawfulBasis;
  mechanism: ConsentMechanism;
  noticeVersion: number | null;
  jurisdiction: string | null;
  source: string | null;
  gpc?: boolean;
  gpcOverride?: boolean;
  receiptId: string | null;
}

/** Whether a change wrote an opt-out (a refusal or withdrawal, GPC ones included): what a merge carries over. */
function optsOut(entries: readonly LedgerEntry[]): boolean {
  return entries.some((e) => e.state === 'refused' || e.state === 'withdrawn');
}

/** The subjects an entry of a change was written for. */
function writtenFor(subjects: readonly { id: string; pseudonym: string }[], entries: readonly LedgerEntry[]): string[] {
  return subjects.filter((s) => entries.some((e) => e.subject === s.pseudonym)).map((s) => s.id);
}

/**
 * A receipt id per subject, notice version and jurisdiction of the entries a change writes, so that each receipt's
 * header (notice, jurisdiction) is true of every entry it lists: a change that ends or copies entries (expiry, merge)
 * keeps the notice version and jurisdiction each was given under.
 */
function receiptPerGroup(): (fields: Pick<EntryFields, 'subject' | 'noticeVersion' | 'jurisdiction'>) => string {
  const ids = new Map<string, string>();
  return (fields) => {
    const group = `${fields.subject}\0${fields.noticeVersion ?? ''}\0${fields.jurisdiction ?? ''}`;
    let receiptId = ids.get(group);
    if (receiptId === undefined) ids.set(group, (receiptId = randomUUID()));
    return receiptId;
  };
}

/** Entries by the receipt that covers them, in the order of each receipt's first entry. */
function byReceipt(entries: readonly LedgerEntry[]): Map<string, LedgerEntry[]> {
  const out = new Map<string, LedgerEntry[]>();
  for (const entry of entries) {
    const receiptId = entry.receiptId as string;
    const list = out.get(receiptId);
    if (list === undefined) out.set(receiptId, [entry]);
    else list.push(entry);
  }
  return out;
}

function purposeFromRow(row: PurposeRow): PurposeConfig {
  return {
    key: row.key,
    basis: row.basis as PurposeConfig['basis'],
    saleOrSharing: Number(row.sale_or_sharing) === 1,
    targetedAdvertising: Number(row.targeted_advertising) === 1,
    explicit: Number(row.explicit) === 1,
    optOutJurisdictions: JSON.parse(row.opt_out_jurisdictions) as string[],
    description: row.description,
  };
}

/** A purpose configuration nobody can change behind the module's back (decide() relies on it). */
function frozen(config: PurposeConfig): PurposeConfig {
  return Object.freeze({ ...config, optOutJurisdictions: Object.freeze([...config.optOutJurisdictions]) as string[] });
}

function purposeToRow(config: PurposeConfig, actor: Actor, at: string, explicitSince: string | null): PurposeRow {
  return {
    key: config.key,
    basis: config.basis,
    sale_or_sharing: config.saleOrSharing ? 1 : 0,
    targeted_advertising: config.targetedAdvertising ? 1 : 0,
    explicit: config.explicit ? 1 : 0,
    explicit_since: config.explicit ? explicitSince : null,
    opt_out_jurisdictions: JSON.stringify(config.optOutJurisdictions),
    description: config.description,
    updated_at: at,
    updated_by: actor.id,
  };
}

function noticeFromRow(row: NoticeRow): Notice {
  return {
    version: Number(row.version),
    hash: row.hash,
    text: row.text,
    purposes: JSON.parse(row.purposes) as NoticePurpose[],
    publishedAt: row.published_at,
    material: Number(row.material) === 1,
    renewalRequired: JSON.parse(row.renewal_required) as string[],
  };
}

const isGpcPurpose = (p: PurposeConfig): boolean => p.saleOrSharing || p.targetedAdvertising;

/** Whether a restriction (or an objection to direct marketing) of this kind is in force in `flags`. */
function hasFlag(flags: SubjectFlags, kind: RestrictionKind): boolean {
  return kind === 'restriction' ? flags.restricted : flags.objectedMarketing;
}

/** The flags in force per subject pseudonym, from its restriction rows. */
function flagsOf(rows: readonly RestrictionRow[]): Map<string, SubjectFlags> {
  const out = new Map<string, SubjectFlags>();
  for (const row of rows) {
    const before = out.get(row.subject) ?? NO_FLAGS;
    out.set(row.subject, Object.freeze({
      restricted: before.restricted || row.kind === 'restriction',
      objectedMarketing: before.objectedMarketing || row.kind === 'objection_marketing',
    }));
  }
  return out;
}

function restrictionRow(subject: string, kind: RestrictionKind, requestId: string | null, at: string, actor: Actor): RestrictionRow {
  return { id: `cr_${randomBytes(12).toString('hex')}`, subject, kind, request_id: requestId, since: at, set_by: actor.id, lifted_at: null, lifted_by: null };
}
/** The entry is an opt-out by a GPC signal (directly, or spread by a merge). */
const isGpcOptOut = (c: Current | undefined): boolean => c !== undefined && c.gpc && isOptOut(c);
/** What the refusal of a request says of its GPC signal: honoured, with the receipt of what it wrote when it wrote anything. */
const gpcHonouredDetails = (written: { receiptId: string } | undefined) => ({ gpcHonoured: true, ...(written ? { receiptId: written.receiptId } : {}) });
/** Mechanisms by which a person can confirm an opt-in over a GPC opt-out (their own, deliberate choice). */
const CONFIRMING_MECHANISMS: ReadonlySet<string> = new Set(['privacy_center', 'banner_save']);

/**
 * Consent: purposes and their lawful basis, versioned notices, the append-only consent ledger with its current-state
 * table, signed receipts, Global Privacy Control, expiry and renewal. decide() answers from memory, synchronously;
 * every change through this instance updates the memory at once.
 */
export class Consent {
  readonly #repo: ConsentRepo;
  readonly #audit: AuditLog;
  readonly #keyring: Keyring;
  readonly #taxonomy: Taxonomy;
  readonly #signer: ReceiptSigner;
  readonly #expiryMonths: number;
  readonly #refreshAfterMs: number;
  readonly #controller: string;
  readonly #policyUrl: string | null;
  readonly #controllerContact: string | null;
  readonly #cache: SubjectCache;
  readonly #locks = new KeyedLock();
  /** Changes made while one is written share the next transaction (see #write). */
  readonly #writes: GroupCommit<WriteJob, WriteOutcome>;
  readonly #changeListeners: ((subjectIds: readonly string[]) => void)[] = [];
  /** Where a profile has been merged by now (see followMergesWith). */
  #canonicalOf: ((profileId: string) => Promise<string | null>) | undefined;
  #purposeConfigs = new Map<string, PurposeConfig>();
  /** Per explicit purpose, since when consents count as explicit (see PurposeRuntime.explicitSince). */
  #explicitSince = new Map<string, string>();
  #purposes = new Map<string, PurposeRuntime>();
  #notices = new Map<number, Notice>();
  #latestNotice: Notice | undefined;
  /** #describesNow() per purpose and category, for the purposes and notices in force (emptied when they change). */
  #described = new Map<string, Map<string, number>>();
  /** Incremented by every committed write; a load that started before a write never overwrites its result. */
  #epoch = 0;
  /**
   * Opt-outs and restrictions of changes being written (put in force before their commit, #restrictAhead), by
   * subject id: a read of the database that lands meanwhile (it cannot see them yet) is cached with them applied.
   */
  readonly #pendingOptOuts = new Map<string, { purposes: Map<string, Current>; flags: SubjectFlags }>();
  readonly #freshness: Freshness;
  /** Whether another process wrote since purposes and notices were last read (refreshConfigurationIfChanged). */
  readonly #configFreshness: Freshness;
  /** Moved by every purpose or notice change made here: a reload that read before it reads again. */
  #configEpoch = 0;
  #lastMs = 0;
  #sequence = 0;

  private constructor(deps: ConsentDeps, repo: ConsentRepo, signer: ReceiptSigner) {
    this.#repo = repo;
    this.#audit = deps.audit;
    this.#keyring = deps.keyring;
    this.#taxonomy = deps.taxonomy;
    this.#signer = signer;
    this.#expiryMonths = deps.expiryMonths;
    this.#refreshAfterMs = deps.refreshAfterMs ?? 1000;
    this.#controller = deps.controllerName ?? 'Candor deployment';
    this.#policyUrl = deps.policyUrl ?? null;
    this.#controllerContact = deps.controllerContact ?? null;
    this.#cache = new SubjectCache(deps.cacheSubjects ?? 200_000);
    // A subject's state is read from consent_current and consent_restrictions (the ledger is written with them).
    this.#freshness = new Freshness(deps.storage, ['consent_current', 'consent_restrictions']);
    this.#configFreshness = new Freshness(deps.storage, ['consent_purposes', 'consent_notices']);
    // Nothing is handed to another thread: the group before is answered as soon as this one starts.
    this.#writes = new GroupCommit((jobs, handedOver) => {
      handedOver();
      return this.#writeGroup(jobs);
    }, { maxItems: GROUP_CHANGES });
  }

  /** Opens the module: seeds the default purposes and notice version 1 on a first start, loads them and the signing key. */
  static async open(deps: ConsentDeps): Promise<Consent> {
    if (!Number.isSafeInteger(deps.expiryMonths) || deps.expiryMonths < 1) throw new CandorError('CONFIG_INVALID', { problems: [{ key: 'consentExpiryMonths', problem: 'must be at least 1' }] });
    const repo = new ConsentRepo(deps.storage);
    await Consent.#seed(repo, deps);
    const signer = await ReceiptSigner.open(repo, deps.keyring, deps.audit, new Freshness(deps.storage, ['consent_signing_keys']));
    const consent = new Consent(deps, repo, signer);
    await consent.#reloadConfiguration();
    return consent;
  }

  static async #seed(repo: ConsentRepo, deps: ConsentDeps): Promise<void> {
    if ((await repo.purposes()).length > 0) return;
    const at = new Date().toISOString();
    const purposes = normalizePurposes(DEFAULT_NOTICE_PURPOSES);
    const notice: NoticeRow = {
      version: 1,
      hash: noticeHash(DEFAULT_NOTICE_TEXT, purposes),
      text: DEFAULT_NOTICE_TEXT,
      purposes: JSON.stringify(purposes),
      material: 0,
      renewal_required: '[]',
      published_at: at,
      published_by: SYSTEM_ACTOR.id,
    };
    const base = { actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role };
    try {
      await repo.transaction(async (tx) => {
        if (!(await repo.seedPurposesIn(tx, DEFAULT_PURPOSES.map((p) => purposeToRow(p, SYSTEM_ACTOR, at, at)), notice))) return;
        // In the seeding transaction, last (on PostgreSQL the audit head is held from here to the commit).
        await deps.audit.appendIn(tx, [
          ...DEFAULT_PURPOSES.map((p) => ({ ...base, action: 'consent.purpose.set', purpose: p.key, resource: `consent_purpose:${p.key}`, details: { basis: p.basis, seeded: true } })),
          { ...base, action: 'consent.notice.publish', purpose: 'essential.legal_obligation', resource: 'consent_notice:1', details: { version: 1, material: false, seeded: true } },
        ]);
      });
    } catch (error) {
      // Another process seeded at the same moment.
      if (isUniqueViolation(error)) return;
      throw error;
    }
  }

  async #reloadConfiguration(): Promise<void> {
    // A change made here while the rows were read may be missing from them: read again rather than undo it.
    for (let attempt = 0; ; attempt++) {
      const epoch = this.#configEpoch;
      const rows = await this.#repo.purposes();
      const purposes = new Map(rows.map((row) => [row.key, frozen(purposeFromRow(row))]));
      const notices = (await this.#repo.notices()).map(noticeFromRow);
      if (epoch !== this.#configEpoch && attempt < 5) continue;
      this.#purposeConfigs = purposes;
      this.#explicitSince = new Map(rows.map((row) => [row.key, row.explicit_since ?? '']));
      this.#notices = new Map(notices.map((n) => [n.version, n]));
      this.#latestNotice = notices.at(-1);
      this.#rebuildRuntime();
      return;
    }
  }

  /**
   * Reads purposes and notices, and the active receipt signing key, again when another process may have changed them
   * since the last look (the database tells: SQLite's data_version, PostgreSQL's commit notices; when it cannot tell,
   * at every call). A running server calls it every second, so a purpose's new basis or a material notice change made
   * elsewhere (the CLI, another server) governs its decisions within about a second, and a receipt key rotated
   * elsewhere signs every receipt from then on.
   */
  async refreshConfigurationIfChanged(): Promise<void> {
    // Side by side: a reload that fails does not hold the other back (the key's is tried again at the next call).
    await Promise.all([this.#signer.refreshIfChanged(), this.#configFreshness.lookAgain() ? this.#reloadConfiguration() : undefined]);
  }

  /**
   * The taxonomy has entries this process did not hold (added by another process): what was derived from it (whether a
   * notice describes a category through one above it, which purposes are direct marketing) is derived again.
   */
  taxonomyChanged(): void {
    this.#rebuildRuntime();
  }

  /** Recomputes what decide() needs per purpose: opt-out jurisdictions and the notice version consents must be under. */
  #rebuildRuntime(): void {
    const renewalFrom = new Map<string, number>();
    for (const notice of this.#notices.values()) {
      for (const key of notice.renewalRequired) renewalFrom.set(key, Math.max(renewalFrom.get(key) ?? 0, notice.version));
    }
    const runtime = new Map<string, PurposeRuntime>();
    for (const [key, config] of this.#purposeConfigs) {
      runtime.set(key, { config, optOut: new Set(config.optOutJurisdictions), renewalFrom: renewalFrom.get(key) ?? 0, explicitSince: this.#explicitSince.get(key) ?? '', directMarketing: isDirectMarketing(key, this.#taxonomy) });
    }
    this.#purposes = runtime;
    this.#described = new Map();
  }

  /**
   * Whether a field of `category` may serve `purpose` as far as the notice goes: always for a purpose that does not
   * rest on consent; for one that does, only when the latest notice describes the category (or one above it) for it.
   * That notice is the one to check for everyone: a consent given under an earlier version counts only while no
   * version since widened the purpose's categories (a material change requires renewal), so the earlier version
   * described at least what the latest does. Data about the system (aboutTheSystem) is described for every purpose,
   * but `of` an event's occurrence, never that way: an occurrence is something the person did. Cached until purposes
   * or notices change.
   */
  describes(purpose: string, category: string, of: 'field' | 'occurrence' = 'field'): boolean {
    let byCategory = this.#described.get(purpose);
    if (byCategory === undefined) this.#described.set(purpose, (byCategory = new Map()));
    let answer = byCategory.get(category);
    if (answer === undefined) {
      answer = this.#describesNow(purpose, category);
      byCategory.set(category, answer);
    }
    return (answer & (of === 'field' ? DESCRIBED : DESCRIBED_AS_PERSONAL)) !== 0;
  }

  #describesNow(purpose: string, category: string): number {
    const config = this.#purposeConfigs.get(purpose);
    if (config !== undefined && config.basis !== 'consent') return DESCRIBED | DESCRIBED_AS_PERSONAL;
    const parentOf = (key: string) => this.#taxonomy.dataCategory(key)?.parentKey;
    const listed = new Set(this.#latestNotice?.purposes.find((p) => p.purpose === purpose)?.categories);
    if (isCovered(category, listed, parentOf)) return DESCRIBED | DESCRIBED_AS_PERSONAL;
    // Data about the system is no one's personal data, and no notice lists it.
    return this.aboutTheSystem(category) ? DESCRIBED : 0;
  }

  /**
   * Whether a data category is about the system (a library's name, an app's version): its root in the taxonomy is
   * `system`, wherever its key says it is (a custom entry may sit under it).
   */
  aboutTheSystem(category: string): boolean {
    // Kept with the answers of describes() (dropped with them), for categories the taxonomy has: entries are only ever
    // added, each with its parent, so a known category's chain never changes.
    let known = aboutTheSystemAnswers.get(this.#described);
    if (known === undefined) aboutTheSystemAnswers.set(this.#described, (known = new Map()));
    let answer = known.get(category);
    if (answer === undefined) {
      let root = category;
      for (const c of lineage(category, (key) => this.#taxonomy.dataCategory(key)?.parentKey)) root = c;
      answer = root === 'system';
      if (this.#taxonomy.dataCategory(category) !== undefined) known.set(category, answer);
    }
    return answer;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Purposes and notices

  /** Every configured purpose. */
  purposes(): readonly PurposeConfig[] {
    return [...this.#purposeConfigs.values()];
  }

  /** One configured purpose. */
  purpose(key: string): PurposeConfig | undefined {
    return this.#purposeConfigs.get(key);
  }

  /**
   * Adds or changes a purpose (an audited configuration change). A purpose newly flagged sale/sharing or targeted
   * advertising is then opted out for every person whose GPC opt-out is in force (see #gpcForFlagged).
   */
  async setPurpose(config: PurposeConfig, actor: Actor): Promise<PurposeConfig> {
    const normalized = this.#validatePurpose(config);
    const previous = this.#purposeConfigs.get(normalized.key);
    const at = new Date().toISOString();
    // Made explicit now: only consents given from now on are explicit ones. Already explicit: that time stays.
    const explicitSince = normalized.explicit && this.#purposeConfigs.get(normalized.key)?.explicit === true ? (this.#explicitSince.get(normalized.key) ?? at) : at;
    await this.#repo.transaction(async (tx) => {
      await this.#repo.upsertPurposeIn(tx, purposeToRow(normalized, actor, at, explicitSince));
      // In the change's transaction, last (on PostgreSQL the audit head is held from here to the commit).
      await this.#audit.appendIn(tx, [
        {
          actor: actor.id,
          role: actor.role,
          action: 'consent.purpose.set',
          purpose: normalized.key,
          resource: `consent_purpose:${normalized.key}`,
          details: {
            basis: normalized.basis,
            saleOrSharing: normalized.saleOrSharing,
            targetedAdvertising: normalized.targetedAdvertising,
            explicit: normalized.explicit,
            optOutJurisdictions: normalized.optOutJurisdictions,
          },
        },
      ]);
    });
    // In force here once committed with its audit entry.
    this.#configEpoch++;
    this.#purposeConfigs.set(normalized.key, normalized);
    this.#explicitSince.set(normalized.key, normalized.explicit ? explicitSince : '');
    this.#rebuildRuntime();
    // Only when the flags change: the periodic run (applyGpcToFlaggedPurposes) writes what this sweep misses, so a change
    // that keeps them (a new description) costs the admin's request no sweep.
    const flagsChanged = previous?.saleOrSharing !== normalized.saleOrSharing || previous.targetedAdvertising !== normalized.targetedAdvertising;
    if (isGpcPurpose(normalized) && flagsChanged) await this.#gpcForFlagged(normalized.key);
    return normalized;
  }

  /**
   * Writes, for every purpose flagged sale/sharing or targeted advertising, the GPC refusals that people whose GPC
   * opt-out is in force still lack (see #gpcForFlagged); returns the number of entries written. The sweep setPurpose
   * runs when it flags a purpose cannot see a signal another server records with its configuration of the second
   * before (or a merge or a change of this process planned before the flag) that commits after the sweep read, nor
   * finish after a crash: `candor serve` calls this every hour, with the consent expiry, so such a person is opted out
   * within the hour. Idempotent.
   */
  async applyGpcToFlaggedPurposes(): Promise<number> {
    let written = 0;
    for (const config of [...this.#purposeConfigs.values()].filter(isGpcPurpose)) written += await this.#gpcForFlagged(config.key);
    return written;
  }

  /**
   * A GPC signal opts out of the purposes flagged when it is recorded. For a purpose flagged sale/sharing or targeted
   * advertising (newly or again), every person whose GPC opt-out is in force by then (see gpcSubjectsWithout) gets the
   * refusal the signal would write now, over a consent given before: mechanism `gpc`, the `gpc` flag, a receipt per
   * person, audited as `consent.gpc` (Candor's own change, details `purposeFlagged`), with the source
   * `purpose-flagged:<purpose>` (FLAGGED_SOURCE: by it the ledger tells the entry from a signal, and retention counts
   * it as no activity of the person's). So a later opt-in still needs the explicit confirmation, and merges carry it as
   * any GPC opt-out. An opt-in the person confirmed over GPC for this very purpose stands while it counts. A page of
   * people per change; other processes read the people again at their next load (the current rows changed).
   * Idempotent: the periodic run (applyGpcToFlaggedPurposes) finishes a sweep that failed. Returns the number of
   * entries written.
   */
  async #gpcForFlagged(purpose: string): Promise<number> {
    const source = ownSource(`${FLAGGED_SOURCE}${purpose}`, `${FLAGGED_SOURCE}purpose`);
    let written = 0;
    let after: string | undefined;
    for (;;) {
      const page = await this.#repo.gpcSubjectsWithout(purpose, after, EXPIRY_PAGE);
      const last = page.at(-1);
      if (last === undefined) break;
      after = last;
      const { entries, states, epoch } = await this.#write(
        page.map((pseudonym) => ({ id: null, pseudonym })),
        (states, add) => {
          for (const [pseudonym, current] of states) {
            // The signal's jurisdiction, as its latest GPC entry recorded it (none: a person whose signal is gone meanwhile).
            let signal: Current | undefined;
            for (const entry of current.values()) {
              if ((isGpcOptOut(entry) || (entry.state === 'given' && entry.gpcOverride)) && (signal === undefined || entry.at > signal.at)) signal = entry;
            }
            if (signal === undefined) continue;
            this.#planGpc(pseudonym, current, add, { mechanism: 'gpc', jurisdiction: signal.jurisdiction, source, receiptId: randomUUID(), keepConfirmed: true, only: purpose });
          }
        },
        undefined,
        async (tx, written) => {
          await this.#signPerReceipt(tx, written, 'gpc', source);
        },
        (_tx, written) => [...byReceipt(written)].map(([receiptId, list]) => this.#auditEvent(SYSTEM_ACTOR, 'consent.gpc', (list[0] as LedgerEntry).subject, list, receiptId, { purposeFlagged: purpose })),
      );
      written += entries.length;
      this.#updateCached(states, epoch);
      if (page.length < EXPIRY_PAGE) break;
    }
    return written;
  }

  #validatePurpose(config: PurposeConfig): PurposeConfig {
    const invalid = (reason: string) => new CandorError('CONSENT_PURPOSE_INVALID', { key: config.key, reason });
    if (typeof config.key !== 'string' || !this.#taxonomy.dataUse(config.key)) throw invalid('not_a_data_use');
    if (!CONFIGURED_BASES.includes(config.basis)) throw invalid('basis');
    for (const flag of ['saleOrSharing', 'targetedAdvertising', 'explicit'] as const) {
      if (typeof config[flag] !== 'boolean') throw invalid(flag);
    }
    if (!Array.isArray(config.optOutJurisdictions) || config.optOutJurisdictions.some((j) => typeof j !== 'string' || !JURISDICTION.test(j))) {
      throw invalid('jurisdiction');
    }
    if (typeof config.description !== 'string' || config.description.trim() === '' || config.description.length > 2000) throw invalid('description');
    const consentOrObjectable = config.basis === 'consent' || config.basis === 'legitimate_interests';
    if ((config.saleOrSharing || config.targetedAdvertising) && !consentOrObjectable) throw invalid('sale_or_advertising_needs_consent_or_legitimate_interests');
    if (config.explicit && config.basis !== 'consent') throw invalid('explicit_needs_consent');
    if (config.optOutJurisdictions.length > 0 && config.basis !== 'consent') throw invalid('opt_out_needs_consent_basis');
    if (config.explicit && config.optOutJurisdictions.length > 0) throw invalid('explicit_cannot_be_opt_out');
    return frozen({
      key: config.key,
      basis: config.basis,
      saleOrSharing: config.saleOrSharing,
      targetedAdvertising: config.targetedAdvertising,
      explicit: config.explicit,
      optOutJurisdictions: [...new Set(config.optOutJurisdictions)].sort(),
      description: config.description,
    });
  }

  /**
   * Publishes a new notice version. It is material when it adds a purpose or widens a purpose's data categories;
   * consents given for those purposes under older versions then need renewal. Publishing the current content again
   * changes nothing and answers the current version.
   */
  async publishNotice(
    input: { text: string; purposes: NoticePurpose[] },
    actor: Actor,
  ): Promise<{ version: number; hash: string; material: boolean; renewalRequired: string[]; created: boolean }> {
    const invalid = (reason: string, extra: Record<string, unknown> = {}) => new CandorError('CONSENT_NOTICE_INVALID', { reason, ...extra });
    if (typeof input.text !== 'string' || input.text.trim() === '') throw invalid('text');
    if (!Array.isArray(input.purposes) || input.purposes.length === 0) throw invalid('no_purposes');
    const seen = new Set<string>();
    for (const p of input.purposes) {
      if (seen.has(p.purpose)) throw invalid('duplicate_purpose', { purpose: p.purpose });
      seen.add(p.purpose);
      if (!this.#purposeConfigs.has(p.purpose)) throw invalid('unknown_purpose', { purpose: p.purpose });
      if (!Array.isArray(p.categories) || p.categories.length === 0) throw invalid('no_categories', { purpose: p.purpose });
      for (const category of p.categories) {
        if (!this.#taxonomy.dataCategory(category)) throw invalid('unknown_category', { purpose: p.purpose, category });
      }
    }
    const purposes = normalizePurposes(input.purposes);
    const hash = noticeHash(input.text, purposes);
    const parentOf = (key: string) => this.#taxonomy.dataCategory(key)?.parentKey;
    for (let attempt = 0; ; attempt++) {
      // Another process may have published since this one loaded: compare with the real latest.
      await this.#reloadConfiguration();
      const previous = this.#latestNotice;
      // The content in force already: that version, as it was published (a retried publish learns what it required).
      if (previous && previous.hash === hash) return { version: previous.version, hash, material: previous.material, renewalRequired: [...previous.renewalRequired], created: false };
      const renewalRequired = materialChanges(previous?.purposes, purposes, parentOf);
      const row: NoticeRow = {
        version: (previous?.version ?? 0) + 1,
        hash,
        text: input.text,
        purposes: JSON.stringify(purposes),
        material: renewalRequired.length > 0 ? 1 : 0,
        renewal_required: JSON.stringify(renewalRequired),
        published_at: new Date().toISOString(),
        published_by: actor.id,
      };
      try {
        await this.#repo.transaction(async (tx) => {
          await this.#repo.insertNoticeIn(tx, row);
          // In the publish's transaction, last (on PostgreSQL the audit head is held from here to the commit).
          await this.#audit.appendIn(tx, [
            {
              actor: actor.id,
              role: actor.role,
              action: 'consent.notice.publish',
              purpose: 'essential.legal_obligation',
              resource: `consent_notice:${row.version}`,
              details: { version: row.version, material: row.material === 1, renewalRequired },
            },
          ]);
        });
      } catch (error) {
        if (isUniqueViolation(error) && attempt < 3) continue;
        throw error;
      }
      // In force here once committed with its audit entry.
      const notice = noticeFromRow(row);
      this.#configEpoch++;
      this.#notices.set(notice.version, notice);
      this.#latestNotice = notice;
      this.#rebuildRuntime();
      return { version: notice.version, hash, material: notice.material, renewalRequired, created: true };
    }
  }

  /** The notice in force: the latest published version. */
  currentNotice(): { version: number; hash: string; text: string; purposes: NoticePurpose[]; publishedAt: string } {
    const notice = this.#latestNotice;
    if (!notice) throw new CandorError('CONSENT_NOTICE_UNKNOWN');
    return { version: notice.version, hash: notice.hash, text: notice.text, purposes: notice.purposes.map((p) => ({ ...p, categories: [...p.categories] })), publishedAt: notice.publishedAt };
  }

  /** A published notice version, reading notices published by other processes when it is not known here yet. */
  async #notice(version: number | undefined): Promise<Notice> {
    if (version === undefined) {
      if (!this.#latestNotice) throw new CandorError('CONSENT_NOTICE_UNKNOWN');
      return this.#latestNotice;
    }
    if (!Number.isSafeInteger(version)) throw new CandorError('CONSENT_NOTICE_UNKNOWN', { noticeVersion: version });
    if (!this.#notices.has(version)) await this.#reloadConfiguration();
    const notice = this.#notices.get(version);
    if (!notice) throw new CandorError('CONSENT_NOTICE_UNKNOWN', { noticeVersion: version });
    return notice;
  }

  // ------------------------------------------------------------------------------------------------------------
  // The hot path: load, then decide from memory

  /**
   * Warms the cache for subjects, and for the profiles whose opt-outs bind them while a merge's or unmerge's
   * propagation is pending (read again first when another process may have committed one): one query per 100 subjects
   * not cached, or stale (see #stale).
   */
  async load(subjectIds: readonly string[]): Promise<void> {
    const pending = pendingMergesOf.get(this);
    const reading = pending?.refresh();
    if (reading !== undefined) await reading;
    const now = Date.now();
    this.#freshness.check(now);
    const need: string[] = [];
    const ids = new Set(subjectIds);
    if (pending !== undefined) {
      let sources: string[] | undefined;
      for (const id of ids) for (const source of pending.sourcesOf(id) ?? NO_SOURCES) (sources ??= []).push(source.profileId);
      if (sources !== undefined) for (const id of sources) ids.add(id);
    }
    for (const id of ids) {
      const state = this.#cache.peek(id);
      if (state === undefined || this.#stale(state, now)) need.push(id);
      else this.#cache.touch(id);
    }
    if (need.length > 0) await this.#fetch(need);
  }

  /**
   * Lets decisions follow merges and unmerges committed whose propagation (mergeSubjects) has not run yet: until it
   * has, decide(), allowedPurposes(), confirmedOverGpc() and allowedPurposesMerged() answer for a subject with the
   * opt-outs, restrictions and objections of the profiles `pending` names for it applied by the merge rule, as the
   * propagation will write them (fail closed: no consent of theirs counts; a restriction or objection binds whenever it
   * was made; one whose state is not in memory allows nothing but a legal obligation). The kernel wires it to identity.
   */
  gatePendingMerges(pending: PendingMergeSources): void {
    pendingMergesOf.set(this, pending);
  }

  /**
   * Whether a cached state must be read again: when another connection may have changed consent since it was read
   * (SQLite's data_version, PostgreSQL's commit notices for the consent tables; this instance updates its cache on its
   * own writes), so that a withdrawal through the CLI or another server stops processing here from its commit on;
   * where that cannot be told (PostgreSQL without notices), once it is older than refreshAfterMs; and in any case after
   * MAX_STATE_AGE_MS.
   */
  #stale(state: SubjectState, now: number): boolean {
    // refreshAfterMs 0: always read again (instances sharing one connection do not see each other's writes).
    if (this.#refreshAfterMs === 0) return now > state.loadedAt;
    return this.#freshness.due(state.loadedAt, now, this.#freshness.tracked ? 0 : this.#refreshAfterMs, MAX_STATE_AGE_MS);
  }

  /**
   * Moves whenever a subject's state in memory is set or dropped (a load, a change, an eviction): a decision taken at
   * one value still holds while it has not moved.
   */
  get stateVersion(): number {
    // Both only grow: the sum moves whenever either does.
    return this.#cache.version + (pendingMergesOf.get(this)?.version() ?? 0);
  }

  /** Whether a subject's state is in memory, so decide() can answer for it (with those of its pending merges' sources). */
  isLoaded(subjectId: string): boolean {
    if (this.#cache.peek(subjectId) === undefined) return false;
    const sources = pendingMergesOf.get(this)?.sourcesOf(subjectId);
    return sources === undefined || sources.every((source) => this.#cache.peek(source.profileId) !== undefined);
  }

  /** Reads subjects' current rows and caches them, unless a write through this instance happened meanwhile. */
  async #fetch(subjectIds: readonly string[]): Promise<Map<string, SubjectState>> {
    const started = this.#epoch;
    const pseudonyms = subjectIds.map((id) => this.#cache.peek(id)?.pseudonym ?? this.#keyring.pseudonym('subject', id));
    const generation = this.#freshness.generation;
    const readFrom = Date.now();
    const { current, restrictions } = await this.#repo.currentAndRestrictions(pseudonyms);
    // Another connection's commit noticed while the read ran (another load looked meanwhile; PostgreSQL reads are
    // asynchronous, and the snapshot may predate that commit): the states count as read before it, read again at the
    // next load. Otherwise they are as of now, as a change noticed from here on is later.
    const loadedAt = this.#freshness.generation === generation ? Date.now() : readFrom - 1;
    const flags = flagsOf(restrictions);
    const byPseudonym = this.#group(current);
    const out = new Map<string, SubjectState>();
    subjectIds.forEach((id, i) => {
      const pseudonym = pseudonyms[i] as string;
      const state = this.#withPending(id, { pseudonym, purposes: byPseudonym.get(pseudonym) ?? EMPTY, flags: flags.get(pseudonym) ?? NO_FLAGS, freshAsOf: started, loadedAt });
      out.set(id, state);
      const existing = this.#cache.peek(id);
      if (existing === undefined || existing.freshAsOf <= started) this.#cache.set(id, state);
    });
    return out;
  }

  #group(rows: readonly CurrentRow[]): Map<string, Map<string, Current>> {
    const out = new Map<string, Map<string, Current>>();
    for (const row of rows) {
      let purposes = out.get(row.subject);
      if (!purposes) out.set(row.subject, (purposes = new Map()));
      purposes.set(row.purpose, this.#current({
        entryId: row.entry_id,
        state: row.state as ConsentState,
        basis: row.basis as LawfulBasis,
        mechanism: row.mechanism as ConsentMechanism,
        noticeVersion: row.notice_version === null ? null : Number(row.notice_version),
        jurisdiction: row.jurisdiction,
        gpc: Number(row.gpc) === 1,
        gpcOverride: Number(row.gpc_override) === 1,
        at: row.at,
      }));
    }
    return out;
  }

  #current(fields: Omit<Current, 'expiresAtMs'>): Current {
    return Object.freeze({ ...fields, expiresAtMs: addMonths(Date.parse(fields.at), this.#expiryMonths) });
  }

  /**
   * Whether a loaded subject's data may be processed for a purpose now (or at `at`): synchronous, from memory, no
   * allocation. Throws CONSENT_SUBJECT_NOT_LOADED when load() was not called for the subject first.
   */
  decide(subjectId: string, purpose: string, at?: Date): Decision {
    const cached = this.#cache.peek(subjectId);
    if (cached === undefined) throw new CandorError('CONSENT_SUBJECT_NOT_LOADED');
    // With the opt-outs of merges not propagated yet (nothing pending: one Map size check).
    const sources = pendingMergesOf.get(this)?.sourcesOf(subjectId);
    const state = sources === undefined ? cached : this.#withPending(subjectId, cached, sources);
    const runtime = this.#purposes.get(purpose);
    if (runtime === undefined) return UNKNOWN_PURPOSE;
    return decideFor(runtime, state.purposes.get(purpose), at === undefined ? Date.now() : at.getTime(), state.flags);
  }

  /**
   * Whether a loaded subject's consent to a purpose is one they confirmed explicitly over a GPC opt-out (`gpcOverride`)
   * and that still counts: it stands against later GPC signals, those of the browser that keeps sending one included.
   */
  confirmedOverGpc(subjectId: string, purpose: string): boolean {
    const cached = this.#cache.peek(subjectId);
    if (cached === undefined) throw new CandorError('CONSENT_SUBJECT_NOT_LOADED');
    // With the opt-outs of merges not propagated yet (nothing pending: one Map size check).
    const sources = pendingMergesOf.get(this)?.sourcesOf(subjectId);
    const state = sources === undefined ? cached : this.#withPending(subjectId, cached, sources);
    return this.#standsOverGpc(purpose, state.purposes.get(purpose), Date.now());
  }

  /**
   * Whether an entry is an opt-in confirmed over GPC that still counts at `atMs`. Once it stops counting (expired, even
   * before the sweep writes `expired`, or to be renewed after a material notice change) the confirmation is spent: a
   * GPC signal opts the person out again, and a new opt-in over it needs a new confirmation.
   */
  #standsOverGpc(purpose: string, current: Current | undefined, atMs: number): boolean {
    if (current === undefined || current.state !== 'given' || !current.gpcOverride) return false;
    const runtime = this.#purposes.get(purpose);
    return runtime !== undefined && decideFor(runtime, current, atMs).allowed;
  }

  /** An opt-in once confirmed over GPC that no longer counts: the GPC opt-out it overrode is what stands again. */
  #lapsedOverGpc(purpose: string, current: Current | undefined, atMs: number): boolean {
    return current !== undefined && current.state === 'given' && current.gpcOverride && !this.#standsOverGpc(purpose, current, atMs);
  }

  /** The purposes among `purposes` that have a lawful basis for a loaded subject now (or at `at`). */
  allowedPurposes(subjectId: string, purposes: readonly string[], at?: Date): string[] {
    const cached = this.#cache.peek(subjectId);
    if (cached === undefined) throw new CandorError('CONSENT_SUBJECT_NOT_LOADED');
    // With the opt-outs of merges not propagated yet (nothing pending: one Map size check).
    const sources = pendingMergesOf.get(this)?.sourcesOf(subjectId);
    const state = sources === undefined ? cached : this.#withPending(subjectId, cached, sources);
    const atMs = at === undefined ? Date.now() : at.getTime();
    const out: string[] = [];
    for (const purpose of purposes) {
      const runtime = this.#purposes.get(purpose);
      if (runtime !== undefined && decideFor(runtime, state.purposes.get(purpose), atMs, state.flags).allowed) out.push(purpose);
    }
    return out;
  }

  /**
   * Calls back (synchronously, after the commit) with the subjects whose consent or restrictions changed, so that
   * derived data (scores, segments) can drop people whose basis is gone. Listeners must not throw.
   */
  onChange(listener: (subjectIds: readonly string[]) => void): void {
    this.#changeListeners.push(listener);
  }

  /**
   * Calls back inside each change's transaction, after its entries and flags are written and before its audit entries,
   * with the subjects it changes, so that what derived data owes them (a clean-up after the commit) is recorded with
   * the change: durable once the change is answered. A listener that throws fails the change; it must only write its
   * own tables (no lock that another transaction may hold while it waits for a consent change).
   */
  onChangeIn(listener: (tx: SqlExecutor, subjectIds: readonly string[]) => Promise<void>): void {
    const listeners = changeInListenersOf.get(this) ?? [];
    listeners.push(listener);
    changeInListenersOf.set(this, listeners);
  }

  /** Drops a subject's cached state (erasure). */
  forgetSubject(subjectId: string): Promise<void> {
    this.#cache.delete(subjectId);
    return Promise.resolve();
  }

  // ------------------------------------------------------------------------------------------------------------
  // Reading one subject

  /** Every configured purpose with the subject's current state for it, read fresh from the database. */
  async state(subjectId: string, at: Date = new Date()): Promise<Record<string, PurposeState>> {
    const fetched = (await this.#fetch([subjectId])).get(subjectId) as SubjectState;
    const cached = this.#cache.peek(subjectId);
    const state = cached !== undefined && cached.freshAsOf > fetched.freshAsOf ? cached : fetched;
    const atMs = at.getTime();
    const out: Record<string, PurposeState> = {};
    for (const [key, runtime] of this.#purposes) {
      const current = state.purposes.get(key);
      const decision = decideFor(runtime, current, atMs, state.flags);
      // What the person's own record says, whatever restriction or objection overrides it now (those show in `reason`):
      // an expired consent is expired, and one to be renewed is so, also while processing is restricted.
      const recorded = decideFor(runtime, current, atMs);
      const onConsent = current?.state === 'given' && current.basis === 'consent';
      out[key] = {
        state: current === undefined ? 'none' : recorded.reason === 'expired' ? 'expired' : current.state,
        basis: current?.basis ?? runtime.config.basis,
        mechanism: current?.mechanism ?? null,
        noticeVersion: current?.noticeVersion ?? null,
        at: current?.at ?? null,
        needsRenewal: recorded.reason === 'renewal_required',
        allowed: decision.allowed,
        reason: decision.reason,
        expiresAt: onConsent ? new Date(current.expiresAtMs).toISOString() : null,
        gpc: isGpcOptOut(current),
      };
    }
    return out;
  }

  /** The subject's ledger entries, oldest first. */
  history(subjectId: string): Promise<LedgerEntry[]> {
    return this.#repo.history(this.#keyring.pseudonym('subject', subjectId));
  }

  /** history(), read inside the caller's transaction (what it sees committed, and its own writes). */
  historyIn(tx: SqlExecutor, subjectId: string): Promise<LedgerEntry[]> {
    return this.#repo.historyIn(tx, this.#keyring.pseudonym('subject', subjectId));
  }

  /**
   * A person's ledger entries, oldest first: those of every one of their profiles (`identity.members`, the canonical
   * profile and the profiles merged into it), each naming its own profile's pseudonym in `subject`. A profile merged in
   * keeps its own entries (a consent given on a device before sign-in, a GPC opt-out), and their receipts are the
   * person's too.
   */
  personHistory(profileIds: readonly string[]): Promise<LedgerEntry[]> {
    return this.#repo.historyOf([...new Set(profileIds.map((id) => this.pseudonym(id)))]);
  }

  /** The consent module's handler for access and erasure requests. */
  subjectData(): SubjectDataHandler {
    return new ConsentSubjectData({
      repo: this.#repo,
      pseudonym: (id) => this.#keyring.pseudonym('subject', id),
      history: (id) => this.history(id),
      state: (id) => this.state(id),
      forget: (id) => this.forgetSubject(id),
    });
  }

  /** The pseudonym a subject appears under in the ledger, receipts and audit entries. */
  pseudonym(subjectId: string): string {
    return this.#cache.peek(subjectId)?.pseudonym ?? this.#keyring.pseudonym('subject', subjectId);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Changes

  /** A clock that never goes backwards in this process, and ledger ids that sort in the order they were made. */
  #stamp(): { id: string; at: string } {
    let ms = Date.now();
    if (ms <= this.#lastMs) {
      ms = this.#lastMs;
      this.#sequence++;
    } else {
      this.#lastMs = ms;
      this.#sequence = 0;
    }
    const id = `ce_${ms.toString(36).padStart(9, '0')}${this.#sequence.toString(36).padStart(4, '0')}${randomHexPooled(6)}`;
    return { id, at: new Date(ms).toISOString() };
  }

  /**
   * Runs a change in one transaction: locks the subjects (across processes, on PostgreSQL) and reads their current
   * rows, lets `plan` add entries, appends them to the ledger and upserts the current rows, and appends the audit
   * entries `audit` names for what was written (in the same transaction: a change is never in force without its audit
   * entry); then updates this instance's cache at once. Callers hold the subjects' locks so that two changes in this
   * process never cache an older state over a newer one.
   *
   * Changes made while another is being written share the next transaction (#writeGroup): one commit for every
   * visitor's banner choice of the moment instead of one each. A group that fails is written again one change at a
   * time, so one change's failure is its own.
   *
   * A transaction PostgreSQL ends as a deadlock victim or as unserializable wrote nothing and is run again, callbacks
   * included (up to WRITE_ATTEMPTS times): a callback that collects into variables outside starts them over each time.
   */
  async #write(
    subjects: readonly { id: string | null; pseudonym: string }[],
    plan: (states: Map<string, Map<string, Current>>, add: AddEntry) => void,
    changeFlags?: (tx: SqlExecutor, flags: ReadonlyMap<string, SubjectFlags>) => Promise<void>,
    sign?: (tx: SqlExecutor, entries: readonly LedgerEntry[]) => Promise<void>,
    audit?: (tx: SqlExecutor, entries: readonly LedgerEntry[]) => Promise<readonly AuditEvent[]> | readonly AuditEvent[],
  ): Promise<WriteDone> {
    const [outcome] = (await this.#writes.submit([{ subjects, plan, changeFlags, sign, audit }])) as [WriteOutcome];
    if ('failed' in outcome) throw outcome.failed;
    return outcome.done;
  }

  /**
   * Writes a group of changes in one transaction, in the order they were made: every subject of the group locked
   * first (one order, across processes on PostgreSQL) and their current rows read once; then each change, inside a
   * savepoint of its own, planned on the states the changes before it left, its entries, receipt and flags written,
   * and its opt-outs put in force ahead; the group's audit entries last, in one append. A change that fails (a refusal
   * its callbacks throw, a statement of its own) is rolled back to its savepoint and answered its error; the others
   * go on. A failure of the store as a whole, or a transient one, fails the group (run again as a whole, see #write).
   * After the commit each change's states are cached, in order.
   */
  async #writeGroup(jobs: readonly WriteJob[]): Promise<WriteOutcome[]> {
    const pseudonyms = [...new Set(jobs.flatMap((job) => job.subjects.map((s) => s.pseudonym)))];
    const alone = jobs.length === 1;
    let ahead = false;
    type Written = { entries: LedgerEntry[]; states: Map<string, Map<string, Current>>; flags: Map<string, SubjectFlags> } | { failed: unknown };
    const attempt = () =>
      this.#repo.transaction(async (tx) => {
        // First the people's locks, in one order in every process; the audit log's lock comes last (below).
        await this.#repo.lockSubjects(tx, pseudonyms);
        const grouped = this.#group(await this.#repo.current(pseudonyms, tx, true));
        const states = new Map(pseudonyms.map((p) => [p, grouped.get(p) ?? new Map<string, Current>()]));
        const events: AuditEvent[] = [];
        const written: Written[] = [];
        for (const job of jobs) {
          const own = job.subjects.map((s) => s.pseudonym);
          // What a change that fails alone restores (alone, a failure fails the whole transaction).
          const before = alone ? [] : own.map((p) => [p, new Map(states.get(p))] as const);
          if (!alone) await tx.run(SAVEPOINT);
          try {
            written.push(await this.#writeOne(tx, job, own, states, events));
            if (!alone) await tx.run(RELEASE);
          } catch (error) {
            // Alone, or when the store failed as a whole (or the transaction is to be run again), the group fails.
            if (alone || isTransientFailure(error) || (isCandorError(error) && error.category === 'unavailable')) throw error;
            await tx.run(ROLLBACK_TO);
            await tx.run(RELEASE);
            for (const [p, kept] of before) states.set(p, kept);
            written.push({ failed: error });
            continue;
          }
          ahead = true;
        }
        // What derived data owes the people changed is recorded with the change (onChangeIn).
        const inTransaction = changeInListenersOf.get(this);
        if (inTransaction !== undefined) {
          const ids = new Set<string>();
          jobs.forEach((job, i) => {
            if (!('failed' in (written[i] as Written))) for (const subject of job.subjects) if (subject.id !== null) ids.add(subject.id);
          });
          if (ids.size > 0) for (const listener of inTransaction) await listener(tx, [...ids]);
        }
        // Last: on PostgreSQL the audit head is held from here to the commit.
        await this.#audit.appendIn(tx, events);
        return written;
      });
    let written: Written[];
    try {
      // A transient failure rolled the whole group back. What a failed attempt put in force ahead (only ever more
      // restrictive) stays so until the change commits (the cache then takes its states) or fails (below).
      for (let n = 1; ; n++) {
        try {
          written = await attempt();
          break;
        } catch (error) {
          if (n >= WRITE_ATTEMPTS || !isTransientFailure(error)) throw error;
          await delay(n * 5 + Math.random() * 10);
        }
      }
    } catch (error) {
      // Once opt-outs were put in force ahead, the changes may or may not have been written: the people's states are
      // read again at their next load.
      if (ahead) for (const job of jobs) for (const subject of job.subjects) if (subject.id !== null) this.#cache.delete(subject.id);
      throw error;
    } finally {
      for (const job of jobs) for (const subject of job.subjects) if (subject.id !== null) this.#pendingOptOuts.delete(subject.id);
    }
    const changed = new Set<string>();
    const outcomes = jobs.map((job, i): WriteOutcome => {
      const one = written[i] as Written;
      if ('failed' in one) return one;
      const { entries, states, flags } = one;
      const epoch = ++this.#epoch;
      const loadedAt = Date.now();
      for (const subject of job.subjects) {
        if (subject.id === null) continue;
        this.#cache.set(subject.id, { pseudonym: subject.pseudonym, purposes: states.get(subject.pseudonym) ?? EMPTY, flags: flags.get(subject.pseudonym) ?? NO_FLAGS, freshAsOf: epoch, loadedAt });
        changed.add(subject.id);
      }
      return { done: { entries, states, epoch } };
    });
    // Once for the group: derived data is reconciled for its people together. The changes are committed: a listener
    // that throws (they must not) cannot make them fail.
    if (changed.size > 0) {
      for (const listener of this.#changeListeners) {
        try {
          listener([...changed]);
        } catch {
          // Nothing to undo; the listener's own work is lost, as if it had failed later.
        }
      }
    }
    return outcomes;
  }

  /** One change of a group (see #writeGroup), inside its savepoint; its audit events are added to `events` once it is written. */
  async #writeOne(tx: SqlExecutor, job: WriteJob, own: readonly string[], states: Map<string, Map<string, Current>>, events: AuditEvent[]): Promise<{ entries: LedgerEntry[]; states: Map<string, Map<string, Current>>; flags: Map<string, SubjectFlags> }> {
    const entries: LedgerEntry[] = [];
    const add: AddEntry = (fields) => {
      const { id, at } = this.#stamp();
      const notice = fields.noticeVersion === null ? undefined : this.#notices.get(fields.noticeVersion);
      const entry: LedgerEntry = {
        id,
        subject: fields.subject,
        purpose: fields.purpose,
        state: fields.state,
        basis: fields.basis,
        noticeVersion: fields.noticeVersion,
        noticeHash: notice?.hash ?? null,
        mechanism: fields.mechanism,
        jurisdiction: fields.jurisdiction,
        source: fields.source,
        gpc: fields.gpc ?? false,
        gpcOverride: fields.gpcOverride ?? false,
        receiptId: fields.receiptId,
        at,
      };
      entries.push(entry);
      states.get(entry.subject)?.set(entry.purpose, this.#current({ ...entry, entryId: entry.id }));
      return entry;
    };
    job.plan(new Map(own.map((p) => [p, states.get(p) as Map<string, Current>])), add);
    if (entries.length > 0) await this.#repo.append(tx, entries);
    // The receipt commits with the entries that carry its id, so every receipt id in the ledger can be fetched.
    if (entries.length > 0 && job.sign) await job.sign(tx, entries);
    let flags = flagsOf(await this.#repo.restrictions(own, tx));
    if (job.changeFlags) {
      await job.changeFlags(tx, flags);
      flags = flagsOf(await this.#repo.restrictions(own, tx));
    }
    const audited = job.audit ? await job.audit(tx, entries) : [];
    // Before the commit, what this change takes away is in force in memory already: a group of events being written
    // after the commit (and so answered after this change's answer) is checked against it (the collector gates its
    // messages again inside its transaction). What it gives comes into force after the commit. Last, so that a change
    // that fails puts nothing in force.
    this.#restrictAhead(job.subjects, states, flags);
    events.push(...audited);
    // As this change left them: a later change of the group to the same person does not alter what this one answers.
    return { entries, states: new Map(own.map((p) => [p, new Map(states.get(p))])), flags };
  }

  /**
   * Puts into the cached states the opt-outs (refusals, withdrawals, GPC) and restrictions of a change not yet
   * committed, keeping what the cache had for every other purpose: only ever more restrictive than both the state
   * before and the state after the change.
   */
  #restrictAhead(subjects: readonly { id: string | null; pseudonym: string }[], states: ReadonlyMap<string, ReadonlyMap<string, Current>>, flags: ReadonlyMap<string, SubjectFlags>): void {
    for (const subject of subjects) {
      if (subject.id === null) continue;
      const optOuts = new Map<string, Current>();
      for (const [purpose, current] of states.get(subject.pseudonym) ?? EMPTY) if (isOptOut(current)) optOuts.set(purpose, current);
      this.#pendingOptOuts.set(subject.id, { purposes: optOuts, flags: flags.get(subject.pseudonym) ?? NO_FLAGS });
      const cached = this.#cache.peek(subject.id);
      if (cached !== undefined) this.#cache.set(subject.id, this.#withPending(subject.id, cached));
    }
  }

  /**
   * A state with what is pending applied (the state itself if nothing is): the opt-outs and restrictions of a change
   * being written, and with `sources` (a decision's: pendingMergesOf), those of the profiles whose merge or unmerge
   * into this one has not been propagated yet, by the merge rule from each one's `since` on (a source not in memory:
   * nothing but a legal obligation). Not cached.
   */
  #withPending(subjectId: string, state: SubjectState, sources: readonly PendingSource[] = NO_SOURCES): SubjectState {
    const pending = this.#pendingOptOuts.get(subjectId);
    if (pending === undefined && sources.length === 0) return state;
    let purposes: Map<string, Current> | undefined;
    let flags = state.flags;
    for (const [purpose, current] of pending?.purposes ?? EMPTY) {
      if (state.purposes.get(purpose) === current) continue;
      purposes ??= new Map(state.purposes);
      purposes.set(purpose, current);
    }
    if (pending !== undefined) flags = unionFlags(flags, pending.flags);
    if (sources.length > 0) {
      const merged = (purposes ??= new Map(state.purposes));
      const at = new Date().toISOString();
      const add = (fields: EntryFields) => {
        merged.set(fields.purpose, this.#current({ entryId: '', state: fields.state, basis: fields.basis, mechanism: fields.mechanism, noticeVersion: fields.noticeVersion, jurisdiction: fields.jurisdiction, gpc: fields.gpc === true, gpcOverride: false, at }));
      };
      for (const source of sources) {
        const from = this.#cache.peek(source.profileId);
        if (from === undefined) {
          flags = unionFlags(flags, UNKNOWN_SOURCE_FLAGS);
          continue;
        }
        this.#planMerge(state.pseudonym, from.purposes, merged, source.since, add);
        flags = unionFlags(flags, from.flags);
      }
    }
    if (purposes === undefined && flags === state.flags) return state;
    return { ...state, purposes: purposes ?? state.purposes, flags };
  }

  async #locked<T>(subjectIds: readonly string[], fn: () => Promise<T>): Promise<T> {
    const release = await this.#locks.acquire(subjectIds);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Lets changes follow merges: `canonicalOf` answers the profile a profile has been merged into by now (itself when it
   * was not merged, null when it does not exist). The kernel wires it to identity.
   */
  followMergesWith(canonicalOf: (profileId: string) => Promise<string | null>): void {
    this.#canonicalOf = canonicalOf;
  }

  /**
   * After an opt-out (a refusal, withdrawal, GPC opt-out, restriction or objection) written for `subjectIds` from
   * `since` on, what each subject recorded from then on is carried over, by the merge rule (mergeSubjects with `since`:
   * its older choices are not written again over the person's later ones), to every profile the change belongs to by
   * now that is not the subject itself:
   * - the profile the subject has been merged into: by a request that committed between the moment the change's subject
   *   was resolved and its write (the merge then carried over only what the subject held before), or long before, for
   *   a change made on a device's own profile; a merge of that profile in turn is followed too (a few rounds);
   * - the person each of the subject's `holders` (the profiles holding the strongest id of the requests that made the
   *   change, such as a device merged into the subject) belongs to now: an unmerge that split a device off after its
   *   request was resolved to the person, and copied the person's opt-outs to it before this change was written.
   */
  async #followMerges(subjectIds: readonly string[], since: string, holders: ReadonlyMap<string, Iterable<string>>): Promise<void> {
    const canonicalOf = this.#canonicalOf;
    if (canonicalOf === undefined) return;
    for (const id of new Set(subjectIds)) {
      const carried = new Set([id]);
      for (let round = 0; round < FOLLOW_ROUNDS; round++) {
        const targets = new Set<string>();
        for (const profile of [id, ...(holders.get(id) ?? [])]) {
          const canonical = await this.#followAttempts(() => canonicalOf(profile));
          if (canonical !== null && !carried.has(canonical)) targets.add(canonical);
        }
        if (targets.size === 0) break;
        for (const target of targets) {
          await this.#followAttempts(() => this.mergeSubjects(id, target, SYSTEM_ACTOR, { since }));
          carried.add(target);
        }
      }
    }
  }

  /**
   * A change that may write opt-outs: written under its subjects' locks, then, once the locks are let go (a carry-over
   * takes locks of its own), followed (#followMerges) for the subjects `followed` names from what it wrote.
   */
  async #changeFollowed(ids: readonly string[], followed: (done: WriteDone) => readonly string[], holders: ReadonlyMap<string, Iterable<string>>, write: () => Promise<WriteDone>): Promise<WriteDone> {
    const since = new Date().toISOString();
    const done = await this.#locked(ids, write);
    await this.#followMerges(followed(done), since, holders);
    return done;
  }

  /**
   * A change that carried a GPC signal from a device merged into the subject (`meta.holder`): should an unmerge have
   * split the device off meanwhile, the signal is recorded for it too, also when the subject had it in force already (so
   * that the change wrote nothing for the signal to follow).
   */
  async #gpcForSplitHolder(subjectId: string, meta: RecordMeta, actor: Actor): Promise<void> {
    if (meta.gpc !== true || meta.holder === undefined || meta.holder === subjectId) return;
    await this.recordGpc([subjectId], { ...(meta.source === undefined ? {} : { source: meta.source }), ...(meta.jurisdiction ? { jurisdiction: meta.jurisdiction } : {}), holders: holdersOf(subjectId, meta.holder) }, actor);
  }

  /**
   * One step of #followMerges. The change is committed: a failure here is tried again (a few times), then answered as
   * one that sending the change again mends (it is then resolved to the person and written there). With `written`
   * false (a look-up before anything was written), the last failure is answered as it is.
   */
  async #followAttempts<T>(step: () => Promise<T>, written = true): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (error) {
        if (attempt >= FOLLOW_ATTEMPTS && !written) throw error;
        if (attempt >= FOLLOW_ATTEMPTS) throw new CandorError('CONSENT_MERGE_NOT_FOLLOWED', { attempts: attempt, cause: isCandorError(error) ? error.code : 'error' });
        await delay(FOLLOW_RETRY_MS * attempt);
      }
    }
  }

  #checkSubject(subjectId: unknown): asserts subjectId is string {
    if (typeof subjectId !== 'string' || subjectId.length === 0 || subjectId.length > MAX_SUBJECT_ID) {
      throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'subject_id' });
    }
  }

  #checkMeta(meta: { mechanism?: string; jurisdiction?: string | undefined; source?: string | undefined }, mechanismRequired: boolean): void {
    if (mechanismRequired && !(CALLER_MECHANISMS as readonly string[]).includes(meta.mechanism ?? '')) {
      throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'mechanism', allowed: [...CALLER_MECHANISMS] });
    }
    if (meta.jurisdiction && !JURISDICTION.test(meta.jurisdiction)) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'jurisdiction' });
    this.checkSource(meta.source);
  }

  /**
   * Checks the source a caller's change names, writing nothing: CONSENT_CHANGE_INVALID with reason `source` unless it is,
   * once reduced (recordedSource), an http(s) URL or a property token (free text could name the person, and the ledger
   * is kept for good; nor can a control character or a lone surrogate be stored), `source_reserved` for `restore:…`
   * (what Candor writes again after a restore). A route calls it before it creates a profile for the person.
   */
  checkSource(source: unknown): void {
    const reason = sourceProblem(source);
    if (reason !== undefined) throw new CandorError('CONSENT_CHANGE_INVALID', { reason });
  }

  /**
   * Adds GPC opt-outs (refusals) of every sale/sharing and targeted-advertising purpose not already opted out by GPC
   * (`only`: of that purpose alone, if it is one), under `noticeVersion` (the notice their receipt names; by default
   * the latest).
   */
  #planGpc(
    subject: string,
    current: ReadonlyMap<string, Current>,
    add: (fields: EntryFields) => unknown,
    context: { mechanism: ConsentMechanism; jurisdiction: string | null; source: string | null; receiptId: string | null; keepConfirmed: boolean; only?: string; noticeVersion?: number },
  ): number {
    let written = 0;
    const atMs = Date.now();
    for (const { config } of this.#purposes.values()) {
      if (context.only !== undefined && config.key !== context.only) continue;
      if (!isGpcPurpose(config) || (config.basis !== 'consent' && config.basis !== 'legitimate_interests')) continue;
      const entry = current.get(config.key);
      if (isGpcOptOut(entry)) continue;
      // An opt-in the subject confirmed explicitly over GPC stands against later signals of the same profile, while it counts.
      if (context.keepConfirmed && this.#standsOverGpc(config.key, entry, atMs)) continue;
      add({
        subject,
        purpose: config.key,
        state: 'refused',
        basis: config.basis,
        mechanism: context.mechanism,
        noticeVersion: context.noticeVersion ?? this.#latestNotice?.version ?? null,
        jurisdiction: context.jurisdiction,
        source: context.source,
        gpc: true,
        receiptId: context.receiptId,
      });
      written++;
    }
    return written;
  }

  /**
   * Throws CONSENT_NOTICE_UNKNOWN unless `version` is a published notice version, reading the notices again when it is
   * not known here yet (another server or the CLI may have published it a moment ago). A route calls it before it
   * creates a profile for the person the request names.
   */
  async checkNotice(version: number): Promise<void> {
    await this.#notice(version);
  }

  /**
   * Checks consent changes against the purposes and the notice version shown, writing nothing. Throws for a malformed
   * request (CONSENT_CHANGE_INVALID, CONSENT_NOTICE_UNKNOWN), and when none of the changes could be recorded whatever
   * the subject's state (see #rejectedError); otherwise answers the changes record() will reject. A route calls it
   * before it creates a profile for the person the request names.
   */
  async checkChanges(changes: readonly { purpose: string; state: 'given' | 'refused' | 'withdrawn' }[], meta: { noticeVersion?: number | undefined }): Promise<RejectedChange[]> {
    const { notice, rejected } = await this.#screen(changes, meta.noticeVersion);
    if (rejected.length === changes.length) throw this.#rejectedError(rejected, notice.version);
    return rejected;
  }

  /** The notice version shown and the changes that cannot be recorded for anyone; throws for a malformed request. */
  async #screen(changes: readonly { purpose: string; state: string }[], noticeVersion: number | undefined): Promise<{ notice: Notice; rejected: RejectedChange[] }> {
    if (!Array.isArray(changes) || changes.length === 0) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'no_changes' });
    const notice = await this.#notice(noticeVersion);
    const seen = new Set<string>();
    const rejected: RejectedChange[] = [];
    for (const change of changes) {
      if (seen.has(change.purpose)) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'duplicate_purpose', purpose: change.purpose });
      seen.add(change.purpose);
      if (!CHANGE_STATES.has(change.state)) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'state', purpose: change.purpose });
      const config = this.#purposeConfigs.get(change.purpose);
      if (!config) rejected.push({ purpose: change.purpose, code: 'CONSENT_PURPOSE_UNKNOWN' });
      else if (config.basis === 'contract' || config.basis === 'legal_obligation') rejected.push({ purpose: change.purpose, code: 'CONSENT_BASIS_NOT_CONSENT' });
      else if (change.state === 'given' && !notice.purposes.some((p) => p.purpose === change.purpose)) rejected.push({ purpose: change.purpose, code: 'CONSENT_PURPOSE_NOT_IN_NOTICE' });
      // Given under a notice a later version changed materially for the purpose, it would need renewal at once: the
      // person saw a stale notice. A refusal or withdrawal under any version is always recorded.
      else if (change.state === 'given' && this.#outdatedFor(change.purpose, notice)) rejected.push({ purpose: change.purpose, code: 'CONSENT_NOTICE_OUTDATED' });
    }
    return { notice, rejected };
  }

  /**
   * The error for a request none of whose changes could be recorded: the code of the first change rejected (in the
   * order of the request), with every rejected purpose and its code in the details.
   */
  #rejectedError(rejected: readonly RejectedChange[], noticeVersion: number, extra: Record<string, unknown> = {}): CandorError {
    const first = rejected[0] as RejectedChange;
    const outdated = rejected.some((r) => r.code === 'CONSENT_NOTICE_OUTDATED');
    return new CandorError(first.code, {
      purposes: rejected.map((r) => r.purpose),
      rejected: rejected.map((r) => ({ purpose: r.purpose, code: r.code })),
      ...(outdated || rejected.some((r) => r.code === 'CONSENT_PURPOSE_NOT_IN_NOTICE') ? { noticeVersion, currentNoticeVersion: this.#latestNotice?.version ?? noticeVersion } : {}),
      ...extra,
    });
  }

  /** Whether a later notice version changed the purpose materially: what is given under `notice` needs renewal at once. */
  #outdatedFor(purpose: string, notice: Notice): boolean {
    return notice.version < (this.#purposes.get(purpose)?.renewalFrom ?? 0);
  }

  /**
   * The refusal of a request that carried a GPC signal, for the known profiles the request names: the signal is an
   * opt-out whatever else the request asks, so it is recorded first for them (one change with its receipt, as
   * recordGpc), and the refusal, with its code and details, adds `gpcHonoured: true` and the `receiptId` of what the
   * signal wrote (none when its opt-outs were all in force already). With no profile, or for anything but a
   * CandorError, the error is answered as it is.
   */
  async refusedWithGpc(error: unknown, subjectIds: readonly string[], meta: { source?: string | undefined; jurisdiction?: string | undefined; holder?: string | undefined }, actor: Actor): Promise<unknown> {
    if (!isCandorError(error) || subjectIds.length === 0) return error;
    const holders = subjectIds.length === 1 ? holdersOf(subjectIds[0] as string, meta.holder) : NO_HOLDERS;
    // A source the request was refused for is not kept: the signal is recorded without it.
    const source = sourceProblem(meta.source) === undefined ? meta.source : undefined;
    const written = await this.recordGpc(subjectIds, { source, jurisdiction: meta.jurisdiction, holders }, actor);
    return new CandorError(error.code, { ...error.details, ...gpcHonouredDetails(written) });
  }

  /**
   * Records a subject's choices for purposes and returns a signed receipt. With `gpc`, the GPC opt-out is applied
   * first. A change that cannot be recorded — an unknown purpose, one resting on contract or legal obligation, consent
   * to a purpose the notice shown does not describe or that a later notice version changed materially, or a `given`
   * that conflicts with a GPC opt-out without `confirmOverGpc` — is answered in `rejected` with its code, and the other
   * changes are recorded. When none can be, nothing is written and the error names every rejected purpose (see #rejectedError), but for the GPC opt-out of a
   * request with `gpc`, recorded all the same (see refusedWithGpc).
   */
  async record(
    subjectId: string,
    changes: readonly { purpose: string; state: 'given' | 'refused' | 'withdrawn' }[],
    meta: RecordMeta,
    actor: Actor,
  ): Promise<RecordResult> {
    this.#checkSubject(subjectId);
    this.#checkMeta(meta, true);
    let screened: { notice: Notice; rejected: RejectedChange[] };
    try {
      screened = await this.#screen(changes, meta.noticeVersion);
      if (screened.rejected.length === changes.length) throw this.#rejectedError(screened.rejected, screened.notice.version);
    } catch (error) {
      throw meta.gpc === true ? await this.refusedWithGpc(error, [subjectId], meta, actor) : error;
    }
    const notice = screened.notice;
    const invalid = new Map(screened.rejected.map((r) => [r.purpose, r.code]));
    const pseudonym = this.pseudonym(subjectId);
    const receiptId = randomUUID();
    const jurisdiction = meta.jurisdiction || null;
    const source = recordedSource(meta.source);
    let gpcConflicts = new Set<string>();
    let gpcEntries = 0;
    let receipt = '';
    // In the order of the request, whichever check refused them.
    const rejectedOf = (): RejectedChange[] =>
      changes.flatMap((change) => {
        const code = invalid.get(change.purpose) ?? (gpcConflicts.has(change.purpose) ? 'CONSENT_GPC_CONFLICT' : undefined);
        return code === undefined ? [] : [{ purpose: change.purpose, code }];
      });
    const { entries } = await this.#changeFollowed([subjectId], ({ entries: written }) => (optsOut(written) ? [subjectId] : []), holdersOf(subjectId, meta.holder), () =>
      this.#write([{ id: subjectId, pseudonym }], (states, add) => {
        gpcConflicts = new Set();
        // A run again after a failed attempt starts over: a receipt signed by that attempt was never stored.
        receipt = '';
        const current = states.get(pseudonym) as Map<string, Current>;
        // What was in force before this request: a confirmation must be separate from the signal it overrides.
        const before = new Map(current);
        const atMs = Date.now();
        // Under the notice shown, which the receipt names: a refusal may be recorded under any version.
        if (meta.gpc === true) gpcEntries = this.#planGpc(pseudonym, current, add, { mechanism: 'gpc', jurisdiction, source, receiptId, keepConfirmed: true, noticeVersion: notice.version });
        for (const change of changes) {
          if (invalid.has(change.purpose)) continue;
          const config = this.#purposeConfigs.get(change.purpose) as PurposeConfig;
          const existing = current.get(change.purpose);
          if (meta.onlyUnrecorded === true && existing !== undefined) continue;
          const gpcOptedOut = isGpcOptOut(existing);
          // The same opt-in saved again while it counts (a banner saved while GPC is sent) is still the one confirmed over GPC.
          let gpcOverride = change.state === 'given' && isGpcPurpose(config) && this.#standsOverGpc(change.purpose, existing, atMs);
          if (change.state === 'given' && isGpcPurpose(config)) {
            // An explicit, separate confirmation: the person's own choice in a privacy center or a banner's saved
            // settings, against a GPC opt-out recorded before this request (not one this very request signals), or
            // one that an earlier confirmation overrode and that stands again since that consent stopped counting.
            const previous = before.get(change.purpose);
            const confirmed = meta.confirmOverGpc === true && CONFIRMING_MECHANISMS.has(meta.mechanism) && (isGpcOptOut(previous) || this.#lapsedOverGpc(change.purpose, previous, atMs));
            if (gpcOptedOut && !confirmed) {
              gpcConflicts.add(change.purpose);
              continue;
            }
            if (confirmed) gpcOverride = true;
          }
          add({
            subject: pseudonym,
            purpose: change.purpose,
            state: change.state,
            basis: config.basis,
            mechanism: meta.mechanism,
            noticeVersion: notice.version,
            jurisdiction,
            source,
            // A refusal on top of a GPC opt-out keeps it in force: a later opt-in still needs the confirmation.
            gpc: change.state !== 'given' && gpcOptedOut,
            gpcOverride,
            receiptId,
          });
        }
      }, undefined, async (tx, written) => {
        receipt = await this.#sign(tx, { receiptId, principal: pseudonym, linked: [], jurisdiction, mechanism: meta.mechanism, source, notice, entries: written });
      }, (_tx, written) => {
        const recorded = written.slice(gpcEntries);
        const events: AuditEvent[] = [];
        if (gpcEntries > 0) events.push(this.#auditEvent(actor, 'consent.gpc', pseudonym, written.slice(0, gpcEntries), receiptId, {}));
        if (recorded.length > 0) events.push(this.#auditEvent(actor, 'consent.record', pseudonym, recorded, receiptId, { mechanism: meta.mechanism, rejected: rejectedOf().length }));
        return events;
      }),
    );
    await this.#gpcForSplitHolder(subjectId, meta, actor);
    const rejected = rejectedOf();
    // Nothing written with `gpc`: the opt-out was in force already, so the signal is honoured all the same.
    if (entries.length === 0 && !(meta.onlyUnrecorded === true && rejected.length === 0)) throw this.#rejectedError(rejected, notice.version, meta.gpc === true ? gpcHonouredDetails(undefined) : {});
    return { receipt, receiptId, gpcHonoured: meta.gpc === true, entries, rejected };
  }

  /** Withdraws every consent-based purpose in one call (as easy as giving), with a receipt. */
  async withdrawAll(subjectId: string, meta: RecordMeta, actor: Actor): Promise<Receipt & { entries: LedgerEntry[]; gpcHonoured: boolean }> {
    this.#checkSubject(subjectId);
    this.#checkMeta(meta, true);
    const notice = await this.#notice(meta.noticeVersion);
    const pseudonym = this.pseudonym(subjectId);
    const receiptId = randomUUID();
    const jurisdiction = meta.jurisdiction || null;
    const source = recordedSource(meta.source);
    let gpcEntries = 0;
    // Signed (and stored) even when nothing was left to withdraw: the answer always carries a receipt.
    let receipt: string | undefined;
    const { entries } = await this.#changeFollowed([subjectId], ({ entries: written }) => (optsOut(written) ? [subjectId] : []), holdersOf(subjectId, meta.holder), () =>
      this.#write([{ id: subjectId, pseudonym }], (states, add) => {
        receipt = undefined;
        const current = states.get(pseudonym) as Map<string, Current>;
        if (meta.gpc === true) gpcEntries = this.#planGpc(pseudonym, current, add, { mechanism: 'gpc', jurisdiction, source, receiptId, keepConfirmed: false, noticeVersion: notice.version });
        for (const { config } of this.#purposes.values()) {
          if (config.basis !== 'consent' || isGpcOptOut(current.get(config.key))) continue;
          add({ subject: pseudonym, purpose: config.key, state: 'withdrawn', basis: 'consent', mechanism: meta.mechanism, noticeVersion: notice.version, jurisdiction, source, receiptId });
        }
      }, undefined, async (tx, written) => {
        receipt = await this.#sign(tx, { receiptId, principal: pseudonym, linked: [], jurisdiction, mechanism: meta.mechanism, source, notice, entries: written });
      }, async (tx, written) => {
        receipt ??= await this.#sign(tx, { receiptId, principal: pseudonym, linked: [], jurisdiction, mechanism: meta.mechanism, source, notice, entries: written });
        const events: AuditEvent[] = [];
        if (gpcEntries > 0) events.push(this.#auditEvent(actor, 'consent.gpc', pseudonym, written.slice(0, gpcEntries), receiptId, {}));
        events.push(this.#auditEvent(actor, 'consent.record', pseudonym, written.slice(gpcEntries), receiptId, { mechanism: meta.mechanism, withdrawAll: true }));
        return events;
      }),
    );
    if (receipt === undefined) throw new CandorError('INTERNAL_ERROR');
    await this.#gpcForSplitHolder(subjectId, meta, actor);
    return { receipt, receiptId, entries, gpcHonoured: meta.gpc === true };
  }

  /**
   * Records a Global Privacy Control signal for a device's subject and every profile linked to it: an opt-out of each
   * sale/sharing and targeted-advertising purpose, skipped where one is already in force. One receipt covers all of
   * them (for the first subject, listing the others as linked); undefined when nothing needed writing. `holders`: per
   * subject, the profiles holding the strongest id of the requests that carried the signal (devices merged into the
   * subject): one split off by an unmerge by now is covered too (see #followMerges).
   */
  async recordGpc(subjectIds: readonly string[], meta: GpcMeta, actor: Actor): Promise<(Receipt & { entries: LedgerEntry[] }) | undefined> {
    return (await this.recordGpcEach([subjectIds], meta, actor))[0];
  }

  /**
   * recordGpc for the devices of several requests or messages at once (a batch a server relays for several people), in
   * one transaction: each device (its person's profile first, then the other profiles its ids belong to) gets a receipt
   * of its own, which names none of the other devices' profiles. Answers the receipts signed, in the order of the
   * devices, then those of devices an unmerge split off meanwhile.
   */
  async recordGpcEach(devices: readonly (readonly string[])[], meta: GpcMeta, actor: Actor): Promise<(Receipt & { entries: LedgerEntry[] })[]> {
    const groups = devices.map((device) => [...new Set(device)]).filter((group) => group.length > 0);
    for (const group of groups) for (const id of group) this.#checkSubject(id);
    this.#checkMeta(meta, false);
    if (groups.length === 0) return [];
    const holders = meta.holders ?? NO_HOLDERS;
    // A device split off its person since its request was resolved is the signal's own profile now (each looked up once).
    const canonicalOf = this.#canonicalOf;
    if (canonicalOf === undefined) return this.#recordGpcFor(groups, meta, actor);
    const stillMerged: { holder: string; group: string[] }[] = [];
    const looked = new Set<string>();
    for (const group of groups) {
      for (const subject of [...group]) {
        for (const holder of holders.get(subject) ?? []) {
          if (holder === subject || looked.has(holder)) continue;
          looked.add(holder);
          // Before anything is written: a failure is the store's own (nothing was recorded to carry over).
          const now = await this.#followAttempts(() => canonicalOf(holder), false);
          if (now !== null && now !== subject && !group.includes(now)) group.push(now);
          else if (now === subject) stillMerged.push({ holder, group });
        }
      }
    }
    const written = await this.#recordGpcFor(groups, meta, actor);
    // One split off after that look-up: nothing written for the person follows it (they had the signal in force
    // already, or the unmerge's copy went before this write), so it is looked up once more after the write.
    const split = new Map<string[], string[]>();
    for (const { holder, group } of stillMerged) {
      const now = await this.#followAttempts(() => canonicalOf(holder));
      const list = split.get(group) ?? [];
      if (now !== null && !group.includes(now) && !list.includes(now)) split.set(group, [...list, now]);
    }
    if (split.size === 0) return written;
    const more = await this.#recordGpcFor([...split.values()], { ...(meta.source === undefined ? {} : { source: meta.source }), ...(meta.jurisdiction === undefined ? {} : { jurisdiction: meta.jurisdiction }) }, actor);
    return [...written, ...more];
  }

  /**
   * recordGpcEach for profiles found: one transaction, one receipt per device for what its profiles need (none for a
   * device that needed nothing). Each device's own person is written first, then the other profiles of every device,
   * so that a profile that is also another device's (a shared one) has its opt-outs in its own device's receipt.
   */
  async #recordGpcFor(groups: readonly (readonly string[])[], meta: GpcMeta, actor: Actor): Promise<(Receipt & { entries: LedgerEntry[] })[]> {
    const holders = meta.holders ?? NO_HOLDERS;
    // Nothing to write for subjects already opted out (checked from memory first, then again in the transaction).
    const ids = [...new Set(groups.flat())];
    await this.load(ids);
    const needed = new Set(
      ids.filter((id) => {
        const state = this.#cache.peek(id);
        return state === undefined || this.#needsGpc(state.purposes);
      }),
    );
    const devices = groups
      .map((group) => ({ person: group[0], receiptId: randomUUID(), subjects: group.filter((id) => needed.has(id)).map((id) => ({ id, pseudonym: this.pseudonym(id) })) }))
      .filter((device) => device.subjects.length > 0);
    if (devices.length === 0) return [];
    const subjects = [...new Map(devices.flatMap((device) => device.subjects.map((s) => [s.id, s] as const))).values()];
    const jurisdiction = meta.jurisdiction || null;
    const source = recordedSource(meta.source);
    let notice: Notice | undefined;
    const receipts = new Map<string, string>();
    const { entries } = await this.#changeFollowed(subjects.map((s) => s.id), ({ entries: written }) => writtenFor(subjects, written), holders, () =>
      this.#write(subjects, (states, add) => {
        // The notice the receipts name, the same for every entry.
        notice = this.#latestNotice;
        const context = { mechanism: 'gpc' as const, jurisdiction, source, keepConfirmed: true, ...(notice === undefined ? {} : { noticeVersion: notice.version }) };
        const plan = (device: (typeof devices)[number], own: boolean) => {
          for (const s of device.subjects) if ((s.id === device.person) === own) this.#planGpc(s.pseudonym, states.get(s.pseudonym) as Map<string, Current>, add, { ...context, receiptId: device.receiptId });
        };
        for (const device of devices) plan(device, true);
        for (const device of devices) plan(device, false);
      }, undefined, async (tx, written) => {
        receipts.clear();
        for (const [receiptId, list] of byReceipt(written)) {
          const principals = [...new Set(list.map((e) => e.subject))];
          receipts.set(receiptId, await this.#sign(tx, { receiptId, principal: principals[0] as string, linked: principals.slice(1), jurisdiction, mechanism: 'gpc', source, notice, entries: list }));
        }
      }, (_tx, written) =>
        [...byReceipt(written)].flatMap(([receiptId, list]) =>
          [...new Set(list.map((e) => e.subject))].map((subject) => this.#auditEvent(actor, 'consent.gpc', subject, list.filter((e) => e.subject === subject), receiptId, {})),
        ),
      ),
    );
    return devices.flatMap(({ receiptId }) => {
      const receipt = receipts.get(receiptId);
      return receipt === undefined ? [] : [{ receipt, receiptId, entries: entries.filter((e) => e.receiptId === receiptId) }];
    });
  }

  /**
   * Whether a GPC signal for this subject would record anything (recordGpc, recordGpcEach): true unless their state is
   * in memory and every GPC purpose already has its opt-out in force, or a consent confirmed over GPC that stands.
   * The collector stores a GPC message of such a person with the usual group, as there is nothing to record first.
   */
  gpcWouldRecord(subjectId: string): boolean {
    const state = this.#cache.peek(subjectId);
    return state === undefined || this.#needsGpc(state.purposes);
  }

  #needsGpc(current: ReadonlyMap<string, Current>): boolean {
    const atMs = Date.now();
    for (const { config } of this.#purposes.values()) {
      if (!isGpcPurpose(config) || (config.basis !== 'consent' && config.basis !== 'legitimate_interests')) continue;
      const entry = current.get(config.key);
      if (!isGpcOptOut(entry) && !this.#standsOverGpc(config.key, entry, atMs)) return true;
    }
    return false;
  }

  /**
   * Checks an opt-out notice against the purpose, the jurisdiction and the notice version, writing nothing: throws
   * CONSENT_PURPOSE_UNKNOWN, CONSENT_OPT_OUT_NOT_ALLOWED, CONSENT_NOTICE_UNKNOWN, CONSENT_PURPOSE_NOT_IN_NOTICE or
   * CONSENT_NOTICE_OUTDATED (a later version changed the purpose materially). A route calls it before it creates a
   * profile for the person the request names.
   */
  async checkOptOutNotice(purpose: string, meta: { jurisdiction: string; noticeVersion: number; source?: string | undefined }): Promise<void> {
    await this.#checkOptOutNotice(purpose, meta);
  }

  async #checkOptOutNotice(purpose: string, meta: { jurisdiction: string; noticeVersion: number; source?: string | undefined }): Promise<Notice> {
    this.#checkMeta(meta, false);
    const config = this.#purposeConfigs.get(purpose);
    if (!config) throw new CandorError('CONSENT_PURPOSE_UNKNOWN', { purpose });
    if (config.basis !== 'consent' || !config.optOutJurisdictions.includes(meta.jurisdiction)) {
      throw new CandorError('CONSENT_OPT_OUT_NOT_ALLOWED', { purpose, jurisdiction: meta.jurisdiction });
    }
    const notice = await this.#notice(meta.noticeVersion);
    if (!notice.purposes.some((p) => p.purpose === purpose)) throw new CandorError('CONSENT_PURPOSE_NOT_IN_NOTICE', { purpose, noticeVersion: notice.version });
    // A notice shown under a version a later one changed materially for the purpose would need renewal at once.
    if (this.#outdatedFor(purpose, notice)) {
      throw new CandorError('CONSENT_NOTICE_OUTDATED', { purpose, noticeVersion: notice.version, currentNoticeVersion: this.#latestNotice?.version ?? notice.version });
    }
    return notice;
  }

  /**
   * Records that a subject was shown an opt-out notice for a purpose in a jurisdiction where the purpose allows
   * that basis (CONSENT_OPT_OUT_NOT_ALLOWED elsewhere). It is its own lawful basis, recorded, never silent. The
   * person's own choice stands over it: it never overrides an opt-out on record (CONSENT_ALREADY_OPTED_OUT, or
   * CONSENT_GPC_CONFLICT for a GPC one), and it does not replace a consent they gave that still counts (nothing is
   * written, no receipt signed; the answer lists that consent in `kept`). With `gpc`, the GPC opt-out is recorded
   * first, also when the notice is refused (see refusedWithGpc).
   */
  async recordOptOutNotice(
    subjectId: string,
    purpose: string,
    meta: { jurisdiction: string; noticeVersion: number; source?: string; gpc?: boolean; holder?: string | undefined },
    actor: Actor,
  ): Promise<OptOutNoticeResult> {
    this.#checkSubject(subjectId);
    // A malformed jurisdiction or source is refused before anything is written, a GPC opt-out included.
    this.#checkMeta(meta, false);
    const gpcHonoured = meta.gpc === true;
    let notice: Notice;
    try {
      notice = await this.#checkOptOutNotice(purpose, meta);
    } catch (error) {
      throw gpcHonoured ? await this.refusedWithGpc(error, [subjectId], meta, actor) : error;
    }
    // A GPC signal on this very request is an opt-out of sale/sharing and targeted advertising: it is recorded
    // first, so the notice cannot make such a purpose lawful on the request that refused it.
    const gpc = gpcHonoured ? await this.recordGpc([subjectId], { source: meta.source, jurisdiction: meta.jurisdiction, holders: holdersOf(subjectId, meta.holder) }, actor) : undefined;
    const pseudonym = this.pseudonym(subjectId);
    const receiptId = randomUUID();
    const source = recordedSource(meta.source);
    let receipt = '';
    const kept: KeptConsent[] = [];
    const { entries } = await this.#locked([subjectId], () =>
      this.#write([{ id: subjectId, pseudonym }], (states, add) => {
        kept.length = 0;
        const current = states.get(pseudonym)?.get(purpose);
        if (isOptOut(current)) throw new CandorError(current?.gpc ? 'CONSENT_GPC_CONFLICT' : 'CONSENT_ALREADY_OPTED_OUT', { purpose, ...(gpcHonoured ? gpcHonouredDetails(gpc) : {}) });
        const runtime = this.#purposes.get(purpose);
        // A consent that no longer counts (expired, or given under a notice it must be renewed against) is no basis to keep.
        if (current?.state === 'given' && current.basis === 'consent' && runtime !== undefined && decideFor(runtime, current, Date.now()).reason === 'given') {
          kept.push({ purpose, state: 'given', basis: 'consent', at: current.at });
          return;
        }
        add({
          subject: pseudonym,
          purpose,
          state: 'given',
          basis: 'opt_out_notice',
          mechanism: 'notice_opt_out',
          noticeVersion: notice.version,
          jurisdiction: meta.jurisdiction,
          source,
          receiptId,
        });
      }, undefined, async (tx, written) => {
        receipt = await this.#sign(tx, { receiptId, principal: pseudonym, linked: [], jurisdiction: meta.jurisdiction, mechanism: 'notice_opt_out', source, notice, entries: written });
      }, (_tx, written) => (written.length === 0 ? [] : [this.#auditEvent(actor, 'consent.record', pseudonym, written, receiptId, { mechanism: 'notice_opt_out' })])),
    );
    if (kept.length > 0) return { receipt: null, receiptId: null, gpcHonoured, entries, kept };
    return { receipt, receiptId, gpcHonoured, entries, kept: [] };
  }

  /**
   * Merges `from`'s consent state into `into`: per purpose the most restrictive state wins on `into` (a refusal,
   * withdrawal or objection on `from` is written on `into`; `from`'s consents never create one on `into`), and a GPC
   * opt-out on `from` spreads to every sale/sharing and targeted-advertising purpose of `into`. Entries use
   * mechanism `merge` and keep the notice version and jurisdiction of the entry they copy. When anything was written,
   * `receipts` holds one signed receipt per notice version and jurisdiction of the entries (each receipt's header true
   * of every entry it lists), and `receipt` and `receiptId` are the first of them, the one covering `entries[0]`.
   *
   * `since` (an unmerge splitting `into` back out of `from`): only what `from` recorded from that moment on counts,
   * the choices and restrictions made while the two were one person, whichever of its devices made them.
   */
  async mergeSubjects(fromId: string, intoId: string, actor: Actor, options: { since?: string } = {}): Promise<{ entries: LedgerEntry[]; receipt: string | null; receiptId: string | null; receipts: Receipt[] }> {
    const since = options.since;
    this.#checkSubject(fromId);
    this.#checkSubject(intoId);
    if (fromId === intoId) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'merge_into_itself' });
    const from = { id: fromId, pseudonym: this.pseudonym(fromId) };
    const into = { id: intoId, pseudonym: this.pseudonym(intoId) };
    let receipts: Receipt[] = [];
    let spread: { restricted?: true; objectedMarketing?: true } = {};
    const { entries } = await this.#locked([fromId, intoId], () =>
      this.#write([from, into], (states, add) => {
        const receiptFor = receiptPerGroup();
        this.#planMerge(into.pseudonym, states.get(from.pseudonym) as Map<string, Current>, states.get(into.pseudonym) as Map<string, Current>, since, (fields) => add({ ...fields, receiptId: receiptFor(fields) }));
      }, async (tx, flags) => {
        // A restriction or objection of either profile binds the merged person.
        const fromFlags = since === undefined ? (flags.get(from.pseudonym) ?? NO_FLAGS) : (flagsOf((await this.#repo.restrictions([from.pseudonym], tx)).filter((row) => row.since >= since)).get(from.pseudonym) ?? NO_FLAGS);
        const intoFlags = flags.get(into.pseudonym) ?? NO_FLAGS;
        const at = new Date().toISOString();
        spread = {};
        if (fromFlags.restricted && !intoFlags.restricted) {
          await this.#repo.insertRestriction(tx, restrictionRow(into.pseudonym, 'restriction', null, at, actor));
          spread.restricted = true;
        }
        if (fromFlags.objectedMarketing && !intoFlags.objectedMarketing) {
          await this.#repo.insertRestriction(tx, restrictionRow(into.pseudonym, 'objection_marketing', null, at, actor));
          spread.objectedMarketing = true;
        }
      }, async (tx, written) => {
        receipts = await this.#signPerReceipt(tx, written, 'merge');
      }, (_tx, written) => {
        const details = { from: from.pseudonym, ...(since === undefined ? {} : { since }), ...spread };
        // One entry per receipt, naming it and the entries it covers.
        if (written.length > 0) return [...byReceipt(written)].map(([receiptId, list]) => this.#auditEvent(actor, 'consent.merge', into.pseudonym, list, receiptId, details));
        // A restriction or objection carried over alone (no entry, so no receipt) is a change too.
        return Object.keys(spread).length === 0 ? [] : this.#flagEvents([into], 'consent.merge', null, actor, () => ({ entries: 0, ...details }));
      }),
    );
    const [first] = receipts;
    if (entries.length === 0 || first === undefined) return { entries, receipt: null, receiptId: null, receipts: [] };
    return { entries, receipt: first.receipt, receiptId: first.receiptId, receipts };
  }

  /**
   * The entries a merge writes on the surviving profile: per purpose, an opt-out of the merged one (a refusal or a
   * withdrawal; with `since`, only those made from then on) where the survivor has none that binds as much, and GPC
   * opt-outs of every sale/sharing and targeted-advertising purpose when one of those opt-outs came from GPC. Entries
   * are added with no receipt id: the caller names the receipt that covers each (see receiptPerGroup).
   */
  #planMerge(into: string, source: ReadonlyMap<string, Current>, target: ReadonlyMap<string, Current>, since: string | undefined, add: (fields: EntryFields) => unknown): void {
    let fromGpc = false;
    for (const [key, entry] of source) {
      if (!isOptOut(entry) || (since !== undefined && entry.at < since)) continue;
      if (entry.gpc) fromGpc = true;
      const config = this.#purposeConfigs.get(key);
      if (!config || config.basis === 'contract' || config.basis === 'legal_obligation') continue;
      const existing = target.get(key);
      // Carried whatever the target recorded meanwhile (with `since`: a change carried after its commit, an unmerge's
      // split), as a merge writes the more restrictive state: which of two moments of a race came later is not told
      // by times several nodes' clocks wrote, and an opt-out over the person's choice of that moment fails closed.
      if (isOptOut(existing) && (existing?.gpc === true || !entry.gpc)) continue;
      add({
        subject: into,
        purpose: key,
        state: entry.state,
        basis: entry.basis,
        mechanism: 'merge',
        noticeVersion: entry.noticeVersion,
        jurisdiction: entry.jurisdiction,
        source: null,
        gpc: entry.gpc,
        receiptId: null,
      });
    }
    if (fromGpc) this.#planGpc(into, target, add, { mechanism: 'merge', jurisdiction: null, source: null, receiptId: null, keepConfirmed: false });
  }

  /**
   * The purposes among `purposes` that would have a lawful basis now for `intoId` once each of `fromIds` were merged
   * into it, as mergeSubjects would write it (their refusals, withdrawals and GPC opt-outs; their restrictions and
   * objections), without writing anything: the collector asks before it commits a merge, so that a message the merged
   * person would refuse merges nobody. Subjects in `unstored` (profiles made by a transaction not yet committed) have
   * no record; every other one must be loaded (CONSENT_SUBJECT_NOT_LOADED).
   */
  allowedPurposesMerged(intoId: string, fromIds: readonly string[], purposes: readonly string[], unstored: ReadonlySet<string> = NO_IDS): string[] {
    const decisions = this.decideMerged(intoId, fromIds, purposes, unstored);
    return purposes.filter((purpose) => decisions.get(purpose)?.allowed === true);
  }

  /**
   * decide() for each of `purposes`, as allowedPurposesMerged() takes it: for `intoId` once the profiles `fromIds` are
   * merged into it, with the reason of every refusal (`no_record` where no merged profile has a record). Profiles in
   * `unstored` have no state yet (made by the transaction asking).
   */
  decideMerged(intoId: string, fromIds: readonly string[], purposes: readonly string[], unstored: ReadonlySet<string> = NO_IDS): Map<string, Decision> {
    const stateOf = (id: string): SubjectState | undefined => {
      const state = this.#cache.peek(id);
      if (state === undefined && !unstored.has(id)) throw new CandorError('CONSENT_SUBJECT_NOT_LOADED');
      return state;
    };
    // With the opt-outs of its own merges not propagated yet, as decide() takes it.
    const stored = stateOf(intoId);
    const pendingSources = stored && pendingMergesOf.get(this)?.sourcesOf(intoId);
    const into = stored === undefined || pendingSources === undefined ? stored : this.#withPending(intoId, stored, pendingSources);
    const merged = new Map(into?.purposes ?? EMPTY);
    let flags = into?.flags ?? NO_FLAGS;
    const at = new Date().toISOString();
    const add = (fields: EntryFields) => {
      merged.set(fields.purpose, this.#current({ entryId: '', state: fields.state, basis: fields.basis, mechanism: fields.mechanism, noticeVersion: fields.noticeVersion, jurisdiction: fields.jurisdiction, gpc: fields.gpc === true, gpcOverride: false, at }));
    };
    for (const fromId of fromIds) {
      const from = stateOf(fromId);
      if (from === undefined) continue;
      this.#planMerge(intoId, from.purposes, merged, undefined, add);
      flags = unionFlags(flags, from.flags);
    }
    const atMs = Date.now();
    const decisions = new Map<string, Decision>();
    for (const purpose of purposes) {
      const runtime = this.#purposes.get(purpose);
      decisions.set(purpose, runtime === undefined ? UNKNOWN_PURPOSE : decideFor(runtime, merged.get(purpose), atMs, flags));
    }
    return decisions;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Data-subject rights: restriction, objection, opt-out of sale/sharing, limiting sensitive data

  /**
   * Restricts processing for the subjects (GDPR Art. 18): from now on decide() answers `restricted` for every purpose
   * but those resting on a legal obligation, on every purpose-bound read, until the restriction is lifted.
   * Restricting a subject already restricted changes nothing.
   */
  async restrict(subjectIds: readonly string[], meta: { requestId?: string }, actor: Actor): Promise<void> {
    await this.#setFlag(subjectIds, 'restriction', meta.requestId ?? null, actor, 'consent.restrict');
  }

  /** Lifts a restriction of processing (audited); CONSENT_RESTRICTION_NOT_FOUND when none is in force. */
  async liftRestriction(subjectIds: readonly string[], meta: { requestId?: string }, actor: Actor): Promise<void> {
    await this.#liftFlag(subjectIds, 'restriction', meta.requestId ?? null, actor, 'consent.restrict.lift');
  }

  /**
   * An objection to direct marketing (GDPR Art. 21(2)–(3)), which is absolute: every `marketing.*` purpose resting on
   * consent or legitimate interests is withdrawn at once, and decide() answers `objected` for every `marketing.*`
   * purpose whatever its basis (including purposes configured later) until the subject lifts the objection.
   */
  async objectToMarketing(subjectIds: readonly string[], meta: { requestId?: string; jurisdiction?: string }, actor: Actor): Promise<{ entries: LedgerEntry[]; receiptId: string | null }> {
    const ids = this.#checkIds(subjectIds);
    this.#checkMeta(meta, false);
    const requestId = meta.requestId ?? null;
    const receiptId = randomUUID();
    const jurisdiction = meta.jurisdiction || null;
    const subjects = ids.map((id) => ({ id, pseudonym: this.pseudonym(id) }));
    const marketing = [...this.#purposeConfigs.values()].filter((c) => isDirectMarketing(c.key, this.#taxonomy) && (c.basis === 'consent' || c.basis === 'legitimate_interests'));
    const flagged: string[] = [];
    const { entries } = await this.#changeFollowed(ids, ({ entries: written }) => subjects.filter((s) => flagged.includes(s.pseudonym) || written.some((e) => e.subject === s.pseudonym)).map((s) => s.id), NO_HOLDERS, () =>
      this.#write(
        subjects,
        (states, add) => {
          for (const s of subjects) {
            const current = states.get(s.pseudonym) as Map<string, Current>;
            for (const config of marketing) {
              if (isOptOut(current.get(config.key))) continue;
              add({ subject: s.pseudonym, purpose: config.key, state: 'withdrawn', basis: config.basis, mechanism: 'privacy_center', noticeVersion: this.#latestNotice?.version ?? null, jurisdiction, source: null, receiptId });
            }
          }
        },
        async (tx, flags) => {
          flagged.length = 0;
          const at = new Date().toISOString();
          for (const s of subjects) {
            if ((flags.get(s.pseudonym) ?? NO_FLAGS).objectedMarketing) continue;
            await this.#repo.insertRestriction(tx, restrictionRow(s.pseudonym, 'objection_marketing', requestId, at, actor));
            flagged.push(s.pseudonym);
          }
        },
        async (tx, written) => {
          await this.#sign(tx, { receiptId, principal: subjects[0]?.pseudonym as string, linked: subjects.slice(1).map((s) => s.pseudonym), jurisdiction, mechanism: 'privacy_center', source: null, notice: this.#latestNotice, entries: written });
        },
        (_tx, written) =>
          subjects.map((s) => ({
            actor: actor.id,
            role: actor.role,
            action: 'consent.object',
            purpose: 'essential.legal_obligation',
            subject: s.pseudonym,
            resource: requestId === null ? null : `rights_request:${requestId}`,
            details: { kind: 'direct_marketing', withdrawn: written.filter((e) => e.subject === s.pseudonym).length, newlyObjected: flagged.includes(s.pseudonym), ...(written.length > 0 ? { receiptId } : {}) },
          })),
      ),
    );
    if (entries.length === 0) return { entries, receiptId: null };
    return { entries, receiptId };
  }

  /** Lifts an objection to direct marketing (the subject changed their mind; audited). Withdrawn consents stay withdrawn. */
  async liftObjection(subjectIds: readonly string[], meta: { requestId?: string }, actor: Actor): Promise<void> {
    await this.#liftFlag(subjectIds, 'objection_marketing', meta.requestId ?? null, actor, 'consent.object.lift');
  }

  /**
   * An opt-out of sale/sharing (and targeted advertising) asked for through a rights request: the same opt-out a GPC
   * signal records (`gpc` flag, so a later opt-in needs the separate confirmation), with mechanism `privacy_center`.
   * It also overrides an opt-in the subject once confirmed over GPC: this is a fresh, explicit choice.
   */
  async optOutOfSaleSharing(subjectIds: readonly string[], meta: { requestId?: string; jurisdiction?: string }, actor: Actor): Promise<{ entries: LedgerEntry[]; receiptId: string | null }> {
    const ids = this.#checkIds(subjectIds);
    this.#checkMeta(meta, false);
    const receiptId = randomUUID();
    const jurisdiction = meta.jurisdiction || null;
    const subjects = ids.map((id) => ({ id, pseudonym: this.pseudonym(id) }));
    const requestResource = meta.requestId === undefined ? null : `rights_request:${meta.requestId}`;
    const { entries } = await this.#changeFollowed(ids, ({ entries: written }) => writtenFor(subjects, written), NO_HOLDERS, () =>
      this.#write(subjects, (states, add) => {
        for (const s of subjects) {
          this.#planGpc(s.pseudonym, states.get(s.pseudonym) as Map<string, Current>, add, { mechanism: 'privacy_center', jurisdiction, source: null, receiptId, keepConfirmed: false });
        }
      }, undefined, async (tx, written) => {
        await this.#sign(tx, { receiptId, principal: subjects[0]?.pseudonym as string, linked: subjects.slice(1).map((s) => s.pseudonym), jurisdiction, mechanism: 'privacy_center', source: null, notice: this.#latestNotice, entries: written });
      }, (_tx, written) =>
        subjects.map((s) => ({
          actor: actor.id,
          role: actor.role,
          action: 'consent.opt_out',
          purpose: 'essential.legal_obligation',
          subject: s.pseudonym,
          resource: requestResource,
          details: { kind: 'sale_sharing', entries: written.filter((e) => e.subject === s.pseudonym).length, ...(written.length > 0 ? { receiptId } : {}) },
        })),
      ),
    );
    if (entries.length === 0) return { entries, receiptId: null };
    return { entries, receiptId };
  }

  /**
   * Limits the use of sensitive personal information (CPRA §1798.121): withdraws consent to every consent-based
   * purpose that declares special categories — explicit purposes, and purposes whose notice lists a special-category
   * or sensitive data category. Answers the purposes withdrawn (none when there were none).
   */
  async limitSensitive(subjectId: string, meta: { requestId?: string; jurisdiction?: string }, actor: Actor): Promise<{ purposes: string[]; receiptId: string | null }> {
    const sensitive = this.sensitivePurposes();
    if (sensitive.length === 0) return { purposes: [], receiptId: null };
    const result = await this.record(subjectId, sensitive.map((purpose) => ({ purpose, state: 'withdrawn' as const })), { mechanism: 'privacy_center', jurisdiction: meta.jurisdiction }, actor);
    return { purposes: result.entries.map((e) => e.purpose), receiptId: result.receiptId };
  }

  /** Consent-based purposes that declare special categories or sensitive personal information. */
  sensitivePurposes(): string[] {
    const declared = new Map((this.#latestNotice?.purposes ?? []).map((p) => [p.purpose, p.categories]));
    return [...this.#purposeConfigs.values()]
      .filter((c) => c.basis === 'consent')
      .filter((c) => c.explicit || (declared.get(c.key) ?? []).some((key) => {
        const category = this.#taxonomy.dataCategory(key);
        return category !== undefined && (category.specialCategory !== null || category.sensitivePersonalInformation);
      }))
      .map((c) => c.key);
  }

  // ------------------------------------------------------------------------------------------------------------
  // After a restore

  /**
   * After a restore: writes again, for each person the restored database knows, the restrictive states the replaced
   * database held (`restrictiveConsentStates`, read before the swap) where the restored state is less restrictive, so
   * that a refusal, withdrawal, GPC opt-out, restriction or objection recorded after the backup was taken is not undone
   * by the restore. `profileIds` are the restored database's profile ids (in chunks): people are matched by pseudonym,
   * so an erased person (gone from the restored database once the deletion ledger is replayed) is left alone.
   *
   * Per person, one change as any other: ledger entries (mechanism `import`, source `restore:<backup>`, the GPC flag
   * kept), one signed receipt, restrictions and objections in force again, audited in the change's transaction
   * (`consent.record`, `consent.gpc`, `consent.restrict`, `consent.object`, details `restoredFrom`). Nothing is written
   * where the restored state binds as much (an opt-out; a GPC opt-out for a GPC one; the restriction in force), nor
   * where it holds a later entry for the purpose or lifted the restriction later (`keptLater`); nothing is ever made
   * less restrictive. A person whose change fails is counted in `failed` and the others are written.
   */
  async reapplyAfterRestore(
    replaced: RestrictiveConsentStates,
    people: AsyncIterable<readonly { profileId: string; members: readonly string[] }[]> | Iterable<readonly { profileId: string; members: readonly string[] }[]>,
    backup: string,
    actor: Actor,
  ): Promise<ReappliedAfterRestore> {
    const result: ReappliedAfterRestore = { optOuts: 0, gpcOptOuts: 0, restrictions: 0, objections: 0, people: 0, keptLater: 0, purposeNotConfigured: 0, notInRestored: 0, failed: [] };
    const wanted = new Map<string, RestrictiveConsentStates>();
    const wantedOf = (subject: string) => {
      let want = wanted.get(subject);
      if (want === undefined) wanted.set(subject, (want = { optOuts: [], restrictions: [] }));
      return want;
    };
    for (const optOut of replaced.optOuts) wantedOf(optOut.subject).optOuts.push(optOut);
    for (const restriction of replaced.restrictions) wantedOf(restriction.subject).restrictions.push(restriction);
    if (wanted.size === 0) return result;
    // Pseudonyms are keyed hashes: the restored database's profile ids are hashed to find the people. A state recorded
    // on a profile that the restored database holds merged into another binds the person, so it is written on the
    // canonical profile, which decisions read (with what other members of the same person carried).
    const canonicalOf = new Map<string, string>();
    for await (const chunk of people) {
      for (const group of chunk) {
        for (const id of [group.profileId, ...group.members]) {
          const pseudonym = this.#keyring.pseudonym('subject', id);
          if (wanted.has(pseudonym) && !canonicalOf.has(pseudonym)) canonicalOf.set(pseudonym, group.profileId);
        }
      }
      if (canonicalOf.size === wanted.size) break;
    }
    result.notInRestored = wanted.size - canonicalOf.size;
    const found = new Map<string, string>();
    const wantedBy = new Map<string, RestrictiveConsentStates>();
    for (const [pseudonym, canonical] of canonicalOf) {
      const own = this.#keyring.pseudonym('subject', canonical);
      const want = wanted.get(pseudonym) as RestrictiveConsentStates;
      const joined = wantedBy.get(own);
      if (joined) {
        joined.optOuts.push(...want.optOuts);
        joined.restrictions.push(...want.restrictions);
      } else {
        wantedBy.set(own, { optOuts: [...want.optOuts], restrictions: [...want.restrictions] });
        found.set(own, canonical);
      }
    }
    const restoredFrom = basename(backup);
    const source = ownSource(`restore:${restoredFrom}`, 'restore:backup');
    const failed = new Map<string, number>();
    const persons = [...found];
    for (let i = 0; i < persons.length; i += CHUNK) {
      const part = persons.slice(i, i + CHUNK);
      const loaded = await this.#fetch(part.map(([, id]) => id));
      for (const [pseudonym, id] of part) {
        const want = wantedBy.get(pseudonym) as RestrictiveConsentStates;
        const before = loaded.get(id) as SubjectState;
        // A restriction the restored database lifted after the replaced one's began: that lifting is the later choice.
        const liftedLater = new Set<RestrictionKind>();
        if (want.restrictions.some((r) => !hasFlag(before.flags, r.kind))) {
          const history = await this.#repo.restrictionHistory(pseudonym);
          for (const r of want.restrictions) {
            if (history.some((row) => row.kind === r.kind && row.lifted_at !== null && row.lifted_at > r.since)) liftedLater.add(r.kind);
          }
        }
        let optOuts = this.#restoreOptOuts(pseudonym, want.optOuts, before.purposes, source);
        let flagged = this.#restoreFlags(want.restrictions, before.flags, liftedLater);
        if (optOuts.entries.length > 0 || flagged.kinds.length > 0) {
          const receiptId = randomUUID();
          try {
            await this.#locked([id], () =>
              this.#write([{ id, pseudonym }], (states, add) => {
                optOuts = this.#restoreOptOuts(pseudonym, want.optOuts, states.get(pseudonym) ?? EMPTY, source);
                for (const fields of optOuts.entries) add({ ...fields, receiptId });
              }, async (tx, flags) => {
                flagged = this.#restoreFlags(want.restrictions, flags.get(pseudonym) ?? NO_FLAGS, liftedLater);
                const at = new Date().toISOString();
                for (const kind of flagged.kinds) await this.#repo.insertRestriction(tx, restrictionRow(pseudonym, kind, null, at, actor));
              }, async (tx, written) => {
                await this.#sign(tx, { receiptId, principal: pseudonym, linked: [], jurisdiction: null, mechanism: 'import', source, notice: this.#latestNotice, entries: written });
              }, (_tx, written) => {
                const events: AuditEvent[] = [];
                const gpc = written.filter((e) => e.gpc);
                const other = written.filter((e) => !e.gpc);
                if (gpc.length > 0) events.push(this.#auditEvent(actor, 'consent.gpc', pseudonym, gpc, receiptId, { restoredFrom }));
                if (other.length > 0) events.push(this.#auditEvent(actor, 'consent.record', pseudonym, other, receiptId, { mechanism: 'import', restoredFrom }));
                for (const kind of flagged.kinds) {
                  const details: Record<string, string | boolean> = kind === 'restriction' ? { kind, alreadyInForce: false, restoredFrom } : { kind: 'direct_marketing', newlyObjected: true, restoredFrom };
                  events.push(...this.#flagEvents([{ pseudonym }], kind === 'restriction' ? 'consent.restrict' : 'consent.object', null, actor, () => details));
                }
                return events;
              }),
            );
          } catch (error) {
            const code = isCandorError(error) ? error.code : 'INTERNAL_ERROR';
            failed.set(code, (failed.get(code) ?? 0) + 1);
            continue;
          }
          const gpcWritten = optOuts.entries.filter((e) => e.gpc === true).length;
          result.gpcOptOuts += gpcWritten;
          result.optOuts += optOuts.entries.length - gpcWritten;
          result.restrictions += flagged.kinds.filter((k) => k === 'restriction').length;
          result.objections += flagged.kinds.filter((k) => k === 'objection_marketing').length;
          if (optOuts.entries.length > 0 || flagged.kinds.length > 0) result.people++;
        }
        result.keptLater += optOuts.keptLater + flagged.keptLater;
        result.purposeNotConfigured += optOuts.purposeNotConfigured;
      }
    }
    result.failed = [...failed].map(([code, n]) => ({ code, people: n }));
    return result;
  }

  /**
   * The opt-outs a restore writes again for one person: each replaced one the restored state does not bind as much (any
   * opt-out binds as much as a plain one, only a GPC opt-out as much as a GPC one), unless the restored entry is later.
   */
  #restoreOptOuts(
    pseudonym: string,
    optOuts: RestrictiveConsentStates['optOuts'],
    current: ReadonlyMap<string, Current>,
    source: string | null,
  ): { entries: Omit<EntryFields, 'receiptId'>[]; keptLater: number; purposeNotConfigured: number } {
    const entries: Omit<EntryFields, 'receiptId'>[] = [];
    let keptLater = 0;
    let purposeNotConfigured = 0;
    // One per purpose when several profiles of the person had one: a GPC opt-out binds more, else the later one.
    const byPurpose = new Map<string, RestrictiveConsentStates['optOuts'][number]>();
    for (const optOut of optOuts) {
      const other = byPurpose.get(optOut.purpose);
      if (other === undefined || (optOut.gpc && !other.gpc) || (optOut.gpc === other.gpc && optOut.at > other.at)) byPurpose.set(optOut.purpose, optOut);
    }
    for (const optOut of byPurpose.values()) {
      const config = this.#purposeConfigs.get(optOut.purpose);
      if (config === undefined || (config.basis !== 'consent' && config.basis !== 'legitimate_interests')) {
        purposeNotConfigured++;
        continue;
      }
      const existing = current.get(optOut.purpose);
      if (optOut.gpc ? isGpcOptOut(existing) : isOptOut(existing)) continue;
      if (existing !== undefined && existing.at > optOut.at) {
        keptLater++;
        continue;
      }
      entries.push({ subject: pseudonym, purpose: optOut.purpose, state: optOut.state, basis: config.basis, mechanism: 'import', noticeVersion: this.#latestNotice?.version ?? null, jurisdiction: null, source, gpc: optOut.gpc });
    }
    return { entries, keptLater, purposeNotConfigured };
  }

  /** The restrictions and objections a restore puts in force again: those not in force, unless lifted later. */
  #restoreFlags(restrictions: RestrictiveConsentStates['restrictions'], flags: SubjectFlags, liftedLater: ReadonlySet<RestrictionKind>): { kinds: RestrictionKind[]; keptLater: number } {
    const kinds: RestrictionKind[] = [];
    let keptLater = 0;
    for (const kind of new Set(restrictions.map((r) => r.kind))) {
      if (hasFlag(flags, kind)) continue;
      if (liftedLater.has(kind)) keptLater++;
      else kinds.push(kind);
    }
    return { kinds, keptLater };
  }

  /** Whether a restriction or an objection to direct marketing is in force for a subject, read fresh. */
  async restrictions(subjectId: string): Promise<SubjectFlags & { history: { kind: string; since: string; liftedAt: string | null; requestId: string | null }[] }> {
    const pseudonym = this.pseudonym(subjectId);
    const history = await this.#repo.restrictionHistory(pseudonym);
    const flags = flagsOf(history.filter((r) => r.lifted_at === null)).get(pseudonym) ?? NO_FLAGS;
    return { ...flags, history: history.map((r) => ({ kind: r.kind, since: r.since, liftedAt: r.lifted_at, requestId: r.request_id })) };
  }

  /** Whether a restriction of processing (Art. 18) is in force for any of these subjects, read on `executor`. */
  async restrictedIn(executor: SqlExecutor, subjectIds: readonly string[]): Promise<boolean> {
    return (await this.#repo.restrictions([...new Set(subjectIds.map((id) => this.pseudonym(id)))], executor)).some((r) => r.kind === 'restriction');
  }

  #checkIds(subjectIds: readonly string[]): string[] {
    const ids = [...new Set(subjectIds)];
    if (ids.length === 0) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'subject_id' });
    for (const id of ids) this.#checkSubject(id);
    return ids;
  }

  async #setFlag(subjectIds: readonly string[], kind: RestrictionKind, requestId: string | null, actor: Actor, action: string): Promise<void> {
    const ids = this.#checkIds(subjectIds);
    const subjects = ids.map((id) => ({ id, pseudonym: this.pseudonym(id) }));
    const set: string[] = [];
    await this.#changeFollowed(ids, () => subjects.filter((s) => set.includes(s.pseudonym)).map((s) => s.id), NO_HOLDERS, () =>
      this.#write(subjects, () => {}, async (tx, flags) => {
        set.length = 0;
        const at = new Date().toISOString();
        for (const s of subjects) {
          const current = flags.get(s.pseudonym) ?? NO_FLAGS;
          if (hasFlag(current, kind)) continue;
          await this.#repo.insertRestriction(tx, restrictionRow(s.pseudonym, kind, requestId, at, actor));
          set.push(s.pseudonym);
        }
      }, undefined, () => this.#flagEvents(subjects, action, requestId, actor, (pseudonym) => ({ kind, alreadyInForce: !set.includes(pseudonym) }))),
    );
  }

  /** One audit entry per subject of a restriction or objection change (set or lifted). */
  #flagEvents(
    subjects: readonly { pseudonym: string }[],
    action: string,
    requestId: string | null,
    actor: Actor,
    details: (pseudonym: string) => Record<string, string | number | boolean>,
  ): AuditEvent[] {
    return subjects.map((s) => ({
      actor: actor.id,
      role: actor.role,
      action,
      purpose: 'essential.legal_obligation',
      subject: s.pseudonym,
      resource: requestId === null ? null : `rights_request:${requestId}`,
      details: details(s.pseudonym),
    }));
  }

  async #liftFlag(subjectIds: readonly string[], kind: RestrictionKind, requestId: string | null, actor: Actor, action: string): Promise<void> {
    const ids = this.#checkIds(subjectIds);
    const subjects = ids.map((id) => ({ id, pseudonym: this.pseudonym(id) }));
    const lifted = new Map<string, number>();
    await this.#locked(ids, () =>
      this.#write(subjects, () => {}, async (tx) => {
        const at = new Date().toISOString();
        for (const s of subjects) lifted.set(s.pseudonym, await this.#repo.liftRestriction(tx, s.pseudonym, kind, at, actor.id));
        if ([...lifted.values()].every((n) => n === 0)) throw new CandorError('CONSENT_RESTRICTION_NOT_FOUND', { kind });
      }, undefined, () => this.#flagEvents(subjects, action, requestId, actor, (pseudonym) => ({ kind, lifted: lifted.get(pseudonym) ?? 0 }))),
    );
  }

  /**
   * Writes `expired` entries for consents given more than expiryMonths ago (decide() already treats them as
   * expired). Idempotent: an expired consent is not current-given any more. Returns the number of entries written.
   */
  async expireDue(now: Date = new Date()): Promise<number> {
    const nowMs = now.getTime();
    // Calendar months differ in length: fetch with a few days' margin, then check each exactly.
    const cutoff = new Date(addMonths(nowMs, -this.#expiryMonths) + 4 * 86_400_000).toISOString();
    const expired = new Map<string, number>();
    let after: { at: string; subject: string; purpose: string } | undefined;
    for (;;) {
      const page = await this.#repo.givenBefore(cutoff, after, EXPIRY_PAGE);
      const last = page.at(-1);
      if (!last) break;
      after = { at: last.at, subject: last.subject, purpose: last.purpose };
      const due = page.filter((row) => addMonths(Date.parse(row.at), this.#expiryMonths) <= nowMs);
      if (due.length > 0) {
        const ids = new Map(due.map((row) => [`${row.subject}\0${row.purpose}`, row.entry_id]));
        const pseudonyms = [...new Set(due.map((row) => row.subject))];
        const { entries, states, epoch } = await this.#write(
          pseudonyms.map((pseudonym) => ({ id: null, pseudonym })),
          (states, add) => {
            // Each person's expiry is a change of their consent like any other, with its own signed receipts, which their
            // consent history names: one per notice version and jurisdiction the expired consents were given under.
            const receiptFor = receiptPerGroup();
            for (const [pseudonym, current] of states) {
              for (const [purpose, entry] of current) {
                // Only the very entry found due: a consent given again meanwhile is left alone.
                if (ids.get(`${pseudonym}\0${purpose}`) !== entry.entryId) continue;
                const fields = { subject: pseudonym, purpose, state: 'expired', basis: entry.basis, mechanism: 'expiry', noticeVersion: entry.noticeVersion, jurisdiction: entry.jurisdiction, source: null } as const;
                add({ ...fields, receiptId: receiptFor(fields) });
              }
            }
          },
          undefined,
          async (tx, written) => {
            await this.#signPerReceipt(tx, written, 'expiry');
          },
          (_tx, written) => {
            const counts = new Map<string, number>();
            for (const e of written) counts.set(e.subject, (counts.get(e.subject) ?? 0) + 1);
            return [...counts].map(([subject, count]) => ({
              actor: SYSTEM_ACTOR.id,
              role: SYSTEM_ACTOR.role,
              action: 'consent.expire',
              purpose: 'essential.legal_obligation',
              subject,
              resource: null,
              details: { entries: count, expiryMonths: this.#expiryMonths },
            }));
          },
        );
        for (const e of entries) expired.set(e.subject, (expired.get(e.subject) ?? 0) + 1);
        this.#updateCached(states, epoch);
      }
      if (page.length < EXPIRY_PAGE) break;
    }
    let total = 0;
    for (const count of expired.values()) total += count;
    return total;
  }

  /** Updates cached subjects known only by pseudonym, unless a later change through this instance cached them since. */
  #updateCached(states: ReadonlyMap<string, Map<string, Current>>, epoch: number): void {
    const updates: [string, SubjectState][] = [];
    for (const [id, state] of this.#cache.entries()) {
      const purposes = states.get(state.pseudonym);
      if (purposes && state.freshAsOf < epoch) updates.push([id, { pseudonym: state.pseudonym, purposes, flags: state.flags, freshAsOf: epoch, loadedAt: Date.now() }]);
    }
    for (const [id, state] of updates) this.#cache.set(id, state);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Receipts

  /**
   * Retires the receipt signing key and makes a new one active, audited (`crypto.signing_key.rotate`) in the
   * transaction that does it. This instance signs with the new key at once, other processes from their next
   * refreshConfigurationIfChanged() (a running server: within about a second); the retired key stays in the JWKS.
   */
  rotateReceiptKey(actor: Actor): Promise<{ kid: string; retired: string[] }> {
    return this.#signer.rotate(actor);
  }

  /** The public keys receipts are signed with (JWKS). */
  jwks(): Promise<{ keys: PublicJwk[] }> {
    return this.#signer.jwks();
  }

  /** Verifies a receipt against the published keys and returns its payload; CONSENT_RECEIPT_INVALID otherwise. */
  verifyReceipt(jws: string): Promise<JWTPayload> {
    return this.#signer.verify(jws);
  }

  /**
   * A stored receipt that concerns one of the subjects (profile ids of one person); CONSENT_RECEIPT_NOT_FOUND
   * otherwise, so that a receipt of someone else cannot be told from one that does not exist.
   */
  async receipt(receiptId: string, subjectIds: readonly string[]): Promise<StoredReceipt> {
    const row = typeof receiptId === 'string' && receiptId.length <= 100 ? await this.#repo.receipt(receiptId) : undefined;
    const concerned = row === undefined ? [] : (JSON.parse(row.subjects) as string[]);
    const mine = new Set(subjectIds.map((id) => this.pseudonym(id)));
    if (row === undefined || !concerned.some((p) => mine.has(p))) throw new CandorError('CONSENT_RECEIPT_NOT_FOUND');
    return { receiptId: row.id, receipt: row.jws, subject: row.subject, subjects: concerned, mechanism: row.mechanism as ConsentMechanism, at: row.at };
  }

  /** Signs a receipt and stores it in the transaction that wrote its entries. */
  async #sign(tx: SqlExecutor, input: {
    receiptId: string;
    principal: string;
    linked: readonly string[];
    jurisdiction: string | null;
    mechanism: ConsentMechanism;
    source: string | null;
    notice: Notice | undefined;
    entries: readonly LedgerEntry[];
  }): Promise<string> {
    const at = new Date(input.entries.at(-1)?.at ?? Date.now());
    const items: ReceiptItem[] = input.entries.map((entry) => {
      const categories = (entry.noticeVersion === null ? undefined : this.#notices.get(entry.noticeVersion))?.purposes.find((p) => p.purpose === entry.purpose)?.categories ?? [];
      const sensitiveCategories = categories.filter((key) => {
        const category = this.#taxonomy.dataCategory(key);
        return category !== undefined && (category.specialCategory !== null || category.sensitivePersonalInformation);
      });
      return { entry, purpose: this.#purposeConfigs.get(entry.purpose), categories, sensitiveCategories };
    });
    const payload = receiptPayload({
      receiptId: input.receiptId,
      at,
      principal: input.principal,
      linkedPrincipals: input.linked,
      controller: this.#controller,
      controllerContact: this.#controllerContact,
      policyUrl: this.#policyUrl,
      jurisdiction: input.jurisdiction,
      mechanism: input.mechanism,
      source: input.source,
      notice: input.notice ? { version: input.notice.version, hash: input.notice.hash } : null,
      expiryMonths: this.#expiryMonths,
      items,
    });
    const { jws, kid } = await this.#signer.sign(payload, input.receiptId, input.principal, at);
    await this.#repo.insertReceipt(tx, {
      id: input.receiptId,
      subject: input.principal,
      subjects: JSON.stringify([input.principal, ...input.linked.filter((p) => p !== input.principal)]),
      mechanism: input.mechanism,
      kid,
      jws,
      at: at.toISOString(),
    });
    return jws;
  }

  /**
   * Signs and stores a receipt for each receipt id of the entries (see receiptPerGroup), naming their subject, notice
   * version, jurisdiction and `source` (the entries' own); answered in the order of each receipt's first entry.
   */
  async #signPerReceipt(tx: SqlExecutor, entries: readonly LedgerEntry[], mechanism: ConsentMechanism, source: string | null = null): Promise<Receipt[]> {
    const out: Receipt[] = [];
    for (const [receiptId, list] of byReceipt(entries)) {
      const first = list[0] as LedgerEntry;
      const notice = first.noticeVersion === null ? undefined : this.#notices.get(first.noticeVersion);
      out.push({ receiptId, receipt: await this.#sign(tx, { receiptId, principal: first.subject, linked: [], jurisdiction: first.jurisdiction, mechanism, source, notice, entries: list }) });
    }
    return out;
  }

  #auditEvent(actor: Actor, action: string, subject: string, entries: readonly LedgerEntry[], receiptId: string, extra: Record<string, string | number | boolean>): AuditEvent {
    const purposes = [...new Set(entries.map((e) => e.purpose))];
    return {
      actor: actor.id,
      role: actor.role,
      action,
      purpose: purposes.length === 1 ? (purposes[0] as string) : 'essential.legal_obligation',
      subject,
      resource: `consent_receipt:${receiptId}`,
      details: { receiptId, entries: entries.length, ...extra },
    };
  }
}
