import { CandorError } from '../../shared/errors.ts';
import type { Catalog } from '../catalog/index.ts';
import type { TraitInput } from '../profiles/index.ts';

/** What rectification needs of the tracking plan: the identify check ingestion runs, and the plan kept current. */
export type TraitPlan = Pick<Catalog, 'check' | 'refresh' | 'refreshIfChanged'>;

/** A change a data subject asks for: the trait's key (a leaf path under `traits`, dots between levels) and its right value. */
export interface RequestedChange {
  readonly key: string;
  readonly value: unknown;
}

/** Why one change was refused: its key, the path and the rule broken — never the value. */
export interface RectificationProblem {
  readonly key: string;
  readonly path?: string;
  readonly rule: string;
}

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);

function nest(segments: readonly string[], value: unknown): Record<string, unknown> {
  let out: unknown = value;
  for (const segment of [...segments].reverse()) out = { [segment]: out };
  return out as Record<string, unknown>;
}

function valueAt(data: Record<string, unknown> | undefined, segments: readonly string[]): unknown {
  let value: unknown = data;
  for (const segment of segments) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

/**
 * Checks requested changes against the identify traits of the tracking plan in force, exactly as ingestion checks
 * an identify call (catalog `check`: the compiled Ajv schema and minimizer), and answers them as traits to write
 * with the plan's data category and personal flag (personal values are then encrypted like any trait). A key the
 * plan does not declare as a trait, a value its schema refuses, or a key given twice is
 * RIGHTS_RECTIFICATION_INVALID, with every problem listed by key, path and rule.
 */
export function plannedChanges(plan: Pick<TraitPlan, 'check'>, changes: readonly RequestedChange[]): TraitInput[] {
  const problems: RectificationProblem[] = [];
  const out: TraitInput[] = [];
  const seen = new Set<string>();
  for (const change of changes) {
    const key = change.key;
    const segments = key.split('.');
    if (seen.has(key)) {
      problems.push({ key, rule: 'duplicate' });
      continue;
    }
    seen.add(key);
    // Only a leaf of the traits object is a trait (arrays are never stored as traits).
    if (segments.some((s) => s === '' || FORBIDDEN.has(s) || /[[\]]/.test(s))) {
      problems.push({ key, rule: 'undeclared' });
      continue;
    }
    const path = `traits.${key}`;
    const result = plan.check('identify', undefined, { traits: nest(segments, change.value) });
    const field = result.declared.get(path);
    if (field === undefined) {
      problems.push({ key, rule: 'undeclared' });
      continue;
    }
    const own = result.violations.filter((v) => v.path === path || v.path.startsWith(`${path}.`) || v.path.startsWith(`${path}[`));
    if (own.length > 0) {
      for (const v of own) problems.push({ key, path: v.path, rule: v.rule });
      continue;
    }
    const value = valueAt(result.data.traits, segments);
    if (value === undefined || !result.fields.some((f) => f.path === path)) {
      problems.push({ key, path, rule: 'required' });
      continue;
    }
    out.push({ key, value, category: field.category, personal: field.personal });
  }
  if (problems.length > 0) throw new CandorError('RIGHTS_RECTIFICATION_INVALID', { problems });
  return out;
}
