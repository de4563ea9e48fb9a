// In-memory counters of what the plan did to incoming messages, per source, kind and event name. Counting happens
// on the hot path in plain Maps; flushing moves the counts to catalog_stats, where they are added up.
import type { MessageKind, PlanResult, RefusalCode } from './plan-compiler.ts';
import { compareText } from '../../storage/index.ts';
import { isRecord } from '../../shared/objects.ts';

/** Counts of one source, kind and event name. */
export interface StatsRow {
  source: string;
  kind: MessageKind;
  /** The event name for track calls; empty for the other kinds. */
  event: string;
  accepted: number;
  refused: Record<RefusalCode, number>;
  /** Undeclared fields removed, by path (array elements as `[]`): messages that had such a field. */
  dropped: { path: string; count: number }[];
  /** Schema violations by path (array elements as `[]`) and rule: messages that had such a violation. */
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
/**
 * Stands for a key a sender wrote that is not a plain key (`properties.*`): key names are free text and may be
 * personal data (`ada.lovelace@example.org`), which the counts never keep, whatever the message's outcome.
 */
export const UNNAMED = '*';
const MAX_NAME = 200;
const MAX_UNDECLARED_NAMES = 100;
/** Distinct paths per row (source, kind, event) and metric, in memory and as stored; the rest count under OTHER. */
export const MAX_PATHS = 100;
const SECTIONS = ['properties', 'traits', 'context'];
const PLAIN_KEY = /^[A-Za-z0-9_-]{1,64}$/;
const FIVE_DIGITS = /\d(?:\D*\d){4}/;
/** Five digits of any script (full-width, Arabic-Indic, …), in an event name read after NFKC folding. */
const FIVE_DIGITS_ANY = /\p{Nd}(?:\P{Nd}*\p{Nd}){4}/u;
/** An at sign (NFKC folds the full-width and small ones to `@`) or a control character. */
const NOT_IN_NAME = /[@\p{Cc}]/u;

/** Whether a key a sender wrote may be counted by name: 1–64 letters, digits, `_` or `-`, of which at most 4 digits. */
export function isPlainKey(key: string): boolean {
  return key.length <= 64 && PLAIN_KEY.test(key) && !FIVE_DIGITS.test(key);
}

/**
 * Whether an undeclared event name may be counted by name: 1–200 characters, no `@` or control character, at most 4
 * digits, read after NFKC folding and in every script (`Call ＋４４ ２０ ７９４６ ００１８` and `ada＠example.org` are not).
 */
export function isPlainEventName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME) return false;
  const folded = name.normalize('NFKC');
  return !NOT_IN_NAME.test(folded) && !FIVE_DIGITS_ANY.test(folded);
}

/** The paths a plan names itself: the section roots, its declared leaves and every object and array above them. */
export function planPaths(leaves: Iterable<string>): Set<string> {
  const known = new Set(SECTIONS);
  for (const path of leaves) {
    known.add(path);
    for (let i = 0; i < path.length; i++) if (path[i] === '.' || path[i] === '[') known.add(path.slice(0, i));
  }
  return known;
}

/** The length of the longest known path, per set of known paths. */
const longestByKnown = new WeakMap<ReadonlySet<string>, number>();

function longestOf(known: ReadonlySet<string>): number {
  let longest = longestByKnown.get(known);
  if (longest === undefined) {
    longest = 0;
    for (const path of known) longest = Math.max(longest, path.length);
    longestByKnown.set(known, longest);
  }
  return longest;
}

// A path longer than every known one is not looked up: hashing a sender's long key costs more than the rest.
function isKnown(path: string, known: ReadonlySet<string>, longest: number): boolean {
  // Array elements (`[]`) below a declared path are no sender text.
  for (let p = path; ; p = p.slice(0, -2)) {
    if (p.length <= longest && known.has(p)) return true;
    if (!p.endsWith('[]')) return false;
  }
}

/**
 * A dropped or violated path as counted: the plan's own names as they are, followed by the sender's key only if it
 * is a plain key, else by UNNAMED. The deepest path the plan names that the path is under ends the plan's part; what
 * follows is one key of the sender (which may itself contain dots), so no part of a key is ever kept on its own. A
 * path under no section is a message's top-level key, kept under the same rule (`email`, else `*`).
 */
