// Compiles a tracking plan once per version into what the ingestion hot path runs: for each event a minimizer tree
// that copies only declared fields, the list of its annotated leaves, and an Ajv validator run on the minimized copy.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { _, Ajv, str, type AnySchemaObject, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { RE2JS } from 're2js';
import { parseDuration } from '../../shared/duration.ts';
import { DATA_CATEGORIES, IDENTIFYING_CATEGORIES, isDataUseUnder, type Taxonomy } from '../taxonomy/index.ts';
import { FORBIDDEN_NAMES, isRetention, MAX_DOCUMENT_DEPTH, MAX_RETENTION, PLAN_META_SCHEMA, SCALAR_TYPES, type AnnotationInput, type EventDefinition, type FieldSchema, type PlanDocument } from './catalog.schemas.ts';
import { isRecord } from '../../shared/objects.ts';

/** The Segment call types. */
export type MessageKind = 'track' | 'identify' | 'page' | 'screen' | 'group' | 'alias';
export const MESSAGE_KINDS: readonly MessageKind[] = ['track', 'identify', 'page', 'screen', 'group', 'alias'];

/** What the plan says about one field; `special`, `preciseLocation` and `protectedAttribute` come from the taxonomy. */
export interface FieldAnnotation {
  category: string;
  purposes: readonly string[];
  retention: string;
  personal: boolean;
  /** The category is a GDPR Art. 9 special category (or Art. 10 criminal convictions). */
  special: boolean;
  /** The category is `user.location.precise` or one of its children. */
  preciseLocation: boolean;
  /** The taxonomy marks the category as never to drive targeting. */
  protectedAttribute: boolean;
}

/**
 * What an event's occurrence is (its name, its time, that the person did it: an `Order Completed` at 14:02, a page
 * view): the data category the event definition declares (DEFAULT_EVENT_CATEGORY when it declares none), with the
 * taxonomy's flags, and the purposes the event declares. The consent gate keeps the event for one of those purposes,
 * when it rests on consent, only where the notice describes the category for it, as it keeps a field.
 */
export interface EventOccurrence {
  category: string;
  purposes: readonly string[];
  /** The category is a GDPR Art. 9 special category (or Art. 10), or one this process does not know. */
  special: boolean;
  /** The category is `user.location.precise` or one of its children. */
  preciseLocation: boolean;
  /** The event definition declares `category` (false: DEFAULT_EVENT_CATEGORY is read). */
  declared: boolean;
  /**
   * The category the event definition declares when it is about the system (its root in the taxonomy is `system`): a
   * stored version published before such were refused. `category` is then DEFAULT_EVENT_CATEGORY.
   */
  aboutTheSystem?: string;
}

/**
 * The category of the occurrence of an event whose definition declares none (stored versions published before event
 * categories, plans written without one). Every event is at least something the person did; as the parent of the
 * narrower behaviour categories (browsing, purchase, search history…), it is described only by a notice that names
 * the person's behaviour as a whole (or all their data) for the purpose, never by one naming only a narrower part.
 */
export const DEFAULT_EVENT_CATEGORY = 'user.behavior';

/** A declared leaf that is present in a minimized message, e.g. `traits.email` or `properties.products[].price`. */
export interface KeptField extends FieldAnnotation {
  path: string;
}

/** A schema violation: where and which rule, never the offending value. */
export interface Violation {
  path: string;
  rule: string;
  message: string;
}

export type RefusalCode = 'CATALOG_EVENT_UNDECLARED' | 'CATALOG_EVENT_INVALID';

/** The parts of a message the plan checks: its sections, and its top-level keys outside the protocol. */
export interface PlanInput {
  properties?: unknown;
  traits?: unknown;
  context?: unknown;
  otherKeys?: readonly string[];
}

/** The outcome of running one message through the plan. */
export interface PlanResult {
  /** False: the event is refused (undeclared event, or type violations). */
  ok: boolean;
  code?: RefusalCode;
  /** Every violation from CompiledPlan.process, the first MAX_VIOLATIONS_LISTED from Catalog.process and check (listDropped). */
  violations: readonly Violation[];
  /** How many violations there were beyond those `violations` lists; only when some are left out. */
  violationsUnlisted?: number;
  /** Minimized deep copies holding only declared fields. */
  data: { properties?: Record<string, unknown>; traits?: Record<string, unknown>; context?: Record<string, unknown> };
  /** One entry per declared leaf present in `data` (per distinct path, not per array element). */
  fields: readonly KeptField[];
  /** Every declared leaf of the message's event and of the context, by path: the same map for every such message. */
  declared: ReadonlyMap<string, KeptField>;
  /**
   * Paths of undeclared fields that were removed, each once (array elements as `[]`), in the message's order: every
   * one from CompiledPlan.process, the first MAX_DROPPED_LISTED from Catalog.process and check (listDropped). A
   * section the call type does not take (`traits` on a track call) and the top-level keys outside the protocol
   * (`email`) come last.
   */
  dropped: readonly string[];
  /** How many paths were removed beyond those `dropped` lists; only when some are left out. */
  droppedUnlisted?: number;
  /** The event's declared purposes and the purposes of its kept fields, in plan order. */
  purposes: readonly string[];
  /**
   * The purposes the event itself declares (track, page, screen); for identify, group and alias, which link the ids
   * the plan's events are attributed by, the purposes of all track, page and screen events together.
   */
  eventPurposes: readonly string[];
  /**
   * The event's occurrence (track, page, screen: one); for identify, group and alias those of every track event, pages
   * and screens, which they link (one per category, with the purposes of its events). Their purposes together are
   * `eventPurposes`.
   */
  occurrences: readonly EventOccurrence[];
}

/** The most dropped paths Catalog.process and check list per message; the rest are counted in `droppedUnlisted`. */
export const MAX_DROPPED_LISTED = 100;
/** The most violations Catalog.process and check list per message; the rest are counted in `violationsUnlisted`. */
export const MAX_VIOLATIONS_LISTED = 100;

/**
 * A result as the pipeline gets it: at most MAX_DROPPED_LISTED dropped paths and MAX_VIOLATIONS_LISTED violations,
 * since a message with thousands of undeclared keys (a batch's context is taken by each of its messages) or of wrong
 * array items would otherwise make an answer of megabytes. The plan's statistics count the result before it is
 * listed, every path and every violation.
 */
export function listDropped(result: PlanResult): PlanResult {
  const { dropped, violations } = result;
  if (dropped.length <= MAX_DROPPED_LISTED && violations.length <= MAX_VIOLATIONS_LISTED) return result;
  const listed = { ...result };
  if (dropped.length > MAX_DROPPED_LISTED) {
    listed.dropped = dropped.slice(0, MAX_DROPPED_LISTED);
    listed.droppedUnlisted = dropped.length - MAX_DROPPED_LISTED;
  }
  if (violations.length > MAX_VIOLATIONS_LISTED) {
    listed.violations = violations.slice(0, MAX_VIOLATIONS_LISTED);
    listed.violationsUnlisted = violations.length - MAX_VIOLATIONS_LISTED;
  }
  return listed;
}

/** A problem found in a plan: a JSON pointer into the document and what is wrong there. */
export interface PlanProblem {
  path: string;
  problem: string;
}

/** One section of a plan as a list of annotated leaves, for people and tools. */
export interface OutlineSection {
  section: 'track' | 'page' | 'screen' | 'identify' | 'group' | 'context';
  /** The event name (track only). */
  event?: string;
  description?: string;
  purposes: readonly string[];
  /** The occurrence of the event (track, page, screen). */
  occurrence?: EventOccurrence;
  fields: readonly (KeptField & { type: string })[];
}

/** The taxonomy look-ups the compiler needs. */
export type TaxonomyLookup = Pick<Taxonomy, 'dataCategory' | 'dataUse'>;

const MAX_DEPTH = 8;
/**
 * The most annotated leaves a plan may declare in all its sections together. A plan with more is refused before any
 * validator is compiled: compiling costs about 0.2–0.7 ms per leaf. Stored versions are loaded whatever their size.
 */
