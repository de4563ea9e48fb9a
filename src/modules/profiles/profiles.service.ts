import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import { makeRoom } from '../../shared/make-room.ts';
import { sortableId } from '../../shared/random.ts';
import type { Actor } from '../../shared/actor.ts';
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import { NO_ACTIVITY, ProfilesRepo, type ComputedActivity, type ComputedRow, type HistoryRow, type TraitRow } from './profiles.repo.ts';
import type { FieldPlanLookup, PlanFields, PlanInForce, RetentionHandler, RetiredFieldLookup, RetiredFields, SubjectDataHandler } from '../../shared/subject-data.ts';
import { ProfilesSubjectData } from './profiles.subject-data.ts';
import { ProfilesRetention, type ProfileRetentionPolicy, type ProfilesRetentionDeps } from './profiles.retention.ts';

/** A trait to set: its key, value, data category and whether it is personal (then stored encrypted). */
export interface TraitInput {
  key: string;
  value: unknown;
  category: string;
  personal: boolean;
}

/** Something a profile did: every activity counts as an event; an `Order Completed` event counts as an order. */
/** What retention did to one profile's stored events, for Profiles.reviseActivityIn. */
export interface ActivityRevision {
  profileId: string;
  /** Events it deleted, and how many of them were orders. */
  deleted: number;
  deletedOrders: number;
  /** Whether an order's value may have changed (an order deleted or rewritten): the orders are counted again. */
  ordersChanged: boolean;
}

/** What is left of a profile's stored events that reviseActivityIn asks for. */
export interface StoredActivity {
  /** The earliest event's time (null: none left); asked for profiles that lost events. */
  firstSeenAt?: string | null;
  /** Its stored orders in the order Candor stored them, each with its value as ingestion reads it (revenue, else total); asked for profiles whose orders changed. */
  orders?: readonly { value: number | undefined; currency: string | null; receivedAt: string }[];
}

export interface ActivityInput {
  profileId: string;
  /** When it happened, by the sender's clock: first and last seen. */
  at: string;
  /**
   * When Candor received it (the inactivity rule counts from the later of this and `at`, so a back-dated event is
   * activity too); the time of the call when not given.
   */
  receivedAt?: string;
  /**
   * Its place in the order stored (the collector gives each message its place in the commit, the order of the events'
   * ids): of orders, the one with the lower position came first. Its place in the batch when not given.
   */
  position?: number;
  kind: string;
  event?: string;
  revenue?: number;
  /** As the order gives it: only a three-letter code counts (currencyCode), anything else names no currency. */
  currency?: string;
}

export interface TraitsBatchItem {
  profileId: string;
  traits: readonly TraitInput[];
  source: string;
  messageId?: string;
  at: string;
  /**
   * Every profile of the person when `profileId` is one of several merged together: a value is then written unless
   * it is both `profileId`'s own value and the person's newest value for the key (on whichever member), the one the
   * person's view shows.
   */
  person?: readonly string[];
}

/** What a reader sees of a value: plain (not personal), decrypted, masked, or unreadable (its data key is destroyed). */
export type ValueState = 'plain' | 'decrypted' | 'masked' | 'unreadable';

export interface TraitView {
  key: string;
  value: unknown;
  state: ValueState;
  category: string;
  /**
   * The value is stored encrypted. One stored in clear is not, yet is masked where the plan in force declares the trait
   * personal or no longer declares it.
   */
  personal: boolean;
  /**
   * The event time of the newest message that sent this value (also one that re-sent it unchanged), its source and id
   * (MASKED for a reader who may not decrypt: shownMessageId).
   */
  updatedAt: string;
  source: string;
  messageId: string | null;
  /** The member profile that holds this value. */
  profileId: string;
}

export interface ComputedTraits {
  firstSeenAt: string | null;
  lastSeenAt: string | null;
  eventCount: number;
  orderCount: number;
  totalOrderValue: number;
  averageOrderValue: number | null;
  currency: string | null;
}

/** The order fields the computed order figures come from. */
const ORDER_FIGURE_FIELDS = ['properties.total', 'properties.revenue', 'properties.currency'] as const;

/** The order figures of computed traits that come from order fields (`properties.total`/`revenue`, `currency`). */
export type OrderFigure = 'totalOrderValue' | 'averageOrderValue' | 'currency';

/**
 * Computed traits as a reader sees them: for one who may not decrypt, the order figures are null and listed in `masked`
 * unless the plan in force declares the order fields they come from not personal (as a trait or field is masked).
 */
export interface ComputedTraitsView extends Omit<ComputedTraits, 'totalOrderValue'> {
  totalOrderValue: number | null;
  masked?: OrderFigure[];
}

/** The canonical view over a profile's merge members. */
export interface ProfileView {
  profileIds: string[];
  traits: TraitView[];
  computed: ComputedTraitsView;
}

export interface TraitChange {
  profileId: string;
  key: string;
  changedAt: string;
  value: unknown;
  valueState: ValueState;
  /** undefined when the trait had no value before */
  previousValue: unknown;
  previousState: ValueState | null;
  category: string;
  /** The value is stored encrypted, as in TraitView. */
  personal: boolean;
  source: string;
  /** MASKED for a reader who may not decrypt, as in TraitView. */
  messageId: string | null;
}

/** A page of trait history: its changes, and the cursor of the next page (null when the history ends here). */
export interface TraitHistoryPage {
  changes: TraitChange[];
  next: string | null;
}

export interface ProfilesDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  /**
   * The tracking plan in force (the kernel always gives it): a reader who may not decrypt sees a value stored in clear
   * only where it declares the trait not personal; one it declares personal, or no longer declares, is masked. Without
   * it (the module used alone) how a value is stored decides.
   */
  fields?: PlanInForce;
  /** The fields stored versions declared and the plan in force does not (masking the computed order figures). */
  retired?: RetiredFieldLookup;
  /**
   * Called first in a rectification's transaction: keeps erasures and the inactivity rule's deletions out until it
   * commits and answers those of these profiles deleted already (`identity.deletedIn`; the kernel always gives it).
   * Without it (the module used alone) nothing else deletes people.
   */
  deletedIn?: (tx: SqlExecutor, profileIds: readonly string[]) => Promise<ReadonlySet<string>>;
}

/** Each Profiles' deps.deletedIn (a WeakMap, not a private field: docs/dev/conventions.md, Node's compile cache). */
const deletionChecks = new WeakMap<Profiles, NonNullable<ProfilesDeps['deletedIn']>>();