export function countedPath(path: string, known: ReadonlySet<string>): string {
  const longest = longestOf(known);
  if (isKnown(path, known, longest)) return path;
  // A bracket-quoted key (`properties["customer.email"]`, see keySegment) is a sender's key, never a plain one.
  const quoted = path.indexOf('["');
  if (quoted > 0) {
    const parent = path.slice(0, quoted);
    return isKnown(parent, known, longest) ? `${parent}.${UNNAMED}` : UNNAMED;
  }
  for (let cut = path.lastIndexOf('.'); cut > 0; cut = path.lastIndexOf('.', cut - 1)) {
    const parent = path.slice(0, cut);
    if (isKnown(parent, known, longest)) return isPlainKey(path.slice(cut + 1)) ? path : `${parent}.${UNNAMED}`;
  }
  // Under no section: a top-level key of the message outside the protocol (`email`), one key of the sender.
  return isPlainKey(path) ? path : UNNAMED;
}

/** Known paths per map of declared leaves (PlanResult.declared: one map per event and plan version). */
const knownByDeclared = new WeakMap<ReadonlyMap<string, unknown>, Set<string>>();

function knownPaths(declared: ReadonlyMap<string, unknown>): Set<string> {
  let known = knownByDeclared.get(declared);
  if (known === undefined) knownByDeclared.set(declared, (known = planPaths(declared.keys())));
  return known;
}

/** Paths counted as they are, per map of declared leaves: the same few recur in every message of a sender. */
const plainByDeclared = new WeakMap<ReadonlyMap<string, unknown>, Set<string>>();
const MAX_REMEMBERED_PATHS = 1000;

/**
 * The other paths up to MAX_NAME counted in the current synchronous run, as counted, per map of declared leaves: the
 * messages of a request are counted in one run, and those of a batch share its batch-level context, so each such path
 * is worked out once per request, not once per message. At most MAX_RUN_PATHS; dropped when the run ends, so that no
 * sender's key is kept beyond the request.
 */
let runPaths: Map<ReadonlyMap<string, unknown>, Map<string, string>> | null = null;
let runSize = 0;
const MAX_RUN_PATHS = 10_000;

function runMemo(declared: ReadonlyMap<string, unknown>): Map<string, string> {
  if (runPaths === null) {
    runPaths = new Map();
    runSize = 0;
    queueMicrotask(() => (runPaths = null));
  }
  let memo = runPaths.get(declared);
  if (memo === undefined) runPaths.set(declared, (memo = new Map()));
  return memo;
}

/**
 * countedPath for a message's event, remembering the paths counted as they are (only those: a path with a key
 * that is no plain key is remembered for the current run only, so that no sender's free text is kept, in memory
 * either).
 */
function countedFor(declared: ReadonlyMap<string, unknown>, path: string): string {
  // A longer path counts under OTHER or `*` anyway; working it out costs less than hashing it to look it up.
  if (path.length > MAX_NAME) return countedPath(path, knownPaths(declared));
  let plain = plainByDeclared.get(declared);
  if (plain === undefined) plainByDeclared.set(declared, (plain = new Set()));
  if (plain.has(path)) return path;
  const memo = runMemo(declared);
  let counted = memo.get(path);
  if (counted !== undefined) return counted;
  counted = countedPath(path, knownPaths(declared));
  if (counted === path && plain.size < MAX_REMEMBERED_PATHS) plain.add(path);
  else if (runSize < MAX_RUN_PATHS) {
    memo.set(path, counted);
    runSize++;
  }
  return counted;
}

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

const OTHER_VIOLATION = `${OTHER}\n*`;

/** `key` if the map counts it already or has room for one more (OTHER aside), else `other`. */
function bounded(map: Map<string, number>, key: string, other: string): string {
  if (map.has(key) || key === other) return key;
  return map.size - (map.has(other) ? 1 : 0) < MAX_PATHS && key.length <= MAX_NAME ? key : other;
}

/**
 * Adds one message's paths to a counter: 1 per counted path, however many of the message's paths count under it
 * (keys that are no plain keys under `*`, array elements under `[]`, paths beyond the bound under OTHER).
 */