export const MAX_PLAN_FIELDS = 10_000;
/** compilePlanAsync gives the event loop a turn after this much work, so ingestion goes on while a plan compiles. */
const SLICE_MS = 10;
const PRECISE_LOCATION = 'user.location.precise';
// A field of a special category must not feed targeting or personalization (DESIGN.md invariant 7), nor may any data
// use below these in the taxonomy (custom ones included).
const TARGETING_ROOTS = ['marketing', 'personalize'];
const EMPTY: readonly never[] = Object.freeze([]);
/** A control character or an unpaired surrogate (see Builder.nameUsable). */
const UNUSABLE_NAME = /[\p{Cc}\p{Cs}]/u;

const LEAF = 0;
const OBJECT = 1;
const ARRAY = 2;

interface Leaf {
  readonly tag: typeof LEAF;
  readonly field: KeptField;
  readonly type: string;
  /** An array of scalars, annotated as one field. */
  readonly scalarArray: boolean;
  /** Its strings are trimmed before validation: the field (or its items) declares `format: "email"`. */
  readonly trim: boolean;
  readonly mask: number;
  /** The process() call that last saw this leaf, to list it once per message. */
  seen: number;
}

interface ObjectNode {
  readonly tag: typeof OBJECT;
  readonly path: string;
  readonly children: Map<string, Node>;
  /** Inside the items of an array: its paths (`properties.products[].x`) recur once per element of a message. */
  readonly repeated: boolean;
}

interface ArrayNode {
  readonly tag: typeof ARRAY;
  readonly path: string;
  readonly items: ObjectNode;
}

type Node = Leaf | ObjectNode | ArrayNode;

interface Section {
  readonly prefix: 'properties' | 'traits' | 'context';
  readonly root: ObjectNode;
  /** Set once the section's schema is compiled (Builder.compileSections), before the plan is handed out. */
  validate: ValidateFunction;
  readonly leaves: readonly Leaf[];
}

const NOT_COMPILED = (() => {
  throw new Error('the section was not compiled');
}) as unknown as ValidateFunction;

interface CompiledEvent {
  readonly kind: MessageKind;
  readonly name: string;
  readonly description: string | undefined;
  readonly purposes: readonly string[];
  readonly occurrences: readonly EventOccurrence[];
  readonly mask: number;
  readonly body: Section | null;
}

/** Per-call state of process(); one per compiled plan, since process() is synchronous. */
class Scratch {
  gen = 0;
  mask = 0;
  fields: KeptField[] = [];
  dropped: string[] | null = null;
  /** The dropped paths that can recur (under array items), to list each once: a set, so that a message costs linear time. */
  droppedRepeated: Set<string> | null = null;
  violations: Violation[] | null = null;
}

const BARE_KEY = /^[^.[\]"\\]+$/;

/**
 * A sender's key as one path segment: bare after a dot when it is unambiguous, else bracket-quoted as a JSON string
 * (`properties["customer.email"]`), so that a flat key with dots is never read as a declared nested path.
 */
export function keySegment(key: string): string {
  return BARE_KEY.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** A sender's top-level key of a message as a path: as it is when unambiguous, else bracket-quoted (`["a.b"]`). */
export function topLevelPath(key: string): string {
  return BARE_KEY.test(key) ? key : `[${JSON.stringify(key)}]`;
}

/** Whether a value is an object with a key of its own: an empty or absent section carries nothing to drop. */
function hasKeys(value: unknown): boolean {
  if (!isRecord(value)) return false;
  for (const key in value) if (Object.hasOwn(value, key)) return true;
  return false;
}

function pointerEscape(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

function pointerUnescape(segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~');
}

/**
 * The largest program (RE2 instructions) a plan's `pattern` may compile to. Matching takes time linear in the value
 * times this size; `^.{1,255}$` compiles to about 510.
 */
export const MAX_PATTERN_SIZE = 1000;

/** What runs a plan's `pattern`. */
interface PatternMatcher {
  test(value: string): boolean;
}

// ECMAScript's `\s` (JSON Schema patterns are ECMA-262) as the members of an RE2 character class; RE2's has ASCII only.
const JS_SPACE = '\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}';
// ECMAScript's `.`: any code point but a line terminator (RE2's leaves out \n only).
const JS_DOT = '[^\\n\\r\\x{2028}\\x{2029}]';
// ECMAScript's `[^]` (and `.` under the s modifier), and its `[]`, which matches nothing.
const ANY_CODE_POINT = '[\\x00-\\x{10FFFF}]';
const NO_CODE_POINT = '[^\\x00-\\x{10FFFF}]';
const QUANTIFIER = /\{(\d+)(,(\d*))?\}/y;
const UNICODE_ESCAPE = /u(?:\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{4}))/y;
const TRAIL_SURROGATE_ESCAPE = /\\u([Dd][C-Fc-f][0-9A-Fa-f]{2})/y;
const PROPERTY_ESCAPE = /[pP]\{(?:(?:General_Category|gc|Script|sc)=)?([^}]*)\}/y;
const MODIFIERS = /\(\?([ims]*)(?:-([ims]*))?:/y;
const LONE_SURROGATE = 'has a lone surrogate (U+D800 to U+DFFF outside a pair), which could only match ill-formed text; write a pair as its one code point (\\u{1F600})';

function stickyMatch(re: RegExp, text: string, at: number): RegExpExecArray | null {
  re.lastIndex = at;
  return re.exec(text);
}

/**
 * The escape at `at` (its backslash) of a valid pattern in RE2 syntax with ECMAScript's meaning, and how many
 * characters of the pattern it takes; or why it cannot be written so. `fold`: under the i modifier.
 */
function escapeToRe2(pattern: string, at: number, inClass: boolean, fold: boolean): { text: string; length: number } | string {
  const next = pattern[at + 1] ?? '';
  if (next === 'u') {
    const [text, braced, hex] = stickyMatch(UNICODE_ESCAPE, pattern, at + 1) as RegExpExecArray;
    let point = Number.parseInt(braced ?? (hex as string), 16);
    let length = 1 + text.length;
    // In unicode mode `\uD83D\uDE00` is one code point (😀), as one atom.
    const trail = hex !== undefined && point >= 0xd800 && point <= 0xdbff ? stickyMatch(TRAIL_SURROGATE_ESCAPE, pattern, at + length) : null;
    if (trail) {
      point = 0x10000 + ((point - 0xd800) << 10) + (Number.parseInt(trail[1] as string, 16) - 0xdc00);
      length += trail[0].length;
    }
    if (point >= 0xd800 && point <= 0xdfff) return LONE_SURROGATE;
    return { text: `\\x{${point.toString(16)}}`, length };
  }
  if (next === 'p' || next === 'P') {
    if (next === 'P' && fold) return 'uses \\P{…} under the i modifier, which the linear-time engine reads differently; write it outside (?i:…)';
    const [text, name] = stickyMatch(PROPERTY_ESCAPE, pattern, at + 1) as RegExpExecArray;
    return { text: `\\${next}{${name as string}}`, length: 1 + text.length };
  }
  if ((next === 'b' || next === 'B') && fold && !inClass) {
    return `uses \\${next} under the i modifier, whose word characters the linear-time engine does not know; write it outside (?i:…)`;
  }
  if (next === 'S' && inClass) return 'uses \\S inside brackets, which the linear-time engine cannot express; list the characters instead';
  if (next === 'S') return { text: `[^${JS_SPACE}]`, length: 2 };
  if (next === 's') return { text: inClass ? JS_SPACE : `[${JS_SPACE}]`, length: 2 };
  if (next === 'b' && inClass) return { text: '\\x08', length: 2 };
  if (next === '0') return { text: '\\x00', length: 2 };
  if (next === 'c') return { text: `\\x{${(pattern.charCodeAt(at + 2) % 32).toString(16)}}`, length: 3 };
  return { text: `\\${next}`, length: 2 };
}

/**
 * A valid ECMA-262 pattern in RE2 syntax with the same meaning (`.`, `\s`, `\S`, `\u…`, `\0`, `\c…`, `[\b]`, `[]`,
 * `[^]`, a `[` inside brackets rewritten), and an estimate of its program size made before RE2 compiles it (a pattern
 * of a few hundred characters can expand to a million instructions); or why it cannot be written so.
 */
function toRe2(pattern: string): { source: string; size: number } | string {
  if (!pattern.isWellFormed()) return LONE_SURROGATE;
  interface Group {
    size: number;
    /** The instructions of the group's last item, which a quantifier repeats. */
    last: number;
    /** Under the i modifier, and under the s one. */
    fold: boolean;
    dotAll: boolean;
  }
  const outer: Group = { size: 0, last: 0, fold: false, dotAll: false };
  const open: Group[] = [];
  let group = outer;
  const item = (size: number) => {
    group.size += size;
    group.last = size;
  };
  let source = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    const repeat = c === '{' && !inClass ? stickyMatch(QUANTIFIER, pattern, i) : null;
    if (c === '\\') {
      const escape = escapeToRe2(pattern, i, inClass, group.fold);
      if (typeof escape === 'string') return escape;
      source += escape.text;
      i += escape.length - 1;
      if (!inClass) item(1);
    } else if (inClass) {
      // RE2 reads `[:alpha:]` inside brackets as a class; ECMAScript a `[` there as itself.
      source += c === '[' ? '\\[' : c;
      inClass = c !== ']';
    } else if (c === '[') {
      // RE2 reads a `]` right after `[` or `[^` as a member; ECMAScript as the end of an empty class.
      const negated = pattern[i + 1] === '^';
      const empty = pattern[i + (negated ? 2 : 1)] === ']';
      source += empty ? (negated ? ANY_CODE_POINT : NO_CODE_POINT) : negated ? '[^' : '[';
      i += empty ? (negated ? 2 : 1) : negated ? 1 : 0;
      inClass = !empty;
      item(1);
    } else if (repeat) {
      const [text, min, range, max] = repeat;
      const times = range === undefined ? Number(min) : max === '' ? Number(min) + 1 : Number(max);
      group.size += group.last * (times - 1) + times;
      group.last *= times;
      source += text;
      i += text.length - 1;
    } else if (c === '(') {
      const modifiers = stickyMatch(MODIFIERS, pattern, i);
      const [, on = '', off = ''] = modifiers ?? [];
      if (on.includes('m')) return 'uses the m modifier, whose line ends (\\r, U+2028, U+2029) the linear-time engine does not know; match \\n explicitly';
      source += c;
      open.push(group);
      const flag = (name: string, inherited: boolean) => on.includes(name) || (inherited && !off.includes(name));
      group = { size: 0, last: 0, fold: flag('i', group.fold), dotAll: flag('s', group.dotAll) };
    } else if (c === ')') {
      source += c;
      const inner = group.size + 2;
      group = open.pop() ?? outer;
      item(inner);
    } else if (c === '*' || c === '+' || c === '?') {
      source += c;
      group.size += 1;
    } else {
      source += c === '.' ? (group.dotAll ? ANY_CODE_POINT : JS_DOT) : c;
      item(1);
    }
  }
  return { source, size: outer.size };
}

/**
 * A plan's `pattern` (ECMA-262 in unicode mode, as JSON Schema has it) as an RE2 matcher with the same meaning, which
 * runs in time linear in the value; or why it cannot be one: RE2 has no lookahead, lookbehind or backreference, and
 * a program over MAX_PATTERN_SIZE would cost too much per character.
 */
export function linearPattern(pattern: string): PatternMatcher | string {
  try {
    new RegExp(pattern, 'u');
  } catch {
    return 'is not a valid regular expression (ECMA-262, unicode mode)';
  }
  const re2 = toRe2(pattern);
  if (typeof re2 === 'string') return re2;
  const tooLarge = `expands to more than ${MAX_PATTERN_SIZE} instructions (MAX_PATTERN_SIZE): use smaller repetition counts, and maxLength for the length`;
  if (re2.size > MAX_PATTERN_SIZE) return tooLarge;
  try {
    const compiled = RE2JS.compile(re2.source);
    return compiled.programSize() > MAX_PATTERN_SIZE ? tooLarge : compiled;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return `is not supported by the linear-time engine (RE2: no lookahead, lookbehind or backreference): ${why}`;
  }
}

/** A pattern of a stored version that the linear engine cannot run: the version loads, without that check. */
const ANY_VALUE: PatternMatcher = { test: () => true };

/** Whether a string has more code points than max (as maxLength counts them: a surrogate pair is one). */
function overLength(value: string, max: number): boolean {
  if (value.length <= max) return false;
  let points = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
    if (++points > max) return true;
  }
  return false;
}

