// In-memory counters of what the plan did to incoming messages, per source, kind and event name. Counting happens
// on the hot path in plain Maps; flushing moves the counts to catalog_stats, where they are added up.
import type { MessageKind, PlanResult, RefusalCode } from './plan-compiler.ts';

/** Counts of one source, kind and event name. */
export interface StatsRow {
  source: string;
  kind: MessageKind;
  /** The event name for track calls; empty for the other kinds. */
  event: string;
  accepted: number;
  refused: Record<RefusalCode, number>;
  /** Undeclared fields removed, by path (array elements as `[]`). */
  dropped: { path: string; count: number }[];
  /** Schema violations by path (array elements as `[]`) and rule. */
  violations: { path: string; rule: string; count: number }[];
}

/** One counted quantity, as stored in catalog_stats. */
export interface StatsRecord {
  source: string;
  kind: string;
  event: string;
  /** `accepted`, `refused` (item: the code), `dropped` (item: the path) or `violation` (item: the path, rule). */
  metric: 'accepted' | 'refused' | 'dropped' | 'violation';
  item: string;
  rule: string;
  count: number;
}

/** Stands for names and paths beyond the limits below, so that senders cannot grow the counters without bound. */
export const OTHER = '*other*';
const MAX_NAME = 200;
const MAX_UNDECLARED_NAMES = 100;
const MAX_PATHS = 100;

class Counter {
  accepted = 0;
  undeclared = 0;
  invalid = 0;
  dropped: Map<string, number> | null = null;
  /** Key: path, newline, rule. */
  violations: Map<string, number> | null = null;
}

type Counters = Map<string, Map<MessageKind, Map<string, Counter>>>;

function bump(map: Map<string, number>, key: string, by: number): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

function bounded(map: Map<string, number>, key: string): string {
  return map.has(key) || (map.size < MAX_PATHS && key.length <= MAX_NAME) ? key : OTHER;
}

/** The counters of one process. */
export class StatsCounters {
  #counters: Counters = new Map();
  /** Undeclared track names seen per source; kept across flushes so the set of names stays bounded. */
  readonly #undeclaredNames = new Map<string, Set<string>>();

  #eventKey(source: string, kind: MessageKind, name: string | undefined, result: PlanResult): string {
    if (kind !== 'track' || name === undefined) return '';
    if (result.code !== 'CATALOG_EVENT_UNDECLARED') return name;
    let names = this.#undeclaredNames.get(source);
    if (names === undefined) this.#undeclaredNames.set(source, (names = new Set()));
    if (names.has(name)) return name;
    if (name.length > MAX_NAME || names.size >= MAX_UNDECLARED_NAMES) return OTHER;
    names.add(name);
    return name;
  }

  #counter(source: string, kind: MessageKind, event: string): Counter {
    let kinds = this.#counters.get(source);
    if (kinds === undefined) this.#counters.set(source, (kinds = new Map()));
    let events = kinds.get(kind);
    if (events === undefined) kinds.set(kind, (events = new Map()));
    let counter = events.get(event);
    if (counter === undefined) events.set(event, (counter = new Counter()));
    return counter;
  }

  /** Counts one processed message. */
  count(source: string, kind: MessageKind, name: string | undefined, result: PlanResult): void {
    const counter = this.#counter(source, kind, this.#eventKey(source, kind, name, result));
    if (result.ok) counter.accepted++;
    else if (result.code === 'CATALOG_EVENT_UNDECLARED') counter.undeclared++;
    else counter.invalid++;
    if (result.dropped.length > 0) {
      const dropped = (counter.dropped ??= new Map());
      for (const path of result.dropped) bump(dropped, bounded(dropped, path), 1);
    }
    if (result.violations.length > 0) {
      const violations = (counter.violations ??= new Map());
      for (const v of result.violations) {
        const key = bounded(violations, `${v.path.replace(/\[\d+\]/g, '[]')}\n${v.rule}`);
        bump(violations, key === OTHER ? `${OTHER}\n*` : key, 1);
      }
    }
  }

  /** Hands over every count so far and starts again from zero. */
  take(): StatsRecord[] {
    const counters = this.#counters;
    this.#counters = new Map();
    return toRecords(counters);
  }

  /** Puts records back (a flush that failed), so that no count is lost. */
  restore(records: readonly StatsRecord[]): void {
    for (const r of records) {
      const counter = this.#counter(r.source, r.kind as MessageKind, r.event);
      if (r.metric === 'accepted') counter.accepted += r.count;
      else if (r.metric === 'refused') {
        if (r.item === 'CATALOG_EVENT_UNDECLARED') counter.undeclared += r.count;
        else counter.invalid += r.count;
      } else if (r.metric === 'dropped') bump((counter.dropped ??= new Map()), r.item, r.count);
      else bump((counter.violations ??= new Map()), `${r.item}\n${r.rule}`, r.count);
    }
  }

  /** The counts not yet handed over. */
  records(): StatsRecord[] {
    return toRecords(this.#counters);
  }
}

