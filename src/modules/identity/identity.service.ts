import type { Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import { GroupCommit } from '../../shared/group-commit.ts';
import { makeRoom } from '../../shared/make-room.ts';
import { Freshness, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { DataSubject, FieldPlanLookup, IdentifierPseudonym, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import { CanonicalCache } from './identity.cache.ts';
import { PendingPropagation, type PendingEntry, type PendingSource } from './identity.pending.ts';
import { IdentityRepo, type MergeRow, type Pair, type PendingMergeRow, type PendingUnmergeRow } from './identity.repo.ts';
import { asStored, BatchResolution, keyOf, type MergeRecord, type PreparedIdentifier, type PreparedItem, type Resolution } from './identity.resolve.ts';
import { CompiledRules, DEFAULT_IDENTITY_RULES, type Identifier, type IdentityRules } from './identity.rules.ts';
import { IdentitySubjectData } from './identity.subject-data.ts';

/** One event (or row) to resolve: its identifiers, where it came from and when it happened. */
export interface ResolveItem {
  identifiers: readonly Identifier[];
  source: string;
  messageId?: string;
  at: string;
}

/** A merge with its provenance: when, which identifier of which message triggered it, and whether it was undone. */
export interface MergeRecordWithProvenance extends MergeRecord {
  at: string;
  triggerType: string;
  triggerHash: string;
  source: string;
  messageId: string | null;
  undoneAt: string | null;
}

/** An identifier as stored: its type and keyed pseudonym, never its value. */
export interface IdentifierView {
  type: string;
  valueHash: string;
  profileId: string;
  firstSeenAt: string;
  source: string;
}

export type MergeListener = (merge: MergeRecord) => Promise<void>;
/** Run inside the transaction that merges profiles, with the members of each person it made (canonical first). */
export type MergedInListener = (tx: SqlExecutor, persons: readonly (readonly string[])[]) => Promise<void>;

export interface IdentityDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  rules?: IdentityRules;
}

const CACHE_ENTRIES = 100_000;
const CACHE_TTL_MS = 60_000;
const HASH_CACHE_ENTRIES = 100_000;
/** Up to this many suppressed identifiers are kept in memory (SQLite); a longer list is queried per batch. */
const SUPPRESSED_IN_MEMORY = 200_000;
const PREPARED_CACHE_ENTRIES = 100_000;
/** Most people resolved in one transaction by resolveSubject. */
const SUBJECTS_PER_GROUP = 256;
/** Up to this many merges whose listeners failed are retried by this process at its next notifyMerges (all at the next start). */
const RETRY_ENTRIES = 10_000;
/** Pending merges read per page when they are applied at start. */
const PENDING_PAGE = 500;
/** How long a pending propagation another process committed is left to that process before retryPending runs it too. */
const RETRY_GRACE_MS = 1000;
/** A raw identifier that normalization rejects (unknown type, malformed or blocked value). */
const BLOCKED = Symbol('blocked');

/** Whether a prepared identifier with this key is listed (an item carries a handful: a scan beats a Set). */
function hasKey(ids: readonly PreparedIdentifier[], key: string): boolean {
  for (const id of ids) if (id.key === key) return true;
  return false;
}

/**
 * A pending merge as its listeners hear it when replayed: `into` is the canonical profile that holds the merged-away
 * profile now, since a later merge may have moved both (the consent of the merged-away person must reach the
 * profile that is decided on).
 */
function replayed(row: PendingMergeRow): MergeRecord {
  const into = row.holder !== null && row.holder !== row.from_profile ? row.holder : row.into_profile;
  return { mergeId: row.id, from: row.from_profile, into, rule: row.rule };
}

/** What a pending merge binds meanwhile: the profile holding the merged-away one now, by the merged-away one's opt-outs. */
function pendingMerge(merge: MergeRecord): PendingEntry {
  return { key: `merge:${merge.mergeId}`, subject: merge.into, sources: [{ profileId: merge.from }] };
}

/** What a pending unmerge binds meanwhile: the split-out side, by what its other side recorded while they were one person. */
function pendingUnmerge(unmerge: MergeRecord): PendingEntry {
  const joined = unmerge.joined ?? [{ profile: unmerge.into, since: unmerge.at ?? '' }];
  return { key: `unmerge:${unmerge.mergeId}`, subject: unmerge.from, sources: joined.map((j) => ({ profileId: j.profile, since: j.since })) };
}

/** A pending unmerge as its listeners hear it when run again: both sides' canonical profiles now. */
function unmergeReplayed(row: PendingUnmergeRow): MergeRecord {
  return { mergeId: row.id, from: row.from_canonical as string, into: row.into_canonical as string, rule: row.rule, at: row.at };
}

/**
 * Each Identity's merges and unmerges committed whose listeners have not all run (see pendingSourcesOf), kept outside
 * the class: members added to a class like it broke started processes whose modules came from Node's compile cache
 * ("Receiver must be class #…").
 */
const propagations = new WeakMap<Identity, PendingPropagation>();

function propagationOf(identity: Identity): PendingPropagation {
  return propagations.get(identity) as PendingPropagation;
}

/** Every pending propagation stored: each merge not applied and not undone, each unmerge not applied (with two sides). */
async function storedPending(repo: IdentityRepo): Promise<PendingEntry[]> {
  const entries: PendingEntry[] = [];
  for (let after: { at: string; id: string } | null = null; ; ) {
    const page = await repo.pendingMerges(after, PENDING_PAGE);
    for (const row of page) entries.push(pendingMerge(replayed(row)));
    const last = page.at(-1);
    if (last === undefined || page.length < PENDING_PAGE) break;
    after = { at: last.at, id: last.id };
  }
  for (let after: { undoneAt: string; id: string } | null = null; ; ) {
    const page = await repo.pendingUnmerges(after, PENDING_PAGE);
    for (const row of page) {
      if (row.from_canonical !== null && row.into_canonical !== null && row.from_canonical !== row.into_canonical) entries.push(pendingUnmerge(unmergeReplayed(row)));
    }
    const last = page.at(-1);
    if (last === undefined || page.length < PENDING_PAGE) break;
    after = { undoneAt: last.undone_at, id: last.id };
  }
  return entries;
}

/**
 * Runs the onUnmerge listeners of a pending unmerge again (`run`), with both sides' canonical profiles as they are now,
 * and marks it applied when they succeed; the failure, or undefined. A side erased since, or both sides one person
 * again: nothing is left to split.
 */
async function splitAgain(row: PendingUnmergeRow, repo: IdentityRepo, propagation: PendingPropagation, run: (unmerge: MergeRecord) => Promise<unknown>): Promise<unknown> {
  if (row.from_canonical !== null && row.into_canonical !== null && row.from_canonical !== row.into_canonical) {
    const unmerge = unmergeReplayed(row);
    propagation.hold(pendingUnmerge(unmerge));
    const error = await run(unmerge);
    if (error !== undefined) return error;
  }
  await repo.markUnmergeApplied(row.id, new Date().toISOString());
  propagation.release(`unmerge:${row.id}`);
  return undefined;
}

function provenance(row: MergeRow): MergeRecordWithProvenance {
  return {
    mergeId: row.id,
    from: row.from_profile,
    into: row.into_profile,
    rule: row.rule,
    at: row.at,
    triggerType: row.trigger_type,
    triggerHash: row.trigger_hash,
    source: row.source,
    messageId: row.message_id,
    undoneAt: row.undone_at,
  };
}

/**
 * The identity graph with virtual merges: profiles are never merged physically; a merged profile points at its
 * canonical profile (kept flat), and a wrong merge can be split back out. Identifier values are stored only as
 * keyed pseudonyms. The *Batch methods run on the caller's transaction and nothing else.
 */
export class Identity {
  readonly #storage: Storage;
  readonly #audit: AuditLog;
  readonly #keyring: Keyring;
  readonly #rules: CompiledRules;
  readonly #repo: IdentityRepo;
  /**
   * Identifier → canonical profile. An entry is read again once another process (a CSV import's merges, another
   * server) may have changed the graph after it was read, as the database tells (SQLite's data_version, PostgreSQL's
   * commit notices); where that cannot be told, after CACHE_TTL_MS as before.
   */
  readonly #cache: CanonicalCache;
  readonly #graphFreshness: Freshness;
  readonly #hashes = new Map<string, string>();
  /** Raw identifier (type, value as sent) → its prepared form, or BLOCKED: skips normalization and hashing on repeats. */
  readonly #preparedIds = new Map<string, Map<string, PreparedIdentifier | typeof BLOCKED>>();
  #preparedIdCount = 0;
  /** Items prepared once per object: ingestion passes the same items to lookup, suppression check and resolution. */
  readonly #prepared = new WeakMap<ResolveItem, PreparedItem>();
  readonly #onMerge: MergeListener[] = [];
  readonly #onMergedIn: MergedInListener[] = [];
  /** The suppression list as keys (SQLite), read under freshness generation #suppressedGeneration; undefined when too long to hold. */
  #suppressed: Set<string> | undefined;
  #suppressedGeneration = -1;
  readonly #freshness: Freshness;
  readonly #onUnmerge: MergeListener[] = [];
  /** Ids of merges whose listeners failed in this process: retried, oldest first, before the next announced merges. */
  readonly #retry = new Set<string>();
  /** Requests that each name one person (resolveSubject) made while one is resolved share the next transaction. */
  readonly #subjects = new GroupCommit<ResolveItem, Resolution | null>(
    (items, handedOver) => {
      // Nothing is handed to another thread: the group before is answered as soon as this one starts.
      handedOver();
      return this.#resolveSubjects(items);
    },
    { maxItems: SUBJECTS_PER_GROUP },
  );

  private constructor(deps: IdentityDeps) {
    this.#storage = deps.storage;
    this.#audit = deps.audit;
    this.#keyring = deps.keyring;
    this.#rules = new CompiledRules(deps.rules ?? DEFAULT_IDENTITY_RULES);
    this.#repo = new IdentityRepo(deps.storage);
    propagations.set(this, new PendingPropagation(deps.storage));
    // It governs the suppression list held in memory: read again after another process changed that table.
    this.#freshness = new Freshness(deps.storage, ['identity_suppressed']);
    // A cached identifier changes owner only through a merge or an unmerge, which both write identity_merges, or is
    // gone after an erasure, which writes identity_suppressed; new visitors (profiles and identifiers another server
    // inserts all the time) leave every cached entry as it was.
    this.#graphFreshness = new Freshness(deps.storage, ['identity_merges', 'identity_suppressed']);
    const graph = this.#graphFreshness;
    this.#cache = new CanonicalCache(CACHE_ENTRIES, (at, now) => graph.due(at, now, graph.tracked ? 0 : CACHE_TTL_MS, CACHE_TTL_MS));
  }

  /** Opens the identity graph with the given merge rules (DEFAULT_IDENTITY_RULES otherwise). */
  static async open(deps: IdentityDeps): Promise<Identity> {
    return new Identity(deps);
  }

  /** The merge rules in force. */
  /** Rank of an identifier type in the priority order: 0 is strongest (the configured rules). */
  rank(type: string): number {
    return this.#rules.rank(type);
  }

  /** How many identifiers of a type one canonical profile may hold (the configured rules). */
  limit(type: string): number {
    return this.#rules.limit(type);
  }

  get rules(): IdentityRules {
    return this.#rules.rules;
  }

  /** The normalized identifier, or undefined when its type is unknown or its value malformed or blocked. */
  normalize(id: Identifier): Identifier | undefined {
    return this.#rules.normalize(id);
  }

  /**
   * The pseudonyms an identifier may be stored under: its normalized form's and, for a phone number a release before
   * libphonenumber stored in another (legacy) form, that form's; the legacy form alone for a number libphonenumber
   * refuses but those releases took. Empty when the identifier is invalid or blocked. For checking that a person holds
   * an identifier (a rights request's second identifier).
   */
  pseudonymsOf(id: Identifier): IdentifierPseudonym[] {
    const prepared = this.#prepareId(id);
    if (prepared === BLOCKED || !prepared.matchable) return [];
    const forms = prepared.legacy?.matchable ? [prepared, prepared.legacy] : [prepared];
    return forms.map((form) => ({ type: form.type, valueHash: form.hash }));
  }

  /** The keyed pseudonym stored for an identifier: keyring.pseudonym(type, normalized value). */
  hash(id: Identifier): string {
    const normalized = this.#rules.normalize(id);
    if (!normalized) throw new CandorError('IDENTITY_IDENTIFIER_INVALID', { type: id.type });
    return this.#hashNormalized(normalized.type, normalized.value);
  }

  #hashNormalized(type: string, value: string): string {
    const cacheKey = `${type}\u0000${value}`;
    let hash = this.#hashes.get(cacheKey);
    if (hash === undefined) {
      hash = this.#keyring.pseudonym(type, value);
      makeRoom(this.#hashes, HASH_CACHE_ENTRIES);
      this.#hashes.set(cacheKey, hash);
    }
    return hash;
  }

  /** An identifier's prepared form from its normalized form. */
  #preparedFrom(normalized: Identifier, legacy: PreparedIdentifier | undefined, legacyOnly = false, matchable = true): PreparedIdentifier {
    const hash = this.#hashNormalized(normalized.type, normalized.value);
    return { type: normalized.type, hash, key: keyOf(normalized.type, hash), rank: this.#rules.rank(normalized.type), legacy, legacyOnly, matchable };
  }

  /**
   * The normalized type, pseudonym, key and rank of a raw identifier (shared, never mutated), with a phone number's
   * legacy form where it differs; or, for a number only the legacy normalization takes, that form (`legacyOnly`); or
   * BLOCKED.
   */
  #prepareId(raw: Identifier): PreparedIdentifier | typeof BLOCKED {
    // Keyed by type, then value: no concatenated key per look-up. Values that are not strings are not cached.
    let byValue = this.#preparedIds.get(raw.type);
    const cached = typeof raw.value === 'string' ? byValue?.get(raw.value) : undefined;
    if (cached !== undefined) return cached;
    const normalized = this.#rules.normalize(raw);
    // Computed once per raw value, and for phone numbers only.
    const legacyForm = raw.type === 'phone' ? this.#rules.legacy(raw, normalized) : undefined;
    const legacy = legacyForm && this.#preparedFrom(legacyForm.id, undefined, normalized === undefined, legacyForm.matchable);
    let prepared: PreparedIdentifier | typeof BLOCKED = BLOCKED;
    if (normalized) prepared = this.#preparedFrom(normalized, legacy);
    else if (legacy) prepared = legacy;
    if (typeof raw.value !== 'string') return prepared;
    if (this.#preparedIdCount >= PREPARED_CACHE_ENTRIES) {
      this.#preparedIds.clear();
      this.#preparedIdCount = 0;
      byValue = undefined;
    }
    if (byValue === undefined) this.#preparedIds.set(raw.type, (byValue = new Map()));
    byValue.set(raw.value, prepared);
    this.#preparedIdCount++;
    return prepared;
  }

  #prepare(item: ResolveItem): PreparedItem {
    const known = this.#prepared.get(item);
    if (known) return known;
    const ids: PreparedIdentifier[] = [];
    const suppressedOnly: PreparedIdentifier[] = [];
    const suppressedUnlessStored: PreparedItem['suppressedUnlessStored'] = [];
    const legacyOnly: PreparedIdentifier[] = [];
    const ignored: PreparedItem['ignored'] = [];
    for (const raw of item.identifiers) {
      if (raw.alsoSuppressedAs !== undefined) {
        const also = this.#prepareId({ type: raw.alsoSuppressedAs, value: raw.value });
        if (also !== BLOCKED) suppressedOnly.push(also);
        if (also !== BLOCKED && also.legacy !== undefined) suppressedOnly.push(also.legacy);
      }
      const id = this.#prepareId(raw);
      if (id === BLOCKED) {
        ignored.push({ type: raw.type, reason: 'blocked' });
        // A number written with an extension or a label links no one, but an erased number in it suppresses the item.
        for (const within of this.#rules.phonesWithin(raw)) {
          const number = this.#prepareId(within);
          if (number === BLOCKED) continue;
          suppressedOnly.push(number);
          if (number.legacy?.matchable) suppressedOnly.push(number.legacy);
          else if (number.legacy !== undefined) suppressedUnlessStored.push({ own: number, legacy: number.legacy });
        }
        continue;
      }
      // An erasure by a release before libphonenumber suppressed the number in its legacy form.
      if (id.legacyOnly) {
        suppressedOnly.push(id);
        if (!id.matchable) ignored.push({ type: raw.type, reason: 'blocked' });
        else if (!hasKey(legacyOnly, id.key)) legacyOnly.push(id);
        continue;
      }
      // A legacy form that is a valid E.164 number may be someone else's: it suppresses a number stored for nobody only.
      if (id.legacy?.matchable) suppressedOnly.push(id.legacy);
      else if (id.legacy !== undefined) suppressedUnlessStored.push({ own: id, legacy: id.legacy });
      if (!hasKey(ids, id.key)) ids.push(id);
    }
    // Strongest first, ties in arrival order: an insertion sort, as items carry a few identifiers and
    // Array.prototype.sort allocates on every call (this runs once per event).
    for (let i = 1; i < ids.length; i++) {
      const id = ids[i] as PreparedIdentifier;
      let j = i - 1;
      while (j >= 0 && (ids[j] as PreparedIdentifier).rank > id.rank) {
        ids[j + 1] = ids[j] as PreparedIdentifier;
        j--;
      }
      ids[j + 1] = id;
    }
    const prepared = { ids, suppressedOnly, suppressedUnlessStored, legacyOnly, ignored, source: item.source, messageId: item.messageId, at: item.at };
    this.#prepared.set(item, prepared);
    return prepared;
  }

  /**
   * The canonical profile of each item as far as the graph knows it (that of its strongest known identifier), or
   * null. Creates nothing. Run outside a transaction (tx = storage.raw), what it reads also warms the cache. With
   * `strongestOnly`, only an item whose strongest identifier is known has one: the profile its data is written to
   * (a weaker identifier's profile may not be, such as one holding another user id). With `holders`, the profile that
   * holds that identifier instead (the canonical one, or one merged into it: a device's own profile).
   */
  async lookupBatch(tx: SqlExecutor, items: readonly ResolveItem[], options: { strongestOnly?: boolean; holders?: boolean } = {}): Promise<(string | null)[]> {
    const prepared = items.map((item) => this.#prepare(item));
    const found = new Map<string, string>();
    const held = new Map<string, string>();
    const missing = new Map<string, Pair>();
    const now = Date.now();
    this.#graphFreshness.check(now);
    /** Whether the identifier is cached (else it is looked up). */
    const seek = (id: PreparedIdentifier): boolean => {
      const cached = this.#cache.get(id.key, now);
      const holder = options.holders && cached !== undefined ? this.#cache.holder(id.key) : undefined;
      // Asked for holders, one the cache does not know is read with the rest.
      if (cached === undefined || (options.holders && holder === undefined)) missing.set(id.key, [id.type, id.hash]);
      else {
        found.set(id.key, cached);
        if (holder !== undefined) held.set(id.key, holder);
      }
      return cached !== undefined;
    };
    for (const item of prepared) {
      // A legacy form matters only where the identifier's own form is not stored.
      for (const id of item.ids) if (!seek(id) && id.legacy?.matchable) seek(id.legacy);
      for (const id of item.legacyOnly) seek(id);
    }
    if (missing.size > 0) {
      const generation = this.#cache.generation;
      const rows = await this.#repo.owners(tx, [...missing.values()]);
      const entries = rows.map((row) => [keyOf(row.type, row.value_hash), row.canonical, row.profile_id] as const);
      for (const [key, canonical, holder] of entries) {
        found.set(key, canonical);
        if (options.holders) held.set(key, holder);
      }
      // Only reads outside any transaction are known to be committed.
      if (tx === this.#storage.raw) this.#cache.fill(entries, generation);
    }
    return prepared.map((item) => {
      for (const id of asStored(item, (key) => found.has(key)).ids) {
        const canonical = found.get(id.key);
        if (canonical !== undefined) return options.holders ? (held.get(id.key) ?? canonical) : canonical;
        if (options.strongestOnly) return null;
      }
      return null;
    });
  }

  /**
   * For each item, every profile one of its identifiers belongs to (a device's anonymous id may be another person's
   * than the user id beside it). Creates nothing; one query for all items.
   */
  async ownersOf(tx: SqlExecutor, items: readonly ResolveItem[]): Promise<Set<string>[]> {
    const owners = await this.lookupBatch(tx, items.flatMap((item) => item.identifiers.map((id) => ({ ...item, identifiers: [id] }))));
    let next = 0;
    return items.map((item) => {
      const found = new Set<string>();
      for (let i = 0; i < item.identifiers.length; i++) {
        const owner = owners[next++];
        if (owner) found.add(owner);
      }
      return found;
    });
  }

  /** Each item whose identifiers are all cached on one profile, resolved from the cache alone; undefined for the others. */
  #fromCache(prepared: readonly PreparedItem[]): (Resolution | undefined)[] {
    const now = Date.now();
    this.#graphFreshness.check(now);
    return prepared.map((item) => {
      let profileId: string | null = null;
      // Every identifier in its own form (its legacy form counts only where its own form is known not to be stored,
      // which the cache cannot tell), and every number only a legacy form names, cached on one profile.
      const ids = item.legacyOnly.length === 0 ? item.ids : asStored(item, () => true).ids;
      for (const id of ids) {
        const cached = this.#cache.get(id.key, now);
        if (cached === undefined || (profileId !== null && cached !== profileId)) return undefined;
        profileId = cached;
      }
      // The strongest identifier comes first: its holder is the profile the item's data is written to.
      const anchor = ids[0];
      const holder = anchor === undefined ? null : (this.#cache.holder(anchor.key) ?? profileId);
      return { profileId, holder, created: false, merges: [], ignored: [...item.ignored] };
    });
  }

  /**
   * Resolves each item to its canonical profile, creating profiles, linking identifiers and merging profiles as
   * the rules say, in item order, inside the caller's transaction `tx` only. Merges are returned, not announced:
   * after the transaction commits, the caller passes them to notifyMerges.
   *
   * An item whose identifiers are all cached on one profile (committed links) changes nothing and needs no query;
   * the others are resolved from the database. Only if they merge away a profile a cached item resolved to (or holds
   * its identifier) — which moves that item too — is the whole batch resolved from the database together.
   */
  async resolveBatch(tx: SqlExecutor, items: readonly ResolveItem[]): Promise<Resolution[]> {
    const prepared = items.map((item) => this.#prepare(item));
    const cached = this.#fromCache(prepared);
    const uncached = prepared.filter((_, i) => cached[i] === undefined);
    if (uncached.length === 0) return cached as Resolution[];
    if (uncached.length < prepared.length) {
      // A merge moves only the profile merged away (and those merged into it): a cached item on another profile stays
      // where the cache put it, whatever its place in the batch.
      const onCached = new Set<string>();
      for (const r of cached) {
        if (r?.profileId) onCached.add(r.profileId);
        if (r?.holder) onCached.add(r.holder);
      }
      const resolved = await this.#resolveStored(tx, uncached, (merges) => merges.every((m) => !onCached.has(m.from)));
      if (resolved) {
        let next = 0;
        return cached.map((r) => r ?? (resolved[next++] as Resolution));
      }
    }
    return (await this.#resolveStored(tx, prepared, () => true)) as Resolution[];
  }

  /**
   * Resolves items from the stored graph and writes what changed; undefined (nothing written) if it would merge and
   * `mayMerge` says those merges may not be made here.
   */
  async #resolveStored(tx: SqlExecutor, prepared: readonly PreparedItem[], mayMerge: (merges: readonly MergeRecord[]) => boolean): Promise<Resolution[] | undefined> {
    let batch = new BatchResolution(this.#repo, this.#rules, tx);
    await batch.load(prepared);
    let resolutions: Resolution[] = [];
    for (const item of prepared) resolutions.push(await batch.resolve(item));
    if (!batch.dirty) return resolutions;
    if (this.#storage.dialect === 'postgres') {
      // Writers are serialized; what was read before the lock may be stale, so decide again under it.
      await this.#repo.lockForWrite(tx);
      batch = new BatchResolution(this.#repo, this.#rules, tx);
      await batch.load(prepared);
      resolutions = [];
      for (const item of prepared) resolutions.push(await batch.resolve(item));
    }
    const made = resolutions.flatMap((r) => r.merges);
    if (made.length > 0 && !mayMerge(made)) return undefined;
    if (batch.losers.size > 0) this.#cache.dropProfiles(batch.losers);
    await batch.flush();
    const merges = resolutions.flatMap((r) => r.merges);
    if (merges.length > 0 && this.#onMergedIn.length > 0) {
      // A later merge of the batch may have moved an earlier one's survivor: each person by its canonical profile now.
      const canonicals = (await this.#repo.profilesIn(tx, [...new Set(merges.map((m) => m.into))])).map((r) => r.merged_into ?? r.id);
      const persons = [...(await this.membersIn(tx, canonicals)).values()];
      for (const listener of this.#onMergedIn) await listener(tx, persons);
    }
    return resolutions;
  }

  /**
   * The person one request names (a consent choice, a privacy-center sign-in), created if new, in a transaction of its
   * own that requests of the same moment share (one commit for every new visitor's banner choice of that moment
   * instead of one each; a group that fails is resolved again one request at a time). Erased people are refused with
   * COLLECT_SUBJECT_SUPPRESSED. The caller passes the resolution's merges to notifyMerges.
   */
  async resolveSubject(item: ResolveItem): Promise<Resolution> {
    const [resolution] = await this.#subjects.submit([item]);
    if (!resolution) throw new CandorError('COLLECT_SUBJECT_SUPPRESSED');
    return resolution;
  }

  /**
   * One transaction for a group of resolveSubject requests: the suppressed ones answered null, the others resolved
   * together. A request merged into another person by a later one of the group is answered that person (as it would
   * be, resolved after it): its change then lands where the merge put its device. Holds off erasures as an ingestion
   * group does (suppressedInGroup), so that none commits between its look at the person and its link.
   */
  async #resolveSubjects(items: readonly ResolveItem[]): Promise<(Resolution | null)[]> {
    return this.#storage.raw.transaction(async (tx) => {
      const suppressed = await this.suppressedInGroup(tx, items);
      let resolved = await this.resolveBatch(tx, items.filter((_, i) => !suppressed[i]));
      if (resolved.some((r) => r.merges.length > 0)) {
        const ids = [...new Set(resolved.flatMap((r) => (r.profileId === null ? [] : [r.profileId])))];
        const canonical = new Map((await this.#repo.profilesIn(tx, ids)).map((row) => [row.id, row.merged_into ?? row.id]));
        resolved = resolved.map((r) => (r.profileId === null || canonical.get(r.profileId) === r.profileId ? r : { ...r, profileId: canonical.get(r.profileId) ?? r.profileId }));
      }
      let next = 0;
      return items.map((_, i) => (suppressed[i] ? null : (resolved[next++] as Resolution)));
    });
  }

  /**
   * Announces merges after the transaction that made them has committed: drops cached lookups of the merged
   * profiles and runs every onMerge listener for every merge (all run even if one fails; the first failure is then
   * thrown). A merge is marked applied once all its listeners have succeeded; merges whose listeners failed earlier
   * in this process are retried first, and any left unapplied (a failure, a crash) at the next start.
   */
  async notifyMerges(merges: readonly MergeRecord[]): Promise<void> {
    if (merges.length === 0) return;
    this.#cache.dropProfiles(merges.map((m) => m.from));
    // Until its listeners have run, the person is decided on with the merged-away profile's opt-outs too (a later merge
    // of the same announcement may have moved its survivor).
    propagationOf(this).graphChanged();
    const intoOf = new Map(merges.map((m) => [m.from, m.into]));
    for (const merge of merges) {
      let into = merge.into;
      for (let next = intoOf.get(into), steps = 0; next !== undefined && steps < merges.length; next = intoOf.get(into), steps++) into = next;
      propagationOf(this).hold(pendingMerge({ ...merge, into }));
    }
    let failure: unknown;
    if (this.#retry.size > 0) {
      try {
        const retried = [...this.#retry];
        const pending = await this.#repo.pendingAmong(retried);
        // Those not pending were applied elsewhere, undone or erased since: nothing left to retry.
        const left = new Set(pending.map((row) => row.id));
        for (const id of retried) {
          this.#retry.delete(id);
          if (!left.has(id)) propagationOf(this).release(`merge:${id}`);
        }
        failure = (await this.#apply(pending.map(replayed))).failures[0]?.error;
      } catch (error) {
        failure = error;
      }
    }
    const { failures } = await this.#apply(merges);
    failure ??= failures[0]?.error;
    if (failure !== undefined) throw failure;
  }

  /**
   * Runs the onMerge listeners of every merge not yet applied and not undone (committed, but its listeners failed
   * or the process stopped before they ran), oldest first, and marks those that succeed. Run at start; returns what
   * it applied and the merges whose listeners failed again (left for the next start).
   */
  async applyPendingMerges(): Promise<{ applied: number; failed: { mergeId: string; error: unknown }[] }> {
    let applied = 0;
    const failed: { mergeId: string; error: unknown }[] = [];
    let after: { at: string; id: string } | null = null;
    for (;;) {
      const page = await this.#repo.pendingMerges(after, PENDING_PAGE);
      if (page.length === 0) break;
      this.#cache.dropProfiles(page.map((row) => row.from_profile));
      const result = await this.#apply(page.map(replayed));
      applied += result.applied;
      failed.push(...result.failures);
      const last = page[page.length - 1] as PendingMergeRow;
      after = { at: last.at, id: last.id };
    }
    return { applied, failed };
  }

  /**
   * Runs the onUnmerge listeners of every unmerge whose listeners did not all run (a failure, or the process stopped
   * first), in the order they were undone, with both sides' canonical profiles as they are now, and marks those that
   * succeed. Run at start.
   */
  async applyPendingUnmerges(): Promise<{ applied: number; failed: { mergeId: string; error: unknown }[] }> {
    let applied = 0;
    const failed: { mergeId: string; error: unknown }[] = [];
    let after: { undoneAt: string; id: string } | null = null;
    for (;;) {
      const page = await this.#repo.pendingUnmerges(after, PENDING_PAGE);
      const last = page.at(-1);
      if (last === undefined) break;
      after = { undoneAt: last.undone_at, id: last.id };
      for (const row of page) {
        const error = await splitAgain(row, this.#repo, propagationOf(this), (unmerge) => this.#runOne(this.#onUnmerge, unmerge));
        if (error === undefined) applied++;
        else failed.push({ mergeId: row.id, error });
      }
    }
    return { applied, failed };
  }

  /**
   * The profiles whose opt-outs bind a canonical profile now because a merge or unmerge between them committed and its
   * consent propagation has not run yet (it failed, or is running): a merge's merged-away profile (all its opt-outs) for
   * the survivor, an unmerge's other side (what it recorded from `since` on, while they were one person) for the
   * split-out profile. Undefined for none. Includes other processes' as of the last refreshPending. Synchronous, from
   * memory (the consent service asks it for every decision; nothing pending: one Map size check).
   */
  pendingSourcesOf(profileId: string): readonly PendingSource[] | undefined {
    return propagationOf(this).sourcesOf(profileId);
  }

  /** Moves whenever pendingSourcesOf may answer otherwise. */
  get pendingVersion(): number {
    return propagationOf(this).version;
  }

  /** pendingSourcesOf, pendingVersion and refreshPending for the consent service (Consent.gatePendingMerges). */
  pendingMerges(): { sourcesOf(profileId: string): readonly PendingSource[] | undefined; version(): number; refresh(): Promise<void> | undefined } {
    const propagation = propagationOf(this);
    const repo = this.#repo;
    return { sourcesOf: (profileId) => propagation.sourcesOf(profileId), version: () => propagation.version, refresh: () => propagation.refresh(() => storedPending(repo)) };
  }

  /**
   * Reads the pending propagations stored (every merge not applied and not undone, every unmerge not applied) again
   * when another process wrote identity_merges since the last read, or this process moved the graph while some were
   * pending; undefined (no query) otherwise. The consent service calls it before it loads states.
   */
  refreshPending(): Promise<void> | undefined {
    const repo = this.#repo;
    return propagationOf(this).refresh(() => storedPending(repo));
  }

  /**
   * Runs the listeners of every pending merge and unmerge again (applyPendingMerges, applyPendingUnmerges) when one
   * has been known here for `graceMs` (default RETRY_GRACE_MS: another process's is left to it for that long); nothing
   * (no query, unless another process wrote) otherwise. After a retry that failed, the next waits longer (1 s doubling
   * up to a minute). A running server calls it every second.
   */
  async retryPending(options: { graceMs?: number } = {}): Promise<{ applied: number; failed: { mergeId: string; error: unknown }[] }> {
    await this.refreshPending();
    if (!propagationOf(this).retryDue(options.graceMs ?? RETRY_GRACE_MS)) return { applied: 0, failed: [] };
    let failed = true;
    try {
      const merges = await this.applyPendingMerges();
      const unmerges = await this.applyPendingUnmerges();
      failed = merges.failed.length + unmerges.failed.length > 0;
      return { applied: merges.applied + unmerges.applied, failed: [...merges.failed, ...unmerges.failed] };
    } finally {
      propagationOf(this).retried(failed);
      // One held here may be gone from the database (erased, undone elsewhere): the list is read again.
      propagationOf(this).readAgain();
    }
  }

  /** Runs every onMerge listener for each merge in order and marks the merges all of whose listeners succeeded. */
  async #apply(merges: readonly MergeRecord[]): Promise<{ applied: number; failures: { mergeId: string; error: unknown }[] }> {
    const done: string[] = [];
    const failures: { mergeId: string; error: unknown }[] = [];
    for (const merge of merges) {
      const error = await this.#runOne(this.#onMerge, merge);
      if (error === undefined) {
        done.push(merge.mergeId);
        this.#retry.delete(merge.mergeId);
      } else {
        // Held until its listeners succeed (notifyMerges held it already, on the person's canonical profile).
        propagationOf(this).hold(pendingMerge(merge), { unlessHeld: true });
        failures.push({ mergeId: merge.mergeId, error });
        if (this.#retry.size < RETRY_ENTRIES) this.#retry.add(merge.mergeId);
      }
    }
    if (done.length > 0) await this.#repo.markApplied(done, new Date().toISOString());
    for (const mergeId of done) propagationOf(this).release(`merge:${mergeId}`);
    return { applied: done.length, failures };
  }

  /** Runs every listener for one merge (all run even if one fails); the first failure, or undefined. */
  async #runOne(listeners: readonly MergeListener[], merge: MergeRecord): Promise<unknown> {
    let failure: unknown;
    for (const listener of listeners) {
      try {
        await listener(merge);
      } catch (error) {
        failure ??= error;
      }
    }
    return failure;
  }

  /**
   * Whether any identifier of each item is on the suppression list: from memory while no other process has written
   * (the list is read whole, up to SUPPRESSED_IN_MEMORY identifiers), otherwise one query for the batch.
   */
  async isSuppressedBatch(tx: SqlExecutor, items: readonly ResolveItem[]): Promise<boolean[]> {
    const prepared = items.map((item) => this.#prepare(item));
    const inMemory = await this.#suppressedList(tx);
    if (inMemory) return this.#suppressedItems(tx, prepared, inMemory);
    return this.#suppressedInDatabase(tx, prepared);
  }

  /** Which of these items carry an identifier on the suppression list, as the database says in `tx`. */
  async #suppressedInDatabase(tx: SqlExecutor, prepared: readonly PreparedItem[]): Promise<boolean[]> {
    const pairs = new Map<string, Pair>();
    for (const item of prepared) {
      for (const id of [...item.ids, ...item.suppressedOnly]) pairs.set(id.key, [id.type, id.hash]);
      for (const { legacy } of item.suppressedUnlessStored) pairs.set(legacy.key, [legacy.type, legacy.hash]);
    }
    const suppressed = new Set((await this.#repo.suppressedAmong(tx, [...pairs.values()])).map(([type, hash]) => keyOf(type, hash)));
    return this.#suppressedItems(tx, prepared, suppressed);
  }

  /**
   * Which items the suppression list (`suppressed`, keys) names: an identifier of theirs, or the legacy form of a phone
   * number whose own form is stored for nobody (in `tx`; read only for the rare number whose such form is suppressed).
   */
  async #suppressedItems(tx: SqlExecutor, prepared: readonly PreparedItem[], suppressed: ReadonlySet<string>): Promise<boolean[]> {
    const result = prepared.map((item) => item.ids.some((id) => suppressed.has(id.key)) || item.suppressedOnly.some((id) => suppressed.has(id.key)));
    const unknown = new Map<string, Pair>();
    const now = Date.now();
    prepared.forEach((item, i) => {
      if (result[i]) return;
      for (const { own, legacy } of item.suppressedUnlessStored) {
        // A number cached as stored is stored still (its erasure would have suppressed its own form).
        if (suppressed.has(legacy.key) && this.#cache.get(own.key, now) === undefined) unknown.set(own.key, [own.type, own.hash]);
      }
    });
    if (unknown.size === 0) return result;
    const stored = new Set((await this.#repo.owners(tx, [...unknown.values()])).map((row) => keyOf(row.type, row.value_hash)));
    return prepared.map((item, i) => result[i] || item.suppressedUnlessStored.some(({ own, legacy }) => suppressed.has(legacy.key) && unknown.has(own.key) && !stored.has(own.key)));
  }

  /** The suppression list in memory (keys), read again whenever another process has written; undefined while that cannot be told (PostgreSQL without commit notices) or when too long. */
  async #suppressedList(tx: SqlExecutor): Promise<Set<string> | undefined> {
    this.#freshness.check();
    if (!this.#freshness.tracked) return undefined;
    // Read again only when another connection may have written since (a list too long to hold stays unread then too).
    const generation = this.#freshness.generation;
    if (generation === this.#suppressedGeneration) return this.#suppressed;
    const rows = await this.#repo.suppressedAll(tx, SUPPRESSED_IN_MEMORY);
    this.#suppressedGeneration = generation;
    this.#suppressed = rows && new Set(rows.map(([type, hash]) => keyOf(type, hash)));
    return this.#suppressed;
  }

  /**
   * Inside an ingestion group's transaction, before it resolves or stores anything: keeps erasures out until it commits
   * (PostgreSQL: the erasure lock, shared; SQLite's write lock does that already) and tells which items an erasure
   * committed since their request was checked has suppressed. PostgreSQL reads the list itself (another server's erasure
   * may not have been heard of yet); SQLite's list in memory is current (this process adds to it before an erasure
   * commits, and another process's commit is seen at the next check).
   */
  async suppressedInGroup(tx: SqlExecutor, items: readonly ResolveItem[]): Promise<boolean[]> {
    if (this.#storage.dialect !== 'postgres') return this.isSuppressedBatch(tx, items);
    await this.#repo.lockAgainstErasure(tx, false);
    return this.#suppressedInDatabase(tx, items.map((item) => this.#prepare(item)));
  }

  /**
   * After suppressedInGroup and resolution, in the same transaction: the resolved profiles deleted since this process
   * resolved them or its cache named them — by an erasure of another process (PostgreSQL), or by the inactivity rule,
   * which suppresses no identifier, between a group's two transactions (both databases).
   */
  async erasedProfiles(tx: SqlExecutor, profileIds: readonly string[]): Promise<Set<string>> {
    if (profileIds.length === 0) return new Set();
    const unique = [...new Set(profileIds)];
    const existing = await this.#repo.existingProfiles(tx, unique);
    const gone = new Set(unique.filter((id) => !existing.has(id)));
    if (gone.size > 0) this.#cache.dropProfiles(gone);
    return gone;
  }

  /**
   * Inside a transaction that writes a person's data outside ingestion (a rectification, a rights request), before it
   * writes: keeps erasures and the inactivity rule's deletions out until it commits (PostgreSQL: the erasure lock,
   * shared; SQLite's write lock does that already) and answers those of these profiles deleted already.
   */
  async deletedIn(tx: SqlExecutor, profileIds: readonly string[]): Promise<Set<string>> {
    await this.#repo.lockAgainstErasure(tx, false);
    return this.erasedProfiles(tx, profileIds);
  }

  /** PostgreSQL: an erasure's transaction waits for the ingestion groups in flight and keeps new ones out until it commits. */
  lockForErasure(tx: SqlExecutor): Promise<void> {
    return this.#repo.lockAgainstErasure(tx, true);
  }

  /**
   * Identifiers just suppressed (an erasure): on the in-memory list at once, and their raw and normalized values,
   * which the preparation caches hold, forgotten — an erased person's e-mail does not linger in this process.
   */
  #onSuppressed(identifiers: readonly IdentifierPseudonym[]): void {
    for (const i of identifiers) this.#suppressed?.add(keyOf(i.type, i.valueHash));
    this.forgetValues(identifiers);
  }

  /**
   * Forgets the raw and normalized values of these identifiers that the preparation caches hold (erasure does it as it
   * suppresses them; a person deleted for inactivity, whose identifiers are not suppressed, through identity's
   * afterErase): a deleted person's e-mail does not linger in this process.
   */
  forgetValues(identifiers: readonly IdentifierPseudonym[]): void {
    const gone = new Set(identifiers.map((i) => keyOf(i.type, i.valueHash)));
    if (gone.size === 0) return;
    for (const [cacheKey, hash] of this.#hashes) {
      const type = cacheKey.slice(0, cacheKey.indexOf('\u0000'));
      if (gone.has(keyOf(type, hash))) this.#hashes.delete(cacheKey);
    }
    for (const byValue of this.#preparedIds.values()) {
      for (const [value, prepared] of byValue) {
        if (prepared !== BLOCKED && (gone.has(prepared.key) || (prepared.legacy !== undefined && gone.has(prepared.legacy.key)))) {
          byValue.delete(value);
          this.#preparedIdCount--;
        }
      }
    }
  }

  /** Puts identifiers (by pseudonym) on the suppression list: events carrying any of them are dropped from then on. */
  async suppress(identifiers: readonly { type: string; valueHash: string }[], reason: string): Promise<void> {
    const at = new Date().toISOString();
    const unique = new Map(identifiers.map((i) => [keyOf(i.type, i.valueHash), { type: i.type, value_hash: i.valueHash, at, reason }]));
    await this.#repo.insertSuppressed([...unique.values()]);
    this.#onSuppressed(identifiers);
    this.#cache.dropKeys(unique.keys());
  }

  /** The canonical profile of a profile, or null when no such profile exists. */
  async canonical(profileId: string): Promise<string | null> {
    const row = await this.#repo.profile(this.#storage.raw, profileId);
    return row ? (row.merged_into ?? row.id) : null;
  }

  /**
   * Everyone, as canonical profiles with the profiles merged into them, in chunks of about `size` (jobs that walk
   * every person, such as scoring). Members are gathered over the whole walk, so a chunk is only yielded at the end.
   */
  async *groups(size = 1000): AsyncGenerator<{ profileId: string; members: string[] }[]> {
    const members = new Map<string, string[]>();
    let after = '';
    for (;;) {
      const page = await this.#repo.profilesPage(after, 5000);
      if (page.length === 0) break;
      for (const row of page) {
        const canonical = row.merged_into ?? row.id;
        const list = members.get(canonical) ?? [];
        if (row.merged_into !== null) list.push(row.id);
        members.set(canonical, list);
      }
      after = (page[page.length - 1] as { id: string }).id;
    }
    let chunk: { profileId: string; members: string[] }[] = [];
    for (const [profileId, list] of members) {
      chunk.push({ profileId, members: list });
      if (chunk.length >= size) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  /**
   * For each of these profiles, as committed now: its canonical profile (itself unless merged; null once erased) and,
   * when it is canonical, the profiles merged into it. Jobs that read people earlier (scoring) check with it that a
   * merge or unmerge did not commit meanwhile.
   */
  async membership(profileIds: readonly string[]): Promise<Map<string, { canonical: string | null; members: string[] }>> {
    const unique = [...new Set(profileIds)];
    const out = new Map<string, { canonical: string | null; members: string[] }>(unique.map((id) => [id, { canonical: null, members: [] }]));
    const rows = await this.#repo.profilesIn(this.#storage.raw, unique);
    for (const row of rows) (out.get(row.id) as { canonical: string | null }).canonical = row.merged_into ?? row.id;
    const canonicals = rows.filter((r) => r.merged_into === null).map((r) => r.id);
    for (const row of await this.#repo.mergedInto(this.#storage.raw, canonicals)) out.get(row.merged_into)?.members.push(row.id);
    return out;
  }

  /** The canonical profile first, then every profile merged into it (oldest first); empty when unknown. */
  async members(profileId: string): Promise<string[]> {
    const canonical = await this.canonical(profileId);
    if (canonical === null) return [];
    const rows = await this.#repo.members(this.#storage.raw, canonical);
    return [canonical, ...rows.filter((r) => r.id !== canonical).map((r) => r.id)];
  }

  /**
   * For canonical profiles, inside the caller's transaction: each one that has profiles merged into it, with all its
   * members (itself first). One query for all; those without members are left out.
   */
  async membersIn(tx: SqlExecutor, canonicals: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (canonicals.length === 0) return out;
    for (const row of await this.#repo.mergedInto(tx, [...new Set(canonicals)])) {
      let members = out.get(row.merged_into);
      if (members === undefined) out.set(row.merged_into, (members = [row.merged_into]));
      members.push(row.id);
    }
    return out;
  }

  /**
   * Each profile's canonical profile as `tx` sees it (itself when not merged): for a group that merged people, whose
   * earlier resolutions still name a profile a later message merged away.
   */
  async canonicalsIn(tx: SqlExecutor, profileIds: readonly string[]): Promise<Map<string, string>> {
    if (profileIds.length === 0) return new Map();
    return new Map((await this.#repo.profilesIn(tx, [...new Set(profileIds)])).map((row) => [row.id, row.merged_into ?? row.id]));
  }

  /** Identifiers (types and pseudonyms) held by every member of the profile's canonical profile. */
  async identifiersOf(profileId: string): Promise<IdentifierView[]> {
    const canonical = await this.canonical(profileId);
    if (canonical === null) return [];
    const rows = await this.#repo.identifiersOfMembers(canonical);
    return rows.map((r) => ({ type: r.type, valueHash: r.value_hash, profileId: r.profile_id, firstSeenAt: r.first_seen_at, source: r.source }));
  }

  /** Merges that involved any member of the profile's canonical profile, with provenance, oldest first. */
  async merges(profileId: string): Promise<MergeRecordWithProvenance[]> {
    const members = await this.members(profileId);
    return (await this.#repo.mergesInvolving(members)).map(provenance);
  }

  /**
   * Splits a wrong merge back out: the merge's from-profile becomes canonical again with every profile that came
   * in with it, and so with the identifiers they hold. Later merges of the two sides are refused. Audited for both
   * sides; onUnmerge listeners run after commit with `into` = the canonical profile it was split from. Until they have
   * all run, the split-out profile is decided on with its other side's opt-outs of the merged time (pendingSourcesOf).
   * An unmerge whose listeners failed is run again when asked again (of a profile of either side): its listeners run,
   * with both sides as they are now, and it answers with nothing moved; once they have run, IDENTITY_MERGE_ALREADY_UNDONE.
   */
  async unmerge(profileId: string, mergeId: string, actor: Actor, purpose = 'essential.service.operations.support'): Promise<{ restored: string; identifiersMoved: number }> {
    const result = await this.#storage.raw.transaction(async (tx) => {
      await this.#repo.lockForWrite(tx);
      const requested = await this.#repo.profile(tx, profileId);
      if (!requested) throw new CandorError('IDENTITY_PROFILE_NOT_FOUND', { profileId });
      const canonical = requested.merged_into ?? requested.id;
      const merge = await this.#repo.merge(tx, mergeId);
      if (!merge) throw new CandorError('IDENTITY_MERGE_NOT_FOUND', { profileId, mergeId });
      if (merge.undone_at !== null && merge.unmerge_applied_at === null) {
        // Undone, but its listeners have not all run (they failed): asked again, they are run again.
        const sides = await this.#repo.profilesIn(tx, [merge.from_profile, merge.into_profile]);
        const canonicalOf = (id: string) => {
          const row = sides.find((r) => r.id === id);
          return row === undefined ? null : (row.merged_into ?? row.id);
        };
        const row: PendingUnmergeRow = { id: merge.id, at: merge.at, undone_at: merge.undone_at, rule: merge.rule, from_canonical: canonicalOf(merge.from_profile), into_canonical: canonicalOf(merge.into_profile) };
        if (canonical !== row.from_canonical && canonical !== row.into_canonical) throw new CandorError('IDENTITY_MERGE_NOT_FOUND', { profileId, mergeId });
        return { again: true as const, row };
      }
      if (merge.undone_at !== null) throw new CandorError('IDENTITY_MERGE_ALREADY_UNDONE', { mergeId });
      const from = await this.#repo.profile(tx, merge.from_profile);
      if (!from || from.merged_into !== canonical) throw new CandorError('IDENTITY_MERGE_NOT_FOUND', { profileId, mergeId });
      const members = await this.#repo.members(tx, canonical);
      const lost = await this.#repo.mergesById(tx, members.flatMap((m) => (m.merge_id === null || m.id === from.id ? [] : [m.merge_id])));
      // Each member lost its own merge into some profile; following those links shows who came in with `from`.
      const parent = new Map(lost.map((m) => [m.from_profile, m.into_profile]));
      const withFrom = members
        .filter((m) => {
          const seen = new Set<string>();
          for (let at: string | undefined = m.id; at !== undefined && !seen.has(at); at = parent.get(at)) {
            if (at === from.id) return true;
            seen.add(at);
          }
          return false;
        })
        .map((m) => m.id);
      await this.#repo.restore(tx, from.id);
      await this.#repo.pointAt(tx, withFrom.filter((id) => id !== from.id), from.id);
      await this.#repo.markUndone(tx, mergeId, new Date().toISOString());
      const identifiersMoved = await this.#repo.countIdentifiers(tx, withFrom);
      // Audited in the unmerge's own transaction (last: on PostgreSQL the audit head is held from here to the commit),
      // so an unmerge that commits is never without its entries.
      const details = { mergeId, identifiersMoved };
      await this.#audit.appendIn(
        tx,
        [canonical, from.id].map((subject) => ({
          actor: actor.id,
          role: actor.role,
          action: 'identity.profile.unmerge',
          purpose,
          subject: this.#keyring.pseudonym('subject', subject),
          resource: `merge:${mergeId}`,
          details,
        })),
      );
      // Whom `from`'s side was one person with, and since when: the merge's survivor from the merge on, and each profile
      // the survivor was merged into in turn (up to the canonical one) from that later merge on — not before, when
      // they were still other people.
      const byFrom = new Map(lost.map((m) => [m.from_profile, m]));
      const joined: { profile: string; since: string }[] = [];
      let since = merge.at;
      for (let at: string | undefined = merge.into_profile; at !== undefined && !joined.some((j) => j.profile === at); ) {
        joined.push({ profile: at, since });
        if (at === canonical) break;
        const next = byFrom.get(at);
        if (next === undefined) break;
        if (next.at > since) since = next.at;
        at = next.into_profile;
      }
      return { again: false as const, canonical, restored: from.id, identifiersMoved, rule: merge.rule, at: merge.at, joined };
    });
    if (result.again) {
      const error = await splitAgain(result.row, this.#repo, propagationOf(this), (unmerge) => this.#runOne(this.#onUnmerge, unmerge));
      if (error !== undefined) throw error;
      return { restored: result.row.from_canonical ?? profileId, identifiersMoved: 0 };
    }
    this.#cache.dropProfiles([result.canonical]);
    const unmerge: MergeRecord = { mergeId, from: result.restored, into: result.canonical, rule: result.rule, at: result.at, joined: result.joined };
    // The merge's own propagation is moot now (an undone merge is never applied); the split's is pending until it ran.
    propagationOf(this).graphChanged();
    propagationOf(this).release(`merge:${mergeId}`);
    propagationOf(this).hold(pendingUnmerge(unmerge));
    const failure = await this.#runOne(this.#onUnmerge, unmerge);
    // Left unmarked when a listener failed: run again when the unmerge is asked again, by retryPending (a running
    // server: within seconds) and at the next start (applyPendingUnmerges).
    if (failure !== undefined) throw failure;
    await this.#repo.markUnmergeApplied(mergeId, new Date().toISOString());
    propagationOf(this).release(`unmerge:${mergeId}`);
    return { restored: result.restored, identifiersMoved: result.identifiersMoved };
  }

  /** The identity graph's handler for access and erasure requests. */
  subjectData(fields?: FieldPlanLookup): SubjectDataHandler {
    return new IdentitySubjectData({ repo: this.#repo, fields, forget: (ids) => this.#cache.dropProfiles(ids), forgetValues: (ids) => this.forgetValues(ids) });
  }

  /** Suppresses identifiers inside the caller's transaction (an erasure); returns how many were added. */
  async suppressIn(tx: SqlExecutor, identifiers: readonly IdentifierPseudonym[], reason: string): Promise<number> {
    const at = new Date().toISOString();
    const unique = new Map(identifiers.map((i) => [keyOf(i.type, i.valueHash), { type: i.type, value_hash: i.valueHash, at, reason }]));
    // Added to the in-memory list before the commit: if the erasure rolls back, these identifiers stay refused until
    // the list is next read (fail closed), and the erasure is finished at the next start anyway.
    this.#onSuppressed(identifiers);
    const added = await this.#repo.insertSuppressedIn(tx, [...unique.values()]);
    this.#cache.dropKeys(unique.keys());
    return added;
  }

  /** Which of these pseudonyms are on the suppression list. */
  async suppressedOf(identifiers: readonly IdentifierPseudonym[]): Promise<IdentifierPseudonym[]> {
    if (identifiers.length === 0) return [];
    const rows = await this.#repo.suppressedAmong(this.#storage.raw, identifiers.map((i) => [i.type, i.valueHash] as const));
    return rows.map(([type, valueHash]) => ({ type, valueHash }));
  }

  /**
   * Everyone linked to these profiles or pseudonyms: the canonical profiles they belong to, every member of those,
   * and every identifier the members hold. Null when none of them is known. The canonical profile of the first
   * known seed comes first. Read in `tx` when given (an erasure reads its subject again under its lock).
   */
  async linked(seed: { profileIds: readonly string[]; identifiers: readonly IdentifierPseudonym[] }, tx: SqlExecutor = this.#storage.raw): Promise<DataSubject | null> {
    const canonicals: string[] = [];
    for (const id of seed.profileIds) {
      const row = await this.#repo.profile(tx, id);
      if (row) canonicals.push(row.merged_into ?? row.id);
    }
    if (seed.identifiers.length > 0) {
      for (const owner of await this.#repo.owners(tx, seed.identifiers.map((i) => [i.type, i.valueHash] as const))) canonicals.push(owner.canonical);
    }
    const unique = [...new Set(canonicals)];
    if (unique.length === 0) return null;
    const profileIds: string[] = [];
    for (const canonical of unique) {
      profileIds.push(canonical);
      for (const member of await this.#repo.members(tx, canonical)) if (member.id !== canonical) profileIds.push(member.id);
    }
    const ids = [...new Set(profileIds)];
    const identifiers = (await this.#repo.identifiersOfProfiles(ids, tx)).map((r) => ({ type: r.type, valueHash: r.value_hash }));
    return { profileId: unique[0] as string, profileIds: ids, identifiers };
  }

  /**
   * Registers a listener run after each committed merge (through notifyMerges), and again at a later start if any
   * listener of that merge failed or the process stopped first: a listener must be safe to run twice for one merge.
   */
  onMerge(listener: MergeListener): void {
    this.#onMerge.push(listener);
  }

  /**
   * Registers a listener run inside each transaction that merges profiles, before it commits (a failure rolls the
   * merge back): for what must change with the merge itself.
   */
  onMergedIn(listener: MergedInListener): void {
    this.#onMergedIn.push(listener);
  }

  /** Registers a listener run after each committed unmerge (`from`: the profile split out; `at`: when it had merged). */
  onUnmerge(listener: MergeListener): void {
    this.#onUnmerge.push(listener);
  }
}