function createAjv(matcher: (pattern: string) => PatternMatcher): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    allowUnionTypes: true,
    coerceTypes: false,
    useDefaults: false,
    removeAdditional: false,
    // A field named after a member of every object (`valueOf`, `hasOwnProperty`) is absent when the message lacks it,
    // not the inherited method (which failed every message without it as a type violation).
    ownProperties: true,
    logger: false,
    // No regular expression of a plan runs on V8's backtracking engine.
    code: { regExp: Object.assign((pattern: string) => matcher(pattern), { code: 'linearPattern' }) },
  });
  addFormats.default(ajv);
  // The field annotation: kept in the schema for the compiler, ignored by validation.
  ajv.addKeyword({ keyword: 'x-candor', schemaType: 'object' });
  // `pattern` as Ajv has it, but not run on a string longer than the schema's maxLength (which already fails it).
  ajv.removeKeyword('pattern');
  ajv.addKeyword({
    keyword: 'pattern',
    type: 'string',
    schemaType: 'string',
    errors: false,
    error: { message: ({ schemaCode }) => str`must match pattern "${schemaCode}"`, params: ({ schemaCode }) => _`{pattern: ${schemaCode}}` },
    compile: (pattern: string, parent: AnySchemaObject) => {
      const re = matcher(pattern);
      const max: unknown = parent.maxLength;
      return typeof max === 'number' ? (value: string) => overLength(value, max) || re.test(value) : (value: string) => re.test(value);
    },
  });
  return ajv;
}

/** Where a plan document first nests deeper than MAX_DOCUMENT_DEPTH, as a JSON pointer; walked without recursion. */
function tooDeep(plan: unknown): string | undefined {
  const stack: { value: unknown; pointer: string; depth: number }[] = [{ value: plan, pointer: '', depth: 0 }];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const { value, pointer, depth } = next;
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_DOCUMENT_DEPTH) return pointer;
    for (const [key, child] of Object.entries(value)) stack.push({ value: child, pointer: `${pointer}/${pointerEscape(key)}`, depth: depth + 1 });
  }
  return undefined;
}

const metaAjv = new Ajv({ allErrors: true, strict: false, logger: false });
const validateMeta = metaAjv.compile(PLAN_META_SCHEMA);

/** Problems of a plan against the meta-schema, as JSON pointers. */
function metaProblems(plan: unknown): PlanProblem[] {
  if (validateMeta(plan)) return [];
  const problems: PlanProblem[] = [];
  for (const e of validateMeta.errors ?? []) {
    // Branches of anyOf and the checks inside propertyNames are summarised by their parent error.
    if (e.schemaPath.includes('/anyOf/') || e.schemaPath.includes('/propertyNames/')) continue;
    const p = e.params as Record<string, unknown>;
    if (e.keyword === 'required') problems.push({ path: `${e.instancePath}/${pointerEscape(String(p.missingProperty))}`, problem: 'is required' });
    else if (e.keyword === 'additionalProperties') problems.push({ path: `${e.instancePath}/${pointerEscape(String(p.additionalProperty))}`, problem: 'is not allowed here' });
    else if (e.keyword === 'propertyNames') problems.push({ path: `${e.instancePath}/${pointerEscape(String(p.propertyName))}`, problem: 'is not an allowed name (1 to 100 characters without dots or brackets for fields, 1 to 200 for events; never __proto__, constructor or prototype)' });
    else if (e.keyword === 'pattern' && e.instancePath === '/name') problems.push({ path: '/name', problem: 'must not contain control characters (such as NUL) or unpaired surrogates' });
    else if (e.keyword === 'anyOf' && e.instancePath.endsWith('/type')) problems.push({ path: e.instancePath, problem: `must be one of ${['object', 'array', ...SCALAR_TYPES].join(', ')}, or a list of them` });
    else problems.push({ path: e.instancePath || '/', problem: e.message ?? e.keyword });
  }
  return problems;
}

