import { setTimeout as delay } from 'node:timers/promises';
import type { ErrorCode } from '../../shared/error-codes.ts';
import type { Actor } from '../../shared/actor.ts';
import type { Logger } from '../../shared/logger.ts';
import { sortableId } from '../../shared/random.ts';
import { compareText, DeferredConflict, isTransientFailure, WriterExited, type DeferredTx, type DeferredWrites, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { RetentionHandler, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { Catalog, EventOccurrence, KeptField, PlanResult, Violation } from '../catalog/index.ts';
import type { Consent } from '../consent/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Identity, Resolution, ResolveItem } from '../identity/index.ts';
import { MASKED, ORDER_EVENT, shownMessageId, type ActivityInput, type Profiles, type TraitInput } from '../profiles/index.ts';
import { CollectRepo, EVENT_DATA_CONTEXT, MAX_REFUSAL_ROWS, messageKey, type EventRow } from './collect.repo.ts';
import { CollectRetention, orderValueOf, type EventRetentionPolicy } from './collect.retention.ts';
import { CollectSubjectData, deleteFields, hiddenByPlan, occurrenceHidden } from './collect.subject-data.ts';
import { GroupCommit } from '../../shared/group-commit.ts';
import { inSlices } from '../../shared/in-slices.ts';
import { partition, type FieldRule, type FieldRules } from './partition.ts';
import { identifiersOf, parseMessage, planInput, undeniedPurposes, type MessageKind, type ParsedMessage, type RawIdentifier } from './segment.ts';
import type { DataUseLookup } from '../taxonomy/index.ts';

/** Where a batch came from: the write key's source, and whether the request carried Sec-GPC: 1. */
export interface IngestContext {
  source: string;
  gpc: boolean;
  receivedAt: number;
  actor: Actor;
  /**
   * Who sent the request (its connection, a socket): requests of the same client are not waited for together, and once
   * the connection is destroyed the request's messages still waiting for their group commit are not written.
   */
  client?: object;
}

export type ItemStatus = 'stored' | 'duplicate' | 'refused' | 'invalid' | 'suppressed';

/** What happened to one message of a request. */
export interface ItemResult {
  index: number;
  messageId: string | undefined;
  status: ItemStatus;
  code?: ErrorCode;
  /** Purposes the stored event may serve. */
  purposes?: string[];
  /** Undeclared fields dropped by the tracking plan (the first MAX_DROPPED_LISTED). */
  dropped?: readonly string[];
  /** How many more undeclared fields were dropped than `dropped` lists. */
  droppedUnlisted?: number;
  /** Declared fields left out because none of their purposes is allowed for this person. */
  refusedFields?: string[];
  /** Schema violations (the first MAX_VIOLATIONS_LISTED). */
  violations?: readonly Violation[];
  /** How many more violations there were than `violations` lists. */
  violationsUnlisted?: number;
  detail?: string;
  /** The message carried a GPC signal (the request's `Sec-GPC: 1` or its own `context.gpc`), and it was honoured. */
  gpcHonoured?: boolean;
}

/** The dropped paths a result lists, and how many others there were when the plan left some out. */
function droppedOf(plan: PlanResult): Pick<ItemResult, 'dropped' | 'droppedUnlisted'> {
  return plan.droppedUnlisted === undefined ? { dropped: plan.dropped } : { dropped: plan.dropped, droppedUnlisted: plan.droppedUnlisted };
}

/**
 * Told the outcomes of messages, with no personal data: `count` messages of a source had this status (a refused
 * message is reported alone, with the purposes it declared).
 */
export type OutcomeObserver = (source: string, status: ItemStatus, refusedPurposes: readonly string[], count: number) => void;

/** Counts written with a group's events: refusals per day, source, event and purpose, and the tracking plan's. */
interface GroupCounts {
  refusals: Map<string, number>;
  plan: ReturnType<Catalog['takeStats']>;
}

/** A pending message with the profile identity resolution gave it. */
type Resolved = { pending: Pending; resolution: Resolution & { profileId: string } };

/** A message that passed the plan and the consent gate, waiting for the group commit. */
interface Pending {
  index: number;
  message: ParsedMessage;
  plan: PlanResult;
  /** The profile whose consent the gate checked (null: nobody known yet). */
  gatedFor: string | null;
  actor: Actor;
  resolve: ResolveItem;
  purposes: string[];
  plain: Record<string, unknown>;
  personal: Record<string, unknown>;
  hasPersonal: boolean;
  refusedFields: string[];
  dropped: readonly string[];
  traits: TraitInput[];
  gpc: boolean;
  source: string;
  receivedAt: string;
  planVersion: number;
  /** consent.stateVersion when the gate decided: while it has not moved, the decision holds (see #withdrawnSinceGate). */
  consentVersion: number;
  /** The stored form, made ahead of the group commit for the person the gate saw (see #seal). */
  sealed?: Sealed | undefined;
  /**
   * Set when a message with a GPC signal was refused before resolution linked it (#regateBeforeLinking): the person the
   * gate saw (null: nobody known), whose opt-out is recorded after the commit as for a message refused at the gate.
   */
  gpcRefusedFor?: string | null;
  /**
   * Set (to the look-up's item, every identifier of the message) when the gate saw nobody known and refused the message
   * or left identifiers out of it, while an earlier message of the request carries one of them: it is judged again
   * inside the group's transaction, after the others are resolved (#judgeAfterEarlier).
   */
  afterEarlier: ResolveItem | undefined;
}

/** What a stored event's row holds of a message: its purposes and plain part as JSON, its personal part sealed. */
interface Sealed {
  profileId: string;
  purposes: string;
  data: string;
  dataEnc: string | null;
}

export interface CollectDeps {
  storage: Storage;
  keyring: Keyring;
  catalog: Catalog;
  consent: Consent;
  identity: Identity;
  profiles: Profiles;
  /** The taxonomy's data uses: a denied consent id denies the purposes under it by their parent chain. */
  uses: DataUseLookup;
  /** Where a failure that is answered but not thrown is told (a GPC opt-out of refused messages not recorded). */
  logger?: Logger;
}

const day = (iso: string) => iso.slice(0, 10);
/** Most events in one group commit (measured with bench/support/pipeline-loop.ts: 400 and 5,000 were both slower). */
const GROUP_EVENTS = 800;
/** Fewest events in a group written by SQLite's writer thread (single-event requests: 1,726/s with it, ~2,100 without). */
const DEFERRED_MIN_EVENTS = 64;
/**
 * How long a group may wait for the requests of the last one to come back (single events from many connections: one
 * commit for all of them instead of two for half each; docs/performance.md, "2026-12-04").
 */
const GATHER_MS = 2;
const newEventId = () => sortableId('evt_');
/** What a reader who may not decrypt is kept from in an event whose occurrence is masked (Collector.events). */
const MASKED_OCCURRENCE: readonly string[] = Object.freeze(['event', 'purposes', 'data']);

/** A stored event as staff read it (Collector.events). */
export interface StoredEventView {
  id: string;
  source: string;
  /** As sent; MASKED for a reader who may not decrypt (shownMessageId). */
  messageId: string;
  profileId: string;
  kind: string;
  /** The event's name (a page's or screen's name; null for identify, group, alias); MASKED where its occurrence is masked. */
  event: string | null;
  occurredAt: string;
  receivedAt: string;
  purposes: string[];
  /** The part stored in clear, less what the reader is kept from. */
  data: Record<string, unknown>;
  /** The personal part decrypted; 'masked' for a reader who may not decrypt and is kept from some of the event; else null. */
  personal: Record<string, unknown> | 'masked' | null;
  /** Where the event's occurrence is masked: what was ('event', 'purposes', 'data'). Absent otherwise. */
  masked?: readonly string[];
}

/**
 * The ingestion pipeline: envelope checks → tracking plan (validate, minimize) → identity lookup → consent gate
 * (default deny, field by field) → suppression list → identity resolution → encryption with the person's data
 * key (one envelope per event) → durable store. Requests share commits (group commit); each is answered only
 * after its events are committed, with one result per message.
 */
export class Collector {
  readonly #deps: CollectDeps;
  /** Consent.describes, bound once (the gate asks it for every kept field). */
  readonly #describes: DescribesCategory;
  readonly #repo: CollectRepo;
  readonly #commit: GroupCommit<Pending, ItemResult>;
  #refusals = new Map<string, number>();
  readonly #observers: OutcomeObserver[] = [];
  /**
   * Per plan version and purpose, the categories by which an order could be stored for that purpose (its fields' and,
   * declared for it, its occurrence's) and the order-total fields declared for it (see #orderFieldsFor).
   */
  readonly #orderFields = new Map<string, { storedBy: readonly string[]; occurrence: string | undefined; totals: ReadonlyMap<string, string> }>();
  /** Requests between arrival and their hand-over to the group commit. */
  #checking = 0;

  constructor(deps: CollectDeps) {
    this.#deps = deps;
    this.#describes = describesBy(deps.consent);
    this.#repo = new CollectRepo(deps.storage);
    // A commit waits (a few milliseconds at most) for requests still in their checks, so concurrent requests share it.
    // Groups of at most GROUP_EVENTS: with SQLite's writer thread, one group is prepared here while the last is written.
    // A write PostgreSQL does not answer fails its requests after the storage's timeout (SQLite's never hang on a network).
    this.#commit = new GroupCommit((items, handedOver) => this.#write(items, handedOver), {
      moreComing: () => this.#checking > 0, maxItems: GROUP_EVENTS, gatherMs: GATHER_MS, timeoutMs: deps.storage.writeTimeoutMs, gone: (client) => (client as { destroyed?: unknown }).destroyed === true,
    });
  }

  /**
   * Whether ingestion's writes are stalled (for readiness): a group commit has outlived the storage's write timeout, or
   * the last one failed for the database as a whole (STORAGE_UNAVAILABLE: a statement timeout, a lost connection) and
   * none has succeeded since (see GroupCommit.failing).
   */
  get writesStalled(): boolean {
    return this.#commit.failing;
  }

  /**
   * Ingests messages of one request (kind fixed for single-call endpoints, read from `type` in batches). More than
   * SLICE_ITEMS are ingested a slice at a time, in order, each committed before the next is checked: the checks of a
   * slice run in one synchronous go. A later message then finds what an earlier slice stored, as in a later request.
   */
  ingest(messages: readonly { raw: unknown; bytes: number }[], kind: MessageKind | undefined, context: IngestContext): Promise<ItemResult[]> {
    return inSlices(messages, async (slice, start) => {
      const results = await this.#ingestSlice(slice, kind, context);
      if (start > 0) for (const r of results) r.index += start;
      return results;
    });
  }

  async #ingestSlice(messages: readonly { raw: unknown; bytes: number }[], kind: MessageKind | undefined, context: IngestContext): Promise<ItemResult[]> {
    this.#checking++;
    let handedOver = false;
    const handOver = () => {
      if (!handedOver) this.#checking--;
      handedOver = true;
    };
    try {
      return await this.#ingest(messages, kind, context, handOver);
    } finally {
      handOver();
    }
  }

  async #ingest(messages: readonly { raw: unknown; bytes: number }[], kind: MessageKind | undefined, context: IngestContext, handOver: () => void): Promise<ItemResult[]> {
    const { catalog, consent, identity } = this.#deps;
    const results: (ItemResult | undefined)[] = new Array(messages.length);
    const accepted: { index: number; message: ParsedMessage; plan: ReturnType<Catalog['process']>; resolve: ResolveItem }[] = [];
    const planVersion = catalog.version();
    const receivedAt = new Date(context.receivedAt).toISOString();
    messages.forEach(({ raw, bytes }, index) => {
      const parsed = parseMessage(raw, kind, context.receivedAt, bytes);
      if (!parsed.ok) {
        results[index] = { index, messageId: parsed.messageId, status: 'invalid', code: parsed.code, detail: parsed.detail };
        return;
      }
      const message = parsed.message;
      // The message is stored as the plan saw it (a page or screen name as its `name` property).
      const input = planInput(message);
      message.name = input.name;
      message.properties = input.data.properties;
      const plan = catalog.process(message.kind, message.name, input.data, context.source);
      if (!plan.ok) {
        results[index] = { index, messageId: message.messageId, status: 'invalid', code: plan.code ?? 'CATALOG_EVENT_INVALID', ...(plan.violations.length > 0 ? { violations: plan.violations } : {}), ...(plan.violationsUnlisted === undefined ? {} : { violationsUnlisted: plan.violationsUnlisted }), ...droppedOf(plan) };
        return;
      }
      const traits = plan.data.traits;
      accepted.push({
        index,
        message,
        plan,
        resolve: { identifiers: identifiersOf(message, traits, plan.data.context), source: context.source, messageId: message.messageId, at: message.occurredAt },
      });
    });

    // Who is this, as far as we already know? (Looking up creates nothing.) Erased people stop here.
    const raw = this.#deps.storage.raw;
    const lookups = accepted.map((a) => a.resolve);
    const suppressed = accepted.length > 0 ? await identity.isSuppressedBatch(raw, lookups) : [];
    const known = accepted.length > 0 ? await identity.lookupBatch(raw, lookups) : [];
    await consent.load(known.filter((id): id is string => id !== null));

    const pending: Pending[] = [];
    const refusedGpc: { index: number; profileId: string | null; resolve: ResolveItem }[] = [];
    const consentVersion = consent.stateVersion;
    // The identifiers (normalized) of the messages handed over so far: gathered only once a message of someone unknown
    // that the gate refused or narrowed asks whether an earlier message carries one of its identifiers.
    let carried: Set<string> | undefined;
    const keyOf = (id: RawIdentifier) => {
      const normalized = identity.normalize(id);
      return normalized && `${normalized.type}\u0000${normalized.value}`;
    };
    const carry = (item: ResolveItem) => {
      if (carried === undefined) return;
      for (const id of item.identifiers) {
        const key = keyOf(id);
        if (key !== undefined) carried.add(key);
      }
    };
    const carriedEarlier = (item: ResolveItem) => {
      if (carried === undefined) {
        carried = new Set();
        for (const p of pending) carry(p.afterEarlier ?? p.resolve);
      }
      const keys = carried;
      return item.identifiers.some((id) => keys.has(keyOf(id) ?? ''));
    };
    accepted.forEach((item, i) => {
      if (suppressed[i]) {
        results[item.index] = { index: item.index, messageId: item.message.messageId, status: 'suppressed', code: 'COLLECT_SUBJECT_SUPPRESSED' };
        return;
      }
      const profileId = known[i] ?? null;
      const { message } = item;
      const gpc = context.gpc || message.gpc;
      const gated = this.#gate(profileId, item.plan, message, gpc);
      const resolve = gated && linkableItem(message, gated.linkable, item.resolve);
      // Nobody known, and the gate refused the message or left some of its identifiers out: if an earlier message of
      // this request carries one of them, the message is judged again once that one is resolved, as a later request.
      const afterEarlier = profileId === null && resolve !== item.resolve && pending.length > 0 && carriedEarlier(item.resolve) ? item.resolve : undefined;
      if (!gated && afterEarlier === undefined) {
        this.#countRefusal(context.source, context.receivedAt, message, item.plan.purposes);
        results[item.index] = { index: item.index, messageId: message.messageId, status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS', ...droppedOf(item.plan) };
        if (gpc && profileId !== null) refusedGpc.push({ index: item.index, profileId, resolve: item.resolve });
        return;
      }
      const stored = gated?.stored ?? { purposes: [], plain: {}, personal: {}, hasPersonal: false, refusedFields: [], traits: [] };
      const p: Pending = {
        index: item.index,
        message,
        plan: item.plan,
        gatedFor: profileId,
        actor: context.actor,
        resolve: resolve ?? item.resolve,
        purposes: stored.purposes,
        plain: stored.plain,
        personal: stored.personal,
        hasPersonal: stored.hasPersonal,
        refusedFields: stored.refusedFields,
        traits: stored.traits,
        dropped: item.plan.dropped,
        gpc,
        source: context.source,
        receivedAt,
        planVersion,
        consentVersion,
        afterEarlier,
      };
      pending.push(p);
      carry(afterEarlier ?? p.resolve);
    });

    // Each message's stored form (its JSON and envelope) is made now, while an earlier group is being written, rather
    // than inside the group's transaction: that only checks that resolution found the same person and key.
    const { keyring } = this.#deps;
    for (const p of pending) if (p.gatedFor !== null && (!p.hasPersonal || keyring.holds(p.gatedFor))) p.sealed = this.#seal(p, p.gatedFor);
    const committed = this.#commit.submit(pending, context.client);
    handOver();
    for (const result of await committed) results[result.index] = result;
    for (const p of pending) {
      if (p.gpcRefusedFor !== undefined && results[p.index]?.status === 'refused') refusedGpc.push({ index: p.index, profileId: p.gpcRefusedFor, resolve: p.resolve });
    }
    const gpcNotRecorded = new Set((await this.#recordRefusedGpc(refusedGpc, context)) ? [] : refusedGpc.map((r) => r.index));
    const answered = results.map((r, index): ItemResult => r ?? { index, messageId: undefined, status: 'invalid', code: 'INTERNAL_ERROR' });
    for (const { index, message } of accepted) {
      const result = answered[index] as ItemResult;
      // Stored under the opt-out, or not processed at all (a known person's opt-out recorded): honoured either way.
      if ((context.gpc || message.gpc) && result.status !== 'invalid' && !gpcNotRecorded.has(index)) result.gpcHonoured = true;
    }
    if (this.#observers.length > 0) this.#report(context.source, answered, accepted);
    return answered;
  }

  /**
   * A GPC signal on refused messages (at the gate, or before resolution linked them) is recorded all the same for the
   * known people they were about, and for every other profile one of their identifiers belongs to (as for stored
   * messages). Whether it was recorded (when it was not, their answers do not say the signal was honoured, the failure
   * is logged, and the refusals stand).
   */
  async #recordRefusedGpc(refused: readonly { profileId: string | null; resolve: ResolveItem }[], context: IngestContext): Promise<boolean> {
    if (refused.length === 0) return true;
    const { consent, identity, storage } = this.#deps;
    try {
      const owners = await identity.ownersOf(storage.raw, refused.map((r) => r.resolve));
      // Each message's device (the holder of its strongest identifier): one an unmerge splits off meanwhile gets it too.
      const knownAt = refused.flatMap((r, i) => (r.profileId === null ? [] : [i]));
      const held = knownAt.length === 0 ? [] : await identity.lookupBatch(storage.raw, knownAt.map((i) => (refused[i] as (typeof refused)[number]).resolve), { holders: true });
      const holderAt = new Map(knownAt.map((at, n) => [at, held[n]]));
      const people = gpcDevices();
      refused.forEach((r, i) => people.add(r.profileId, owners[i] ?? [], holderAt.get(i)));
      const devices = people.devices();
      if (devices.length > 0) await consent.recordGpcEach(devices, { source: context.source, holders: people.holders }, context.actor);
      return true;
    } catch (err) {
      this.#deps.logger?.warn({ err, source: context.source, messages: refused.length }, 'GPC opt-out of refused messages not recorded');
      return false;
    }
  }

  /** Tells the observers the outcomes of a request: a count per outcome, and each refused message with its purposes. */
  #report(source: string, answered: readonly ItemResult[], accepted: readonly { index: number; plan: PlanResult }[]): void {
    const counts = new Map<ItemStatus, number>();
    let purposesOf: Map<number, readonly string[]> | undefined;
    for (const r of answered) {
      if (r.status !== 'refused') {
        counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
        continue;
      }
      purposesOf ??= new Map(accepted.map((a) => [a.index, a.plan.purposes]));
      for (const observe of this.#observers) observe(source, 'refused', purposesOf.get(r.index) ?? [], 1);
    }
    for (const [status, n] of counts) for (const observe of this.#observers) observe(source, status, [], n);
  }

  /** Calls back with the messages' outcomes (source, status, the purposes refused, how many): for metrics. */
  observe(observer: OutcomeObserver): () => void {
    this.#observers.push(observer);
    return () => {
      const at = this.#observers.indexOf(observer);
      if (at >= 0) this.#observers.splice(at, 1);
    };
  }

  /**
   * The consent gate for one message and one person (null: nobody known yet): the purposes it may serve and its
   * data split into plain and personal parts without the fields no allowed purpose covers; undefined when no purpose
   * of the message has a lawful basis.
   */
  #gate(profileId: string | null, plan: PlanResult, message: ParsedMessage, gpc: boolean) {
    const { consent } = this.#deps;
    const describes = this.#describes;
    // The purposes of the plan's list that the message does not deny and that have a lawful basis, in its order: the
    // purposes the event is stored for.
    // (A few per event: arrays, no sets.)
    const allowed = this.#allowed(profileId, undeniedPurposes(message, plan.purposes, this.#deps.uses), gpc);
    if (allowed.length === 0) return undefined;
    let explicit: readonly string[] = NONE;
    if (profileId !== null) {
      for (const p of allowed) {
        // Explicit: the purpose asked for explicit consent when this person gave it (not merely now).
        if (consent.decide(profileId, p).explicit) {
          if (explicit === NONE) explicit = [];
          (explicit as string[]).push(p);
        }
      }
    }
    // The event is kept only for the purposes it serves (servedPurposes): a precise location refused for want of
    // explicit consent, a field kept for another purpose only, or a field about the system, is no basis for storing it
    // under a purpose.
    const purposes = servedPurposes(plan, allowed, explicit, describes);
    if (purposes.length === 0) return undefined;
    // Each field's rule is worked out when partition meets it (no map of rules per message). Kept for the purposes the
    // event is stored for: the same as for `allowed`, but for a field about the system, which serves none by itself.
    const declared = plan.declared;
    const rules: FieldRules = {
      get(path) {
        const field = declared.get(path);
        return field && ruleOf(field.personal, fieldAllowed(field, purposes, explicit, describes));
      },
    };
    const split = partition(plan.data as Record<string, unknown>, rules);
    // Identity resolution links only identifiers whose fields may be processed for this person.
    const plainTraits = split.plain.traits as Record<string, unknown> | undefined;
    const personalTraits = split.personal.traits as Record<string, unknown> | undefined;
    const traits = plainTraits === undefined ? personalTraits : personalTraits === undefined ? plainTraits : { ...plainTraits, ...personalTraits };
    const externalIds = keptItems((split.plain.context as Record<string, unknown> | undefined)?.externalIds, (split.personal.context as Record<string, unknown> | undefined)?.externalIds);
    // A group call's groupId (Segment's required field) names the account, company or household it is about, which may
    // name a person (a household, an e-mail address): kept in the event's personal envelope, sealed with the person's key.
    const groupId = message.kind === 'group' ? message.groupId : undefined;
    return {
      linkable: { traits, context: externalIds === undefined ? undefined : { externalIds } },
      stored: {
        purposes,
        plain: split.plain,
        personal: groupId === undefined ? split.personal : { ...split.personal, groupId },
        hasPersonal: split.personalCount > 0 || groupId !== undefined,
        refusedFields: split.refused,
        traits: message.kind === 'identify' ? traitInputs(plan.fields, split.plain, split.personal, rules) : [],
      },
    };
  }

  /** Purposes with a lawful basis for this person now; for someone unknown only the purposes that need no consent record. */
  #allowed(profileId: string | null, purposes: readonly string[], gpc: boolean): string[] {
    const { consent } = this.#deps;
    const allowed = profileId === null ? purposes.filter((p) => { const c = consent.purpose(p); return c !== undefined && c.basis !== 'consent'; }) : consent.allowedPurposes(profileId, purposes);
    return this.#withGpc(profileId, allowed, gpc);
  }

  /** The allowed purposes left once a GPC signal on the request or message is honoured. */
  #withGpc(profileId: string | null, allowed: string[], gpc: boolean): string[] {
    const { consent } = this.#deps;
    if (!gpc) return allowed;
    // Sec-GPC: 1 is honoured on this very request, before the opt-out is in the ledger; an opt-in the person confirmed
    // explicitly over GPC stands (their browser keeps sending the signal).
    return allowed.filter((p) => {
      const c = consent.purpose(p);
      return !(c?.saleOrSharing || c?.targetedAdvertising) || (profileId !== null && consent.confirmedOverGpc(profileId, p));
    });
  }

  #countRefusal(source: string, receivedAt: number, message: ParsedMessage, purposes: readonly string[], into = this.#refusals): void {
    const event = message.kind === 'track' ? (message.name ?? message.kind) : message.kind;
    for (const purpose of purposes.length > 0 ? purposes : ['(none)']) {
      const key = [day(new Date(receivedAt).toISOString()), source, event, purpose].join('\u0000');
      into.set(key, (into.get(key) ?? 0) + 1);
    }
  }

  /**
   * A write that fails has stored none of its events, traits, activity or counts (one transaction holds them all; the
   * counts go back): GroupCommit may write the items again. What an earlier step committed (identity resolution, a
   * merge, a GPC record) is found again by the second write, not done twice.
   */
  async #write(items: readonly Pending[], handedOver: () => void): Promise<ItemResult[]> {
    const deferred = this.#deps.storage.deferred;
    // Small groups (single-event requests arriving one by one) are written here: for them the thread's round trips
    // cost more than they let overlap.
    if (deferred?.usable && items.length >= DEFERRED_MIN_EVENTS) {
      const done = await this.#writeDeferred(deferred, items, handedOver);
      if (done) return done;
    }
    // Written on this thread: nothing is handed over to overlap with, so the group written before is answered now
    // rather than after this whole commit (GroupCommit holds each group's answer until the next one is handed over).
    handedOver();
    // A large group's events are still stored by the writer thread, once resolution is done here (#writeNow).
    const writer = deferred?.usable && items.length >= DEFERRED_MIN_EVENTS ? deferred : undefined;
    // PostgreSQL may end a transaction that waits in a cycle with another process's (a deadlock) or that cannot be
    // serialized: nothing of it was stored, and the same write goes through a moment later.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#writeNow(items, writer);
      } catch (error) {
        if (attempt >= WRITE_ATTEMPTS || !isTransientFailure(error)) throw error;
        await delay(attempt * 5 + Math.random() * 10);
      }
    }
  }

  /**
   * The usual group (people already known, nobody merged, no GPC to record) written by SQLite's writer thread: this
   * thread reads and prepares while the writer holds the write lock, then goes on with the next requests while the
   * writer inserts and commits. Undefined when the group is not the usual one or a message turned out to be stored
   * already (nothing was written then), or when the writer thread ended (it may have committed): #writeNow handles
   * it, and finds what was committed as duplicates.
   */
  async #writeDeferred(deferred: DeferredWrites, items: readonly Pending[], handedOver: () => void): Promise<ItemResult[] | undefined> {
    const { identity, catalog } = this.#deps;
    // A GPC message whose person has the opt-outs in force already has nothing to record (checked again on its
    // resolution, storableAtOnce).
    if (items.some((p) => p.gatedFor === null || (p.gpc && this.#deps.consent.gpcWouldRecord(p.gatedFor)) || p.afterEarlier !== undefined)) return undefined;
    await this.#prepareKnown(items);
    const counts = this.#takeCounts();
    const results = new Map<Pending, ItemResult>();
    try {
      await deferred.transaction(async (tx) => {
        const kept = await this.#leaveOutErased(tx, items, (p) => p.gatedFor, results);
        const resolutions = await identity.resolveBatch(tx, kept.map((p) => p.resolve));
        const resolved = kept.map((p, i) => ({ pending: p, resolution: resolutions[i] }));
        if (!storableAtOnce(resolved, this.#deps.keyring, this.#deps.consent)) throw UNUSUAL;
        await this.#store(tx, resolved, counts.refusals, results);
        await catalog.writeStats(tx, counts.plan);
      }, handedOver);
    } catch (error) {
      // Counts a commit may have written are not put back: written twice they would be wrong for good, while a commit
      // that did not happen after all loses this group's counts only (its events are written again).
      if (!(error instanceof WriterExited && error.mayHaveCommitted)) this.#restoreCounts(counts);
      if (error === UNUSUAL || error instanceof DeferredConflict || error instanceof WriterExited) return undefined;
      throw error;
    }
    return answerAll(items, results);
  }

  /** Loads, outside any transaction, the data keys and stored traits of the people the gate saw for these messages. */
  async #prepareKnown(known: readonly Pending[]): Promise<void> {
    const { keyring, profiles } = this.#deps;
    await keyring.prepare(known.filter((p) => p.hasPersonal || p.traits.length > 0).map((p) => p.gatedFor as string));
    await profiles.prepare(known.filter((p) => p.traits.length > 0).map((p) => p.gatedFor as string));
  }

  /** Refusal and tracking-plan counts gathered since the last commit, taken to be written with this group. */
  #takeCounts(): GroupCounts {
    const refusals = this.#refusals;
    this.#refusals = new Map();
    // The tracking plan's counts (dropped fields, violations) are written with the events, in the same commit.
    return { refusals, plan: this.#deps.catalog.takeStats() };
  }

  /** Nothing of the group was stored: its counts go back, for the next commit. */
  #restoreCounts(counts: GroupCounts): void {
    for (const [key, n] of counts.refusals) this.#refusals.set(key, (this.#refusals.get(key) ?? 0) + n);
    this.#deps.catalog.restoreStats(counts.plan);
  }

  /**
   * Writes a group on this thread: resolution, then (in the same transaction when nothing changed) the events. When the
   * events need a second transaction (someone new, a merge, a GPC signal recorded between), that one is run by SQLite's
   * writer thread when `writer` is given (storeSecond).
   */
  async #writeNow(items: readonly Pending[], writer?: DeferredWrites): Promise<ItemResult[]> {
    const { storage, identity, keyring, profiles, consent, catalog } = this.#deps;
    const results = new Map<Pending, ItemResult>();
    const answer = () => answerAll(items, results);
    // Keys of people already known are loaded first, so that a group about known people (the usual case) is
    // resolved and stored in one transaction: one commit per group.
    await this.#prepareKnown(items.filter((p) => p.gatedFor !== null && (!p.gpc || !this.#deps.consent.gpcWouldRecord(p.gatedFor))));
    const counts = this.#takeCounts();
    const { refusals, plan: planCounts } = counts;
    const restore = (error: unknown) => {
      this.#restoreCounts(counts);
      throw error;
    };

    // Refusals of the gates after resolution are written with the events, and dropped on failure: a second write of
    // the group counts them.
    const regated = new Map<string, number>();
    // Refusals of messages judged after earlier ones: judged again by every round, so counted per round.
    let judgedRefusals = new Map<string, number>();
    const withRegated = () => {
      const written = new Map(refusals);
      for (const counted of [regated, judgedRefusals]) for (const [key, n] of counted) written.set(key, (written.get(key) ?? 0) + n);
      return written;
    };

    // 1. Identity resolution (the suppression list was checked before the consent gate, with the lookup). A message
    // the person it resolves to would refuse (a merge, a limit, a new profile: see #regateBeforeLinking) is answered
    // refused and the resolution made again without it, so that it links and merges nothing.
    let resolved: { pending: Pending; resolution: Resolution | undefined }[] = [];
    let remaining = items;
    const fresh = new Set(items.flatMap((p) => (p.gatedFor === null ? [] : [p.gatedFor])));
    const waiting = items.some((p) => p.afterEarlier !== undefined);
    const storedAtOnce = await (async () => {
      // Each round leaves messages out or loads consent (once per set of messages left): more rounds than that would
      // mean states evicted as they are loaded.
      for (let round = 0; ; round++) {
        if (round > 2 * items.length + 2) throw new Error('identity resolution did not settle');
        try {
          return await storage.raw.transaction(async (tx) => {
            remaining = await this.#leaveOutErased(tx, remaining, (p) => p.gatedFor, results);
            const first = waiting ? remaining.filter((p) => p.afterEarlier === undefined) : remaining;
            const resolutions = await identity.resolveBatch(tx, first.map((p) => p.resolve));
            resolved = first.map((p, i) => ({ pending: p, resolution: resolutions[i] }));
            // Messages judged after the others are stored by the second transaction, with the keys it prepares.
            let judged = 0;
            if (waiting) {
              judgedRefusals = new Map();
              const later = await this.#judgeAfterEarlier(tx, remaining.filter((p) => p.afterEarlier !== undefined), resolved, fresh, judgedRefusals, results);
              judged = later.length;
              resolved = resolved.concat(later);
            }
            this.#regateBeforeLinking(resolved, fresh);
            if (judged > 0 || !storableAtOnce(resolved, keyring, consent)) return false;
            await this.#store(tx, resolved, withRegated(), results);
            await catalog.writeStats(tx, planCounts);
            return true;
          });
        } catch (error) {
          if (!(error instanceof ResolveAgain)) throw error;
          const again = error as ResolveAgain<Pending>;
          if (again.load.length > 0) {
            await consent.load(again.load);
            for (const id of again.load) fresh.add(id);
          }
          for (const p of again.refused) {
            // Its resolution is rolled back with the transaction: its GPC signal is recorded after the commit, as for a
            // message refused at the gate (#recordRefusedGpc).
            if (p.gpc) p.gpcRefusedFor = p.gatedFor;
            this.#refuseMoved(p, regated, results);
          }
          remaining = remaining.filter((p) => !again.refused.has(p));
        }
      }
    })().catch(restore);
    if (storedAtOnce) return answer();

    // Everything between the two transactions may fail too (a merge listener, a key): the counts then go back.
    const storable = await (async () => {
      const merges = resolved.flatMap((r) => r.resolution?.merges ?? []);
      if (merges.length > 0) await identity.notifyMerges(merges);
      const withProfile = resolved.filter((r): r is Resolved => typeof r.resolution?.profileId === 'string');
      for (const r of resolved) {
        if (typeof r.resolution?.profileId !== 'string') results.set(r.pending, { index: r.pending.index, messageId: r.pending.message.messageId, status: 'invalid', code: 'COLLECT_IDENTITY_MISSING', detail: 'blocked' });
      }
      // Sec-GPC: 1 is recorded per request origin (source and write key), for the profile each message resolved to and
      // every other profile one of its identifiers belongs to (the device's anonymous id may be another person's: a
      // shared device whose signal covers everyone on it): a receipt per person, linking only their messages' devices
      // (a server relays one batch for many people).
      const gpcGroups = new Map<string, { actor: Actor; source: string; people: GpcDevices }>();
      const signalled = withProfile.filter((r) => r.pending.gpc);
      const owners = signalled.length === 0 ? [] : await identity.ownersOf(storage.raw, signalled.map((r) => r.pending.resolve));
      signalled.forEach(({ pending: p, resolution }, i) => {
        const key = `${p.source}\u0000${p.actor.id}`;
        const group = gpcGroups.get(key) ?? { actor: p.actor, source: p.source, people: gpcDevices() };
        // The device the message came from, should an unmerge split it off its person meanwhile.
        group.people.add(resolution.profileId, owners[i] ?? [], resolution.holder);
        gpcGroups.set(key, group);
      });
      for (const group of gpcGroups.values()) await consent.recordGpcEach(group.people.devices(), { source: group.source, holders: group.people.holders }, group.actor);

      // Resolution may land on another profile than the lookup saw (a merge, a limit), and a merge changes the consent
      // of the profile that survives it (the most restrictive of both): the gate is run again for every message stored
      // for such a person, with the consent that counts now.
      const mergedInto = new Set(merges.map((m) => m.into));
      const moved = withProfile.filter((r) => r.pending.gatedFor !== r.resolution.profileId || mergedInto.has(r.resolution.profileId));
      if (moved.length > 0) await consent.load([...new Set(moved.map((r) => r.resolution.profileId))]);
      for (const r of moved) this.#gateAgain(r.pending, r.resolution.profileId, regated, results);
      const kept = withProfile.filter((r) => !results.has(r.pending));

      // 2. Data keys of new people are created outside any transaction (that needs the database), then
      // 3. events, traits and computed traits are stored in one transaction; the answer waits for its commit.
      await keyring.prepare(kept.filter((r) => r.pending.hasPersonal || r.pending.traits.length > 0).map(holderOf));
      await profiles.prepare(kept.filter((r) => r.pending.traits.length > 0).flatMap((r) => [holderOf(r), r.resolution.profileId]));
      return kept;
    })().catch(restore);
    // 3. The events: by SQLite's writer thread when `writer` is given (storeSecond).
    const profileOf = new Map(storable.map((r) => [r.pending, r.resolution.profileId]));
    const storeIn = async (tx: SqlExecutor | DeferredTx, into: Map<Pending, ItemResult>, counted: GroupCounts) => {
      // An erasure may have committed since the resolution's transaction.
      const kept = new Set(await this.#leaveOutErased(tx, storable.map((r) => r.pending), (p) => profileOf.get(p) ?? null, into));
      await this.#store(tx, kept.size === storable.length ? storable : storable.filter((r) => kept.has(r.pending)), counted.refusals, into);
      await catalog.writeStats(tx, counted.plan);
    };
    await storeSecond(storage, writer, storeIn, { refusals: withRegated(), plan: planCounts }, results, restore);
    return answer();
  }

  /**
   * At the start of a group's transaction: the messages an erasure (or the inactivity rule's deletion, between the
   * group's two transactions) committed since their request was checked made unstorable — an identifier of theirs now
   * suppressed, or the person they are written for (`profileOf`) deleted — are answered suppressed and left out. On
   * PostgreSQL no erasure commits until this transaction does (the erasure lock, taken shared by
   * identity.suppressedInGroup); on SQLite the write lock keeps erasures out.
   */
  async #leaveOutErased(tx: SqlExecutor, items: readonly Pending[], profileOf: (p: Pending) => string | null, results: Map<Pending, ItemResult>): Promise<readonly Pending[]> {
    const { identity } = this.#deps;
    if (items.length === 0) return items;
    // A message judged after earlier ones is checked with all its identifiers: which of them it links is decided later.
    const suppressed = await identity.suppressedInGroup(tx, items.map((p) => p.afterEarlier ?? p.resolve));
    const written: string[] = [];
    items.forEach((p, i) => {
      const profileId = profileOf(p);
      if (!suppressed[i] && profileId !== null) written.push(profileId);
    });
    const gone = await identity.erasedProfiles(tx, written);
    if (gone.size === 0 && !suppressed.includes(true)) return items;
    return items.filter((p, i) => {
      const profileId = profileOf(p);
      if (!suppressed[i] && (profileId === null || !gone.has(profileId))) return true;
      results.set(p, { index: p.index, messageId: p.message.messageId, status: 'suppressed', code: 'COLLECT_SUBJECT_SUPPRESSED' });
      return false;
    });
  }

  /**
   * Whether a purpose the message was gated for has lost its basis since (its person's state is in memory). Nothing
   * to look at while no state in memory moved since the gate (the usual group: no per-event work).
   */
  #withdrawnSinceGate(profileId: string, p: Pending): boolean {
    const { consent } = this.#deps;
    if (p.consentVersion === consent.stateVersion || p.purposes.length === 0 || !consent.isLoaded(profileId)) return false;
    return consent.allowedPurposes(profileId, p.purposes).length !== p.purposes.length;
  }

  /**
   * Gates a message again for `profileId` with the consent in force now: answered refused (and counted in `regated`)
   * when no purpose is left, undefined then; else its purposes and parts are those of the new decision (returned, with
   * the identifiers it may link), sealed again.
   */
  #gateAgain(p: Pending, profileId: string | null, regated: Map<string, number>, results: Map<Pending, ItemResult>) {
    const gated = this.#gate(profileId, p.plan, p.message, p.gpc);
    if (!gated) {
      this.#refuseMoved(p, regated, results);
      return undefined;
    }
    Object.assign(p, gated.stored);
    p.sealed = undefined;
    return gated;
  }

  /**
   * Inside the resolution's transaction, once the group's other messages are resolved: judges the messages waiting for
   * earlier ones (Pending.afterEarlier) as a request sent after them would be, and returns the resolutions of those
   * judged storable. Each is looked up with all its identifiers (what this transaction linked included), gated for the
   * person found, and resolved with the identifiers the gate kept. Those whose person is not found yet wait while
   * others are stored (one may link the identifier another waits for); then they are judged for nobody known, as at
   * the first gate. A profile this transaction made or merged has no consent state of its own yet: it counts as nobody
   * known (fail closed). Throws ResolveAgain naming the people whose consent is not loaded for this write (`fresh`).
   */
  async #judgeAfterEarlier(
    tx: SqlExecutor,
    waiting: readonly Pending[],
    resolved: readonly { pending: Pending; resolution: Resolution | undefined }[],
    fresh: ReadonlySet<string>,
    refusals: Map<string, number>,
    results: Map<Pending, ItemResult>,
  ): Promise<{ pending: Pending; resolution: Resolution | undefined }[]> {
    const { identity, consent } = this.#deps;
    const touched = new Set<string>();
    const touch = (rs: readonly { resolution: Resolution | undefined }[]) => {
      for (const { resolution: r } of rs) {
        if (r?.created && r.holder !== null) touched.add(r.holder);
        for (const m of r?.merges ?? []) touched.add(m.from).add(m.into);
      }
    };
    touch(resolved);
    const out: { pending: Pending; resolution: Resolution | undefined }[] = [];
    let left = waiting;
    while (left.length > 0) {
      const found = await identity.lookupBatch(tx, left.map((p) => p.afterEarlier as ResolveItem));
      const named = found.map((id) => (id !== null && !touched.has(id) ? id : null));
      const load = named.filter((id): id is string => id !== null && !(fresh.has(id) && consent.isLoaded(id)));
      if (load.length > 0) throw new ResolveAgain<Pending>([...new Set(load)], new Set());
      // Everyone found, or nobody: this is the last look-up.
      const last = !named.includes(null) || named.every((id) => id === null);
      const judged: Pending[] = [];
      const unnamed: Pending[] = [];
      left.forEach((p, i) => {
        const profileId = named[i] ?? null;
        if (profileId === null && !last) unnamed.push(p);
        else if (this.#judge(p, profileId, refusals, results)) judged.push(p);
      });
      if (judged.length > 0) {
        const resolutions = await identity.resolveBatch(tx, judged.map((p) => p.resolve));
        const wave = judged.map((p, i) => ({ pending: p, resolution: resolutions[i] }));
        touch(wave);
        out.push(...wave);
      }
      left = unnamed;
    }
    return out;
  }

  /**
   * Gates a message waiting for earlier ones for `profileId` (null: nobody known): true when a purpose is allowed, with
   * its parts and the identifiers it links set for that person; else it is answered refused (counted in `refusals`).
   */
  #judge(p: Pending, profileId: string | null, refusals: Map<string, number>, results: Map<Pending, ItemResult>): boolean {
    const lookup = p.afterEarlier as ResolveItem;
    p.gatedFor = profileId;
    p.consentVersion = this.#deps.consent.stateVersion;
    p.resolve = lookup;
    // As at the first gate: the GPC signal of a message refused for a known person is recorded for them.
    p.gpcRefusedFor = p.gpc && profileId !== null ? profileId : undefined;
    const gated = this.#gateAgain(p, profileId, refusals, results);
    if (!gated) return false;
    p.resolve = linkableItem(p.message, gated.linkable, lookup);
    p.gpcRefusedFor = undefined;
    results.delete(p);
    return true;
  }

  /** A message refused by a gate after resolution: counted and answered refused, and gated anew by a second write. */
  #refuseMoved(p: Pending, regated: Map<string, number>, results: Map<Pending, ItemResult>): void {
    this.#countRefusal(p.source, Date.parse(p.receivedAt), p.message, p.plan.purposes, regated);
    // A second write of the group sees no merge: it must gate this message again, not store it as first gated.
    p.gatedFor = null;
    results.set(p, { index: p.index, messageId: p.message.messageId, status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS', ...droppedOf(p.plan) });
  }

  /**
   * Inside the resolution's transaction, before it commits: the messages that resolution moved to another person than
   * the gate saw (a merge, an identifier over its type's limit, a new profile) are gated again with the consent that
   * person will have once the merges are applied (consent.allowedPurposesMerged: every merged profile's refusals,
   * withdrawals, GPC opt-outs and restrictions bind it). Throws ResolveAgain (the transaction is rolled back) naming
   * the messages no purpose would allow, or first the people whose consent is not loaded yet (`fresh`: loaded for
   * this write). A profile made by this very transaction has no consent record.
   */
  #regateBeforeLinking(resolved: readonly { pending: Pending; resolution: Resolution | undefined }[], fresh: ReadonlySet<string>): void {
    const merges = resolved.flatMap((r) => r.resolution?.merges ?? []);
    const survivors = new Set(merges.map((m) => m.into));
    const moved = resolved.filter((r): r is Resolved => typeof r.resolution?.profileId === 'string' && (r.pending.gatedFor !== r.resolution.profileId || survivors.has(r.resolution.profileId)));
    if (moved.length === 0) return;
    const unstored = new Set(resolved.flatMap((r) => (r.resolution?.created && r.resolution.holder !== null ? [r.resolution.holder] : [])));
    const { mergedInto } = mergeSurvivors(merges);
    const load = new Set<string>();
    for (const r of moved) {
      for (const id of [r.resolution.profileId, ...(mergedInto.get(r.resolution.profileId) ?? [])]) {
        if (!unstored.has(id) && (!fresh.has(id) || !this.#deps.consent.isLoaded(id))) load.add(id);
      }
    }
    if (load.size > 0) throw new ResolveAgain<Pending>([...load], new Set());
    const refused = new Set<Pending>();
    for (const { pending: p, resolution } of moved) {
      const allowed = this.#deps.consent.allowedPurposesMerged(resolution.profileId, mergedInto.get(resolution.profileId) ?? [], undeniedPurposes(p.message, p.plan.purposes, this.#deps.uses), unstored);
      if (this.#withGpc(unstored.has(resolution.profileId) ? null : resolution.profileId, allowed, p.gpc).length === 0) refused.add(p);
    }
    if (refused.size > 0) throw new ResolveAgain<Pending>([], refused);
  }

  /** Stores a group's events (one encrypted envelope each), traits, computed traits and refusal counts in `tx`. */
  async #store(tx: SqlExecutor | DeferredTx, storable: readonly Resolved[], refusals: ReadonlyMap<string, number>, results: Map<Pending, ItemResult>): Promise<void> {
    const { keyring, profiles } = this.#deps;
    const seen = new Set<string>();
    const rows: EventRow[] = [];
    const rowOf = new Map<Pending, string>();
    let counts = refusals;
    for (const r of storable) {
      const p = r.pending;
      if (results.has(p)) continue;
      // Consent withdrawn or refused since the gate (a change by this process, in force before its commit): the
      // message is gated again, inside this transaction, so nothing is stored for a purpose after the answer to the
      // change that ended it.
      if (this.#withdrawnSinceGate(r.resolution.profileId, p)) {
        if (counts === refusals) counts = new Map(refusals);
        if (!this.#gateAgain(p, r.resolution.profileId, counts as Map<string, number>, results)) continue;
      }
      // Written to the profile that holds the message's strongest identifier (the person's, or one merged into it).
      const profileId = holderOf(r);
      const key = messageKey(p.source, p.message.dedupAt, p.message.messageId);
      if (seen.has(key)) {
        results.set(p, { index: p.index, messageId: p.message.messageId, status: 'duplicate' });
        continue;
      }
      seen.add(key);
      rowOf.set(p, key);
      const early = p.sealed;
      const sealed = early !== undefined && early.profileId === profileId && (early.dataEnc === null || keyring.sealedWithHeldKey(profileId, early.dataEnc, EVENT_DATA_CONTEXT)) ? early : this.#seal(p, profileId);
      rows.push({
        id: newEventId(),
        source: p.source,
        message_id: p.message.messageId,
        profile_id: profileId,
        kind: p.message.kind,
        event: p.message.name ?? null,
        occurred_at: p.message.occurredAt,
        received_at: p.receivedAt,
        purposes: sealed.purposes,
        data: sealed.data,
        data_enc: sealed.dataEnc,
        plan_version: p.planVersion,
        dedup_at: p.message.dedupAt,
      });
    }
    const inserted = await this.#repo.insertEvents(tx, rows);
    const fresh = storable.filter((r) => inserted.has(rowOf.get(r.pending) ?? ''));
    // Traits of a person whose profiles are merged are unchanged only if the person's newest value is the same. The
    // person is the one the group's merges leave (read in `tx`): an earlier message's resolution names the profile it
    // found, which a later message of the group may have merged into another person.
    const withTraits = fresh.filter((r) => r.pending.traits.length > 0);
    const { identity } = this.#deps;
    const canonical = withTraits.length === 0 ? undefined : await identity.canonicalsIn(tx, withTraits.map((r) => r.resolution.profileId));
    const personOf = (r: Resolved) => canonical?.get(r.resolution.profileId) ?? r.resolution.profileId;
    const persons = withTraits.length === 0 ? undefined : await identity.membersIn(tx, withTraits.map(personOf));
    await profiles.setTraitsBatch(
      tx,
      withTraits.map((r) => ({ profileId: holderOf(r), traits: r.pending.traits, source: r.pending.source, messageId: r.pending.message.messageId, at: r.pending.message.occurredAt, person: persons?.get(personOf(r)) })),
    );
    // Positions in the group's order, which is the order of the events' ids (retention counts orders again by those).
    await profiles.recordActivityBatch(tx, fresh.map((r, position) => activityOf(holderOf(r), r.pending, position)));
    await this.#repo.addRefusals(tx, counts);
    for (const { pending: p } of storable) {
      if (results.has(p)) continue;
      const stored = inserted.has(rowOf.get(p) ?? '');
      const result: ItemResult = { index: p.index, messageId: p.message.messageId, status: stored ? 'stored' : 'duplicate' };
      if (stored) result.purposes = p.purposes;
      if (p.dropped.length > 0) result.dropped = p.dropped;
      if (p.plan.droppedUnlisted !== undefined) result.droppedUnlisted = p.plan.droppedUnlisted;
      if (p.refusedFields.length > 0) result.refusedFields = p.refusedFields;
      results.set(p, result);
    }
  }

  /** A message's stored form for this person, with the data key prepare() loaded (or keyring.holds() tells is held). */
  #seal(p: Pending, profileId: string): Sealed {
    const dataEnc = p.hasPersonal ? this.#deps.keyring.encryptPrepared(profileId, JSON.stringify(p.personal), EVENT_DATA_CONTEXT) : null;
    return { profileId, purposes: JSON.stringify(p.purposes), data: JSON.stringify(p.plain), dataEnc };
  }

  /**
   * Refusal counts per day, source, event and purpose (no personal data), including counts not yet written: newest day
   * first, then by source, event and purpose (by code point, as stored rows are read); at most MAX_REFUSAL_ROWS.
   */
  async refusals(filter: { source?: string; since?: string } = {}) {
    const rows = await this.#repo.refusals(filter);
    const merged = new Map(rows.map((r) => [[r.day, r.source, r.event, r.purpose].join('\u0000'), { ...r, count: Number(r.count) }]));
    for (const [key, n] of this.#refusals) {
      const [d, source, event, purpose] = key.split('\u0000') as [string, string, string, string];
      if ((filter.source && source !== filter.source) || (filter.since && d < filter.since)) continue;
      const row = merged.get(key) ?? { day: d, source, event, purpose, count: 0 };
      row.count += n;
      merged.set(key, row);
    }
    return [...merged.values()]
      .sort((a, b) => compareText(b.day, a.day) || compareText(a.source, b.source) || compareText(a.event, b.event) || compareText(a.purpose, b.purpose))
      .slice(0, MAX_REFUSAL_ROWS);
  }

  /** Writes refusal counts still held in memory (also done with every commit of stored events). */
  async flush(): Promise<void> {
    if (this.#refusals.size === 0) return;
    const refusals = this.#refusals;
    this.#refusals = new Map();
    try {
      await this.#deps.storage.raw.transaction((tx) => this.#repo.addRefusals(tx, refusals));
    } catch (error) {
      for (const [key, n] of refusals) this.#refusals.set(key, (this.#refusals.get(key) ?? 0) + n);
      throw error;
    }
  }

  /**
   * Events stored about these profiles, newest first; personal fields decrypted on request. Otherwise the personal part
   * reads 'masked', and fields stored in clear that the plan in force declares personal, or no longer declares, are
   * left out of `data` (the personal part then reads 'masked' too), as if they had been stored encrypted; and an event
   * whose occurrence is of a special category or precise location (occurrenceHidden) reads only as something that
   * happened then: its name MASKED, no purposes and no data, listed in `masked`. Its messageId reads MASKED too
   * (shownMessageId: the sender chose it).
   */
  async events(profileIds: readonly string[], options: { decrypt: boolean; limit: number }): Promise<StoredEventView[]> {
    const rows = await this.#repo.eventsOf(profileIds, options.limit);
    const { catalog, keyring } = this.#deps;
    // One version for the whole answer.
    const plan = options.decrypt ? undefined : catalog.fieldsInForce();
    const storedUnder = (version: number) => catalog.fieldsOf(version);
    return Promise.all(
      rows.map(async (row) => {
        const shown = { id: row.id, source: row.source, messageId: shownMessageId(row.message_id, options.decrypt), profileId: row.profile_id, kind: row.kind };
        const times = { occurredAt: row.occurred_at, receivedAt: row.received_at };
        if (plan !== undefined && (await occurrenceHidden(plan, row, storedUnder))) {
          return { ...shown, event: MASKED, ...times, purposes: [], data: {}, personal: 'masked', masked: MASKED_OCCURRENCE };
        }
        const data = JSON.parse(row.data) as Record<string, unknown>;
        const masked = plan !== undefined && (deleteFields(data, '', hiddenByPlan(plan, row.kind, row.event)) || row.data_enc !== null);
        return {
          ...shown,
          event: row.event,
          ...times,
          purposes: JSON.parse(row.purposes) as string[],
          data,
          personal: masked ? 'masked' : row.data_enc === null ? null : (JSON.parse(await keyring.decrypt(row.data_enc, EVENT_DATA_CONTEXT, row.profile_id)) as Record<string, unknown>),
        };
      }),
    );
  }

  /**
   * The collect module's handler for access and erasure requests (annotated from the tracking plan in force); with the
   * orders' retention, deleting an inactive person keeps the orders the legal obligation still needs.
   */
  subjectData(orders?: Pick<EventRetentionPolicy, 'orders' | 'orderFields'>): SubjectDataHandler {
    return new CollectSubjectData({ repo: this.#repo, keyring: this.#deps.keyring, fields: this.#deps.catalog, retired: this.#deps.catalog, orders });
  }

  /** The retention rules of stored events and refusal counts, and their sweep (registered with `retention`). */
  retention(policy: EventRetentionPolicy): RetentionHandler {
    return new CollectRetention(this.#deps, policy);
  }

  /** How many events are stored (all sources). */
  /**
   * Orders of these profiles that were stored for `purpose` (a purpose-bound read: events stored without it are not
   * returned), with the order total from the plain part, read only from a field (`total`, else `revenue`) that the
   * plan version the event was stored under declares for `purpose` (null otherwise); personal fields are never read.
   * An order is read only while the notice in force describes for the purpose what could store it for it under that
   * version (the event's occurrence category, or the category of one of its fields declared for the purpose: the gate's
   * rule, servedPurposes), so a notice narrowed since hides the orders it no longer covers.
   */
  async ordersFor(profileIds: readonly string[], purpose: string): Promise<{ profileId: string; occurredAt: string; total: number | null }[]> {
    const rows = await this.#repo.purposeBoundEvents(profileIds, ORDER_EVENT, purpose);
    const readable = new Map<number, ReadonlySet<string> | undefined>();
    for (const version of new Set(rows.map((row) => Number(row.plan_version)))) readable.set(version, await this.#orderFieldsFor(version, purpose));
    const orders: { profileId: string; occurredAt: string; total: number | null }[] = [];
    for (const row of rows) {
      const fields = readable.get(Number(row.plan_version));
      if (fields === undefined) continue;
      const properties = (JSON.parse(row.data) as { properties?: Record<string, unknown> }).properties ?? {};
      const total = fields.has('total') && typeof properties.total === 'number' ? properties.total : fields.has('revenue') && typeof properties.revenue === 'number' ? properties.revenue : null;
      orders.push({ profileId: row.profile_id, occurredAt: row.occurred_at, total });
    }
    return orders;
  }

  /**
   * Which of the order-total fields a stored plan version declares for `purpose` and the notice in force describes
   * for it (see fieldAllowed); undefined when the notice describes for it nothing that could store an order for it under
   * that version (ordersFor). A version's fields never change: cached with their categories; the notice is asked at
   * every read.
   */
  async #orderFieldsFor(version: number, purpose: string): Promise<ReadonlySet<string> | undefined> {
    const key = `${version}\u0000${purpose}`;
    let cached = this.#orderFields.get(key);
    if (cached === undefined) {
      const section = (await this.#deps.catalog.outline(version)).find((s) => s.section === 'track' && s.event === ORDER_EVENT);
      const totals = new Map<string, string>();
      for (const name of ORDER_TOTAL_FIELDS) {
        const field = section?.fields.find((f) => f.path === `properties.${name}` && f.purposes.includes(purpose));
        if (field) totals.set(name, field.category);
      }
      // What could store an order for the purpose, as servedPurposes decides: its occurrence, or a field about the person.
      const storedBy = new Set(section?.fields.filter((f) => f.purposes.includes(purpose) && !this.#describes.aboutTheSystem(f.category)).map((f) => f.category));
      const occurrence = section?.occurrence?.purposes.includes(purpose) ? section.occurrence.category : undefined;
      this.#orderFields.set(key, (cached = { storedBy: [...storedBy], occurrence, totals }));
    }
    const stored = (cached.occurrence !== undefined && this.#describes.occurrence(purpose, cached.occurrence)) || cached.storedBy.some((category) => this.#describes(purpose, category));
    if (!stored) return undefined;
    return new Set([...cached.totals].filter(([, category]) => this.#describes(purpose, category)).map(([name]) => name));
  }

  /**
   * Page views and product views of these profiles stored for `purpose`: their times only (purpose-bound). They are
   * browsing history: none when the notice in force does not describe that for the purpose (see fieldAllowed).
   */
  async activityFor(profileIds: readonly string[], purpose: string): Promise<{ profileId: string; occurredAt: string; kind: 'page' | 'product_view' }[]> {
    if (!this.#describes(purpose, BROWSING_HISTORY)) return [];
    const rows = await this.#repo.purposeBoundActivity(profileIds, purpose);
    return rows.map((row) => ({ profileId: row.profile_id, occurredAt: row.occurred_at, kind: row.kind === 'page' ? 'page' : 'product_view' }));
  }

  /**
   * Of these messages (their source, ParsedMessage.dedupAt and messageId), the keys (`messageKey`) of those that would
   * be answered duplicate if stored now: what a CSV import leaves out before it records consent, and its dry run predicts.
   */
  storedKeys(messages: readonly { source: string; dedupAt: string; messageId: string }[]): Promise<Set<string>> {
    return messages.length === 0 ? Promise.resolve(new Set()) : this.#repo.storedKeys(messages);
  }

  countEvents(): Promise<number> {
    return this.#repo.countEvents();
  }
}

/** The order-total fields ordersFor reads, in order of preference. */
const ORDER_TOTAL_FIELDS = ['total', 'revenue'] as const;
/** The data category of page and product views read as activity (activityFor). */
const BROWSING_HISTORY = 'user.behavior.browsing_history';

/**
 * Whether the notice describes a field's category for a purpose (Consent.describes), with `aboutTheSystem`
 * (Consent.aboutTheSystem: a category whose root in the taxonomy is `system`) and `occurrence` (Consent.describes of an
 * occurrence: the same for an event's occurrence, never through data about the system).
 */
export type DescribesCategory = ((purpose: string, category: string) => boolean) & {
  readonly aboutTheSystem: (category: string) => boolean;
  readonly occurrence: (purpose: string, category: string) => boolean;
};

/** Consent.describes (of a field, of an occurrence) and Consent.aboutTheSystem as the gate asks them. */
export function describesBy(consent: Pick<Consent, 'describes' | 'aboutTheSystem'>): DescribesCategory {
  return Object.assign((purpose: string, category: string) => consent.describes(purpose, category), {
    aboutTheSystem: (category: string) => consent.aboutTheSystem(category),
    occurrence: (purpose: string, category: string) => consent.describes(purpose, category, 'occurrence'),
  });
}

/**
 * A field is stored when one of its purposes is allowed and, for a purpose resting on consent, the notice describes
 * the field's category for it (a person consented to what the notice told them); special-category and
 * precise-location fields need explicit consent.
 */
export function fieldAllowed(field: KeptField, allowed: readonly string[], explicit: readonly string[], describes: DescribesCategory): boolean {
  for (const p of field.purposes) if (allowedFor(field, p, allowed, explicit, describes)) return true;
  return false;
}

/** Whether a field is stored for one purpose of its own (fieldAllowed's rule for that purpose alone). */
function allowedFor(annotated: Pick<KeptField, 'category' | 'special' | 'preciseLocation'>, purpose: string, allowed: readonly string[], explicit: readonly string[], describes: DescribesCategory): boolean {
  return (annotated.special || annotated.preciseLocation ? explicit : allowed).includes(purpose) && describes(purpose, annotated.category);
}

/**
 * Whether an event's occurrence is stored for one purpose of its own: a field's rule, but the notice must describe its
 * category as something the person did (an occurrence about the system is described by no notice: the compiler refuses
 * one, and reads a stored one as DEFAULT_EVENT_CATEGORY).
 */
function occurrenceAllowed(occurrence: EventOccurrence, purpose: string, allowed: readonly string[], explicit: readonly string[], describes: DescribesCategory): boolean {
  return (occurrence.special || occurrence.preciseLocation ? explicit : allowed).includes(purpose) && describes.occurrence(purpose, occurrence.category);
}

/**
 * The purposes among `allowed` a message serves as the consent gate stores it: those its event declares where its
 * occurrence is stored for them (fieldAllowed's rule, for the event's category: for a purpose resting on consent the
 * notice must describe it, never through data about the system; identify, group and alias are described wherever an
 * event they link is), and those for
 * which one of its fields about the person is stored (fieldAllowed's rule for that very purpose; a field stored for
 * another purpose serves none of the rest, and one about the system, such as `context.library`, none). The gate, the CSV import's prediction and its dry run all ask this, so they agree.
 * `allowed` itself when every one is served, as usual: nothing allocated.
 */
export function servedPurposes<T extends readonly string[]>(plan: Pick<PlanResult, 'occurrences' | 'fields'>, allowed: T, explicit: readonly string[], describes: DescribesCategory): T | string[] {
  let served: string[] | undefined;
  for (let i = 0; i < allowed.length; i++) {
    const purpose = allowed[i] as string;
    if (serves(plan, purpose, allowed, explicit, describes)) served?.push(purpose);
    else served ??= allowed.slice(0, i);
  }
  return served ?? allowed;
}

/** Whether a message serves one allowed purpose (see servedPurposes). */
function serves(plan: Pick<PlanResult, 'occurrences' | 'fields'>, purpose: string, allowed: readonly string[], explicit: readonly string[], describes: DescribesCategory): boolean {
  for (const occurrence of plan.occurrences) if (occurrence.purposes.includes(purpose) && occurrenceAllowed(occurrence, purpose, allowed, explicit, describes)) return true;
  // A field about the system (a library's name) needs no description in the notice, so it shows nothing the notice
  // covers of the person: it serves no purpose by itself (every library sends one with every message).
  for (const field of plan.fields) if (field.purposes.includes(purpose) && !describes.aboutTheSystem(field.category) && allowedFor(field, purpose, allowed, explicit, describes)) return true;
  return false;
}



/**
 * Whether a group resolved to the very people the consent gate checked, with no merge and no GPC to record: then it is
 * stored in the transaction that resolved it.
 */
function storableAtOnce(resolved: readonly { pending: Pending; resolution: Resolution | undefined }[], keyring: Keyring, consent: Consent): resolved is Resolved[] {
  return resolved.every(
    (r) =>
      r.resolution?.profileId != null &&
      r.resolution.profileId === r.pending.gatedFor &&
      r.resolution.merges.length === 0 &&
      (!r.pending.gpc || gpcInForce(r.resolution, consent)) &&
      memberReady(r.pending, r.resolution.profileId, r.resolution.holder, keyring),
  );
}

/**
 * Whether a GPC message's signal has nothing to record: every identifier of it is the person's (none ignored, so none
 * is another person's, as on a shared device; written to the person's own profile) and their GPC opt-outs are in
 * force already. Then it is stored with the usual group, as the two-transaction path would record nothing between.
 */
function gpcInForce(resolution: Resolution, consent: Consent): boolean {
  const profileId = resolution.profileId;
  return profileId !== null && resolution.ignored.length === 0 && (resolution.holder === null || resolution.holder === profileId) && !consent.gpcWouldRecord(profileId);
}

/**
 * Whether a message written to a merge member (its holder, when not the canonical profile) needs nothing loaded first:
 * its personal fields need the member's data key (loading may create it, outside transactions), and its traits the
 * member's stored traits read, which the two-transaction path does.
 */
function memberReady(p: Pending, profileId: string, holder: string | null, keyring: Keyring): boolean {
  if (holder === null || holder === profileId) return true;
  return p.traits.length === 0 && (!p.hasPersonal || keyring.holds(holder));
}

/** The profile a resolved message is written to: the one holding its strongest identifier (see Resolution.holder). */
function holderOf(r: Resolved): string {
  return r.resolution.holder ?? r.resolution.profileId;
}

/** The devices a GPC signal is recorded for, a receipt each (Consent.recordGpcEach), and their holders. */
interface GpcDevices {
  /**
   * A message with the signal: the person it is about (null: nobody known) and the other profiles its identifiers
   * belong to; messages about one person make one device, that person first.
   */
  add(profileId: string | null, owners: Iterable<string>, holder: string | null | undefined): void;
  devices(): string[][];
  /** Per person, the devices their messages came from (see Consent.recordGpc's holders). */
  readonly holders: Map<string, Set<string>>;
}

function gpcDevices(): GpcDevices {
  const byPerson = new Map<string, Set<string>>();
  const unknown: Set<string>[] = [];
  const holders = new Map<string, Set<string>>();
  return {
    holders,
    add(profileId, owners, holder) {
      let device = profileId === null ? undefined : byPerson.get(profileId);
      if (device === undefined) {
        device = new Set(profileId === null ? [] : [profileId]);
        if (profileId === null) unknown.push(device);
        else byPerson.set(profileId, device);
      }
      for (const owner of owners) device.add(owner);
      if (profileId !== null && holder !== null && holder !== undefined && holder !== profileId) holders.set(profileId, (holders.get(profileId) ?? new Set<string>()).add(holder));
    },
    devices: () => [...byPerson.values(), ...unknown].map((device) => [...device]).filter((device) => device.length > 0),
  };
}

/** One result per item, in order; an item with none (a failure no step reported) is an internal error. */
function answerAll(items: readonly Pending[], results: ReadonlyMap<Pending, ItemResult>): ItemResult[] {
  return items.map((p) => results.get(p) ?? { index: p.index, messageId: p.message.messageId, status: 'invalid' as const, code: 'INTERNAL_ERROR' as const });
}

const NONE: readonly string[] = Object.freeze([]);

/**
 * The merges of one resolution batch followed to their end: the profile each ends in (`survivorOf`, through chains)
 * and everyone merged into each surviving profile, directly or through another (`mergedInto`).
 */
export function mergeSurvivors(merges: readonly { from: string; into: string }[]): { survivorOf: (id: string) => string; mergedInto: Map<string, string[]> } {
  const intoOf = new Map(merges.map((m) => [m.from, m.into]));
  const survivorOf = (id: string) => {
    let at = id;
    for (let next = intoOf.get(at); next !== undefined; next = intoOf.get(at)) at = next;
    return at;
  };
  const mergedInto = new Map<string, string[]>();
  for (const m of merges) {
    const survivor = survivorOf(m.into);
    const list = mergedInto.get(survivor);
    if (list === undefined) mergedInto.set(survivor, [m.from]);
    else list.push(m.from);
  }
  return { survivorOf, mergedInto };
}

/**
 * Thrown inside a resolution's transaction to roll it back and resolve again: after loading the consent of `load`,
 * or without the items in `refused` (the pipeline's messages, the CSV import's rows).
 */
export class ResolveAgain<T> extends Error {
  readonly load: readonly string[];
  readonly refused: ReadonlySet<T>;
  constructor(load: readonly string[], refused: ReadonlySet<T>) {
    super('resolve again');
    this.load = load;
    this.refused = refused;
  }
}

/** How many times a group is written when PostgreSQL ends its transaction as a deadlock victim or unserializable. */
const WRITE_ATTEMPTS = 4;

/**
 * The second transaction of Collector.#writeNow (`storeIn`: the resolved messages' events, traits and computed traits,
 * with the group's counts). By SQLite's writer thread when `writer` is given (the bulk of a group's writing, off the
 * main thread, as for the usual group); on the main connection when it is not, or when the writer's transaction could
 * not be used (a message stored meanwhile: DeferredConflict; the thread ended: WriterExited). Counts a commit of the
 * writer may have written are neither written again nor put back (`restore`, called on a failure otherwise). A module
 * function, not a private method: see docs/dev/conventions.md on Node's compile cache.
 */
async function storeSecond<P>(
  storage: Storage,
  writer: DeferredWrites | undefined,
  storeIn: (tx: SqlExecutor | DeferredTx, into: Map<P, ItemResult>, counted: GroupCounts) => Promise<void>,
  counts: GroupCounts,
  results: Map<P, ItemResult>,
  restore: (error: unknown) => never,
): Promise<void> {
  let mayHaveCommitted = false;
  if (writer?.usable) {
    const into = new Map<P, ItemResult>();
    try {
      await writer.transaction((tx) => storeIn(tx, into, counts));
      for (const [p, result] of into) results.set(p, result);
      return;
    } catch (error) {
      if (!(error instanceof DeferredConflict || error instanceof WriterExited)) restore(error);
      mayHaveCommitted = error instanceof WriterExited && error.mayHaveCommitted;
    }
  }
  try {
    // What the writer may have committed is found again as duplicates; its counts are not written twice.
    await storage.raw.transaction((tx) => storeIn(tx, results, mayHaveCommitted ? { refusals: new Map(), plan: [] } : counts));
  } catch (error) {
    if (mayHaveCommitted) throw error;
    restore(error);
  }
}

/** Thrown inside a deferred transaction to abandon it when the group is not the usual one. */
const UNUSUAL = new Error('not the usual group');
// The four possible field rules, shared: partition only reads them.
const PLAIN: FieldRule = Object.freeze({ personal: false, allowed: true });
const PLAIN_REFUSED: FieldRule = Object.freeze({ personal: false, allowed: false });
const PERSONAL: FieldRule = Object.freeze({ personal: true, allowed: true });
const PERSONAL_REFUSED: FieldRule = Object.freeze({ personal: true, allowed: false });

function ruleOf(personal: boolean, allowed: boolean): FieldRule {
  if (personal) return allowed ? PERSONAL : PERSONAL_REFUSED;
  return allowed ? PLAIN : PLAIN_REFUSED;
}

/**
 * An array of objects put back together from its plain and personal parts (partition keeps positions in both, null
 * where a part holds nothing of an item); undefined when neither part kept any of it.
 */
function keptItems(plain: unknown, personal: unknown): unknown[] | undefined {
  const a = Array.isArray(plain) ? plain : undefined;
  const b = Array.isArray(personal) ? personal : undefined;
  if (a === undefined || b === undefined) return a ?? b;
  return a.map((item: unknown, i) => {
    const other: unknown = b[i];
    return item !== null && typeof item === 'object' && other !== null && typeof other === 'object' ? { ...item, ...other } : (item ?? other);
  });
}

/**
 * The item resolution links for a message: the identifiers of the fields the gate kept. The look-up's item itself when
 * the gate kept every identifier (its preparation is then reused too).
 */
function linkableItem(message: ParsedMessage, linkable: { traits: Record<string, unknown> | undefined; context: Record<string, unknown> | undefined }, lookup: ResolveItem): ResolveItem {
  const identifiers = identifiersOf(message, linkable.traits, linkable.context);
  return sameIdentifiers(identifiers, lookup.identifiers) ? lookup : { ...lookup, identifiers };
}

/** Whether two identifier lists name the same identifiers in the same order. */
function sameIdentifiers(a: readonly RawIdentifier[], b: readonly RawIdentifier[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as RawIdentifier;
    const y = b[i] as RawIdentifier;
    if (x.type !== y.type || x.value !== y.value) return false;
  }
  return true;
}

function valueAt(data: Record<string, unknown>, path: string): unknown {
  let value: unknown = data;
  for (const key of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Identify traits that survived the gate, as profile trait inputs (leaf paths under `traits.`). */
function traitInputs(fields: readonly KeptField[], plain: Record<string, unknown>, personal: Record<string, unknown>, rules: FieldRules): TraitInput[] {
  const out: TraitInput[] = [];
  for (const field of fields) {
    if (!field.path.startsWith('traits.') || field.path.includes('[]') || rules.get(field.path)?.allowed === false) continue;
    const value = valueAt(field.personal ? personal : plain, field.path);
    if (value === undefined) continue;
    out.push({ key: field.path.slice('traits.'.length), value, category: field.category, personal: field.personal });
  }
  return out;
}

function activityOf(profileId: string, p: Pending, position: number): ActivityInput {
  // Its place among the messages stored with it: the group's order, in which each request's messages come one by one
  // (a batch is its messages one by one), the order of the events' ids.
  const activity: ActivityInput = { profileId, at: p.message.occurredAt, receivedAt: p.receivedAt, position, kind: p.message.kind };
  if (p.message.name) activity.event = p.message.name;
  const order = p.message.name === ORDER_EVENT ? orderValueOf(p.plain) : undefined;
  if (order !== undefined) {
    activity.revenue = order.value;
    if (order.currency !== null) activity.currency = order.currency;
  }
  return activity;
}