function countOnce<T>(map: Map<string, number>, items: readonly T[], counted: (item: T) => string, other: string): void {
  const seen = items.length > 1 ? new Set<string>() : undefined;
  for (const item of items) {
    const key = bounded(map, counted(item), other);
    if (seen?.has(key)) continue;
    seen?.add(key);
    bump(map, key, 1);
  }
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
    if (names.size >= MAX_UNDECLARED_NAMES || !isPlainEventName(name)) return OTHER;
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
      countOnce(dropped, result.dropped, (path) => countedFor(result.declared, path), OTHER);
    }
    if (result.violations.length > 0) {
      const violations = (counter.violations ??= new Map());
      countOnce(violations, result.violations, (v) => `${countedFor(result.declared, v.path.replace(/\[\d+\]/g, '[]'))}\n${v.rule}`, OTHER_VIOLATION);
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

/**
 * Adds records up into rows, one per source, kind and event, optionally filtered. Stored records come first: paths
 * beyond MAX_PATHS per row count under OTHER, as they will be stored.
 */
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
    } else if (r.metric === 'dropped') {
      // In the order the records were or will be stored: a path the stored row has no room for counts as it will.
      const map = dropped.get(row) as Map<string, number>;
      bump(map, bounded(map, r.item, OTHER), r.count);
    } else {
      const map = violations.get(row) as Map<string, number>;
      bump(map, bounded(map, `${r.item}\n${r.rule}`, OTHER_VIOLATION), r.count);
    }
  }
  const byCount = (a: { count: number; path: string; rule?: string }, b: { count: number; path: string; rule?: string }) =>
    b.count - a.count || compareText(a.path, b.path) || compareText(a.rule ?? '', b.rule ?? '');
  for (const row of rows.values()) {
    row.dropped = [...(dropped.get(row) ?? [])].map(([path, count]) => ({ path, count })).sort(byCount);
    row.violations = [...(violations.get(row) ?? [])]
      .map(([key, count]) => {
        const cut = key.lastIndexOf('\n');
        return { path: key.slice(0, cut), rule: key.slice(cut + 1), count };
      })
      .sort(byCount);
  }
  return [...rows.values()].sort((a, b) => compareText(a.source, b.source) || compareText(a.kind, b.kind) || compareText(a.event, b.event));
}

/** A stored row's dropped or violation counters: source, kind, event and metric. */
export interface StatsRowKey {
  source: string;
  kind: string;
  event: string;
  metric: 'dropped' | 'violation';
}

/** A path (item and rule) a stored row holds. */
export type StoredPath = Omit<StatsRecord, 'count'>;

const rowOf = (r: { source: string; kind: string; event: string; metric: string }) => `${r.source}\u0000${r.kind}\u0000${r.event}\u0000${r.metric}`;
const itemOf = (r: { item: string; rule: string }) => `${r.item}\n${r.rule}`;
const isPath = (r: StatsRecord): r is StatsRecord & { metric: StatsRowKey['metric'] } => r.metric === 'dropped' || r.metric === 'violation';

/**
 * What this process has read of the paths each stored row holds, so that writes keep every row within MAX_PATHS
 * across commits, restarts and processes: a record whose path a row is not known to hold makes the writer read that
 * row again in its transaction; rows are never read for paths they are known to hold (the usual case).
 */
export class StoredPaths {
  /** Row → item (path, newline, rule) as last read; OTHER aside. */
  readonly #rows = new Map<string, Set<string>>();

  /**
   * The rows to read before writing these records: those a record brings a path to that they are not known to hold,
   * unless they are known to be full (stored paths are never removed, so a new one counts under OTHER anyway).
   */
  unknownRows(records: readonly StatsRecord[]): StatsRowKey[] {
    const rows = new Map<string, StatsRowKey>();
    for (const r of records) {
      if (!isPath(r) || r.item === OTHER) continue;
      const row = rowOf(r);
      const known = this.#rows.get(row);
      if (!rows.has(row) && !known?.has(itemOf(r)) && (known?.size ?? 0) < MAX_PATHS) rows.set(row, { source: r.source, kind: r.kind, event: r.event, metric: r.metric });
    }
    return [...rows.values()];
  }

  /** Takes what was just read of `rows` (in the writing transaction) as what they hold. */
  learn(rows: readonly StatsRowKey[], read: readonly StoredPath[]): void {
    for (const row of rows) this.#rows.set(rowOf(row), new Set());
    for (const r of read) if (r.item !== OTHER) this.#rows.get(rowOf(r))?.add(itemOf(r));
  }