function isUnder(path: string, pointer: string): boolean {
  return path === pointer || path.startsWith(pointer + '/');
}

/** The flags an annotation may write out, which must agree with the taxonomy, and what each says. */
const DERIVED_FLAGS = [
  ['special', 'a special category'],
  ['preciseLocation', 'precise location'],
  ['protectedAttribute', 'a protected attribute'],
] as const;

interface ResolvedCategory {
  special: boolean;
  preciseLocation: boolean;
  protectedAttribute: boolean;
  /** The category, or the nearest listed one above it, identifies a person or is personal by nature. */
  identifying: boolean;
  /** Its root in the taxonomy (by parent) is `system`: data about the system, which no notice needs to describe. */
  aboutTheSystem: boolean;
  /**
   * What the category covers below it that it is not itself (`user.location` covers precise location,
   * `user.demographic` special categories): a field of it could hold either, so it is read the strict way.
   */
  covers?: string;
}

/** Builds the compiled form of a plan, collecting every problem on the way. */
class Builder {
  readonly problems: PlanProblem[] = [];
  readonly purposeOrder: string[] = [];
  readonly #purposeIndex = new Map<string, number>();
  readonly #taxonomy: TaxonomyLookup;
  readonly #lenient: boolean;
  /** Each `pattern` of the plan compiled once (linearPattern): its matcher, or why there is none. */
  readonly #patterns = new Map<string, PatternMatcher | string>();
  readonly #ajv = createAjv((pattern) => this.#matcher(pattern));
  readonly #categories = new Map<string, ResolvedCategory | undefined>();
  readonly #uses = new Map<string, ReturnType<TaxonomyLookup['dataUse']>>();
  readonly #useLookup = { dataUse: (key: string) => this.#dataUse(key) };
  /** Sections whose tree has no problems, waiting for their validator. */
  readonly #pending: { section: Section; schema: object; pointer: string }[] = [];
  /** Annotated leaves of every section built so far. */
  leafCount = 0;

  constructor(taxonomy: TaxonomyLookup, lenient: boolean) {
    this.#taxonomy = taxonomy;
    this.#lenient = lenient;
  }

  #dataUse(key: string): ReturnType<TaxonomyLookup['dataUse']> {
    if (this.#uses.has(key)) return this.#uses.get(key);
    const entry = this.#taxonomy.dataUse(key);
    this.#uses.set(key, entry);
    return entry;
  }

  /**
   * Whether a field or event name can be kept: its path is written to text columns (counts, traits), where PostgreSQL
   * refuses NUL and no control character or unpaired surrogate belongs. Refused in a plan being published; in a stored
   * version (published before this check) the field is left out, as if undeclared, so it cannot fail every commit.
   */
  nameUsable(name: string, pointer: string): boolean {
    if (!UNUSABLE_NAME.test(name)) return true;
    if (!this.#lenient) this.#problem(pointer, 'a name must not contain control characters or unpaired surrogates');
    return false;
  }

  #problem(path: string, problem: string): void {
    this.problems.push({ path, problem });
  }