/** What a masked personal value reads as. */
export const MASKED = '••••';

/**
 * A messageId as a reader sees it: text the sender chose, which may hold personal data (`welcome-ada@shop.io`), so
 * MASKED for a reader who may not decrypt; null (none given) stays null.
 */
export function shownMessageId<T extends string | null>(messageId: T, decrypt: boolean): T | typeof MASKED {
  return messageId === null || decrypt ? messageId : MASKED;
}

export const ORDER_EVENT = 'Order Completed';
/**
 * Largest order value (in absolute terms) added to a profile's total: no real order is worth 10^15 of a currency, and
 * sums of values under it stay finite. Not exact to the cent: above 2^46 (about 7×10^13) neighbouring doubles are more
 * than a cent apart (10^15 + 0.01 is 10^15), and below it the rounding of each addition adds up.
 */
const MAX_ORDER_VALUE = 1e15;

const DIGEST_ENTRIES = 50_000;

/** An ISO 4217 code's shape: three letters (upper-cased once read). */
const CURRENCY_CODE = /^[A-Za-z]{3}$/;

/**
 * The currency an order names for the computed figures: its text trimmed and upper-cased when that is three letters
 * (`' eur '` is EUR), else none. A plan that does not pin the field lets anything through (`E\u0000R`, which
 * PostgreSQL cannot store in a text column, `€`, `euro`): such an order's value then counts as revenue naming no
 * currency, while the event keeps the text as sent.
 */
export function currencyCode(text: string | null | undefined): string | null {
  const code = text?.trim();
  return code !== undefined && CURRENCY_CODE.test(code) ? code.toUpperCase() : null;
}

/**
 * A history page reads at most this many stored entries per change it may list: entries that changed nothing of the
 * view read are left out, and a long run of them ends a page early (with a cursor) instead of being read to the end.
 */
export const HISTORY_SCAN_FACTOR = 4;

/** JSON with object keys sorted, so equal values always have equal text. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

const context = (key: string) => `profiles.traits.${key}`;

/** A batch's priced orders of one currency for one profile. */
interface OrderValue {
  total: number;
  priced: number;
  /** when the first of them was received (null for revenue naming no currency) */
  since: string | null;
  /** that first one's position among the messages received then (null with since) */
  position: number | null;
}

/** A further currency's priced orders of a profile in a batch, as a row adding nothing else. */
const orderValueOf = (row: ComputedActivity, currency: string | null, value: OrderValue): ComputedActivity => ({
  ...row,
  event_count: 0,
  order_count: 0,
  priced_order_count: value.priced,
  total_order_value: value.total,
  currency,
  currency_at: value.since,
  currency_position: value.position,
});

/**
 * A history entry of a member's current value at its time (its own value again: no change of its own), after a change
 * of another member it is newer than, so that the person's history ends with the value the view shows.
 */
function confirmationOf(shown: TraitRow): HistoryRow {
  return {
    id: historyId(),
    profile_id: shown.profile_id,
    key: shown.key,
    changed_at: shown.updated_at,
    value: shown.value,
    encrypted: shown.encrypted,
    previous_value: shown.value,
    previous_encrypted: shown.encrypted,
    previous_updated_at: shown.updated_at,
    category: shown.category,
    source: shown.source,
    message_id: shown.message_id,
  };
}

/**
 * Activity in the order Candor stored it: by position (the collector gives each message its place in the commit, the
 * order of the events' ids; an item without one counts at its place in the batch). The batch's order where it is that
 * already (the usual case). Its receipt time still gives last received and the currency's time.
 */
function inStoredOrder(items: readonly ActivityInput[], now: string): { item: ActivityInput; receivedAt: string; position: number }[] {
  const out = items.map((item, index) => ({ item, receivedAt: item.receivedAt ?? now, position: item.position ?? index }));
  const before = (a: (typeof out)[number], b: (typeof out)[number]) => a.position - b.position;
  for (let i = 1; i < out.length; i++) {
    if (before(out[i - 1] as (typeof out)[number], out[i] as (typeof out)[number]) > 0) return out.sort(before);
  }
  return out;
}

/**
 * Whether a reader who may not decrypt sees a trait's value stored in clear: only where the plan in force declares the
 * trait, not personal. One it declares personal, or no longer declares (nothing then says it is not personal), is
 * masked like an encrypted one; what is stored does not change. Without a plan (`Profiles` opened without `fields`),
 * as stored.
 */
function shownInClear(plan: PlanFields | undefined, key: string): boolean {
  return plan === undefined || plan.plannedField('identify', null, `traits.${key}`)?.personal === false;
}

/** History ids sort in the order changes were recorded by this process (ties of changed_at). */
const historyId = () => sortableId('th_');

/**
 * Profiles: current traits with their history, and computed traits. Personal trait values are encrypted with the
 * profile's data key; batch writes run on the caller's transaction only.
 */
export class Profiles {
  readonly #keyring: Keyring;
  readonly #repo: ProfilesRepo;
  readonly #storage: Storage;
  readonly #audit: AuditLog;
  readonly #fields: PlanInForce | undefined;
  readonly #retired: RetiredFieldLookup | undefined;
  /** Per-process key for digests of decrypted values; never stored, so digests say nothing after a restart. A KeyObject: HMAC with a Buffer key imports it on every call. */
  readonly #digestKey = createSecretKey(randomBytes(32));
  /** ciphertext of a stored personal value → digest of its plaintext, to skip writes that change nothing */
  readonly #digests = new Map<string, string>();

  private constructor(deps: ProfilesDeps) {
    this.#keyring = deps.keyring;
    this.#repo = new ProfilesRepo(deps.storage);
    this.#storage = deps.storage;
    this.#audit = deps.audit;
    this.#fields = deps.fields;
    this.#retired = deps.retired;
    if (deps.deletedIn) deletionChecks.set(this, deps.deletedIn);
  }

  /** Opens the profiles module. */
  static async open(deps: ProfilesDeps): Promise<Profiles> {
    return new Profiles(deps);
  }

  #digest(json: string): string {
    return createHmac('sha256', this.#digestKey).update(json).digest('base64url');
  }

  #remember(ciphertext: string, digest: string): void {
    makeRoom(this.#digests, DIGEST_ENTRIES);
    this.#digests.set(ciphertext, digest);
  }

