/**
 * The feature builder: turns records into the numeric matrix a classifier needs (numbers standardised, categories
 * one-hot), remembers how, and names every column in words for explanations. It refuses any field whose data
 * category is a special category or a protected attribute — such fields never drive a score (DESIGN.md invariant 7).
 */
import { CandorError } from '../../shared/errors.ts';

export interface FeatureSpec {
  /** Field name in the records. */
  name: string;
  kind: 'numeric' | 'categorical';
  /** Words for explanations, e.g. "months as a customer". */
  label: string;
  /** The field's data category (fideslang key) from the tracking plan. */
  category: string;
  /** log(1 + v) before standardising (counts and amounts with long tails). */
  log?: boolean;
}

export interface Column {
  feature: string;
  label: string;
  /** For a one-hot column: the category value it stands for. */
  level?: string;
}

type Record_ = Readonly<Record<string, unknown>>;

interface NumericState {
  kind: 'numeric';
  spec: FeatureSpec;
  mean: number;
  sd: number;
}
interface CategoricalState {
  kind: 'categorical';
  spec: FeatureSpec;
  levels: string[];
}

const numberOf = (value: unknown, log: boolean | undefined): number | undefined => {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  if (!Number.isFinite(n)) return undefined;
  return log ? Math.log1p(Math.max(0, n)) : n;
};

export class FeatureEncoder {
  readonly columns: readonly Column[];
  readonly #states: readonly (NumericState | CategoricalState)[];

  private constructor(states: (NumericState | CategoricalState)[]) {
    this.#states = states;
    this.columns = states.flatMap((s): Column[] =>
      s.kind === 'numeric' ? [{ feature: s.spec.name, label: s.spec.label }] : s.levels.map((level) => ({ feature: s.spec.name, label: s.spec.label, level })),
    );
  }

  /**
   * Learns means, spreads and category levels from `rows`. `isProtected(category)` says which data categories may
   * never be features (special categories, protected attributes); one of those → SCORING_PROTECTED_FEATURE.
   */
  static fit(specs: readonly FeatureSpec[], rows: readonly Record_[], isProtected: (category: string) => boolean): FeatureEncoder {
    const refused = specs.filter((s) => isProtected(s.category));
    if (refused.length > 0) throw new CandorError('SCORING_PROTECTED_FEATURE', { fields: refused.map((s) => s.name), categories: refused.map((s) => s.category) });
    const states = specs.map((spec): NumericState | CategoricalState => {
      if (spec.kind === 'categorical') {
        const levels = [...new Set(rows.map((r) => String(r[spec.name] ?? '')))].sort();
        return { kind: 'categorical', spec, levels };
      }
      let sum = 0;
      let sumSq = 0;
      let count = 0;
      for (const r of rows) {
        const v = numberOf(r[spec.name], spec.log);
        if (v === undefined) continue;
        sum += v;
        sumSq += v * v;
        count++;
      }
      const mean = count > 0 ? sum / count : 0;
      const sd = count > 1 ? Math.sqrt(Math.max(0, sumSq / count - mean * mean)) : 1;
      return { kind: 'numeric', spec, mean, sd: sd > 0 ? sd : 1 };
    });
    return new FeatureEncoder(states);
  }

  /** Row-major matrix (rows × columns). Missing numbers become the mean (0 after standardising); unseen levels all-zero. */
  encode(rows: readonly Record_[]): Float64Array {
    const d = this.columns.length;
    const out = new Float64Array(rows.length * d);
    rows.forEach((r, i) => {
      let j = i * d;
      for (const s of this.#states) {
        if (s.kind === 'numeric') {
          const v = numberOf(r[s.spec.name], s.spec.log);
          out[j++] = v === undefined ? 0 : (v - s.mean) / s.sd;
        } else {
          const value = String(r[s.spec.name] ?? '');
          for (const level of s.levels) out[j++] = value === level ? 1 : 0;
        }
      }
    });
    return out;
  }

  /** How a standardised number reads in words: "well above average", etc. */
  static describeLevel(z: number): string {
    if (z >= 1.5) return 'far above average';
    if (z >= 0.5) return 'above average';
    if (z > -0.5) return 'about average';
    if (z > -1.5) return 'below average';
    return 'far below average';
  }
}

export interface Contribution {
  feature: string;
  /** Words: "contract is Month-to-month", "months as a customer is far below average". */
  text: string;
  /** weight × value: its push on the log-odds (positive raises the score). */
  effect: number;
}

/** The features that moved one row's score most, largest effect first (the model's own coefficients × values). */
export function topContributions(encoder: FeatureEncoder, weights: ArrayLike<number>, x: Float64Array, row: number, k = 3): Contribution[] {
  const d = encoder.columns.length;
  const out: Contribution[] = [];
  encoder.columns.forEach((column, j) => {
    const value = x[row * d + j] as number;
    if (column.level !== undefined && value === 0) return; // only the level the person has
    const effect = (weights[j] as number) * value;
    if (effect === 0) return;
    const text = column.level !== undefined ? `${column.label} is ${column.level}` : `${column.label} is ${FeatureEncoder.describeLevel(value)}`;
    out.push({ feature: column.feature, text, effect });
  });
  return out.sort((a, b) => Math.abs(b.effect) - Math.abs(a.effect)).slice(0, k);
}