  #pattern(pattern: string): PatternMatcher | string {
    let entry = this.#patterns.get(pattern);
    if (entry === undefined) {
      entry = linearPattern(pattern);
      this.#patterns.set(pattern, entry);
    }
    return entry;
  }

  /** What Ajv runs for a pattern; a section whose pattern cannot run is not compiled, but for a stored version. */
  #matcher(pattern: string): PatternMatcher {
    const entry = this.#pattern(pattern);
    if (typeof entry !== 'string') return entry;
    if (this.#lenient) return ANY_VALUE;
    throw new Error(`the pattern ${entry}`);
  }

  /** Reports, at its path, a schema's `pattern` that cannot run in linear time. */
  #checkPattern(schema: FieldSchema, pointer: string): void {
    if (typeof schema.pattern !== 'string' || this.#lenient) return;
    const entry = this.#pattern(schema.pattern);
    if (typeof entry === 'string') this.#problem(`${pointer}/pattern`, entry);
  }

  /** A bit per purpose (the first 32 purposes of a plan); 0 for the rest, which take the slow path. */
  maskOf(purposes: readonly string[]): number {
    let mask = 0;
    for (const purpose of purposes) {
      let index = this.#purposeIndex.get(purpose);
      if (index === undefined) {
        index = this.purposeOrder.length;
        this.#purposeIndex.set(purpose, index);
        this.purposeOrder.push(purpose);
      }
      if (index < 32) mask |= 1 << index;
    }
    return mask;
  }

  #category(key: string): ResolvedCategory | undefined {
    if (this.#categories.has(key)) return this.#categories.get(key);
    let resolved: ResolvedCategory | undefined = categoryFlags(this.#taxonomy, key);
    if (resolved) {
      const below = this.#restrictedBelow(key);
      const covered = [below.special && !resolved.special ? 'special categories' : '', below.precise && !resolved.preciseLocation ? 'precise location' : ''].filter(Boolean);
      if (covered.length > 0) {
        resolved = { ...resolved, special: resolved.special || below.special, preciseLocation: resolved.preciseLocation || below.precise, protectedAttribute: resolved.protectedAttribute || below.special, covers: covered.join(' and ') };
      }
    }
    this.#categories.set(key, resolved);
    return resolved;
  }

  /**
   * Whether a special category or precise location lies below `key` in the built-in taxonomy. Custom categories do not
   * count: one added under a category plans already use (a special `user.behavior.pharmacy`) would otherwise change
   * how every field of that category is read, and refuse or fail to load plans that were valid.
   */
  #restrictedBelow(key: string): { special: boolean; precise: boolean } {
    const out = { special: false, precise: false };
    const prefix = `${key}.`;
    for (const entry of DATA_CATEGORIES) {
      if (!entry.key.startsWith(prefix)) continue;
      if (entry.specialCategory !== null) out.special = true;
      if (entry.key === PRECISE_LOCATION) out.precise = true;
    }
    return out;
  }

  checkPurposes(purposes: unknown, pointer: string): void {
    if (!Array.isArray(purposes)) return;
    purposes.forEach((purpose, i) => {
      if (typeof purpose === 'string' && !this.#dataUse(purpose) && !this.#lenient) {
        this.#problem(`${pointer}/${i}`, `"${purpose}" is not a data use of the taxonomy`);
      }
    });
  }

  /**
   * An event definition's occurrence, resolved once per compiled plan: its `category` (DEFAULT_EVENT_CATEGORY when it
   * declares none) is checked as a field's is. Refused: a category the taxonomy does not know, one that also covers
   * special categories or precise location below it, a special one for an event serving targeting, and one about the
   * system (its root in the taxonomy, by parent, is `system`): data about the system is described for every purpose
   * (Consent.describes), so the event would be kept whatever the notice tells. A stored version is loaded with such a
   * category read the strict way (one this process does not know as special; one about the system as
   * DEFAULT_EVENT_CATEGORY, `aboutTheSystem` naming it).
   */
  occurrence(input: unknown, purposes: readonly string[], pointer: string): EventOccurrence {
    const declared = typeof input === 'string';
    let key = declared ? input : DEFAULT_EVENT_CATEGORY;
    const at = `${pointer}/category`;
    let category = this.#category(key);
    let aboutTheSystem: string | undefined;
    if (category?.aboutTheSystem) {
      if (!this.#lenient) this.#problem(at, `${key} is about the system, and an occurrence is something the person did: choose a user.* category`);
      aboutTheSystem = key;
      key = DEFAULT_EVENT_CATEGORY;
      category = this.#category(key);
    }
    if (!category && !this.#lenient) this.#problem(at, `"${key}" is not a data category of the taxonomy`);
    if (category?.covers !== undefined && !this.#lenient) {
      this.#problem(at, `${key} also covers ${category.covers}: choose the narrower category the event's occurrence is`);
    }
    const special = category?.special ?? true;
    if (category && special && !this.#lenient) {
      purposes.forEach((purpose, i) => {
        if (isDataUseUnder(this.#useLookup, purpose, TARGETING_ROOTS)) {
          this.#problem(`${pointer}/purposes/${i}`, `an event of a special category must not serve targeting or personalization (${purpose})`);
        }
      });
    }
    return Object.freeze({ category: key, purposes, special, preciseLocation: category?.preciseLocation ?? false, declared, ...(aboutTheSystem === undefined ? {} : { aboutTheSystem }) });
  }

  #annotation(input: AnnotationInput, pointer: string, path: string): KeptField | undefined {
    const at = `${pointer}/x-candor`;
    const before = this.problems.length;
    const category = typeof input.category === 'string' ? this.#category(input.category) : undefined;
    if (typeof input.category === 'string' && !category && !this.#lenient) {
      this.#problem(`${at}/category`, `"${input.category}" is not a data category of the taxonomy`);
    }
    this.checkPurposes(input.purposes, `${at}/purposes`);
    if (typeof input.retention === 'string' && !parseDuration(input.retention)) {
      this.#problem(`${at}/retention`, 'must be an ISO-8601 duration longer than zero, such as P30D, P13M or P7Y');
    } else if (typeof input.retention === 'string' && !isRetention(input.retention) && !this.#lenient) {
      // A stored version is loaded as it is: the sweeper counts an overlong period from its earliest cutoff.
      this.#problem(`${at}/retention`, `must be at most ${MAX_RETENTION} (100 years)`);
    }
    if (category?.covers !== undefined && !this.#lenient) {
      // A stored version is loaded with the field read the strict way (as the category's most restricted part).
      this.#problem(`${at}/category`, `${input.category} also covers ${category.covers}: choose the narrower category the field holds`);
    }
    // A category this process does not know (added elsewhere since start) is treated as the most restrictive.
    const known = category ?? { special: true, preciseLocation: false, protectedAttribute: true, identifying: true };
    const flags = { ...known };
    for (const [flag, what] of DERIVED_FLAGS) {
      const written = input[flag];
      // `special` and `preciseLocation` stricter than the taxonomy are the plan's choice (a sensor reading treated as
      // health data, say), and the gate and the plan's rules then treat the field so; looser is not. A protected
      // attribute is known by its category wherever it is checked (scoring), so that flag must agree.
      if (category && written === true && !known[flag] && flag !== 'protectedAttribute') flags[flag] = true;
      // A stored version is loaded with the taxonomy's flag (one published when a stricter protectedAttribute was taken).
      else if (category && typeof written === 'boolean' && written !== known[flag] && !this.#lenient) {
        this.#problem(`${at}/${flag}`, `contradicts the taxonomy: category ${input.category} is ${known[flag] ? '' : 'not '}${what}`);
      }
    }
    // Such a field is stored encrypted with the person's key whatever the plan says (DESIGN.md invariant 3): a stored
    // version published before its category had to be personal is loaded with the field made personal.
    const mustBePersonal = flags.special || flags.preciseLocation || flags.identifying;
    if (category && mustBePersonal && input.personal === false && !this.#lenient) {
      const why = flags.special ? 'is a special category' : flags.preciseLocation ? 'is precise location' : 'identifies a person or is personal whatever the context';
      this.#problem(`${at}/personal`, `must be true: category ${input.category} ${why}`);
    }
    // A stored version is loaded as it is (a field of a category read more strictly since, say): its fields serve what
    // the gate allows, and a special one only with explicit consent.
    if (category && flags.special && Array.isArray(input.purposes) && !this.#lenient) {
      input.purposes.forEach((purpose, i) => {
        if (typeof purpose === 'string' && isDataUseUnder(this.#useLookup, purpose, TARGETING_ROOTS)) {
          this.#problem(`${at}/purposes/${i}`, `a special-category field must not serve targeting or personalization (${purpose})`);
        }
      });
    }
    if (this.problems.length > before || typeof input.category !== 'string' || !Array.isArray(input.purposes)) return undefined;
    return Object.freeze({
      path,
      category: input.category,
      purposes: Object.freeze([...input.purposes]),
      retention: input.retention,
      personal: input.personal === true || mustBePersonal,
      special: flags.special,
      preciseLocation: flags.preciseLocation,
      protectedAttribute: flags.protectedAttribute,
    });
  }

  /** A field schema as a node of the minimizer tree; undefined when it has problems. */
  #node(schema: FieldSchema, pointer: string, path: string, depth: number, leaves: Leaf[]): Node | undefined {
    if (!isRecord(schema)) return undefined;
    this.#checkPattern(schema, pointer);
    const type = schema.type;
    const types = Array.isArray(type) ? type : type === undefined ? [] : [type];
    if (types.length === 0) {
      this.#problem(pointer, 'must declare its "type"');
      this.#annotationOf(schema, pointer, path);
      return undefined;
    }
    if (type === 'object' || schema.properties !== undefined) {
      return this.#object(schema, pointer, path, depth, leaves);
    }
    if (type === 'array') {
      const items = schema.items;
      if (!isRecord(items)) {
        this.#problem(pointer, 'an array must declare its "items"');
        return undefined;
      }
      if (items.type === 'object' || items.properties !== undefined) {
        if (schema['x-candor'] !== undefined) this.#problem(`${pointer}/x-candor`, 'annotate the fields of the array items, not the array');
        // Comparing every pair of objects: a message of a few thousand items would hold the server up.
        if (schema.uniqueItems === true) this.#problem(`${pointer}/uniqueItems`, 'uniqueItems is allowed on arrays of scalars only (on objects every pair would be compared)');
        const node = this.#object(items, `${pointer}/items`, `${path}[]`, depth + 1, leaves);
        return node && { tag: ARRAY, path, items: node };
      }
      const itemTypes = Array.isArray(items.type) ? items.type : items.type === undefined ? [] : [items.type];
      if (itemTypes.length === 0 || !itemTypes.every((t) => (SCALAR_TYPES as readonly string[]).includes(t))) {
        this.#problem(`${pointer}/items`, 'items of an array are either objects with declared properties or scalars (string, number, integer, boolean, null)');
        this.#annotationOf(schema, pointer, path);
        return undefined;
      }
      if (items['x-candor'] !== undefined) this.#problem(`${pointer}/items/x-candor`, 'annotate an array of scalars on the array itself');
      this.#checkPattern(items, `${pointer}/items`);
      return this.#leaf(schema, pointer, path, true, `array of ${itemTypes.join('|')}`, leaves);
    }
    if (!types.every((t) => (SCALAR_TYPES as readonly string[]).includes(t))) {
      this.#problem(`${pointer}/type`, 'a field is an object, an array, or one or more scalar types (string, number, integer, boolean, null)');
      this.#annotationOf(schema, pointer, path);
      return undefined;
    }
    return this.#leaf(schema, pointer, path, false, types.join('|'), leaves);
  }

  /** Reports the problems of the annotation of a field that cannot become a leaf for other reasons (every problem at once). */
  #annotationOf(schema: FieldSchema, pointer: string, path: string): void {
    const input = schema['x-candor'];
    if (isRecord(input)) this.#annotation(input as unknown as AnnotationInput, pointer, path);
  }

  #leaf(schema: FieldSchema, pointer: string, path: string, scalarArray: boolean, type: string, leaves: Leaf[]): Leaf | undefined {
    const input = schema['x-candor'];
    if (!isRecord(input)) {
      this.#problem(pointer, 'a leaf field must carry an "x-candor" annotation (category, purposes, retention, personal)');
      return undefined;
    }
    const field = this.#annotation(input as unknown as AnnotationInput, pointer, path);
    if (!field) return undefined;
    const format = scalarArray ? (schema.items as FieldSchema).format : schema.format;
    const leaf: Leaf = { tag: LEAF, field, type, scalarArray, trim: format === 'email', mask: this.maskOf(field.purposes), seen: 0 };
    leaves.push(leaf);
    return leaf;
  }

  #object(schema: FieldSchema, pointer: string, path: string, depth: number, leaves: Leaf[]): ObjectNode | undefined {
    const before = this.problems.length;
    this.#checkPattern(schema, pointer);
    if (schema.type !== 'object') this.#problem(`${pointer}/type`, 'an object with properties must declare "type": "object"');
    if (schema['x-candor'] !== undefined) this.#problem(`${pointer}/x-candor`, 'annotate the fields of an object, not the object');
    if (depth > MAX_DEPTH) this.#problem(pointer, `fields nest at most ${MAX_DEPTH} levels deep`);
    if (!isRecord(schema.properties)) {
      if (schema.properties === undefined) this.#problem(pointer, 'an object must declare its "properties" (a free-form object would keep undeclared data)');
      return undefined;
    }
    const children = new Map<string, Node>();
    for (const [key, child] of Object.entries(schema.properties)) {
      if (FORBIDDEN_NAMES.includes(key)) continue;
      if (!this.nameUsable(key, `${pointer}/properties/${pointerEscape(key)}`)) continue;
      const node = this.#node(child, `${pointer}/properties/${pointerEscape(key)}`, `${path}.${key}`, depth + 1, leaves);
      if (node) children.set(key, node);
    }
    if (Array.isArray(schema.required)) {
      schema.required.forEach((name, i) => {
        if (typeof name === 'string' && !Object.hasOwn(schema.properties as object, name)) this.#problem(`${pointer}/required/${i}`, `"${name}" is not a declared property`);
      });
    }
    if (this.problems.length > before) return undefined;
    return { tag: OBJECT, path, children, repeated: path.includes('[]') };
  }

  /** The section of an event, identify, group or context; null when it has problems. Its validator comes later. */
  section(schema: unknown, pointer: string, prefix: Section['prefix'], metaFailed: boolean): Section | null {
    const before = this.problems.length;
    const leaves: Leaf[] = [];
    const root = isRecord(schema) ? this.#object(schema as FieldSchema, pointer, prefix, 0, leaves) : undefined;
    this.leafCount += leaves.length;
    if (!root || this.problems.length > before || metaFailed) return null;
    const section: Section = { prefix, root, validate: NOT_COMPILED, leaves };
    this.#pending.push({ section, schema: schema as object, pointer });
    return section;
  }

  /** Compiles the validators of the sections built, one step per section (Ajv compilation is the costly part). */
  *compileSections(): Generator<void, void> {
    for (const { section, schema, pointer } of this.#pending) {
      try {
        section.validate = this.#ajv.compile(schema);
      } catch (error) {
        this.#problem(pointer, `the schema does not compile: ${error instanceof Error ? error.message : String(error)}`);
      }
      yield;
    }
  }
}

