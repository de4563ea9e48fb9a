/**
 * Personas: k-means (`ml-kmeans`) on log-scaled, standardised buying behaviour, with k chosen by the mean silhouette
 * (`simple-statistics`, on a fixed sample so it stays affordable for a million customers), and each cluster named
 * and described in plain words from its centre.
 */
import { createRequire } from 'node:module';
import type { kmeans as Kmeans } from 'ml-kmeans';
import { silhouette } from 'simple-statistics';

// Loaded at the first fit (~160 ms of loading that a server start need not pay).
const require = createRequire(import.meta.url);
let kmeansFn: typeof Kmeans | undefined;
const kmeans: typeof Kmeans = (...args) => (kmeansFn ??= (require('ml-kmeans') as { kmeans: typeof Kmeans }).kmeans)(...args);

export interface PersonaInput {
  orders: number;
  /** Mean order value. */
  averageOrder: number;
  daysSinceLast: number;
  /** Share of orders placed Monday to Friday (0–1). */
  weekdayShare: number;
  /** Share of orders placed before noon (0–1). */
  morningShare: number;
}

export interface Persona {
  id: number;
  name: string;
  description: string;
  size: number;
  /** The centre in the input's own units (orders, money, days, shares). */
  centre: PersonaInput;
}

export interface PersonaModel {
  k: number;
  silhouette: number;
  /** Mean silhouette of every k tried. */
  tried: { k: number; silhouette: number }[];
  personas: Persona[];
  /** Cluster of each input, in order. */
  assignments: number[];
  scaling: { mean: number[]; sd: number[] };
}

const FEATURES = 5;

function transform(p: PersonaInput): number[] {
  return [Math.log1p(p.orders), Math.log1p(p.averageOrder), Math.log1p(p.daysSinceLast), p.weekdayShare, p.morningShare];
}

function untransform(v: readonly number[]): PersonaInput {
  return {
    orders: Math.expm1(v[0] as number),
    averageOrder: Math.expm1(v[1] as number),
    daysSinceLast: Math.expm1(v[2] as number),
    weekdayShare: v[3] as number,
    morningShare: v[4] as number,
  };
}

/** A deterministic sample of indices (every n-th after a seeded offset). */
function sample(n: number, size: number, seed: number): number[] {
  if (n <= size) return Array.from({ length: n }, (_, i) => i);
  const step = n / size;
  const offset = (seed % 997) / 997;
  return Array.from({ length: size }, (_, i) => Math.min(n - 1, Math.floor((i + offset) * step)));
}

export interface PersonaOptions {
  kMin?: number;
  kMax?: number;
  seed?: number;
  /** Points used to choose k by silhouette. */
  silhouetteSample?: number;
  /** Points the clusters are fitted on (a deterministic sample; everyone is then assigned to the nearest centre). */
  fitSample?: number;
}

export function fitPersonas(inputs: readonly PersonaInput[], options: PersonaOptions = {}): PersonaModel {
  const kMin = options.kMin ?? 2;
  const kMax = Math.min(options.kMax ?? 8, Math.max(kMin, inputs.length - 1));
  const seed = options.seed ?? 42;
  const raw = inputs.map(transform);
  const mean = new Array<number>(FEATURES).fill(0);
  const sd = new Array<number>(FEATURES).fill(0);
  for (const v of raw) for (let j = 0; j < FEATURES; j++) mean[j] = (mean[j] as number) + (v[j] as number) / raw.length;
  for (const v of raw) for (let j = 0; j < FEATURES; j++) sd[j] = (sd[j] as number) + ((v[j] as number) - (mean[j] as number)) ** 2 / raw.length;
  for (let j = 0; j < FEATURES; j++) sd[j] = Math.sqrt(sd[j] as number) || 1;
  const points = raw.map((v) => v.map((x, j) => (x - (mean[j] as number)) / (sd[j] as number)));

  const fitting = sample(points.length, options.fitSample ?? 200_000, seed + 1).map((i) => points[i] as number[]);
  const chosen = sample(fitting.length, options.silhouetteSample ?? 2000, seed);
  const chosenPoints = chosen.map((i) => fitting[i] as number[]);
  const tried: { k: number; silhouette: number }[] = [];
  let best: { k: number; silhouette: number; centroids: number[][] } | undefined;
  for (let k = kMin; k <= kMax; k++) {
    const result = kmeans(fitting, k, { seed, initialization: 'kmeans++', maxIterations: 100 });
    const labels = chosen.map((i) => result.clusters[i] as number);
    // A k that leaves a cluster out of the sample cannot be judged by it; treat it as a poor fit.
    const score = new Set(labels).size < 2 ? -1 : mean_(silhouette(chosenPoints, labels));
    tried.push({ k, silhouette: score });
    if (!best || score > best.silhouette + 1e-9) best = { k, silhouette: score, centroids: result.centroids };
  }
  if (!best) throw new Error('no persona model could be fitted');
  const centroids = best.centroids;
  const assignments = points.map((v) => nearest(centroids, v));
  const sizes = new Array<number>(best.k).fill(0);
  for (const c of assignments) sizes[c] = (sizes[c] as number) + 1;
  const described = best.centroids.map((z, id) => {
    const centre = untransform(z.map((v, j) => v * (sd[j] as number) + (mean[j] as number)));
    const words = describe(z, centre);
    return { id, name: words.name, description: words.description, size: sizes[id] as number, centre, extra: words.extra };
  });
  dedupeNames(described);
  const personas: Persona[] = described.map(({ extra: _extra, ...p }) => p);
  return { k: best.k, silhouette: best.silhouette, tried, personas, assignments, scaling: { mean, sd } };
}

