import { randomBytes } from 'node:crypto';
import type { SqlExecutor } from '../../storage/index.ts';
import type { IdentifierRow, IdentityRepo, MergeRow, Pair, ProfileRow } from './identity.repo.ts';
import type { CompiledRules } from './identity.rules.ts';

/** A merge: `from` (and everything merged into it) now belongs to `into`; `rule` says why `into` survived. */
export interface MergeRecord {
  mergeId: string;
  from: string;
  into: string;
  rule: string;
  /** When the merge was made (given to unmerge listeners: what happened since belongs to the merged person). */
  at?: string;
  /**
   * Given to unmerge listeners: each profile the split-off side was one person with, and since when (the merge's
   * survivor from the merge on; each profile the survivor was merged into in turn, up to the canonical one, from that
   * later merge on). Absent when an unmerge is run again at a start: then `into` since `at`.
   */
  joined?: readonly { profile: string; since: string }[];
}

export type IgnoredReason = 'blocked' | 'limit' | 'unmerged';

/** Where one item landed: its canonical profile (null without a usable identifier), and what happened on the way. */
export interface Resolution {
  /** The canonical profile: the person, whose consent applies. */
  profileId: string | null;
  /**
   * The profile that holds the item's strongest identifier: the canonical profile, or one merged into it. What the
   * item brings (an event, traits, activity) is written to it, so that an unmerge takes it back with the identifier;
   * reads combine the members of a merge anyway.
   */
  holder: string | null;
  /** A profile was created for this item (it may since have been merged into another). */
  created: boolean;
  merges: MergeRecord[];
  /** Identifiers not used: blocked or malformed values, limits per type, or pairs of profiles split by an unmerge. */
  ignored: { type: string; reason: IgnoredReason }[];
}

/** An identifier after normalization: its type, pseudonym and priority rank. */
export interface PreparedIdentifier {
  type: string;
  hash: string;
  key: string;
  rank: number;
  /**
   * A phone number's legacy form (`legacyPhone`), when it differs: what a release before libphonenumber stored for the
   * same text. Checked against the suppression list; if `matchable`, stands for this identifier where only it is
   * stored. Never stored itself.
   */
  legacy: PreparedIdentifier | undefined;
  /** This is the legacy form of a number libphonenumber refuses. */
  legacyOnly: boolean;
  /** For a legacy form: whether it may find a person (false when it is a number this release stores, maybe another's). */
  matchable: boolean;
}

/** The usable identifiers of an item, strongest first, and the ones dropped at normalization. */
export interface PreparedItem {
  ids: PreparedIdentifier[];
  /**
   * Identifiers only checked against the suppression list, never looked up or linked (`Identifier.alsoSuppressedAs`),
   * the legacy forms of the item's phone numbers (an erasure by an earlier release suppressed those), and the numbers
   * in a phone value that is no number itself (`CompiledRules.phonesWithin`: an extension, a label).
   */
  suppressedOnly: PreparedIdentifier[];
  /**
   * Phone numbers whose legacy form is itself a valid E.164 number (not `matchable`), with that form: it suppresses
   * the item only while the number's own form is stored for nobody, as it may be another person's erased number.
   */
  suppressedUnlessStored: { own: PreparedIdentifier; legacy: PreparedIdentifier }[];
  /** Matchable legacy forms of numbers libphonenumber refuses: they join `ids` where stored (`asStored`), else are ignored. */
  legacyOnly: PreparedIdentifier[];
  ignored: { type: string; reason: IgnoredReason }[];
  source: string;
  messageId: string | undefined;
  /** When the item happened (first_seen_at of identifiers it introduces). */
  at: string;
}