  /**
   * The records as the stored rows have room for them: a path new to a row that holds MAX_PATHS already counts under
   * OTHER (same keys added up). What is written is not learnt: the transaction may still roll back.
   */
  fit(records: readonly StatsRecord[]): StatsRecord[] {
    const added = new Map<string, Set<string>>();
    const out = new Map<string, StatsRecord>();
    for (const r of records) {
      let fitted = r;
      if (isPath(r) && r.item !== OTHER) {
        const row = rowOf(r);
        const item = itemOf(r);
        const stored = this.#rows.get(row);
        let mine = added.get(row);
        if (mine === undefined) added.set(row, (mine = new Set()));
        if (!stored?.has(item) && !mine.has(item)) {
          if ((stored?.size ?? 0) + mine.size < MAX_PATHS) mine.add(item);
          else fitted = { ...r, item: OTHER, rule: r.metric === 'violation' ? '*' : '' };
        }
      }
      const key = `${rowOf(fitted)}\u0000${itemOf(fitted)}`;
      const same = out.get(key);
      if (same === undefined) out.set(key, fitted === r ? { ...r } : fitted);
      else same.count += fitted.count;
    }
    return [...out.values()];
  }
}

/** A catalog_stats row. */
export interface StoredStat extends StatsRecord {
  updated_at: string;
}

/** The paths and track event names plan documents declare (any version, as stored). */
function documentNames(plans: readonly unknown[]): { paths: Set<string>; events: Set<string> } {
  const leaves = new Set<string>();
  const walk = (schema: unknown, path: string, depth: number) => {
    leaves.add(path);
    if (!isRecord(schema) || depth > 20) return;
    if (isRecord(schema.properties)) for (const [key, child] of Object.entries(schema.properties)) walk(child, `${path}.${key}`, depth + 1);
    if (isRecord(schema.items)) walk(schema.items, `${path}[]`, depth + 1);
  };
  const events = new Set<string>();
  for (const plan of plans) {
    if (!isRecord(plan)) continue;
    for (const [name, event] of Object.entries(isRecord(plan.events) ? plan.events : {})) {
      events.add(name);
      if (isRecord(event)) walk(event.properties, 'properties', 0);
    }
    for (const section of ['pages', 'screens']) if (isRecord(plan[section])) walk(plan[section].properties, 'properties', 0);
    walk(plan.traits, 'traits', 0);
    walk(plan.groupTraits, 'traits', 0);
    walk(plan.context, 'context', 0);
  }
  return { paths: planPaths(leaves), events };
}

/**
 * Stored counts as this version keeps them (migration 0098): keys that are not plain keys under UNNAMED, undeclared
 * event names that are not plain under OTHER, and at most MAX_PATHS paths per row (the most counted; the rest under
 * OTHER), same keys added up. `plans` are the stored plan documents: what any of them declares is the plan's text.
 */
export function restated(rows: readonly StoredStat[], plans: readonly unknown[]): StoredStat[] {
  const { paths, events } = documentNames(plans);
  const renamed = rows.map((r) => {
    const event = r.kind === 'track' && r.event !== OTHER && !events.has(r.event) && !isPlainEventName(r.event) ? OTHER : r.event;
    const item = isPath(r) && r.item !== OTHER ? countedPath(r.item, paths) : r.item;
    return { ...r, event, item, rule: item === OTHER && r.metric === 'violation' ? '*' : r.rule };
  });
  // The most counted paths of each row keep their name.
  const totals = new Map<string, Map<string, number>>();
  for (const r of renamed) {
    if (!isPath(r) || r.item === OTHER) continue;
    let items = totals.get(rowOf(r));
    if (items === undefined) totals.set(rowOf(r), (items = new Map()));
    bump(items, itemOf(r), r.count);
  }
  const kept = new Map<string, Set<string>>();
  for (const [row, items] of totals) {
    const ranked = [...items].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    kept.set(row, new Set(ranked.slice(0, MAX_PATHS).map(([item]) => item)));
  }
  const out = new Map<string, StoredStat>();
  for (const r of renamed) {
    const over = isPath(r) && r.item !== OTHER && !kept.get(rowOf(r))?.has(itemOf(r));
    const fitted = over ? { ...r, item: OTHER, rule: r.metric === 'violation' ? '*' : '' } : r;
    const key = `${rowOf(fitted)}\u0000${itemOf(fitted)}`;
    const same = out.get(key);
    if (same === undefined) out.set(key, fitted);
    else {
      same.count += fitted.count;
      if (fitted.updated_at > same.updated_at) same.updated_at = fitted.updated_at;
    }
  }
  return [...out.values()];
}