  /**
   * Call outside any transaction before setTraitsBatch: loads (or creates) the profiles' data keys, and reads their
   * stored personal values once so that unchanged values are recognized without decrypting inside the transaction.
   * Answers the profiles it found without a data key, for whom one was made.
   */
  async prepare(profileIds: Iterable<string>): Promise<string[]> {
    const ids = [...new Set(profileIds)];
    if (ids.length === 0) return [];
    const made = await this.#keyring.prepare(ids);
    for (const row of await this.#repo.encryptedTraitsOf(ids)) {
      if (this.#digests.has(row.value)) continue;
      try {
        this.#remember(row.value, this.#digest(await this.#keyring.decrypt(row.value, context(row.key), row.profile_id)));
      } catch (error) {
        // An unreadable stored value is simply treated as changed by the next write.
        if (!isCandorError(error)) throw error;
      }
    }
    return made;
  }

  #encrypt(profileId: string, json: string, key: string): string {
    try {
      return this.#keyring.encryptPrepared(profileId, json, context(key));
    } catch (error) {
      throw new CandorError('PROFILES_NOT_PREPARED', { profileId }, { cause: error });
    }
  }

  /** Whether a write would change nothing; `digest` is the new value's digest (personal values only). */
  #unchanged(current: TraitRow, json: string, digest: string | undefined, input: TraitInput): boolean {
    if (current.category !== input.category || (current.encrypted === 1) !== input.personal) return false;
    if (current.encrypted === 0) return current.value === json;
    return this.#digests.get(current.value) === digest;
  }

  /**
   * Sets traits, in item order, inside the caller's transaction `tx` only. A value older than the stored one is
   * ignored; an unchanged value appends no history entry, but from a newer message it moves the stored time, source
   * and message id forward (one row written); every change appends a history entry with the profile's own previous
   * value.
   * Personal values need the profile prepared first (prepare), else PROFILES_NOT_PREPARED.
   */
  async setTraitsBatch(tx: SqlExecutor, items: readonly TraitsBatchItem[]): Promise<void> {
    const withTraits = items.filter((item) => item.traits.length > 0);
    if (withTraits.length === 0) return;
    const current = new Map<string, TraitRow>();
    const profileIds = new Set<string>();
    for (const item of withTraits) {
      profileIds.add(item.profileId);
      for (const member of item.person ?? []) profileIds.add(member);
    }
    for (const row of await this.#repo.currentTraits(tx, [...profileIds])) current.set(`${row.profile_id}\u0000${row.key}`, row);
    const history: HistoryRow[] = [];
    const written = new Map<string, TraitRow>();
    const confirmations = new Set<string>();
    const stored = (profileId: string, key: string) => written.get(`${profileId}\u0000${key}`) ?? current.get(`${profileId}\u0000${key}`);
    for (const item of withTraits) {
      for (const trait of item.traits) {
        const slot = `${item.profileId}\u0000${trait.key}`;
        const before = stored(item.profileId, trait.key);
        if (before && before.updated_at > item.at) continue;
        const json = stableJson(trait.value ?? null);
        const digest = trait.personal ? this.#digest(json) : undefined;
        // What the person's view shows now: this profile's value, or a newer one on another member of a merge (at equal
        // times, the one received last).
        let shown = before;
        let tied: TraitRow[] | undefined;
        for (const member of item.person ?? []) {
          const row = member === item.profileId ? undefined : stored(member, trait.key);
          if (!row) continue;
          if (!shown || row.updated_at > shown.updated_at) {
            shown = row;
            tied = undefined;
          } else if (row.updated_at === shown.updated_at) (tied ??= [shown]).push(row);
        }
        if (tied) shown = await this.#receivedLast(tx, tied, history);
        // Written when either differs: the holder's own value (it is what the profile keeps after an unmerge), or the
        // value the person's view shows (so that the view shows this one). History readers leave out no-op entries.
        const ownUnchanged = before !== undefined && this.#unchanged(before, json, digest, trait);
        if (ownUnchanged && (shown === before || (shown !== undefined && this.#unchanged(shown, json, digest, trait)))) {
          // Unchanged, but said by a newer message: the value stands as of its time, so that an older message arriving
          // later (an offline queue) is ignored as older. No history entry: nothing changed.
          if (item.at > before.updated_at) written.set(slot, { ...before, updated_at: item.at, source: item.source, message_id: item.messageId ?? null });
          continue;
        }
        if (shown !== undefined && shown !== before && shown.updated_at > item.at && !this.#unchanged(shown, json, digest, trait)) {
          // An older value for this member than the one another member shows, whose time may have been moved forward
          // without an entry: the view's history gets that value back at its time, after this one (its own value, no
          // change of its own; readers leave it out where the view did not change).
          const confirmed = `${shown.profile_id}\u0000${shown.key}\u0000${shown.updated_at}`;
          if (!confirmations.has(confirmed)) {
            confirmations.add(confirmed);
            history.push(confirmationOf(shown));
          }
        }
        const value = trait.personal ? this.#encrypt(item.profileId, json, trait.key) : json;
        if (digest !== undefined) this.#remember(value, digest);
        const row: TraitRow = {
          profile_id: item.profileId,
          key: trait.key,
          value,
          encrypted: trait.personal ? 1 : 0,
          category: trait.category,
          updated_at: item.at,
          source: item.source,
          message_id: item.messageId ?? null,
        };
        written.set(slot, row);
        history.push({
          id: historyId(),
          profile_id: item.profileId,
          key: trait.key,
          changed_at: item.at,
          value,
          encrypted: row.encrypted,
          previous_value: before?.value ?? null,
          previous_encrypted: before?.encrypted ?? null,
          previous_updated_at: before?.updated_at ?? null,
          category: trait.category,
          source: item.source,
          message_id: item.messageId ?? null,
        });
      }
    }
    if (written.size === 0) return;
    await this.#repo.upsertTraits(tx, [...written.values()]);
    if (history.length > 0) await this.#repo.insertHistory(tx, history);
  }

  /**
   * Adds activity to computed traits, in `tx` only: aggregated per profile in memory, one upsert per profile (and one
   * more per further currency, or revenue naming none, when a profile's orders in the batch are in several).
   */
  async recordActivityBatch(tx: SqlExecutor, items: readonly ActivityInput[]): Promise<void> {
    // row: the batch's activity with its first currency's priced orders; the other currencies only when there are any.
    const byProfile = new Map<string, { row: ComputedActivity; unnamed?: OrderValue; others?: Map<string, OrderValue> }>();
    const now = new Date().toISOString();
    for (const { item, receivedAt, position } of inStoredOrder(items, now)) {
      let entry = byProfile.get(item.profileId);
      if (!entry) {
        const row: ComputedActivity = { ...NO_ACTIVITY, profile_id: item.profileId, first_seen_at: item.at, last_seen_at: item.at, last_received_at: receivedAt };
        entry = { row };
        byProfile.set(item.profileId, entry);
      }
      const row = entry.row;
      if (item.at < row.first_seen_at) row.first_seen_at = item.at;
      if (item.at > row.last_seen_at) row.last_seen_at = item.at;
      if (receivedAt > row.last_received_at) row.last_received_at = receivedAt;
      row.event_count++;
      // An order is a track call of that name (a page or screen may carry any name).
      if (item.event !== ORDER_EVENT || item.kind !== 'track') continue;
      row.order_count++;
      if (item.revenue === undefined || !(Math.abs(item.revenue) <= MAX_ORDER_VALUE)) continue;
      const currency = currencyCode(item.currency);
      let value: OrderValue;
      if (currency === null) value = entry.unnamed ??= { total: 0, priced: 0, since: null, position: null };
      else if (row.currency === null || row.currency === currency) {
        if (row.currency === null) {
          row.currency_at = receivedAt;
          row.currency_position = position;
        }
        row.currency = currency;
        row.total_order_value += item.revenue;
        row.priced_order_count++;
        continue;
      } else {
        entry.others ??= new Map();
        value = entry.others.get(currency) ?? { total: 0, priced: 0, since: receivedAt, position };
        entry.others.set(currency, value);
      }
      value.total += item.revenue;
      value.priced++;
    }
    if (byProfile.size === 0) return;
    // The stored currency is not read here: each currency of the batch goes to the statement, which adds the one that
    // is (or, for a new profile, becomes: the batch's first) the profile's. Revenue naming no currency is always added.
    const rows: ComputedActivity[] = [];
    const more: ComputedActivity[] = [];
    for (const { row, unnamed, others } of byProfile.values()) {
      rows.push(row);
      if (unnamed && row.currency === null) {
        row.total_order_value = unnamed.total;
        row.priced_order_count = unnamed.priced;
      } else if (unnamed) more.push(orderValueOf(row, null, unnamed));
      for (const [currency, value] of others ?? []) more.push(orderValueOf(row, currency, value));
    }
    await this.#repo.upsertComputed(tx, rows, more);
  }

  /**
   * Revises computed traits after retention deleted or rewrote events, in `tx` (the transaction that did it): derived
   * data follows its source. The rows are locked first (PostgreSQL; SQLite's writer holds the database), then `stored`
   * reads what is left, so an ingestion of the moment is either in that read or adds to the row after it. The events
   * and orders deleted come off the counts (each deleted row is returned to one deleter only: exact also when two
   * sweeps run at once); first seen becomes the earliest event left (none left: the last seen time); where an order was
   * deleted or rewritten, the orders left are counted again and the currency and order value worked out as
   * recordActivityBatch does (the first priced order naming a currency, in the order stored, gives the currency;
   * revenue in another is not added, revenue naming none is). Only those people's orders are read, once per batch: a
   * person's other events are never read again. Last seen and the activity clock of the inactivity rule stay.
   */
  async reviseActivityIn(
    tx: SqlExecutor,
    revisions: readonly ActivityRevision[],
    stored: (firstSeenOf: readonly string[], ordersOf: readonly string[]) => Promise<ReadonlyMap<string, StoredActivity>>,
  ): Promise<void> {
    if (revisions.length === 0) return;
    const byProfile = new Map<string, ActivityRevision>();
    for (const r of revisions) {
      const seen = byProfile.get(r.profileId);
      byProfile.set(r.profileId, seen === undefined ? r : { profileId: r.profileId, deleted: seen.deleted + r.deleted, deletedOrders: seen.deletedOrders + r.deletedOrders, ordersChanged: seen.ordersChanged || r.ordersChanged });
    }
    const rows = await this.#repo.computedForUpdate(tx, [...byProfile.keys()]);
    if (rows.length === 0) return;
    const revised = rows.map((row) => byProfile.get(row.profile_id) as ActivityRevision);
    const left = await stored(
      revised.filter((r) => r.deleted > 0).map((r) => r.profileId),
      revised.filter((r) => r.ordersChanged).map((r) => r.profileId),
    );
    for (const row of rows) {
      const revision = byProfile.get(row.profile_id) as ActivityRevision;
      const activity = left.get(row.profile_id) ?? {};
      row.event_count = Math.max(0, row.event_count - revision.deleted);
      row.order_count = Math.max(0, row.order_count - revision.deletedOrders);
      if (revision.ordersChanged) {
        const orders = activity.orders ?? [];
        const before = { currency: row.currency, currencyAt: row.currency_at };
        row.order_count = orders.length;
        row.total_order_value = 0;
        row.priced_order_count = 0;
        row.currency = null;
        row.currency_at = null;
        for (const order of orders) {
          if (order.value === undefined || !(Math.abs(order.value) <= MAX_ORDER_VALUE)) continue;
          const currency = currencyCode(order.currency);
          if (currency !== null && row.currency === null) {
            row.currency = currency;
            row.currency_at = order.receivedAt;
          } else if (currency !== null && currency !== row.currency) continue;
          row.total_order_value += order.value;
          row.priced_order_count++;
        }
        // Its place in its commit is not stored with the event: kept while the currency came from the same order.
        if (row.currency !== before.currency || row.currency_at !== before.currencyAt) row.currency_position = null;
      }
      if (revision.deleted > 0) {
        const first = activity.firstSeenAt ?? row.last_seen_at;
        row.first_seen_at = first < row.last_seen_at ? first : row.last_seen_at;
      }
    }
    await this.#repo.reviseComputed(tx, rows);
  }

  /**
   * A stored value as a reader sees it; `plan`: the plan in force, taken once by the read (masked reads only);
   * `profileId`: the profile of the trait row, whose data key must have sealed it.
   */
  async #read(value: string, encrypted: number, key: string, decrypt: boolean, plan: PlanFields | undefined, profileId: string): Promise<{ value: unknown; state: ValueState }> {
    if (encrypted === 0 && (decrypt || shownInClear(plan, key))) return { value: JSON.parse(value) as unknown, state: 'plain' };
    if (!decrypt) return { value: MASKED, state: 'masked' };
    const json = await this.#plaintext(value, key, profileId);
    return json === null ? { value: null, state: 'unreadable' } : { value: JSON.parse(json) as unknown, state: 'decrypted' };
  }

  /**
   * Of trait rows of merge members, per key the one the person's view shows: the newest by event time; at equal times
   * the one received last (its history entry at that time was recorded last, as one profile keeps the value it received
   * last), and without such an entry the lower profile id. On `executor` (the caller's transaction, or the database).
   */
  async #shown(executor: SqlExecutor, rows: readonly TraitRow[]): Promise<Map<string, TraitRow>> {
    return (await this.#shownOfPersons(executor, [rows]))[0] as Map<string, TraitRow>;
  }

  /** #shown for several persons (the trait rows of each), with the ties of all of them read in one statement. */
  async #shownOfPersons(executor: SqlExecutor, persons: readonly (readonly TraitRow[])[]): Promise<Map<string, TraitRow>[]> {
    const out: Map<string, TraitRow>[] = [];
    const ties: { shown: Map<string, TraitRow>; tied: TraitRow[] }[] = [];
    for (const rows of persons) {
      const newest = new Map<string, TraitRow[]>();
      for (const row of rows) {
        const seen = newest.get(row.key);
        if (!seen || row.updated_at > (seen[0] as TraitRow).updated_at) newest.set(row.key, [row]);
        else if (row.updated_at === (seen[0] as TraitRow).updated_at) seen.push(row);
      }
      const shown = new Map<string, TraitRow>();
      for (const [key, tied] of newest) {
        shown.set(key, tied[0] as TraitRow);
        if (tied.length > 1) ties.push({ shown, tied });
      }
      out.push(shown);
    }
    const received = await this.#receivedLastOfMany(executor, ties.map((tie) => tie.tied));
    for (const [index, { shown, tied }] of ties.entries()) shown.set((tied[0] as TraitRow).key, received[index] as TraitRow);
    return out;
  }

  /**
   * Of rows of one key on different members with the same time, the one received last: whose history entry at that
   * time was recorded last (those of `pending`, recorded by this batch and not yet written, first), else the lower
   * profile id.
   */
  async #receivedLast<R extends Pick<TraitRow, 'profile_id' | 'key' | 'updated_at'>>(executor: SqlExecutor, tied: readonly R[], pending: readonly HistoryRow[] = []): Promise<R> {
    const first = tied[0] as R;
    const holders = new Set(tied.map((row) => row.profile_id));
    for (let i = pending.length - 1; i >= 0; i--) {
      const entry = pending[i] as HistoryRow;
      if (entry.key === first.key && entry.changed_at === first.updated_at && holders.has(entry.profile_id)) return tied.find((row) => row.profile_id === entry.profile_id) as R;
    }
    return (await this.#receivedLastOfMany(executor, [tied]))[0] as R;
  }

  /**
   * #receivedLast (without pending entries) for each of several sets of tied rows, with the history of all of them read
   * in one statement (per 256 sets) instead of one per key.
   */
  async #receivedLastOfMany<R extends Pick<TraitRow, 'profile_id' | 'key' | 'updated_at'>>(executor: SqlExecutor, ties: readonly (readonly R[])[]): Promise<R[]> {
    if (ties.length === 0) return [];
    const recorded = new Map<string, string>();
    const slot = (profileId: string, key: string, at: string) => `${profileId}\u0000${key}\u0000${at}`;
    const found = await this.#repo.lastRecordedAt(
      executor,
      ties.map((tied) => ({ key: (tied[0] as R).key, changedAt: (tied[0] as R).updated_at, profileIds: tied.map((row) => row.profile_id) })),
    );
    for (const row of found) recorded.set(slot(row.profile_id, row.key, row.changed_at), row.id);
    return ties.map((tied) => {
      let last: { row: R; id: string } | undefined;
      for (const row of tied) {
        const id = recorded.get(slot(row.profile_id, row.key, row.updated_at));
        if (id !== undefined && (last === undefined || id > last.id)) last = { row, id };
      }
      return last?.row ?? ([...tied].sort((a, b) => (a.profile_id < b.profile_id ? -1 : a.profile_id > b.profile_id ? 1 : 0))[0] as R);
    });
  }

  /**
   * In the transaction that merges profiles, with the members of each person it made or grew: where the value the
   * person's view shows is not the newest entry of the person's history (its time was moved forward without an entry
   * by a message that re-sent it, past another member's change), the history gets that value again at its time on the
   * member that holds it, as setTraitsBatch does for values written while merged, so that it ends with what the view
   * shows. Copies stored values only: nothing is encrypted or decrypted. A constant number of statements whatever the
   * number of keys (the transaction holds the write lock): the current traits, the ties' history and the newest
   * history entries, each read for every key at once.
   */
  async merged(tx: SqlExecutor, persons: readonly (readonly string[])[]): Promise<void> {
    const ids = [...new Set(persons.flat())];
    if (ids.length < 2) return;
    const rows = await this.#repo.currentTraits(tx, ids);
    // Per person, the rows of keys several members hold: a key only one member holds ends its history with its own value.
    const contested = persons.map((members) => {
      const inPerson = new Set(members);
      const byKey = new Map<string, TraitRow[]>();
      for (const row of rows) {
        if (!inPerson.has(row.profile_id)) continue;
        const list = byKey.get(row.key);
        if (list) list.push(row);
        else byKey.set(row.key, [row]);
      }
      return [...byKey.values()].filter((list) => list.length > 1).flat();
    });
    const shownOf = await this.#shownOfPersons(tx, contested);
    const readIds = new Set<string>();
    const readKeys = new Set<string>();
    for (const [index, shown] of shownOf.entries()) {
      if (shown.size === 0) continue;
      for (const member of persons[index] as readonly string[]) readIds.add(member);
      for (const key of shown.keys()) readKeys.add(key);
    }
    // The newest entry of each member and key (more than needed when persons differ in keys); per person, the newest of
    // its members' (timestamps and generated ids: compared in memory as the database orders them).
    const newestOf = new Map<string, HistoryRow>();
    for (const entry of await this.#repo.newestEntries(tx, [...readIds], [...readKeys])) newestOf.set(`${entry.profile_id}\u0000${entry.key}`, entry);
    const history: HistoryRow[] = [];
    for (const [index, shown] of shownOf.entries()) {
      for (const row of shown.values()) {
        let newest: HistoryRow | undefined;
        for (const member of persons[index] as readonly string[]) {
          const entry = newestOf.get(`${member}\u0000${row.key}`);
          if (entry && (!newest || entry.changed_at > newest.changed_at || (entry.changed_at === newest.changed_at && entry.id > newest.id))) newest = entry;
        }
        if (newest === undefined || (newest.value === row.value && newest.encrypted === row.encrypted && newest.category === row.category)) continue;
        history.push(confirmationOf(row));
      }
    }
    if (history.length > 0) await this.#repo.insertHistory(tx, history);
  }

  /**
   * The canonical view over merge members (canonical profile first): per key the latest value across members (at equal
   * times the one received last), and computed traits combined (counts summed, first seen the earliest, last seen the
   * latest).
   */
  async get(profileIds: readonly string[], options: { decrypt: boolean }): Promise<ProfileView> {
    const latest = await this.#shown(this.#storage.raw, await this.#repo.traitsOf(profileIds));
    const plan = options.decrypt ? undefined : this.#fields?.fieldsInForce();
    const traits: TraitView[] = [];
    for (const row of [...latest.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
      const { value, state } = await this.#read(row.value, row.encrypted, row.key, options.decrypt, plan, row.profile_id);
      traits.push({
        key: row.key,
        value,
        state,
        category: row.category,
        personal: row.encrypted === 1,
        updatedAt: row.updated_at,
        source: row.source,
        messageId: shownMessageId(row.message_id, options.decrypt),
        profileId: row.profile_id,
      });
    }
    const computed = combine(await this.#repo.computedOf(profileIds));
    if (plan === undefined) return { profileIds: [...profileIds], traits, computed };
    return { profileIds: [...profileIds], traits, computed: maskOrderFigures(computed, plan, await retiredOrderFields(plan, this.#retired)) };
  }

  /**
   * The order figures a reader who may not decrypt reads masked under the plan in force (as `get` masks them), for other
   * figures that come from the same order fields: the money in a person's scores and their reasons.
   */
  async maskedOrderFigures(): Promise<OrderFigure[]> {
    const plan = this.#fields?.fieldsInForce();
    return plan === undefined ? [] : hiddenOrderFigures(plan, await retiredOrderFields(plan, this.#retired));
  }

  /**
   * One trait's current value (decrypted) for each of many profiles, for jobs that only ever report aggregates
   * (fairness audits). `owner` maps each profile id to the person it belongs to (merge members to their canonical
   * profile); the newest value among a person's profiles wins. Unreadable values (destroyed keys) are left out.
   */
  async traitValues(owner: ReadonlyMap<string, string>, key: string): Promise<Map<string, string>> {
    const ids = [...owner.keys()];
    type Row = { profile_id: string; key: string; value: string; encrypted: number; updated_at: string };
    // Per person, the rows at the newest time (several only when members tie: the one received last wins, as in get).
    const newest = new Map<string, Row[]>();
    for (let i = 0; i < ids.length; i += 500) {
      for (const found of await this.#repo.traitOfMany(ids.slice(i, i + 500), key)) {
        const row: Row = { ...found, key, encrypted: Number(found.encrypted) };
        const person = owner.get(row.profile_id) as string;
        const seen = newest.get(person);
        if (!seen || row.updated_at > (seen[0] as Row).updated_at) newest.set(person, [row]);
        else if (row.updated_at === (seen[0] as Row).updated_at) seen.push(row);
      }
    }
    const persons = [...newest.keys()];
    const tiedOnes = persons.filter((person) => (newest.get(person) as Row[]).length > 1);
    const received = new Map((await this.#receivedLastOfMany(this.#storage.raw, tiedOnes.map((person) => newest.get(person) as Row[]))).map((row, i) => [tiedOnes[i] as string, row]));
    const out = new Map<string, string>();
    for (const person of persons) {
      const row = received.get(person) ?? ((newest.get(person) as Row[])[0] as Row);
      const { value, state } = await this.#read(row.value, row.encrypted, key, true, undefined, row.profile_id);
      if (state !== 'unreadable' && value !== null && value !== undefined) out.set(person, String(value));
    }
    return out;
  }

  /**
   * The first page of traitHistoryPage (see there), without its cursor: at most `limit` changes, fewer when the page's
   * scan of stored entries ended first.
   */
  async traitHistory(profileIds: readonly string[], key: string | undefined, options: { decrypt: boolean; limit?: number }): Promise<TraitChange[]> {
    return (await this.traitHistoryPage(profileIds, key, options)).changes;
  }

  /**
   * Changes of one trait (or all) across these profiles, newest first, one page at a time. The previous value of a
   * change is what the view over these profiles showed before it: the next older change of the key on any of them (by
   * event time), or the holder's own stored previous value when no older change is left. A change that leaves that
   * value as it was (same value, category and encryption) is left out: for a merged person, a member setting the value
   * another member had already shown; for one profile, a value re-sent while it was merged so that the person's view
   * would show it. A page lists at most `limit` changes and reads at most HISTORY_SCAN_FACTOR × `limit` stored
   * entries (and as many again at most, for the previous values of the oldest entry of each key read), so a long run
   * of left-out entries makes short (even empty) pages rather than one slow one: `next` is the cursor (`before`) of the
   * following page, null at the end of the history.
   */
  async traitHistoryPage(
    profileIds: readonly string[],
    key: string | undefined,
    options: { decrypt: boolean; limit?: number; before?: string },
  ): Promise<TraitHistoryPage> {
    const limit = options.limit ?? 100;
    let budget = HISTORY_SCAN_FACTOR * limit;
    let position = options.before === undefined ? undefined : parseHistoryCursor(options.before);
    // JSON text of each ciphertext decrypted by this call (null: unreadable).
    const plaintexts = new Map<string, string | null>();
    const json = async (stored: Stored): Promise<string | null> => {
      if (stored.encrypted === 0) return stored.value;
      if (!plaintexts.has(stored.value)) plaintexts.set(stored.value, await this.#plaintext(stored.value, stored.key));
      return plaintexts.get(stored.value) ?? null;
    };
    // Decrypts only personal values of the same category, and not those whose digest this process already holds.
    const same = async (a: Stored, b: Stored): Promise<boolean> => {
      if (a.encrypted !== b.encrypted || a.category !== b.category) return false;
      if (a.encrypted === 0) return a.value === b.value;
      const [digestA, digestB] = [this.#digests.get(a.value), this.#digests.get(b.value)];
      if (digestA !== undefined && digestB !== undefined) return digestA === digestB;
      const text = await json(a);
      return text !== null && text === (await json(b));
    };
    const plan = options.decrypt ? undefined : this.#fields?.fieldsInForce();
    const shown = async (stored: Stored): Promise<{ value: unknown; state: ValueState }> => {
      if (stored.encrypted === 0 && (options.decrypt || shownInClear(plan, stored.key))) return { value: JSON.parse(stored.value) as unknown, state: 'plain' };
      if (!options.decrypt) return { value: MASKED, state: 'masked' };
      const text = await json(stored);
      return text === null ? { value: null, state: 'unreadable' } : { value: JSON.parse(text) as unknown, state: 'decrypted' };
    };
    const out: TraitChange[] = [];
    while (budget > 0) {
      const size = Math.min(limit, budget);
      const page = await this.#repo.historyOf(profileIds, key, size, position);
      budget -= page.length;
      // Each row's next older row of the same key: in the page, else read (one row per key of the page).
      const older = new Map<string, HistoryRow | undefined>();
      const oldestOfKey = new Map<string, HistoryRow>();
      for (const row of page) {
        const newer = oldestOfKey.get(row.key);
        if (newer) older.set(newer.id, row);
        oldestOfKey.set(row.key, row);
      }
      for (const row of oldestOfKey.values()) {
        const [previous] = await this.#repo.historyOf(profileIds, row.key, 1, { changedAt: row.changed_at, id: row.id });
        older.set(row.id, previous);
      }
      for (const [index, row] of page.entries()) {
        position = { changedAt: row.changed_at, id: row.id };
        const now: Stored = { value: row.value, encrypted: row.encrypted, category: row.category, key: row.key };
        const previousRow = older.get(row.id);
        const before: Stored | undefined = previousRow
          ? { value: previousRow.value, encrypted: previousRow.encrypted, category: previousRow.category, key: row.key }
          : row.previous_value === null
            ? undefined
            : { value: row.previous_value, encrypted: row.previous_encrypted ?? 0, category: row.category, key: row.key };
        if (before && (await same(now, before))) continue;
        const value = await shown(now);
        const previous = before && (await shown(before));
        out.push({
          profileId: row.profile_id,
          key: row.key,
          changedAt: row.changed_at,
          value: value.value,
          valueState: value.state,
          previousValue: previous?.value,
          previousState: previous?.state ?? null,
          category: row.category,
          personal: row.encrypted === 1,
          source: row.source,
          messageId: shownMessageId(row.message_id, options.decrypt),
        });
        if (out.length === limit) {
          const last = index === page.length - 1 && page.length < size;
          return { changes: out, next: last ? null : historyCursor(position) };
        }
      }
      if (page.length < size) return { changes: out, next: null };
    }
    return { changes: out, next: position === undefined ? null : historyCursor(position) };
  }

  /**
   * The JSON text of a stored personal value, or null when its data key is destroyed; `profileId` binds it to the
   * profile whose row holds it (a trait row; history entries may hold a value another member of a merge sealed).
   */
  async #plaintext(value: string, key: string, profileId?: string): Promise<string | null> {
    try {
      return await this.#keyring.decrypt(value, context(key), profileId);
    } catch (error) {
      if (isCandorError(error, 'CRYPTO_KEY_DESTROYED') || isCandorError(error, 'CRYPTO_KEY_UNKNOWN')) return null;
      throw error;
    }
  }

  /** The retention rules of profiles (inactivity) and trait values, and their sweep (registered with `retention`). */
  retention(deps: ProfilesRetentionDeps, policy: ProfileRetentionPolicy): RetentionHandler {
    return new ProfilesRetention(deps, policy);
  }

  /** Up to `limit` changes of every trait of these profiles, decrypted, read page by page to the end (for exports). */
  async #wholeHistory(profileIds: readonly string[], limit: number): Promise<TraitChange[]> {
    const out: TraitChange[] = [];
    let before: string | undefined;
    do {
      const page = await this.traitHistoryPage(profileIds, undefined, { decrypt: true, limit: Math.min(1000, limit - out.length), before });
      out.push(...page.changes);
      before = page.next ?? undefined;
    } while (before !== undefined && out.length < limit);
    return out;
  }

  /** The profiles module's handler for access and erasure requests. */
  subjectData(fields?: FieldPlanLookup, retired?: RetiredFieldLookup): SubjectDataHandler {
    return new ProfilesSubjectData({
      repo: this.#repo,
      fields,
      retired,
      get: (ids) => this.get(ids, { decrypt: true }),
      history: (ids, limit) => this.#wholeHistory(ids, limit),
    });
  }

  /**
   * Rectification (GDPR Art. 16): corrects traits a person already has, across their merge members. The changes come
   * checked against the tracking plan by the caller (rights), with the plan's category and personal flag: a personal
   * value is encrypted like any trait. Each change goes to the history with source `rectification` and the request
   * id as message id; PROFILES_TRAIT_UNKNOWN when a key is not held. Audited without values, in the same transaction.
   * A person deleted (an erasure, or the inactivity rule) before the write commits fails it with
   * PROFILES_SUBJECT_DELETED: nothing is written, and a data key made for them meanwhile is destroyed.
   */
  async rectify(profileIds: readonly string[], changes: readonly TraitInput[], meta: { requestId: string }, actor: Actor): Promise<{ changed: string[] }> {
    const deletedIn = deletionChecks.get(this);
    const latest = await this.#shown(this.#storage.raw, await this.#repo.traitsOf(profileIds));
    for (const change of changes) {
      if (latest.has(change.key)) continue;
      // No trait held may mean no person left: said as such.
      if (deletedIn && (await this.#storage.raw.transaction((tx) => deletedIn(tx, profileIds))).size > 0) throw new CandorError('PROFILES_SUBJECT_DELETED');
      throw new CandorError('PROFILES_TRAIT_UNKNOWN', { key: change.key });
    }
    const rows = changes.map((change) => ({ change, row: latest.get(change.key) as TraitRow }));
    const made = await this.prepare(rows.map(({ row }) => row.profile_id));
    const now = new Date().toISOString();
    const items: TraitsBatchItem[] = rows.map(({ change, row }) => ({
      profileId: row.profile_id,
      traits: [{ key: change.key, value: change.value, category: change.category, personal: change.personal }],
      source: 'rectification',
      messageId: meta.requestId,
      // Never older than the stored value, which a timestamp from a sender's clock may be.
      at: row.updated_at > now ? row.updated_at : now,
    }));
    const subject = this.#keyring.pseudonym('subject', profileIds[0] as string);
    const changed = await this.#storage.raw.transaction(async (tx) => {
      // First: no deletion commits until this does. One that committed since the traits were read leaves nothing to
      // write and no key made since: prepare made one where the deletion had destroyed theirs. A key prepare found is
      // the erasure's to destroy (after its commit, counted in its certificate).
      const gone = deletedIn ? await deletedIn(tx, profileIds) : new Set<string>();
      if (gone.size > 0) {
        await this.#keyring.destroyMadeIn(tx, made.filter((id) => gone.has(id)), actor);
        return null;
      }
      const before = new Set((await this.#repo.historyOfMessage(tx, profileIds, meta.requestId, 'rectification')).map((h) => h.id));
      await this.setTraitsBatch(tx, items);
      const written = (await this.#repo.historyOfMessage(tx, profileIds, meta.requestId, 'rectification')).filter((h) => !before.has(h.id));
      const keys = [...new Set(written.map((h) => h.key))].sort();
      // Audited in the rectification's own transaction, last: values that change always have their entry.
      await this.#audit.appendIn(tx, [
        {
          actor: actor.id,
          role: actor.role,
          action: 'profiles.rectify',
          purpose: 'essential.legal_obligation',
          subject,
          resource: `rights_request:${meta.requestId}`,
          details: { keys: changes.map((c) => c.key), changed: keys.length },
        },
      ]);
      return keys;
    });
    if (changed === null) {
      // A reader may have loaded a destroyed key again while the transaction ran.
      for (const id of made) this.#keyring.forgetSubject(id);
      throw new CandorError('PROFILES_SUBJECT_DELETED');
    }
    return { changed };
  }

  /** Deletes a profile's traits, history and computed traits (its data key is the keyring's business). */
  async forget(profileId: string): Promise<void> {
    await this.#repo.forget(profileId);
  }
}

/** Order totals and averages are answered to this many decimals: currencies have 0–3 minor digits. */
const MONEY_DECIMALS = 4;

/** A sum of money as answered: rounded to MONEY_DECIMALS, so float noise (100.99999999999999) reads 101. */
function money(value: number): number {
  const rounded = Number(value.toFixed(MONEY_DECIMALS));
  return rounded === 0 ? 0 : rounded;
}

/**
 * The order figures masked for a reader who may not decrypt where an order field they come from may hold a value the plan
 * in force keeps from that reader: the value comes from an order's `revenue` or `total`, the currency from its
 * `currency`; a field the plan in force declares personal, or does not declare while an earlier stored version did
 * (`retired`: values of it stored in clear may have been summed), masks its figures. A field no version ever declared
 * was never stored, and masks nothing.
 */
export function maskOrderFigures(computed: ComputedTraits, plan: PlanFields, retired: RetiredFields | undefined): ComputedTraitsView {
  const masked = hiddenOrderFigures(plan, retired);
  const out: ComputedTraitsView = { ...computed };
  for (const figure of masked) out[figure] = null;
  if (masked.length > 0) out.masked = masked;
  return out;
}

/**
 * Stored versions of the plan, read only when the plan in force leaves an order field out. (A function, not a private
 * method: private members added to an existing class break processes started from Node's compile cache, docs/dev/conventions.md.)
 */
async function retiredOrderFields(plan: PlanFields, retired: RetiredFieldLookup | undefined): Promise<RetiredFields | undefined> {
  const complete = ORDER_FIGURE_FIELDS.every((path) => plan.plannedField('track', ORDER_EVENT, path) !== undefined);
  return complete ? undefined : retired?.retiredFields();
}

/** Which order figures `maskOrderFigures` masks under `plan`. */
function hiddenOrderFigures(plan: PlanFields, retired: RetiredFields | undefined): OrderFigure[] {
  const hidden = (path: string) => {
    const planned = plan.plannedField('track', ORDER_EVENT, path);
    return planned === undefined ? retired === undefined || retired.field('track', ORDER_EVENT, path) !== undefined || !retired.complete : planned.personal;
  };
  const masked: OrderFigure[] = [];
  if (hidden('properties.total') || hidden('properties.revenue')) masked.push('totalOrderValue', 'averageOrderValue');
  if (hidden('properties.currency')) masked.push('currency');
  return masked;
}

/**
 * Computed traits of merge members as one, as one profile with all their orders would have them: the currency is
 * that of the first priced order naming one that any member received, by the time Candor received it and then its
 * position among the messages received then (a member stored before migration 0111 counts from its first seen time,
 * one stored before 0112 as the first of its time; a tie goes to the lower profile id), the total adds the members in
 * that currency or in none, and the average divides it by the priced orders it holds. Members are added in profile id
 * order, and the total and average rounded (money), so the answer does not depend on the order the database returns
 * them in.
 */
function combine(unordered: readonly ComputedRow[]): ComputedTraits {
  const rows = [...unordered].sort((a, b) => (a.profile_id < b.profile_id ? -1 : a.profile_id > b.profile_id ? 1 : 0));
  let first: { currency: string; since: string; position: number } | undefined;
  for (const row of rows) {
    if (row.currency === null) continue;
    const since = row.currency_at ?? row.first_seen_at;
    const position = row.currency_position ?? 0;
    if (!first || since < first.since || (since === first.since && position < first.position)) first = { currency: row.currency, since, position };
  }
  const currency = first?.currency ?? null;
  let total = 0;
  let pricedOrders = 0;
  for (const row of rows) {
    if (row.currency !== null && row.currency !== currency) continue;
    total += row.total_order_value;
    pricedOrders += row.priced_order_count;
  }
  const firsts = rows.map((r) => r.first_seen_at).sort();
  const lasts = rows.map((r) => r.last_seen_at).sort();
  const orderCount = rows.reduce((n, r) => n + r.order_count, 0);
  return {
    firstSeenAt: firsts[0] ?? null,
    lastSeenAt: lasts.at(-1) ?? null,
    eventCount: rows.reduce((n, r) => n + r.event_count, 0),
    orderCount,
    totalOrderValue: money(total),
    averageOrderValue: pricedOrders > 0 ? money(total / pricedOrders) : null,
    currency,
  };
}

/** A stored history value (current or previous) as compared and shown. */
interface Stored {
  value: string;
  encrypted: number;
  category: string;
  /** the trait key, the context of its encryption */
  key: string;
}

/** The opaque cursor of the entry a history page stopped at. */
function historyCursor(position: { changedAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([position.changedAt, position.id])).toString('base64url');
}

function parseHistoryCursor(cursor: string): { changedAt: string; id: string } {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === 'string' && typeof parsed[1] === 'string') return { changedAt: parsed[0], id: parsed[1] };
  } catch {
    // answered below
  }
  throw new CandorError('PROFILES_HISTORY_CURSOR_INVALID');
}