/** An empty object schema: every field of the section is dropped. */
const NOTHING_DECLARED: FieldSchema = { type: 'object', properties: {} };

export interface CompileOptions {
  /** A stored version: unknown categories and purposes and overlong retentions are accepted, and so is any size. */
  lenient?: boolean;
}

export interface CompileOutcome {
  compiled?: CompiledPlan;
  problems: PlanProblem[];
}

/** Resolves and compiles a plan; returns every problem found, and the compiled plan when there is none. */
export function compilePlan(plan: unknown, taxonomy: TaxonomyLookup, options: CompileOptions = {}): CompileOutcome {
  const steps = compileSteps(plan, taxonomy, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * compilePlan in slices of about 10 ms with a turn of the event loop between them, so that compiling a large plan
 * (validators are compiled per event) does not hold up ingestion in the same process.
 */
export async function compilePlanAsync(plan: unknown, taxonomy: TaxonomyLookup, options: CompileOptions = {}): Promise<CompileOutcome> {
  const steps = compileSteps(plan, taxonomy, options);
  let sliceStart = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    if (performance.now() - sliceStart >= SLICE_MS) {
      await yieldToLoop();
      sliceStart = performance.now();
    }
  }
}

/**
 * The fields a stored version declares, as `outline()` lists them, without compiling its validators (the costly part):
 * read as a stored version is (leniently). Undefined when the version cannot be read. For what only needs the
 * declarations (the retention of fields later versions no longer declare); such an outline validates nothing.
 */
export async function outlineStoredAsync(plan: unknown, taxonomy: TaxonomyLookup): Promise<OutlineSection[] | undefined> {
  const steps = compileSteps(plan, taxonomy, { lenient: true }, false);
  let sliceStart = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value.compiled?.outline();
    if (performance.now() - sliceStart >= SLICE_MS) {
      await yieldToLoop();
      sliceStart = performance.now();
    }
  }
}

/**
 * The work of compiling a plan, yielding after each event built and each validator compiled; without `validators`,
 * only the declarations (the plan returned then must not process messages: it never escapes outlineStoredAsync).
 */
function* compileSteps(plan: unknown, taxonomy: TaxonomyLookup, options: CompileOptions, validators = true): Generator<void, CompileOutcome> {
  // Before the meta-schema, whose validator recurses; a stored version passed it when it was published.
  const deep = options.lenient ? undefined : tooDeep(plan);
  if (deep !== undefined) return { problems: [{ path: deep, problem: `nests deeper than ${MAX_DOCUMENT_DEPTH} levels (MAX_DOCUMENT_DEPTH); values of const, enum and examples count too` }] };
  const meta = metaProblems(plan);
  const builder = new Builder(taxonomy, options.lenient ?? false);
  builder.problems.push(...meta);
  if (!isRecord(plan)) return { problems: builder.problems };
  const doc = plan as unknown as PlanDocument;
  const failed = (pointer: string) => meta.some((p) => isUnder(p.path, pointer));

  const events = new Map<string, CompiledEvent>();
  const event = (kind: MessageKind, name: string, definition: EventDefinition, pointer: string): CompiledEvent | undefined => {
    if (!isRecord(definition)) return undefined;
    builder.checkPurposes(definition.purposes, `${pointer}/purposes`);
    const purposes = Object.freeze(Array.isArray(definition.purposes) ? definition.purposes.filter((p) => typeof p === 'string') : []);
    const mask = builder.maskOf(purposes);
    const occurrence = builder.occurrence(definition.category, purposes, pointer);
    const body = builder.section(definition.properties, `${pointer}/properties`, 'properties', failed(pointer));
    if (!body) return undefined;
    const description = typeof definition.description === 'string' ? definition.description : undefined;
    return { kind, name, description, purposes, occurrences: Object.freeze([occurrence]), mask, body };
  };
  if (isRecord(doc.events)) {
    for (const [name, definition] of Object.entries(doc.events)) {
      if (FORBIDDEN_NAMES.includes(name)) continue;
      if (!builder.nameUsable(name, `/events/${pointerEscape(name)}`)) continue;
      const compiled = event('track', name, definition, `/events/${pointerEscape(name)}`);
      if (compiled) events.set(name, compiled);
      yield;
    }
  }
  const page = doc.pages === undefined ? undefined : event('page', '', doc.pages, '/pages');
  const screen = doc.screens === undefined ? undefined : event('screen', '', doc.screens, '/screens');
  // Identify, group and alias carry no behaviour of their own: they link the ids by which the plan's events are
  // attributed to one person, so they serve what those events as a whole serve (not what single fields add).
  // Their occurrence is described for a purpose wherever that of an event they link is: a link kept for a purpose no
  // event can be kept for would attribute nothing the purpose may read.
  const linked = [...events.values(), page, screen];
  const linking = identityPurposes(linked, builder.purposeOrder);
  const linkingOccurrences = occurrencesOf(linked, builder.purposeOrder);
  const linkingMask = builder.maskOf(linking);
  const traitsSection = (schema: FieldSchema | undefined, pointer: string, kind: MessageKind): CompiledEvent | undefined => {
    const body = builder.section(schema ?? NOTHING_DECLARED, pointer, 'traits', failed(pointer));
    return body ? { kind, name: '', description: undefined, purposes: linking, occurrences: linkingOccurrences, mask: linkingMask, body } : undefined;
  };
  const identify = traitsSection(doc.traits, '/traits', 'identify');
  const group = traitsSection(doc.groupTraits, '/groupTraits', 'group');
  const context = builder.section(doc.context ?? NOTHING_DECLARED, '/context', 'context', failed('/context'));

  if (!options.lenient && builder.leafCount > MAX_PLAN_FIELDS) {
    // Refused before compiling anything: the size alone is the problem worth the work.
    builder.problems.push({ path: '/', problem: `declares ${builder.leafCount} annotated fields; a plan declares at most ${MAX_PLAN_FIELDS} (MAX_PLAN_FIELDS)` });
    return { problems: dedupe(builder.problems) };
  }
  if (validators) yield* builder.compileSections();

  const problems = dedupe(builder.problems);
  if (problems.length > 0 || !identify || !group || !context) return { problems };
  const alias: CompiledEvent = { kind: 'alias', name: '', description: undefined, purposes: linking, occurrences: linkingOccurrences, mask: linkingMask, body: null };
  return { compiled: new CompiledPlan({ events, page, screen, identify, group, alias, context, purposeOrder: builder.purposeOrder }), problems };
}

