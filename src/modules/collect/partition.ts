import { isRecord } from '../../shared/objects.ts';

/** How a kept field is treated when an event is split for storage. */
export interface FieldRule {
  personal: boolean;
  /** False when no purpose of the field has a lawful basis for this person: the field is not stored. */
  allowed: boolean;
}

/** The rule of each field path (a Map will do). */
export interface FieldRules {
  get(path: string): FieldRule | undefined;
}

export interface Partitioned {
  /** Fields stored in clear: not personal. */
  plain: Record<string, unknown>;
  /** Personal fields, stored in one envelope encrypted with the person's data key. */
  personal: Record<string, unknown>;
  /** Paths of fields left out because no purpose of theirs is allowed. */
  refused: string[];
  personalCount: number;
}

/**
 * Paths of object keys (`parent.key`) and array items (`parent[]`), made once: rule look-ups then hash the same
 * strings (V8 caches a string's hash) instead of a fresh concatenation per field and event. Bounded, since the
 * paths of minimized data are those the plan declares.
 */
const keyPaths = new Map<string, Map<string, string>>();
const itemPaths = new Map<string, string>();
const PATHS_LIMIT = 10_000;
let pathCount = 0;

function keyPath(parent: string, key: string): string {
  let byKey = keyPaths.get(parent);
  let path = byKey?.get(key);
  if (path !== undefined) return path;
  path = parent ? `${parent}.${key}` : key;
  if (pathCount < PATHS_LIMIT) {
    if (byKey === undefined) keyPaths.set(parent, (byKey = new Map()));
    byKey.set(key, path);
    pathCount++;
  }
  return path;
}

function itemPath(parent: string): string {
  let path = itemPaths.get(parent);
  if (path !== undefined) return path;
  path = `${parent}[]`;
  if (pathCount < PATHS_LIMIT) {
    itemPaths.set(parent, path);
    pathCount++;
  }
  return path;
}

function allScalars(values: readonly unknown[]): boolean {
  for (let i = 0; i < values.length; i++) {
    const item = values[i];
    if (typeof item === 'object' && item !== null) return false;
  }
  return true;
}

/**
 * Splits minimized event data into a plain part and a personal part by the field rules of the tracking plan
 * (paths like `traits.email` or `properties.products[].price`), leaving out refused fields. Arrays of objects keep
 * their positions in both parts so they can be put back together; an empty one is kept in the plain part. `data` is
 * minimized by the plan: every key in it is declared.
 */
export function partition(data: Record<string, unknown>, rules: FieldRules): Partitioned {
  const refused = new Set<string>();
  let personalCount = 0;
  // The two parts of the value walked last (undefined: nothing of it goes there); no result object per node.
  let plainOut: unknown;
  let personalOut: unknown;
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) {
      const scalarRule = allScalars(value) ? (rules.get(path) ?? rules.get(itemPath(path))) : undefined;
      if (scalarRule) {
        // An array of scalars is annotated as a whole.
        plainOut = undefined;
        personalOut = undefined;
        if (!scalarRule.allowed) refused.add(path);
        else if (scalarRule.personal) {
          personalCount++;
          personalOut = value;
        } else plainOut = value;
        return;
      }
      if (value.length === 0) {
        // An empty array of objects holds no field: kept in clear, as declared. (The plan copies only declared keys,
        // so an array here is one it declares as an array.)
        plainOut = value;
        personalOut = undefined;
        return;
      }
      const items = itemPath(path);
      const plain: unknown[] = [];
      const personal: unknown[] = [];
      let anyPlain = false;
      let anyPersonal = false;
      let empty: number[] | undefined;
      // An index loop: the iterator of for…of showed up in allocation profiles of this walk.
      for (let i = 0; i < value.length; i++) {
        const item = value[i];
        walk(item, items);
        if (plainOut === undefined && personalOut === undefined && typeof item === 'object' && item !== null) (empty ??= []).push(i);
        plain.push(plainOut ?? null);
        personal.push(personalOut ?? null);
        anyPlain ||= plainOut !== undefined;
        anyPersonal ||= personalOut !== undefined;
      }
      if (empty !== undefined && (anyPlain || anyPersonal)) {
        // An item left with no field (all refused, or none sent) keeps its shape beside items that kept something, so it
        // reads back as what it is ({}), not as null: in clear where other items have clear fields, else in the
        // envelope (a clear part of an array whose kept fields are all personal would tell how many items it had).
        const into = anyPlain ? plain : personal;
        for (const i of empty) into[i] = Array.isArray(value[i]) ? [] : {};
      }
      // An array none of whose items kept anything is left out whole (not even how many items it had is kept).
      plainOut = anyPlain ? plain : undefined;
      personalOut = anyPersonal ? personal : undefined;
      return;
    }
    if (isRecord(value)) {
      let plain: Record<string, unknown> | undefined;
      let personal: Record<string, unknown> | undefined;
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        walk(value[key], keyPath(path, key));
        if (plainOut !== undefined) (plain ??= {})[key] = plainOut;
        if (personalOut !== undefined) (personal ??= {})[key] = personalOut;
      }
      plainOut = plain;
      personalOut = personal;
      return;
    }
    const rule = rules.get(path);
    plainOut = undefined;
    personalOut = undefined;
    // The plan already dropped undeclared fields; a leaf without a rule is treated as personal, the safe side.
    if (rule && !rule.allowed) refused.add(path);
    else if (!rule || rule.personal) {
      personalCount++;
      personalOut = value;
    } else plainOut = value;
  };
  walk(data, '');
  return {
    plain: (plainOut as Record<string, unknown> | undefined) ?? {},
    personal: (personalOut as Record<string, unknown> | undefined) ?? {},
    refused: [...refused],
    personalCount,
  };
}
