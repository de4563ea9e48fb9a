// Retention of stored events: raw events go after their period, orders are reduced to what the legal obligation
// needs and go after theirs, and fields the tracking plan keeps shorter than their event are cut out when they
// expire. Registered with `retention` through `Collector.retention()`.
import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { compareDurations, subtractDuration } from '../../shared/duration.ts';
import type { RetentionHandler, RetentionRule, SweepCount, SweepMark, SweepOptions } from '../../shared/subject-data.ts';
import { StatementTexts, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { Catalog, OutlineSection } from '../catalog/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { ActivityRevision, Profiles, StoredActivity } from '../profiles/index.ts';
import { EVENT_DATA_CONTEXT, type CollectTables } from './collect.repo.ts';
import { isRecord } from '../../shared/objects.ts';

/** How long a stored event's messageId makes a message sent again with it a duplicate, whatever its time. */
export const RECENT_ID_WINDOW = 'P1D';

/** The event the legal obligation keeps (invoices, tax records). */
export const ORDER_EVENT = 'Order Completed';
/** The only purpose a reduced order still serves; also how a reduced order is recognised. */
export const LEGAL_OBLIGATION = 'essential.legal_obligation';

/** The value an order's plain part gives computed traits (revenue, else total) and its currency: ingestion and retention alike. */
export function orderValueOf(plain: Record<string, unknown>): { value: number; currency: string | null } | undefined {
  const props = isRecord(plain.properties) ? plain.properties : {};
  const value = typeof props.revenue === 'number' ? props.revenue : typeof props.total === 'number' ? props.total : undefined;
  return value === undefined ? undefined : { value, currency: typeof props.currency === 'string' ? props.currency : null };
}

/** The per-purpose policies that apply to stored events (from the configuration). */
export interface EventRetentionPolicy {
  /** Raw events are deleted this long after they happened. */
  readonly rawEvents: string;
  /** Orders are kept this long, reduced to `orderFields` once `rawEvents` has passed. */
  readonly orders: string;
  /** Properties of an order the legal obligation needs. */
  readonly orderFields: readonly string[];
}

/** The part of an order's data (plain or personal) the legal obligation keeps: its `orderFields` properties; null for none. */
export function reducedOrderPart(part: Record<string, unknown> | null, orderFields: readonly string[]): { properties: Record<string, unknown> } | null {
  const props = isRecord(part?.properties) ? part.properties : {};
  const kept = Object.fromEntries(orderFields.filter((f) => f in props).map((f) => [f, props[f]]));
  return Object.keys(kept).length > 0 ? { properties: kept } : null;
}

/** The index the sweeps walk: stored events by time (the profile index starts with the profile id). */
export const COLLECT_RETENTION_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0071_collect_events_by_time',
    async up(db) {
      await db.schema.createIndex('collect_events_occurred').on('collect_events').columns(['occurred_at', 'id']).execute();
    },
  },
];

type Row = Pick<CollectTables['collect_events'], 'id' | 'profile_id' | 'event' | 'occurred_at' | 'data' | 'data_enc' | 'purposes'>;
/** What a deleted event takes out of computed traits: one event of the profile, and whether it was an order. */
type Deleted = Pick<CollectTables['collect_events'], 'profile_id' | 'kind' | 'event'>;
type Filter = { kind?: string; event?: string; notEvent?: string };