interface Stats {
  createdAt: string;
  counts: Map<string, number>;
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A random id: prefix + 20 base32 characters (100 bits). */
export function newId(prefix: string): string {
  const bytes = randomBytes(20);
  let out = prefix;
  for (const byte of bytes) out += BASE32[byte & 31];
  return out;
}

let lastMicros = 0;
/** ISO-8601 UTC with microseconds, strictly increasing in this process: orders profiles created in one millisecond. */
export function preciseNow(): string {
  let micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  if (micros <= lastMicros) micros = lastMicros + 1;
  lastMicros = micros;
  return `${new Date(Math.floor(micros / 1000)).toISOString().slice(0, 23)}${String(micros % 1000).padStart(3, '0')}Z`;
}

export const keyOf = (type: string, hash: string): string => `${type}\u0000${hash}`;

/**
 * The item with its phone numbers as they are stored (`known`: whether an identifier key is linked to a profile): an
 * identifier whose own form is unknown but whose legacy form is known stands as that legacy form, and a legacy-only
 * number joins the identifiers (in priority order) when known, else is ignored as blocked. The item itself when it
 * has no legacy forms.
 */
export function asStored(item: PreparedItem, known: (key: string) => boolean): PreparedItem {
  let legacy = item.legacyOnly.length > 0;
  for (const id of item.ids) if (id.legacy?.matchable) legacy = true;
  if (!legacy) return item;
  const ids: PreparedIdentifier[] = [];
  const add = (id: PreparedIdentifier) => {
    if (ids.some((other) => other.key === id.key)) return;
    // After every identifier of the same or a stronger rank: priority order, ties in arrival order.
    let at = ids.length;
    while (at > 0 && (ids[at - 1] as PreparedIdentifier).rank > id.rank) at--;
    ids.splice(at, 0, id);
  };
  for (const id of item.ids) add(id.legacy?.matchable && !known(id.key) && known(id.legacy.key) ? id.legacy : id);
  const ignored = [...item.ignored];
  for (const id of item.legacyOnly) {
    if (known(id.key)) add(id);
    else ignored.push({ type: id.type, reason: 'blocked' });
  }
  return { ...item, ids, ignored, legacyOnly: [] };
}

/**
 * One resolveBatch: reads what the batch's identifiers already belong to, decides item by item in memory (later
 * items see earlier items' effects), then writes new profiles, links and merges in a few multi-row statements.
 */
export class BatchResolution {
  readonly #repo: IdentityRepo;
  readonly #rules: CompiledRules;
  readonly #tx: SqlExecutor;
  /** identifier key → the profile that holds it */
  readonly #owner = new Map<string, string>();
  /** profile → its canonical profile, for profiles whose canonical is not themselves */
  readonly #canon = new Map<string, string>();
  readonly #stats = new Map<string, Stats>();
  readonly #created = new Map<string, ProfileRow>();
  readonly #links: IdentifierRow[] = [];
  readonly #merges: MergeRow[] = [];
  /** canonical profiles that existed before this batch and lost a merge in it → the merge they lost */
  readonly #mergedAway = new Map<string, string>();
  #undone: { from_canonical: string; into_canonical: string }[] | undefined;
  /** canonical profiles whose losses must be dropped from the cache */
  readonly losers = new Set<string>();

  constructor(repo: IdentityRepo, rules: CompiledRules, tx: SqlExecutor) {
    this.#repo = repo;
    this.#rules = rules;
    this.#tx = tx;
  }

  /** Loads owners of every identifier of the batch, and the identifier counts of profiles that may need them. */
  async load(items: readonly PreparedItem[]): Promise<void> {
    const pairs = new Map<string, Pair>();
    for (const item of items) {
      for (const id of item.ids) {
        pairs.set(id.key, [id.type, id.hash]);
        if (id.legacy?.matchable) pairs.set(id.legacy.key, [id.legacy.type, id.legacy.hash]);
      }
      for (const id of item.legacyOnly) pairs.set(id.key, [id.type, id.hash]);
    }
    for (const row of await this.#repo.owners(this.#tx, [...pairs.values()])) {
      this.#owner.set(keyOf(row.type, row.value_hash), row.profile_id);
      if (row.canonical !== row.profile_id) this.#canon.set(row.profile_id, row.canonical);
    }
    // Counts are needed where two profiles may meet or a new identifier may join an existing profile (a limited one is
    // checked against them, and every link counts in them): read here in one query rather than one per profile.
    const needed = new Set<string>();
    for (const item of items) {
      const known = new Set<string>();
      let anyNew = false;
      for (const id of asStored(item, (key) => this.#owner.has(key)).ids) {
        const owner = this.#owner.get(id.key);
        if (owner !== undefined) known.add(this.#canonical(owner));
        else anyNew = true;
      }
      if (known.size > 1 || (anyNew && known.size > 0)) for (const c of known) needed.add(c);
    }
    await this.#loadStats([...needed]);
  }

  async #loadStats(canonicals: readonly string[]): Promise<void> {
    const missing = canonicals.filter((c) => !this.#stats.has(c));
    if (missing.length === 0) return;
    const rows = await this.#repo.stats(this.#tx, missing);
    for (const c of missing) this.#stats.set(c, { createdAt: '', counts: new Map() });
    for (const row of rows) {
      const stats = this.#stats.get(row.merged_into ?? row.id);
      if (!stats) continue;
      if (row.merged_into === null) stats.createdAt = row.created_at;
      if (row.type !== null && row.n > 0) stats.counts.set(row.type, (stats.counts.get(row.type) ?? 0) + row.n);
    }
  }

  #canonical(profileId: string): string {
    return this.#canon.get(profileId) ?? profileId;
  }

  async #statsOf(canonical: string): Promise<Stats> {
    await this.#loadStats([canonical]);
    return this.#stats.get(canonical) as Stats;
  }