/** The event-level purposes of the given events together, in the plan's purpose order. */
function identityPurposes(events: readonly (CompiledEvent | undefined)[], order: readonly string[]): readonly string[] {
  const served = new Set<string>();
  for (const event of events) for (const purpose of event?.purposes ?? EMPTY) served.add(purpose);
  return served.size === 0 ? EMPTY : Object.freeze(order.filter((p) => served.has(p)));
}

/**
 * The occurrences of the given events together, one per category and flags, each with the purposes of the events of
 * it in the plan's purpose order: what identify, group and alias, which link them, are kept for.
 */
function occurrencesOf(events: readonly (CompiledEvent | undefined)[], order: readonly string[]): readonly EventOccurrence[] {
  const byCategory = new Map<string, { first: EventOccurrence; purposes: Set<string>; declared: boolean }>();
  for (const event of events) {
    for (const occurrence of event?.occurrences ?? EMPTY) {
      const key = `${occurrence.category}\u0000${occurrence.special}\u0000${occurrence.preciseLocation}`;
      let entry = byCategory.get(key);
      if (entry === undefined) byCategory.set(key, (entry = { first: occurrence, purposes: new Set(), declared: true }));
      for (const purpose of occurrence.purposes) entry.purposes.add(purpose);
      entry.declared &&= occurrence.declared;
    }
  }
  if (byCategory.size === 0) return EMPTY;
  return Object.freeze(
    [...byCategory.values()].map(({ first, purposes, declared }) =>
      Object.freeze({ category: first.category, purposes: Object.freeze(order.filter((p) => purposes.has(p))), special: first.special, preciseLocation: first.preciseLocation, declared }),
    ),
  );
}

/**
 * A category's own flags, without what it covers below it: by its parent chain in the taxonomy, and, when its key sits
 * under another known category than its parent (`user.health_and_medical.genome` under `user.behavior`: a custom entry
 * stored before Taxonomy.addCustom refused such), the stricter of that chain and the deepest such category's flags.
 * `aboutTheSystem` is by the parent chain alone (as Consent.aboutTheSystem).
 */
function categoryFlags(taxonomy: TaxonomyLookup, key: string): Omit<ResolvedCategory, 'covers'> | undefined {
  const entry = taxonomy.dataCategory(key);
  if (!entry) return undefined;
  let precise = false;
  let identifying: boolean | undefined;
  let root = entry.key;
  let current: typeof entry | undefined = entry;
  for (let hops = 0; current && hops < 20; hops++) {
    if (current.key === PRECISE_LOCATION) precise = true;
    identifying ??= IDENTIFYING_CATEGORIES.get(current.key);
    root = current.key;
    current = current.parentKey ? taxonomy.dataCategory(current.parentKey) : undefined;
  }
  const flags = { special: entry.specialCategory !== null, preciseLocation: precise, protectedAttribute: entry.protectedAttribute, identifying: identifying ?? false, aboutTheSystem: root === 'system' };
  for (let dot = key.lastIndexOf('.'); dot > 0; dot = key.lastIndexOf('.', dot - 1)) {
    const above = key.slice(0, dot);
    if (above === entry.parentKey) break;
    const prefixed = taxonomy.dataCategory(above) && categoryFlags(taxonomy, above);
    if (!prefixed) continue;
    return {
      special: flags.special || prefixed.special,
      preciseLocation: flags.preciseLocation || prefixed.preciseLocation,
      protectedAttribute: flags.protectedAttribute || prefixed.protectedAttribute,
      identifying: flags.identifying || prefixed.identifying,
      aboutTheSystem: flags.aboutTheSystem,
    };
  }
  return flags;
}

function dedupe(problems: PlanProblem[]): PlanProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}\u0000${p.problem}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const UNDECLARED: PlanResult = Object.freeze({
  ok: false,
  code: 'CATALOG_EVENT_UNDECLARED',
  violations: EMPTY,
  data: Object.freeze({}),
  fields: EMPTY,
  declared: new Map(),
  dropped: EMPTY,
  purposes: EMPTY,
  eventPurposes: EMPTY,
  occurrences: EMPTY,
});

interface CompiledParts {
  events: Map<string, CompiledEvent>;
  page: CompiledEvent | undefined;
  screen: CompiledEvent | undefined;
  identify: CompiledEvent;
  group: CompiledEvent;
  alias: CompiledEvent;
  context: Section;
  purposeOrder: readonly string[];
}

/** A plan compiled for the hot path. */
export class CompiledPlan {
  readonly #parts: CompiledParts;
  readonly #scratch = new Scratch();
  readonly #declaredByEvent = new WeakMap<CompiledEvent, Map<string, KeptField>>();
  readonly #purposeSets = new Map<number, readonly string[]>();
  /** Whether every purpose of the plan has a bit (at most 32 purposes). */
  readonly #masked: boolean;

  constructor(parts: CompiledParts) {
    this.#parts = parts;
    this.#masked = parts.purposeOrder.length <= 32;
  }

  /** Whether a track event name is declared. */
  declares(name: string): boolean {
    return this.#parts.events.has(name);
  }