function nearest(centroids: readonly (readonly number[])[], v: readonly number[]): number {
  let best = 0;
  let bestDistance = Number.POSITIVE_INFINITY;
  centroids.forEach((c, i) => {
    let d = 0;
    for (let j = 0; j < v.length; j++) d += ((c[j] as number) - (v[j] as number)) ** 2;
    if (d < bestDistance) {
      bestDistance = d;
      best = i;
    }
  });
  return best;
}

function mean_(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0) / Math.max(1, values.length);
}

/** Words for a centre: z-scores say how it differs from everyone; the shares are read as they are. */
function describe(z: readonly number[], centre: PersonaInput): { name: string; description: string; extra: string } {
  const [zOrders, zBasket, zRecency] = z as [number, number, number];
  const frequency = zOrders >= 0.5 ? 'frequent' : zOrders <= -0.5 ? 'occasional' : 'regular';
  const basket = zBasket >= 0.5 ? 'big-basket' : zBasket <= -0.5 ? 'small-basket' : 'mid-basket';
  const recency = zRecency >= 0.5 ? 'not seen for a while' : zRecency <= -0.5 ? 'bought recently' : '';
  const days = centre.weekdayShare >= 0.8 ? 'weekday' : centre.weekdayShare <= 0.5 ? 'weekend' : '';
  const time = centre.morningShare >= 0.6 ? 'mornings' : centre.morningShare <= 0.3 ? 'afternoons and evenings' : '';
  const when = days && time ? `mostly ${days} ${time}` : days ? `mostly on ${days}s` : time ? `mostly ${time}` : 'any day and time';
  const name = `${frequency[0]?.toUpperCase()}${frequency.slice(1)} ${basket}${days ? ` ${days}` : ''} buyers`;
  const facts = `about ${Math.max(1, Math.round(centre.orders))} orders of ${centre.averageOrder.toFixed(0)} on average, last one ~${Math.round(centre.daysSinceLast)} days ago`;
  return { name, description: `${frequency} ${basket} buyers, ${when}${recency ? `, ${recency}` : ''} (${facts})`, extra: recency || time || '' };
}

function dedupeNames(personas: (Persona & { extra: string })[]): void {
  const counts = new Map<string, number>();
  for (const p of personas) counts.set(p.name, (counts.get(p.name) ?? 0) + 1);
  const seen = new Map<string, number>();
  for (const p of personas) {
    if ((counts.get(p.name) ?? 0) < 2) continue;
    const n = (seen.get(p.name) ?? 0) + 1;
    seen.set(p.name, n);
    p.name = `${p.name}, ${p.extra || `group ${n}`}`;
  }
  // Still equal (same words twice): number them.
  const again = new Map<string, number>();
  for (const p of personas) again.set(p.name, (again.get(p.name) ?? 0) + 1);
  const numbered = new Map<string, number>();
  for (const p of personas) {
    if ((again.get(p.name) ?? 0) < 2) continue;
    const n = (numbered.get(p.name) ?? 0) + 1;
    numbered.set(p.name, n);
    p.name = `${p.name} (${n})`;
  }
}

/** The persona of a new input under a fitted model (nearest centre). */
export function assignPersona(model: PersonaModel, input: PersonaInput): Persona {
  const scale = (p: PersonaInput) => transform(p).map((x, j) => (x - (model.scaling.mean[j] as number)) / (model.scaling.sd[j] as number));
  return model.personas[nearest(model.personas.map((p) => scale(p.centre)), scale(input))] as Persona;
}