  async #canAccept(canonical: string, type: string): Promise<boolean> {
    const limit = this.#rules.limit(type);
    if (!Number.isFinite(limit)) return true;
    return ((await this.#statsOf(canonical)).counts.get(type) ?? 0) < limit;
  }

  #newProfile(): string {
    const id = newId('prf_');
    const createdAt = preciseNow();
    this.#created.set(id, { id, created_at: createdAt, merged_into: null, merge_id: null });
    this.#stats.set(id, { createdAt, counts: new Map() });
    return id;
  }

  /** Links an identifier to `holder`, a profile of the person `canonical` (itself, or a profile merged into it). */
  async #link(id: PreparedIdentifier, holder: string, canonical: string, item: PreparedItem): Promise<void> {
    this.#owner.set(id.key, holder);
    this.#links.push({ type: id.type, value_hash: id.hash, profile_id: holder, first_seen_at: item.at, source: item.source, message_id: item.messageId ?? null });
    const counts = (await this.#statsOf(canonical)).counts;
    counts.set(id.type, (counts.get(id.type) ?? 0) + 1);
  }

  /** The strongest identifier type a profile holds, as a rank (lower is stronger). */
  #bestRank(stats: Stats): { rank: number; type: string } {
    let best = { rank: Number.POSITIVE_INFINITY, type: '' };
    for (const [type, n] of stats.counts) {
      const rank = this.#rules.rank(type);
      if (n > 0 && rank < best.rank) best = { rank, type };
    }
    return best;
  }