/** The nearest category above every one of these (`user.location` for `user.location.precise` and `user.location.imprecise`). */
function commonCategory(categories: readonly string[]): string {
  let common = (categories[0] ?? 'user').split('.');
  for (const category of categories.slice(1)) {
    const parts = category.split('.');
    let i = 0;
    while (i < common.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return common.length > 0 ? common.join('.') : 'user';
}

/**
 * Where a rule's walk resumes is kept under its id and, for a plan rule, the fields it covers: a field that joins an
 * existing period with a new plan version starts a walk of its own from the beginning, so events stored before the
 * last sweep lose it too (under the rule's id alone they were never looked at again).
 */
function markKey(rule: RetentionRule): string {
  if (!rule.fields || rule.action !== 'remove_fields') return rule.id;
  return `${rule.id}#${createHash('sha256').update([...rule.fields].sort().join('\n')).digest('hex').slice(0, 16)}`;
}

/** A rewrite of stored events: which events, and what to do to their plain and personal parts. */
interface Rewrite {
  rule: RetentionRule;
  filter: Filter;
  /** Events before `floor` are left to the rules that reduce or delete whole events. */
  floor: string;
  cutoff: string;
  /**
   * Returns the new parts, or undefined when the row is already as it should be. `personal` undefined leaves the
   * sealed personal part as it is (a rule about plain fields only); null drops it.
   */
  apply(plain: Record<string, unknown>, personal: () => Promise<Record<string, unknown> | null>): Promise<{ plain: Record<string, unknown>; personal: Record<string, unknown> | null | undefined; purposes?: string[] } | undefined>;
  /**
   * Checked in each batch's transaction: while it holds the batch is written, else the walk stops there and leaves the
   * rule's mark where it was (the next sweep walks that range again, under the rule as it then is).
   */
  stillInForce?(tx: SqlExecutor): Promise<boolean>;
}

/** Drops objects left empty by removals (arrays keep their positions); returns undefined when nothing is left. */
export function prune(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => prune(item) ?? null);
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    const kept = prune(inner);
    if (kept !== undefined) out[key] = kept;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** An object, or an array holding one: what holds fields, not a field (a field is a value or an array of values). */
export function holdsFields(value: unknown): boolean {
  return isRecord(value) || (Array.isArray(value) && value.some((item) => typeof item === 'object' && item !== null));
}

/**
 * Removes a field path (`context.location.latitude`, `properties.products[].price`) from data; true when something went.
 * A field is a value or an array of values: an object (or an array holding one) found at its path holds other fields,
 * which their own rules decide (a field once a text, since declared an object whose fields are kept longer), and stays.
 */
export function removePath(data: unknown, path: string): boolean {
  const [head, ...rest] = path.split('.');
  if (head === undefined) return false;
  const each = head.endsWith('[]');
  const key = each ? head.slice(0, -2) : head;
  if (!isRecord(data) || !(key in data)) return false;
  if (rest.length === 0 && !each) {
    if (holdsFields(data[key])) return false;
    delete data[key];
    return true;
  }
  const inner = data[key];
  if (each) {
    if (!Array.isArray(inner)) return false;
    if (rest.length === 0) {
      delete data[key];
      return true;
    }
    let removed = false;
    for (const item of inner) removed = removePath(item, rest.join('.')) || removed;
    return removed;
  }
  return removePath(inner, rest.join('.'));
}

/** Where a plan section's fields are stored: which events they belong to. */
function sectionFilter(section: Pick<OutlineSection, 'section' | 'event'>): { filter: Filter; label: string } {
  switch (section.section) {
    case 'track':
      return { filter: { kind: 'track', event: section.event ?? '' }, label: `track:${section.event ?? ''}` };
    case 'context':
      return { filter: {}, label: 'context' };
    default:
      return { filter: { kind: section.section }, label: section.section };
  }
}

/** The retention handler of `collect_events` and `collect_refusals`. */
export class CollectRetention implements RetentionHandler {
  readonly module = 'collect';
  readonly #storage: Storage;
  readonly #db: Kysely<CollectTables>;
  readonly #catalog: Catalog;
  readonly #keyring: Keyring;
  readonly #policy: EventRetentionPolicy;
  readonly #profiles: Pick<Profiles, 'reviseActivityIn'> | undefined;
  readonly #texts = new StatementTexts();

  constructor(deps: { storage: Storage; catalog: Catalog; keyring: Keyring; profiles?: Pick<Profiles, 'reviseActivityIn'> }, policy: EventRetentionPolicy) {
    this.#profiles = deps.profiles;
    this.#storage = deps.storage;
    this.#db = deps.storage.db.withTables<CollectTables>();
    this.#catalog = deps.catalog;
    this.#keyring = deps.keyring;
    this.#policy = policy;
  }

  async rules(): Promise<RetentionRule[]> {
    const { rawEvents, orders, orderFields } = this.#policy;
    const rules: RetentionRule[] = [
      {
        id: 'collect.events.raw', module: 'collect', store: 'collect_events', category: 'user.behavior', period: rawEvents, clock: 'occurred_at', action: 'delete', source: 'policy',
        description: `Stored events other than orders are deleted ${rawEvents} after they happened.`,
      },
      {
        id: 'collect.events.orders.reduce', module: 'collect', store: 'collect_events', category: 'user.behavior.purchase_history', period: rawEvents, clock: 'occurred_at', action: 'reduce', source: 'policy', fields: orderFields.map((f) => `properties.${f}`),
        description: `${ORDER_EVENT} events are reduced to ${orderFields.join(', ')} and their time after ${rawEvents} (legal obligation); every other field and the personal envelope go.`,
      },
      {
        id: 'collect.events.orders', module: 'collect', store: 'collect_events', category: 'user.behavior.purchase_history', period: orders, clock: 'occurred_at', action: 'delete', source: 'policy',
        description: `${ORDER_EVENT} events are deleted ${orders} after they happened.`,
      },
      {
        id: 'collect.refusals', module: 'collect', store: 'collect_refusals', category: 'system.operations', period: rawEvents, clock: 'day', action: 'delete', source: 'policy',
        description: `Daily refusal counts (no personal data) are deleted after ${rawEvents}.`,
      },
      {
        id: 'collect.recent_ids', module: 'collect', store: 'collect_recent_ids', category: 'system.operations', period: RECENT_ID_WINDOW, clock: 'received_at', action: 'delete', source: 'policy',
        description: `The messageIds of stored events, kept to answer a message sent again with the same messageId as a duplicate whatever its time, are deleted ${RECENT_ID_WINDOW} after they were received.`,
      },
    ];
    return [...rules, ...(await this.#fieldRules()).rules.map((r) => r.rule)];
  }

  /**
   * Fields kept for less time than their event: one rule per plan section and period. A field the plan in force
   * declares has its period there; one it no longer declares (stored events still hold it), the period of the latest
   * stored version that declared it, so that removing a field from the plan does not keep it longer.
   */
  async #fieldRules(): Promise<{ rules: { rule: RetentionRule; filter: Filter; paths: string[]; personal: boolean }[]; latest: number }> {
    const out: { rule: RetentionRule; filter: Filter; paths: string[]; personal: boolean }[] = [];
    const { inForce, retired, everPersonal, latest } = await this.#catalog.declarations();
    type Field = { path: string; category: string; retention: string; personal: boolean; version?: number };
    // `sealed`: a version declared one of the group's fields personal, so events may hold it in their sealed part.
    const groups = new Map<string, { filter: Filter; label: string; period: string; fields: Field[]; sealed: boolean }>();
    const sections: readonly (Pick<OutlineSection, 'section' | 'event'> & { fields: readonly Field[] })[] = [...inForce, ...retired];
    for (const section of sections) {
      const { filter, label } = sectionFilter(section);
      for (const field of section.fields) {
        // Identify traits are also events here; the trait store has its own rules (profiles).
        if (compareDurations(field.retention, this.#policy.rawEvents) >= 0) continue;
        const key = `${label}\u0000${field.retention}`;
        let group = groups.get(key);
        if (group === undefined) {
          group = { filter, label, period: field.retention, fields: [], sealed: false };
          groups.set(key, group);
        }
        group.fields.push(field);
        if (field.personal || everPersonal(section.section, section.event, field.path)) group.sealed = true;
      }
    }
    for (const { filter, label, period, fields, sealed } of groups.values()) {
      const paths = fields.map((f) => f.path);
      const gone = fields.filter((f) => f.version !== undefined).map((f) => `${f.path} (plan version ${f.version})`);
      out.push({
        rule: {
          id: `collect.events.fields:${label}:${period}`, module: 'collect', store: 'collect_events', category: commonCategory(fields.map((f) => f.category)), period, clock: 'occurred_at', action: 'remove_fields', source: 'plan', fields: paths,
          description: `${paths.join(', ')} ${paths.length === 1 ? 'is' : 'are'} removed from ${label === 'context' ? 'every stored event' : `stored ${label} events`} ${period} after they happened (tracking plan${gone.length > 0 ? `; no longer declared, with the period of the latest version that declared ${gone.length === 1 ? 'it' : 'them'}: ${gone.join(', ')}` : ''}).`,
        },
        filter,
        paths,
        personal: sealed,
      });
    }
    return { rules: out, latest };
  }

  async sweep(now: Date, options: SweepOptions): Promise<SweepCount[]> {
    const { rawEvents, orders, orderFields } = this.#policy;
    const rawCutoff = subtractDuration(now, rawEvents).toISOString();
    const orderCutoff = subtractDuration(now, orders).toISOString();
    const counts: SweepCount[] = [];
    const rules = new Map((await this.rules()).map((r) => [r.id, r]));
    const rule = (id: string) => rules.get(id) as RetentionRule;
    const count = (r: RetentionRule, n: number) => counts.push({ rule: r.id, store: r.store, category: r.category, count: n });

    // Shortest first: fields expire before the events that hold them are reduced or deleted. Each batch only while no
    // plan version was stored since the rules were read (checked under the publishers' lock): one published meanwhile
    // may give a field a longer period, or declare again one no longer declared.
    const { rules: fieldRules, latest } = await this.#fieldRules();
    const stillInForce = async (tx: SqlExecutor) => (await this.#catalog.latestVersionIn(tx)) === latest;
    for (const field of fieldRules) {
      const cutoff = subtractDuration(now, field.rule.period).toISOString();
      const n = await this.#rewrite(
        {
          rule: field.rule,
          filter: field.filter,
          floor: rawCutoff,
          cutoff,
          apply: async (plain, personal) => {
            let changed = false;
            for (const path of field.paths) changed = removePath(plain, path) || changed;
            const secret = field.personal ? await personal() : null;
            if (secret) for (const path of field.paths) changed = removePath(secret, path) || changed;
            if (!changed) return undefined;
            // A rule about plain fields only leaves the sealed part alone: its fields have their own periods.
            const kept = field.personal ? ((prune(secret) as Record<string, unknown> | undefined) ?? null) : undefined;
            return { plain: (prune(plain) as Record<string, unknown> | undefined) ?? {}, personal: kept };
          },
          stillInForce,
        },
        options,
      );
      count(field.rule, n);
    }
    // Raw events go before orders are reduced: the two sets are disjoint, and the reduce walk then only meets orders.
    const raw = rule('collect.events.raw');
    count(raw, await this.#delete(raw, { notEvent: ORDER_EVENT }, rawCutoff, options));
    const reduce = rule('collect.events.orders.reduce');
    count(
      reduce,
      await this.#rewrite(
        {
          rule: reduce,
          filter: { kind: 'track', event: ORDER_EVENT },
          floor: orderCutoff,
          cutoff: rawCutoff,
          apply: async (plain, personal) => {
            const secret = await personal();
            return { plain: reducedOrderPart(plain, orderFields) ?? {}, personal: reducedOrderPart(secret, orderFields), purposes: [LEGAL_OBLIGATION] };
          },
        },
        options,
      ),
    );
    const old = rule('collect.events.orders');
    count(old, await this.#delete(old, { kind: 'track', event: ORDER_EVENT }, orderCutoff, options));
    const refusals = rule('collect.refusals');
    count(refusals, await this.#deleteRefusals(rawCutoff.slice(0, 10), options));
    const recent = rule('collect.recent_ids');
    count(recent, await this.#deleteRecentIds(subtractDuration(now, RECENT_ID_WINDOW).toISOString(), options));
    return counts;
  }

  /**
   * The next batch of events under a rule, oldest first, in two passes: rows between the rule's mark and the cutoff
   * (keyset on time and id), then rows stored since the last sweep whose time is before the mark (late arrivals,
   * e.g. an imported history), found by their sortable id.
   */
  async #batch(pass: 'time' | 'late', filter: Filter, from: { at: string; id: string }, until: string, limit: number, columns: 'id' | 'row', floor = ''): Promise<Row[]> {
    const compiled = this.#select(pass, filter, from, until, limit, columns, floor).compile();
    return this.#storage.raw.all<Row>(compiled.sql, compiled.parameters);
  }

  /** `floor`: the late pass leaves out events older than it (a rule that deletes whole events takes them in the same sweep). */
  #select(pass: 'time' | 'late', filter: Filter, from: { at: string; id: string }, until: string, limit: number, columns: 'id' | 'row', floor = '') {
    const selected: (keyof Row)[] = columns === 'id' ? ['id', 'occurred_at'] : ['id', 'profile_id', 'event', 'occurred_at', 'data', 'data_enc', 'purposes'];
    let q = this.#db.selectFrom('collect_events').select(selected);
    if (pass === 'time') {
      // A row-value comparison, so that both databases walk the (occurred_at, id) index instead of scanning.
      q = q.where((eb) => eb(eb.refTuple('occurred_at', 'id'), '>', eb.tuple(from.at, from.id))).where('occurred_at', '<', until);
    } else {
      q = q.where('id', '>', from.id).where('occurred_at', '<', until);
      if (floor !== '') q = q.where('occurred_at', '>=', floor);
    }
    if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
    if (filter.event !== undefined) q = q.where('event', '=', filter.event);
    const notEvent = filter.notEvent;
    if (notEvent !== undefined) q = q.where((eb) => eb.or([eb('event', 'is', null), eb('event', '<>', notEvent)]));
    q = pass === 'time' ? q.orderBy('occurred_at').orderBy('id') : q.orderBy('id');
    return q.limit(limit);
  }

  /**
   * Walks the events a rule covers (both passes) from `floor` on, handing each batch to `handle` (which returns how
   * many rows it changed, or would change in a dry run), then records the rule's mark.
   */
  async #walk(rule: RetentionRule, filter: Filter, range: { floor: string; cutoff: string }, options: SweepOptions, columns: 'id' | 'row', handle: (rows: Row[]) => Promise<number | undefined>): Promise<number> {
    const { context, batchSize, dryRun } = options;
    const { floor, cutoff } = range;
    // Ids are sortable by insertion time: everything stored from here on is looked at by the next sweep's late pass.
    const startedId = `evt_${(Date.now() - 60_000).toString(36).padStart(9, '0')}`;
    const mark: SweepMark = (await context.mark(markKey(rule))) ?? { at: '', id: '' };
    let total = 0;
    const startAt = mark.at > floor ? mark.at : floor;
    const passes: ['time' | 'late', { at: string; id: string }, string][] = [['time', { at: startAt, id: '' }, cutoff]];
    if (mark.id !== '' && mark.at !== '') passes.push(['late', { at: '', id: mark.id }, mark.at < cutoff ? mark.at : cutoff]);
    for (const [pass, start, until] of passes) {
      let from = start;
      for (;;) {
        const rows = await this.#batch(pass, filter, from, until, batchSize, columns, floor);
        if (rows.length === 0) break;
        const last = rows[rows.length - 1] as Row;
        from = pass === 'time' ? { at: last.occurred_at, id: last.id } : { at: '', id: last.id };
        const handled = await handle(rows);
        // The rule changed meanwhile: its mark stays, and the next sweep walks on from there.
        if (handled === undefined) return total;
        total += handled;
        if (rows.length < batchSize) break;
      }
    }
    if (!dryRun) {
      const next = { at: mark.at > cutoff ? mark.at : cutoff, id: startedId };
      await this.#storage.raw.transaction((tx) => context.setMark(tx, markKey(rule), next));
    }
    return total;
  }

  /**
   * Deletes in batches, each its own short transaction: one indexed read finds the batch's last key in the walk's
   * order (`LIMIT 1 OFFSET batch-1`), then one range `DELETE` removes everything up to it — the same index range
   * scan a plain DELETE does, without carrying the batch's keys back and forth. A dry run walks and counts.
   */
  async #delete(rule: RetentionRule, filter: Filter, cutoff: string, options: SweepOptions): Promise<number> {
    if (options.dryRun) return this.#walk(rule, filter, { floor: '', cutoff }, options, 'id', (rows) => Promise.resolve(rows.length));
    const { context, batchSize } = options;
    // Whose computed traits lose what, and whether an order went.
    const returned: (keyof Deleted)[] = ['profile_id', 'kind', 'event'];
    const startedId = `evt_${(Date.now() - 60_000).toString(36).padStart(9, '0')}`;
    const mark: SweepMark = (await context.mark(markKey(rule))) ?? { at: '', id: '' };
    let total = 0;
    const passes: ['time' | 'late', { at: string; id: string }, string][] = [['time', { at: '', id: '' }, cutoff]];
    if (mark.id !== '' && mark.at !== '') passes.push(['late', { at: '', id: mark.id }, mark.at < cutoff ? mark.at : cutoff]);
    for (const [pass, start, until] of passes) {
      let from = start;
      if (this.#storage.dialect === 'postgres') {
        // PostgreSQL: one statement per batch that reads each row once — the physical row ids (ctid) of up to a
        // batch of expired rows, deleted at once. Every row of the range goes, so no order is needed: the next batch
        // starts again at the range's beginning, where the index scan skips what the last batch removed.
        for (;;) {
          // No row-value lower bound here: PostgreSQL then cannot skip the index entries earlier batches removed.
          let batch = this.#db.selectFrom('collect_events').select(sql<string>`ctid`.as('ctid')).where('occurred_at', '<', until);
          if (pass === 'late') batch = batch.where('id', '>', from.id);
          if (filter.kind !== undefined) batch = batch.where('kind', '=', filter.kind);
          if (filter.event !== undefined) batch = batch.where('event', '=', filter.event);
          const notEvent = filter.notEvent;
          if (notEvent !== undefined) batch = batch.where((eb) => eb.or([eb('event', 'is', null), eb('event', '<>', notEvent)]));
          batch = batch.limit(batchSize);
          const compiled = this.#db.deleteFrom('collect_events').where(sql<boolean>`ctid = any(array(${batch}))`).returning(returned).compile();
          const n = await this.#deleteRevising(compiled);
          total += n;
          if (n < batchSize) break;
        }
        continue;
      }
      for (;;) {
        const boundQuery = this.#select(pass, filter, from, until, 1, 'id').offset(batchSize - 1).compile();
        const [bound] = await this.#storage.raw.all<{ id: string; occurred_at: string }>(boundQuery.sql, boundQuery.parameters);
        let del = this.#db.deleteFrom('collect_events').where('occurred_at', '<', until);
        if (pass === 'time') {
          del = del.where((eb) => eb(eb.refTuple('occurred_at', 'id'), '>', eb.tuple(from.at, from.id)));
          if (bound) del = del.where((eb) => eb(eb.refTuple('occurred_at', 'id'), '<=', eb.tuple(bound.occurred_at, bound.id)));
        } else {
          del = del.where('id', '>', from.id);
          if (bound) del = del.where('id', '<=', bound.id);
        }
        if (filter.kind !== undefined) del = del.where('kind', '=', filter.kind);
        if (filter.event !== undefined) del = del.where('event', '=', filter.event);
        const notEvent = filter.notEvent;
        if (notEvent !== undefined) del = del.where((eb) => eb.or([eb('event', 'is', null), eb('event', '<>', notEvent)]));
        const compiled = del.returning(returned).compile();
        total += await this.#deleteRevising(compiled);
        if (!bound) break;
        from = pass === 'time' ? { at: bound.occurred_at, id: bound.id } : { at: '', id: bound.id };
      }
    }
    const next = { at: mark.at > cutoff ? mark.at : cutoff, id: startedId };
    await this.#storage.raw.transaction((tx) => context.setMark(tx, markKey(rule), next));
    return total;
  }

  async #rewrite(rewrite: Rewrite, options: SweepOptions): Promise<number> {
    const update = this.#texts.get('rewrite', () => this.#db.updateTable('collect_events').set({ data: '', data_enc: null, purposes: '' }).where('id', '=', '').where('data', '=', '').where('purposes', '=', '').compile().sql);
    return this.#walk(rewrite.rule, rewrite.filter, { floor: rewrite.floor, cutoff: rewrite.cutoff }, options, 'row', async (rows) => {
      // Decrypting and re-encrypting happen outside the transaction (a key load may need the database).
      const changes: unknown[][] = [];
      // People whose orders were rewritten (a reduced order keeps `total`, not `revenue`): their orders are counted again.
      const recount = new Set<string>();
      for (const row of rows) {
        const personal = async () => {
          if (row.data_enc === null) return null;
          try {
            return JSON.parse(await this.#keyring.decrypt(row.data_enc, EVENT_DATA_CONTEXT, row.profile_id)) as Record<string, unknown>;
          } catch {
            // Unreadable (key destroyed): the envelope holds nothing anyone can use; it is dropped.
            return {};
          }
        };
        const result = await rewrite.apply(JSON.parse(row.data) as Record<string, unknown>, personal);
        if (!result) continue;
        const data = JSON.stringify(result.plain);
        const purposes = result.purposes ? JSON.stringify(result.purposes) : row.purposes;
        const keepSealed = result.personal === undefined;
        const hasPersonal = result.personal != null && Object.keys(result.personal).length > 0;
        // Already as it should be (a reduced order seen again): nothing to write.
        if ((keepSealed || (!hasPersonal && row.data_enc === null)) && data === row.data && purposes === row.purposes) continue;
        if (options.dryRun) {
          changes.push([]);
          continue;
        }
        const dataEnc = keepSealed ? row.data_enc : hasPersonal ? await this.#keyring.encrypt(row.profile_id, JSON.stringify(result.personal), EVENT_DATA_CONTEXT) : null;
        // Only while the row is as read: another sweep (a server and `candor retention sweep`, two nodes) may have
        // rewritten it since, and then this one changes and counts nothing.
        changes.push([data, dataEnc, purposes, row.id, row.data, row.purposes]);
        if (row.event === ORDER_EVENT && row.profile_id !== null) recount.add(row.profile_id);
      }
      if (changes.length === 0 || options.dryRun) return changes.length;
      return this.#storage.raw.transaction(async (tx) => {
        if (rewrite.stillInForce !== undefined && !(await rewrite.stillInForce(tx))) return undefined;
        let n = 0;
        for (const params of changes) n += await tx.run(update, params);
        await this.#revise(tx, [...recount].map((profileId) => ({ profileId, deleted: 0, deletedOrders: 0, ordersChanged: true })));
        return n;
      });
    });
  }

  /**
   * Runs one batch's DELETE … RETURNING and revises the people's computed traits in the same transaction.
   */
  async #deleteRevising(compiled: { sql: string; parameters: readonly unknown[] }): Promise<number> {
    return this.#storage.raw.transaction(async (tx) => {
      const deleted = await tx.all<Deleted>(compiled.sql, compiled.parameters);
      const revisions = new Map<string, ActivityRevision & { deleted: number; deletedOrders: number; ordersChanged: boolean }>();
      for (const row of deleted) {
        if (row.profile_id === null) continue;
        let revision = revisions.get(row.profile_id);
        if (revision === undefined) {
          revision = { profileId: row.profile_id, deleted: 0, deletedOrders: 0, ordersChanged: false };
          revisions.set(row.profile_id, revision);
        }
        revision.deleted++;
        if (row.kind === 'track' && row.event === ORDER_EVENT) {
          revision.deletedOrders++;
          revision.ordersChanged = true;
        }
      }
      await this.#revise(tx, [...revisions.values()]);
      return deleted.length;
    });
  }

  /** Revises these people's computed traits (Profiles.reviseActivityIn), reading only what it asks for. */
  async #revise(tx: SqlExecutor, revisions: readonly ActivityRevision[]): Promise<void> {
    if (this.#profiles === undefined || revisions.length === 0) return;
    await this.#profiles.reviseActivityIn(tx, revisions, async (firstSeenOf, ordersOf) => {
      const left = new Map<string, { firstSeenAt?: string | null; orders?: StoredActivity['orders'] & unknown[] }>();
      const entry = (id: string) => {
        let e = left.get(id);
        if (e === undefined) left.set(id, (e = {}));
        return e;
      };
      // One look into the per-person index each: the earliest event left.
      const first = this.#texts.get('first-left', () => this.#db.selectFrom('collect_events').select('occurred_at').where('profile_id', '=', '').orderBy('occurred_at').limit(1).compile().sql);
      for (const id of firstSeenOf) entry(id).firstSeenAt = (await tx.all<{ occurred_at: string }>(first, [id, 1]))[0]?.occurred_at ?? null;
      for (let i = 0; i < ordersOf.length; i += 256) {
        const part = ordersOf.slice(i, i + 256);
        for (const id of part) entry(id).orders = [];
        // In the order they were stored, as ingestion counted them: the first committed order naming a currency gave
        // it, and within a commit, the order of its events (their sortable ids follow both).
        const orders = this.#db.selectFrom('collect_events').select(['profile_id', 'received_at', 'data']).where('profile_id', 'in', part).where('kind', '=', 'track').where('event', '=', ORDER_EVENT).orderBy('id').compile();
        for (const row of await tx.all<{ profile_id: string; received_at: string; data: string }>(orders.sql, orders.parameters)) {
          const value = orderValueOf(JSON.parse(row.data) as Record<string, unknown>);
          entry(row.profile_id).orders?.push({ value: value?.value, currency: value?.currency ?? null, receivedAt: row.received_at });
        }
      }
      return left;
    });
  }

  /** The kept messageIds received before `before`, a batch per transaction (the index on received_at finds them). */
  async #deleteRecentIds(before: string, options: SweepOptions): Promise<number> {
    if (options.dryRun) {
      const compiled = this.#db.selectFrom('collect_recent_ids').select((eb) => eb.fn.countAll<number>().as('n')).where('received_at', '<', before).compile();
      const [row] = await this.#storage.raw.all<{ n: number }>(compiled.sql, compiled.parameters);
      return Number(row?.n ?? 0);
    }
    const batch = this.#db.selectFrom('collect_recent_ids').select('received_at').where('received_at', '<', before).orderBy('received_at').offset(options.batchSize - 1).limit(1).compile();
    let total = 0;
    for (;;) {
      // The batch's last time: everything up to it goes (a few more rows of that very time are harmless).
      const [bound] = await this.#storage.raw.all<{ received_at: string }>(batch.sql, batch.parameters);
      const del = bound ? this.#db.deleteFrom('collect_recent_ids').where('received_at', '<=', bound.received_at).compile() : this.#db.deleteFrom('collect_recent_ids').where('received_at', '<', before).compile();
      total += await this.#storage.raw.transaction((tx) => tx.run(del.sql, del.parameters));
      if (!bound) return total;
    }
  }

  async #deleteRefusals(beforeDay: string, options: SweepOptions): Promise<number> {
    const days = this.#texts.get('refusal-days', () => this.#db.selectFrom('collect_refusals').select('day').distinct().where('day', '<', '').orderBy('day').compile().sql);
    const countDay = this.#texts.get('refusal-count', () => this.#db.selectFrom('collect_refusals').select((eb) => eb.fn.countAll<number>().as('n')).where('day', '=', '').compile().sql);
    const del = this.#texts.get('refusal-delete', () => this.#db.deleteFrom('collect_refusals').where('day', '=', '').compile().sql);
    let n = 0;
    // One day per transaction: a day holds a bounded number of rows (sources × events × purposes).
    for (const { day } of await this.#storage.raw.all<{ day: string }>(days, [beforeDay])) {
      if (options.dryRun) {
        const [row] = await this.#storage.raw.all<{ n: number }>(countDay, [day]);
        n += Number(row?.n ?? 0);
      } else {
        n += await this.#storage.raw.transaction((tx) => tx.run(del, [day]));
      }
    }
    return n;
  }
}