function toRecords(counters: Counters): StatsRecord[] {
  const records: StatsRecord[] = [];
  for (const [source, kinds] of counters) {
    for (const [kind, events] of kinds) {
      for (const [event, c] of events) {
        const base = { source, kind, event };
        if (c.accepted > 0) records.push({ ...base, metric: 'accepted', item: '', rule: '', count: c.accepted });
        if (c.undeclared > 0) records.push({ ...base, metric: 'refused', item: 'CATALOG_EVENT_UNDECLARED', rule: '', count: c.undeclared });
        if (c.invalid > 0) records.push({ ...base, metric: 'refused', item: 'CATALOG_EVENT_INVALID', rule: '', count: c.invalid });
        for (const [path, count] of c.dropped ?? []) records.push({ ...base, metric: 'dropped', item: path, rule: '', count });
        for (const [key, count] of c.violations ?? []) {
          const cut = key.lastIndexOf('\n');
          records.push({ ...base, metric: 'violation', item: key.slice(0, cut), rule: key.slice(cut + 1), count });
        }
      }
    }
  }
  return records;
}

/** Adds records up into rows, one per source, kind and event, optionally filtered. */
export function statsRows(records: Iterable<StatsRecord>, filter: { source?: string | undefined; event?: string | undefined } = {}): StatsRow[] {
  const rows = new Map<string, StatsRow>();
  const dropped = new Map<StatsRow, Map<string, number>>();
  const violations = new Map<StatsRow, Map<string, number>>();
  for (const r of records) {
    if ((filter.source !== undefined && r.source !== filter.source) || (filter.event !== undefined && r.event !== filter.event)) continue;
    const key = `${r.source}\u0000${r.kind}\u0000${r.event}`;
    let row = rows.get(key);
    if (row === undefined) {
      row = { source: r.source, kind: r.kind as MessageKind, event: r.event, accepted: 0, refused: { CATALOG_EVENT_UNDECLARED: 0, CATALOG_EVENT_INVALID: 0 }, dropped: [], violations: [] };
      rows.set(key, row);
      dropped.set(row, new Map());
      violations.set(row, new Map());
    }
    if (r.metric === 'accepted') row.accepted += r.count;
    else if (r.metric === 'refused') {
      if (r.item === 'CATALOG_EVENT_UNDECLARED' || r.item === 'CATALOG_EVENT_INVALID') row.refused[r.item] += r.count;
    } else if (r.metric === 'dropped') bump(dropped.get(row) as Map<string, number>, r.item, r.count);
    else bump(violations.get(row) as Map<string, number>, `${r.item}\n${r.rule}`, r.count);
  }
  const byCount = (a: { count: number; path: string }, b: { count: number; path: string }) => b.count - a.count || a.path.localeCompare(b.path);
  for (const row of rows.values()) {
    row.dropped = [...(dropped.get(row) ?? [])].map(([path, count]) => ({ path, count })).sort(byCount);
    row.violations = [...(violations.get(row) ?? [])]
      .map(([key, count]) => {
        const cut = key.lastIndexOf('\n');
        return { path: key.slice(0, cut), rule: key.slice(cut + 1), count };
      })
      .sort(byCount);
  }
  return [...rows.values()].sort((a, b) => a.source.localeCompare(b.source) || a.kind.localeCompare(b.kind) || a.event.localeCompare(b.event));
}