  #eventFor(kind: MessageKind, name: string | undefined): CompiledEvent | undefined {
    switch (kind) {
      case 'track':
        return name === undefined ? undefined : this.#parts.events.get(name);
      case 'identify':
        return this.#parts.identify;
      case 'group':
        return this.#parts.group;
      case 'page':
        return this.#parts.page;
      case 'screen':
        return this.#parts.screen;
      case 'alias':
        return this.#parts.alias;
      default:
        return undefined;
    }
  }

  /**
   * Validates and minimizes one message. Synchronous and allocation-light: the hot path of ingestion. `otherKeys` are
   * the message's top-level keys outside the Segment and RudderStack protocols, dropped and listed as such.
   */
  process(kind: MessageKind, name: string | undefined, message: PlanInput): PlanResult {
    const event = this.#eventFor(kind, name);
    if (event === undefined) return UNDECLARED;
    const s = this.#scratch;
    s.gen++;
    s.mask = event.mask;
    s.fields = [];
    s.dropped = null;
    s.droppedRepeated = null;
    s.violations = null;
    const body = event.body;
    let data: PlanResult['data'];
    if (body === null) {
      data = { context: this.#section(this.#parts.context, message.context, s) };
    } else if (body.prefix === 'properties') {
      const properties = this.#section(body, message.properties, s);
      data = { properties, context: this.#section(this.#parts.context, message.context, s) };
    } else {
      const traits = this.#section(body, message.traits, s);
      data = { traits, context: this.#section(this.#parts.context, message.context, s) };
    }
    // A section the call type does not take is dropped whole (never read), as is every other top-level key.
    if (body?.prefix !== 'properties' && hasKeys(message.properties)) (s.dropped ??= []).push('properties');
    if (body?.prefix !== 'traits' && hasKeys(message.traits)) (s.dropped ??= []).push('traits');
    const other = message.otherKeys;
    if (other !== undefined && other.length > 0) for (const key of other) (s.dropped ??= []).push(topLevelPath(key));
    const fields = s.fields;
    const dropped = s.dropped ?? EMPTY;
    const purposes = this.#masked ? this.#purposesOf(s.mask) : this.#purposesSlow(event, fields);
    const declared = this.#declared(event);
    if (s.violations === null) return { ok: true, violations: EMPTY, data, fields, declared, dropped, purposes, eventPurposes: event.purposes, occurrences: event.occurrences };
    return { ok: false, code: 'CATALOG_EVENT_INVALID', violations: s.violations, data, fields, declared, dropped, purposes, eventPurposes: event.purposes, occurrences: event.occurrences };
  }

  /** The declared leaves of an event and of the context by path, made once per event of this plan. */
  #declared(event: CompiledEvent): ReadonlyMap<string, KeptField> {
    let map = this.#declaredByEvent.get(event);
    if (map === undefined) {
      map = new Map();
      for (const leaf of [...(event.body?.leaves ?? []), ...this.#parts.context.leaves]) map.set(leaf.field.path, leaf.field);
      this.#declaredByEvent.set(event, map);
    }
    return map;
  }

  #section(section: Section, value: unknown, s: Scratch): Record<string, unknown> {
    let out: Record<string, unknown>;
    if (value === undefined || value === null) out = {};
    else if (isRecord(value)) out = copyObject(section.root, value, s);
    else {
      (s.violations ??= []).push({ path: section.prefix, rule: 'type', message: 'must be object' });
      return {};
    }
    if (!section.validate(out)) {
      const list = (s.violations ??= []);
      for (const error of section.validate.errors ?? []) list.push(violationOf(section, error));
    }
    return out;
  }

  #purposesOf(mask: number): readonly string[] {
    let purposes = this.#purposeSets.get(mask);
    if (purposes === undefined) {
      const list: string[] = [];
      const order = this.#parts.purposeOrder;
      for (let i = 0; i < order.length; i++) if (mask & (1 << i)) list.push(order[i] as string);
      purposes = Object.freeze(list);
      if (this.#purposeSets.size < 4096) this.#purposeSets.set(mask, purposes);
    }
    return purposes;
  }

  #purposesSlow(event: CompiledEvent, fields: readonly KeptField[]): readonly string[] {
    const set = new Set<string>(event.purposes);
    for (const field of fields) for (const purpose of field.purposes) set.add(purpose);
    return this.#parts.purposeOrder.filter((p) => set.has(p));
  }

  /** The plan as lists of annotated leaves per section. */
  outline(): OutlineSection[] {
    const fieldsOf = (section: Section) => section.leaves.map((leaf) => ({ ...leaf.field, type: leaf.type }));
    const sections: OutlineSection[] = [];
    const add = (section: OutlineSection['section'], event: CompiledEvent) => {
      if (!event.body) return;
      // An identify or group call's occurrences are those of the events it links, shown with those events.
      const occurrence = section === 'identify' || section === 'group' ? undefined : event.occurrences[0];
      sections.push({
        section,
        ...(section === 'track' ? { event: event.name } : {}),
        ...(event.description ? { description: event.description } : {}),
        purposes: event.purposes,
        ...(occurrence ? { occurrence } : {}),
        fields: fieldsOf(event.body),
      });
    };
    for (const event of this.#parts.events.values()) add('track', event);
    if (this.#parts.page) add('page', this.#parts.page);
    if (this.#parts.screen) add('screen', this.#parts.screen);
    add('identify', this.#parts.identify);
    add('group', this.#parts.group);
    sections.push({ section: 'context', purposes: EMPTY, fields: fieldsOf(this.#parts.context) });
    return sections;
  }

  /** Numbers of events and annotated leaves. */
  size(): { events: number; fields: number } {
    let fields = this.#parts.context.leaves.length + (this.#parts.identify.body?.leaves.length ?? 0) + (this.#parts.group.body?.leaves.length ?? 0);
    for (const event of [...this.#parts.events.values(), this.#parts.page, this.#parts.screen]) fields += event?.body?.leaves.length ?? 0;
    return { events: this.#parts.events.size, fields };
  }
}

function markLeaf(leaf: Leaf, s: Scratch): void {
  if (leaf.seen !== s.gen) {
    leaf.seen = s.gen;
    s.fields.push(leaf.field);
    s.mask |= leaf.mask;
  }
}

// A path outside arrays occurs once per message (an object's keys are unique, and so is each key's path segment);
// only the paths under array items recur, once per element, and are listed once.
function drop(node: ObjectNode, key: string, s: Scratch): void {
  const path = node.path + keySegment(key);
  if (node.repeated) {
    const seen = (s.droppedRepeated ??= new Set());
    if (seen.has(path)) return;
    seen.add(path);
  }
  (s.dropped ??= []).push(path);
}

/** Copies the declared keys of value; anything else is dropped and its path recorded. */
function copyObject(node: ObjectNode, value: Record<string, unknown>, s: Scratch): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const children = node.children;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    const child = children.get(key);
    if (child === undefined) {
      drop(node, key, s);
      continue;
    }
    const v = value[key];
    if (v === undefined) continue;
    out[key] = copyValue(child, v, s);
  }
  return out;
}

// A value of the wrong shape is replaced by an empty container of its own kind: no undeclared content is copied,
// and the validator still reports the type violation.
function copyValue(node: Node, v: unknown, s: Scratch): unknown {
  if (node.tag === LEAF) {
    markLeaf(node, s);
    if (typeof v !== 'object' || v === null) return node.trim && typeof v === 'string' ? v.trim() : v;
    if (!Array.isArray(v)) return {};
    if (!node.scalarArray) return [];
    const copy = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i];
      copy[i] = typeof item !== 'object' || item === null ? (node.trim && typeof item === 'string' ? item.trim() : item) : Array.isArray(item) ? [] : {};
    }
    return copy;
  }
  if (node.tag === OBJECT) {
    if (isRecord(v)) return copyObject(node, v, s);
    return Array.isArray(v) ? [] : v;
  }
  if (!Array.isArray(v)) return isRecord(v) ? {} : v;
  const copy = new Array<unknown>(v.length);
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    copy[i] = isRecord(item) ? copyObject(node.items, item, s) : Array.isArray(item) ? [] : item;
  }
  return copy;
}

/** An Ajv error as a violation with a field path such as `properties.products[2].price`. */
function violationOf(section: Section, error: ErrorObject): Violation {
  let path: string = section.prefix;
  let node: Node | undefined = section.root;
  for (const raw of error.instancePath.split('/').slice(1)) {
    const segment = pointerUnescape(raw);
    if (node?.tag === OBJECT) {
      path += `.${segment}`;
      node = node.children.get(segment);
    } else if (node?.tag === ARRAY) {
      path += `[${segment}]`;
      node = node.items;
    } else {
      path += `[${segment}]`;
      node = undefined;
    }
  }
  if (error.keyword === 'required') path += `.${String((error.params as { missingProperty?: unknown }).missingProperty)}`;
  return { path, rule: error.keyword, message: error.message ?? error.keyword };
}
