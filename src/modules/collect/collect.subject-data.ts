import type { SqlExecutor } from '../../storage/index.ts';
import type { DataSubject, EraseOutcome, EraseReason, ExportSection, FieldDisclosure, FieldPlanLookup, PlanFields, RetiredFieldLookup, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { VersionFields } from '../catalog/index.ts';
import type { Keyring } from '../crypto/index.ts';
import { EVENT_DATA_CONTEXT, type CollectRepo } from './collect.repo.ts';
import { holdsFields, LEGAL_OBLIGATION, ORDER_EVENT, reducedOrderPart, type EventRetentionPolicy } from './collect.retention.ts';
import { subtractDuration } from '../../shared/duration.ts';
import { isRecord } from '../../shared/objects.ts';

/** A reduced order (collect.events.orders.reduce): kept under the legal obligation until collect.events.orders. */
const REDUCED_ORDER = { event: ORDER_EVENT, purposes: JSON.stringify([LEGAL_OBLIGATION]) };

const CSV_HEADER = ['id', 'occurred_at', 'received_at', 'source', 'kind', 'event', 'message_id', 'purposes', 'properties', 'traits', 'context'] as const;

/** Puts an event's plain and personal parts back together (partition.ts keeps array positions in both). */
export function mergeParts(plain: unknown, personal: unknown): unknown {
  if (personal === undefined || personal === null) return plain;
  if (plain === undefined || plain === null) return personal;
  if (Array.isArray(plain) && Array.isArray(personal)) {
    return Array.from({ length: Math.max(plain.length, personal.length) }, (_, i) => mergeParts(plain[i], personal[i]));
  }
  if (isRecord(plain) && isRecord(personal)) {
    const out: Record<string, unknown> = { ...plain };
    for (const [key, value] of Object.entries(personal)) out[key] = mergeParts(plain[key], value);
    return out;
  }
  return personal;
}

/** Leaf paths present in data, in the plan's notation (`properties.products[].price`). */
function leafPaths(value: unknown, path: string, out: Set<string>): void {
  if (Array.isArray(value)) {
    // An empty array holds nothing to disclose (and one of objects is no leaf of the plan).
    if (value.length > 0 && value.every((v) => !isRecord(v) && !Array.isArray(v))) out.add(path);
    for (const item of value) if (isRecord(item) || Array.isArray(item)) leafPaths(item, `${path}[]`, out);
    return;
  }
  if (isRecord(value)) {
    for (const [key, v] of Object.entries(value)) leafPaths(v, path === '' ? key : `${path}.${key}`, out);
    return;
  }
  if (path !== '') out.add(path);
}

/**
 * Deletes from an event's stored data, in place, the values `named` (with their paths in the plan's notation, as
 * leafPaths lists them: a field holding an array of scalars is named as a whole; every object key is asked, from the
 * parts down, and an object or array not named is walked into); an object or array item left with no field keeps its
 * shape. Whether any was deleted.
 */
export function deleteFields(value: unknown, path: string, named: (path: string, value: unknown) => boolean): boolean {
  let deleted = false;
  if (Array.isArray(value)) {
    for (const item of value) if (deleteFields(item, `${path}[]`, named)) deleted = true;
  } else if (isRecord(value)) {
    for (const [key, v] of Object.entries(value)) {
      const at = path === '' ? key : `${path}.${key}`;
      if (named(at, v)) {
        delete value[key];
        deleted = true;
      } else if (deleteFields(v, at, named)) deleted = true;
    }
  }
  return deleted;
}

/** The plan section a field of an event of this kind is declared in. */
export function sectionOf(kind: string, path: string): string | undefined {
  if (path.startsWith('context.')) return 'context';
  if (path.startsWith('traits.')) return kind === 'group' ? 'group' : 'identify';
  if (path.startsWith('properties.')) return kind === 'track' || kind === 'page' || kind === 'screen' ? kind : undefined;
  return undefined;
}

/**
 * What a reader who may not decrypt is kept from in the clear part of an event of this kind (for deleteFields), by the
 * plan in force: a field it declares personal, and one it does not declare (a newer version removed it, or its event:
 * nothing then says it is not personal). An object or array of objects it declares fields inside is walked into, so
 * that only those fields go (a line item keeps its other fields); one it declares nothing inside goes whole.
 */
export function hiddenByPlan(plan: PlanFields, kind: string, event: string | null): (path: string, value: unknown) => boolean {
  return (path, value) => {
    // A part (`properties`, `traits`, `context`) is in the section of its fields.
    const section = sectionOf(kind, path.includes('.') ? path : `${path}.`);
    if (section === undefined) return true;
    if (holdsFields(value)) return !plan.declaresInside(section, event, path);
    const planned = plan.plannedField(section, event, path);
    if (planned !== undefined) return planned.personal;
    // An empty array is kept where the plan declares an array of objects there, as ingestion keeps it in clear.
    return !(Array.isArray(value) && value.length === 0 && plan.declaresInside(section, event, path));
  };
}

/** The plan section an event of this kind is an occurrence of: identify, group and alias calls have none of their own. */
function occurrenceSection(kind: string): 'track' | 'page' | 'screen' | undefined {
  return kind === 'track' || kind === 'page' || kind === 'screen' ? kind : undefined;
}

/**
 * Whether a reader who may not decrypt is kept from what an event was (its name, purposes and data; not that something
 * happened then): where its occurrence is of a special category or precise location in the plan in force, and, for an
 * event the plan in force does not declare, in the version it was stored under (`storedUnder`; one that cannot be read
 * says nothing, so the event is kept from them).
 */
export async function occurrenceHidden(
  plan: VersionFields,
  row: { kind: string; event: string | null; plan_version: number },
  storedUnder: (version: number) => Promise<VersionFields | undefined>,
): Promise<boolean> {
  const section = occurrenceSection(row.kind);
  if (section === undefined) return false;
  const occurrence = plan.occurrence(section, row.event) ?? (await storedUnder(Number(row.plan_version)))?.occurrence(section, row.event);
  return occurrence === undefined || occurrence.special || occurrence.preciseLocation;
}

export interface CollectSubjectDataDeps {
  repo: CollectRepo;
  keyring: Keyring;
  fields: FieldPlanLookup | undefined;
  /** The fields the plan in force no longer declares: a stored field of one is kept by its latest declaration. */
  retired?: RetiredFieldLookup | undefined;
  /** The retention of orders: deleting an inactive person reduces their orders still within it (see erase). */
  orders?: Pick<EventRetentionPolicy, 'orders' | 'orderFields'> | undefined;
}

/**
 * Stored events of a subject: the plain part with the decrypted personal part, also as CSV rows. Refusal counts are
 * aggregates without a subject and hold nothing about anyone.
 */
export class CollectSubjectData implements SubjectDataHandler {
  readonly module = 'collect';
  readonly #deps: CollectSubjectDataDeps;

  constructor(deps: CollectSubjectDataDeps) {
    this.#deps = deps;
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const rows = await this.#deps.repo.allEventsOf(subject.profileIds);
    const fields = new Map<string, { planned: { category: string; purposes: readonly string[]; retention: string } | undefined; sources: Set<string> }>();
    const retired = this.#deps.retired === undefined || rows.length === 0 ? undefined : await this.#deps.retired.retiredFields();
    const events: Record<string, unknown>[] = [];
    const csvRows: (string | number | boolean | null)[][] = [];
    for (const row of rows) {
      const plain = JSON.parse(row.data) as Record<string, unknown>;
      let personal: unknown = null;
      let unreadable = false;
      if (row.data_enc !== null) {
        try {
          personal = JSON.parse(await this.#deps.keyring.decrypt(row.data_enc, EVENT_DATA_CONTEXT, row.profile_id));
        } catch {
          // The subject's data key is destroyed: nothing readable is left of the personal part.
          unreadable = true;
        }
      }
      const data = mergeParts(plain, personal) as Record<string, unknown>;
      const purposes = JSON.parse(row.purposes) as string[];
      events.push({
        id: row.id,
        occurredAt: row.occurred_at,
        receivedAt: row.received_at,
        source: row.source,
        kind: row.kind,
        event: row.event,
        messageId: row.message_id,
        purposes,
        ...data,
        ...(unreadable ? { personalUnreadable: true } : {}),
      });
      csvRows.push([
        row.id,
        row.occurred_at,
        row.received_at,
        row.source,
        row.kind,
        row.event,
        row.message_id,
        purposes.join(' '),
        data.properties === undefined ? null : JSON.stringify(data.properties),
        data.traits === undefined ? null : JSON.stringify(data.traits),
        data.context === undefined ? null : JSON.stringify(data.context),
      ]);
      const paths = new Set<string>();
      leafPaths(data, '', paths);
      for (const path of paths) {
        const section = sectionOf(row.kind, path);
        if (section === undefined) continue;
        const scope = section === 'track' ? `event=${row.event ?? ''}` : `kind=${section === 'context' ? 'any' : row.kind}`;
        const key = `events[${scope}].${path}`;
        let seen = fields.get(key);
        if (!seen) {
          // A field the plan in force no longer declares serves no purpose now; the sweeper keeps its values for the period
          // of the latest version that declared it.
          const planned = this.#deps.fields?.plannedField(section, row.event, path);
          const old = planned === undefined ? retired?.field(section, row.event, path) : undefined;
          seen = { planned: planned ?? (old === undefined ? undefined : { category: old.category, purposes: [], retention: old.retention }), sources: new Set() };
          fields.set(key, seen);
        }
        seen.sources.add(row.source);
      }
    }
    const disclosures: FieldDisclosure[] = [...fields]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([field, { planned, sources }]) => ({
        field,
        category: planned?.category ?? 'user.behavior',
        purposes: planned?.purposes ?? [],
        source: [...sources].sort().join(', '),
        recipients: [],
        retention: planned?.retention ?? null,
      }));
    return {
      module: this.module,
      title: 'Events',
      data: { count: events.length, events },
      fields: disclosures,
      csv: { file: 'events.csv', header: CSV_HEADER, rows: csvRows },
    };
  }

  /**
   * An erasure deletes every event. Deleting an inactive person keeps their orders the legal obligation still needs
   * (`collect.events.orders` deletes them once their period is over): those reduced already, and those within the
   * orders' period not reduced yet (an inactivity period shorter than the raw events' one), reduced now as
   * `collect.events.orders.reduce` would reduce them. The personal part of a kept order, unreadable once the person's
   * data key is destroyed, is dropped.
   */
  async erase(tx: SqlExecutor, subject: DataSubject, reason: EraseReason = 'erasure', at: Date = new Date()): Promise<EraseOutcome[]> {
    const { repo, orders } = this.#deps;
    if (reason === 'inactivity' && orders !== undefined) {
      const since = subtractDuration(at, orders.orders).toISOString();
      for (const row of await repo.eventsNotServingOnly(tx, subject.profileIds, ORDER_EVENT, REDUCED_ORDER.purposes, since)) {
        const reduced = reducedOrderPart(JSON.parse(row.data) as Record<string, unknown>, orders.orderFields) ?? {};
        await repo.rewritePlain(tx, row.id, JSON.stringify(reduced), REDUCED_ORDER.purposes);
      }
    }
    const { deleted, kept } = await repo.deleteEventsOf(tx, subject.profileIds, reason === 'inactivity' ? REDUCED_ORDER : undefined);
    return [
      { store: 'collect_events', status: 'confirmed', deleted, ...(kept > 0 ? { kept: { count: kept, reason: 'reduced orders kept under the legal obligation until collect.events.orders deletes them' } } : {}) },
      { store: 'collect_refusals', status: 'confirmed', deleted: 0, detail: 'aggregate counts per day, source, event and purpose; nothing about a person' },
    ];
  }
}