  async #undonePairs(): Promise<{ from_canonical: string; into_canonical: string }[]> {
    this.#undone ??= await this.#repo.undonePairs(this.#tx);
    return this.#undone;
  }

  /** Why two canonical profiles may not merge, or undefined when they may. */
  async #refusal(a: string, b: string): Promise<IgnoredReason | undefined> {
    for (const pair of await this.#undonePairs()) {
      const from = this.#canonical(pair.from_canonical);
      const into = this.#canonical(pair.into_canonical);
      if ((from === a && into === b) || (from === b && into === a)) return 'unmerged';
    }
    const sa = await this.#statsOf(a);
    const sb = await this.#statsOf(b);
    for (const [type, n] of sa.counts) {
      if (n + (sb.counts.get(type) ?? 0) > this.#rules.limit(type)) return 'limit';
    }
    for (const [type, n] of sb.counts) {
      if (!sa.counts.has(type) && n > this.#rules.limit(type)) return 'limit';
    }
    return undefined;
  }

  /** Merges two canonical profiles: the one holding the strongest identifier survives, ties go to the older. */
  async #merge(a: string, b: string, trigger: PreparedIdentifier, item: PreparedItem): Promise<MergeRecord> {
    const sa = await this.#statsOf(a);
    const sb = await this.#statsOf(b);
    const ra = this.#bestRank(sa);
    const rb = this.#bestRank(sb);
    let into: string;
    let rule: string;
    if (ra.rank !== rb.rank) {
      into = ra.rank < rb.rank ? a : b;
      rule = `priority:${ra.rank < rb.rank ? ra.type : rb.type}`;
    } else {
      into = sa.createdAt < sb.createdAt || (sa.createdAt === sb.createdAt && a < b) ? a : b;
      rule = 'older';
    }
    const from = into === a ? b : a;
    const mergeId = newId('mrg_');
    for (const [profile, canonical] of this.#canon) if (canonical === from) this.#canon.set(profile, into);
    this.#canon.set(from, into);
    const created = this.#created.get(from);
    if (created) created.merge_id = mergeId;
    else this.#mergedAway.set(from, mergeId);
    const into_stats = into === a ? sa : sb;
    for (const [type, n] of (into === a ? sb : sa).counts) into_stats.counts.set(type, (into_stats.counts.get(type) ?? 0) + n);
    this.#stats.delete(from);
    this.losers.add(from);
    this.#merges.push({
      id: mergeId,
      // Its own instant, strictly after the previous merge's: the merges of one batch list and replay in made order.
      at: preciseNow(),
      from_profile: from,
      into_profile: into,
      rule,
      trigger_type: trigger.type,
      trigger_hash: trigger.hash,
      source: item.source,
      message_id: item.messageId ?? null,
      undone_at: null,
      applied_at: null,
      unmerge_applied_at: null,
    });
    return { mergeId, from, into, rule };
  }

  /**
   * Resolves one item. The strongest identifier (the anchor) decides the profile: its own if known; otherwise the
   * first known profile that may take it, or a new profile. Every other identifier then joins that profile, or
   * brings its own profile to merge, as far as the limits per type and earlier unmerges allow.
   */
  async resolve(prepared: PreparedItem): Promise<Resolution> {
    // Phone numbers an earlier release stored in their legacy form are matched in it (earlier items of the batch count).
    const item = asStored(prepared, (key) => this.#owner.has(key));
    const ignored = [...item.ignored];
    const [anchor, ...rest] = item.ids;
    if (!anchor) return { profileId: null, holder: null, created: false, merges: [], ignored };
    const merges: MergeRecord[] = [];
    let created = false;
    let target: string | undefined;
    // New identifiers join the profile that holds the known identifier they came with (a profile merged into the
    // person, if that is where it is), so that an unmerge takes them back with it.
    let holder: string | undefined;
    const anchorOwner = this.#owner.get(anchor.key);
    if (anchorOwner !== undefined) {
      target = this.#canonical(anchorOwner);
    } else {
      for (const id of rest) {
        const owner = this.#owner.get(id.key);
        if (owner === undefined) continue;
        const candidate = this.#canonical(owner);
        if (await this.#canAccept(candidate, anchor.type)) {
          target = candidate;
          holder = owner;
          break;
        }
      }
      if (target === undefined) {
        target = this.#newProfile();
        created = true;
      }
      await this.#link(anchor, holder ?? target, target, item);
    }
    const anchorHolder = this.#owner.get(anchor.key) as string;
    for (const id of rest) {
      const owner = this.#owner.get(id.key);
      if (owner === undefined) {
        if (await this.#canAccept(target, id.type)) await this.#link(id, this.#canonical(anchorHolder) === target ? anchorHolder : target, target, item);
        else ignored.push({ type: id.type, reason: 'limit' });
        continue;
      }
      const other = this.#canonical(owner);
      if (other === target) continue;
      const refusal = await this.#refusal(target, other);
      if (refusal) {
        ignored.push({ type: id.type, reason: refusal });
        continue;
      }
      const merge = await this.#merge(target, other, id, item);
      merges.push(merge);
      target = merge.into;
    }
    return { profileId: target, holder: anchorHolder, created, merges, ignored };
  }

  /** Whether resolving changed anything that must be written. */
  get dirty(): boolean {
    return this.#links.length > 0 || this.#merges.length > 0 || this.#created.size > 0;
  }

  /** Writes new profiles (in their final state), merges, links and the repointing of profiles that lost a merge. */
  async flush(): Promise<void> {
    const profiles = [...this.#created.values()].map((p) => {
      const canonical = this.#canonical(p.id);
      return { ...p, merged_into: canonical === p.id ? null : canonical };
    });
    await this.#repo.insertProfiles(this.#tx, profiles);
    await this.#repo.insertMerges(this.#tx, this.#merges);
    await this.#repo.insertIdentifiers(this.#tx, this.#links);
    for (const [from, mergeId] of this.#mergedAway) await this.#repo.repoint(this.#tx, from, this.#canonical(from), mergeId);
  }
}
