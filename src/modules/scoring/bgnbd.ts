/**
 * The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting your customers the easy way", Marketing
 * Science 24(2)): while alive a customer buys at a Poisson rate λ ~ Gamma(r, α); after each purchase they drop out
 * with probability p ~ Beta(a, b). Fitted by maximum likelihood on each customer's (x, t_x, T): repeat purchases,
 * time of the last one and length of observation, all in the same unit (weeks here).
 *
 * No JavaScript library implements it; this is our own, checked against the published CDNOW figures.
 */
import { digamma, gammaln, hyp2f1 } from './special.ts';
import { minimize } from './optimize.ts';

/** One customer's purchase history summary. */
export interface RepeatSummary {
  /** Repeat purchases (purchases after the first, counted once per period). */
  x: number;
  /** Time from the first purchase to the last. */
  tx: number;
  /** Time from the first purchase to the end of observation. */
  T: number;
}

export interface BgNbdParams {
  r: number;
  alpha: number;
  a: number;
  b: number;
}

export interface BgNbdFit {
  params: BgNbdParams;
  logLikelihood: number;
  customers: number;
  iterations: number;
  converged: boolean;
}

/** Summaries grouped: customers with the same (x, t_x, T) share one likelihood term, weighted by their count. */
export interface CompressedSummaries {
  x: Float64Array;
  tx: Float64Array;
  T: Float64Array;
  weight: Float64Array;
  customers: number;
}

export function compress(rows: Iterable<RepeatSummary>): CompressedSummaries {
  const groups = new Map<string, { row: RepeatSummary; n: number }>();
  let customers = 0;
  for (const row of rows) {
    customers++;
    const key = `${row.x}|${row.tx}|${row.T}`;
    const group = groups.get(key);
    if (group) group.n++;
    else groups.set(key, { row, n: 1 });
  }
  const size = groups.size;
  const out: CompressedSummaries = { x: new Float64Array(size), tx: new Float64Array(size), T: new Float64Array(size), weight: new Float64Array(size), customers };
  let i = 0;
  for (const { row, n } of groups.values()) {
    out.x[i] = row.x;
    out.tx[i] = row.tx;
    out.T[i] = row.T;
    out.weight[i] = n;
    i++;
  }
  return out;
}

/** Total log-likelihood and its gradient with respect to (r, α, a, b). */
export function logLikelihood(params: BgNbdParams, data: CompressedSummaries, withGradient = false): { value: number; gradient: [number, number, number, number] } {
  const { r, alpha, a, b } = params;
  const lnAlpha = Math.log(alpha);
  const lgR = gammaln(r);
  const lgAB = gammaln(a + b);
  const lgB = gammaln(b);
  const psiR = withGradient ? digamma(r) : 0;
  const psiAB = withGradient ? digamma(a + b) : 0;
  const psiB = withGradient ? digamma(b) : 0;
  let value = 0;
  let gr = 0;
  let gAlpha = 0;
  let ga = 0;
  let gb = 0;
  for (let i = 0; i < data.x.length; i++) {
    const x = data.x[i] as number;
    const tx = data.tx[i] as number;
    const T = data.T[i] as number;
    const w = data.weight[i] as number;
    const a1 = gammaln(r + x) - lgR + r * lnAlpha;
    const a2 = lgAB + gammaln(b + x) - lgB - gammaln(a + b + x);
    const lnAT = Math.log(alpha + T);
    const a3 = -(r + x) * lnAT;
    let ll: number;
    let w3 = 1;
    let w4 = 0;
    let lnAtx = 0;
    if (x > 0) {
      lnAtx = Math.log(alpha + tx);
      const a4 = Math.log(a) - Math.log(b + x - 1) - (r + x) * lnAtx;
      const m = Math.max(a3, a4);
      const e3 = Math.exp(a3 - m);
      const e4 = Math.exp(a4 - m);
      const s = e3 + e4;
      ll = a1 + a2 + m + Math.log(s);
      w3 = e3 / s;
      w4 = e4 / s;
    } else {
      ll = a1 + a2 + a3;
    }
    value += w * ll;
    if (withGradient) {
      gr += w * (digamma(r + x) - psiR + lnAlpha - w3 * lnAT - w4 * lnAtx);
      gAlpha += w * (r / alpha - w3 * (r + x) / (alpha + T) - (x > 0 ? w4 * (r + x) / (alpha + tx) : 0));
      const psiABX = digamma(a + b + x);
      ga += w * (psiAB - psiABX + (x > 0 ? w4 / a : 0));
      gb += w * (psiAB + digamma(b + x) - psiB - psiABX - (x > 0 ? w4 / (b + x - 1) : 0));
    }
  }
  return { value, gradient: [gr, gAlpha, ga, gb] };
}

/** Maximum-likelihood fit (BFGS on the logarithms of the parameters, from the usual start of 1s). */
export function fitBgNbd(data: CompressedSummaries, start: BgNbdParams = { r: 1, alpha: 1, a: 1, b: 1 }): BgNbdFit {
  const toParams = (v: readonly number[]): BgNbdParams => ({ r: Math.exp(v[0] as number), alpha: Math.exp(v[1] as number), a: Math.exp(v[2] as number), b: Math.exp(v[3] as number) });
  const result = minimize(
    (v) => {
      const p = toParams(v);
      const { value, gradient } = logLikelihood(p, data, true);
      // Minimise −LL/n; chain rule for log parameters: d/dlog θ = θ · d/dθ.
      const n = data.customers;
      return { value: -value / n, gradient: [-gradient[0] * p.r / n, -gradient[1] * p.alpha / n, -gradient[2] * p.a / n, -gradient[3] * p.b / n] };
    },
    [Math.log(start.r), Math.log(start.alpha), Math.log(start.a), Math.log(start.b)],
    { gradientTolerance: 1e-9, maxIterations: 1000 },
  );
  const params = toParams(result.x);
  return { params, logLikelihood: logLikelihood(params, data).value, customers: data.customers, iterations: result.iterations, converged: result.converged };
}

/** P(alive | x, t_x, T): the probability the customer has not dropped out by the end of observation. */
export function probabilityAlive(p: BgNbdParams, s: RepeatSummary): number {
  if (s.x === 0) return 1;
  const ratio = Math.exp((p.r + s.x) * (Math.log(p.alpha + s.T) - Math.log(p.alpha + s.tx)));
  return 1 / (1 + (p.a / (p.b + s.x - 1)) * ratio);
}

/** E[Y(t) | x, t_x, T]: expected purchases in the next `t` time units (Fader, Hardie & Lee 2005, eq. 10). */
export function expectedPurchases(p: BgNbdParams, s: RepeatSummary, t: number): number {
  if (t <= 0) return 0;
  const { r, alpha, a, b } = p;
  const { x, tx, T } = s;
  const z = t / (alpha + T + t);
  const hyp = hyp2f1(r + x, b + x, a + b + x - 1, z);
  const first = ((a + b + x - 1) / (a - 1)) * (1 - Math.exp((r + x) * Math.log((alpha + T) / (alpha + T + t))) * hyp);
  const second = x > 0 ? (a / (b + x - 1)) * Math.exp((r + x) * Math.log((alpha + T) / (alpha + tx))) : 0;
  return first / (1 + second);
}

/** E[X(t)]: expected purchases in a period of length t for a new customer (eq. 9), used to check a fit. */
export function expectedPurchasesNew(p: BgNbdParams, t: number): number {
  const { r, alpha, a, b } = p;
  const z = t / (alpha + t);
  return ((a + b - 1) / (a - 1)) * (1 - Math.exp(r * Math.log(alpha / (alpha + t))) * hyp2f1(r, b, a + b - 1, z));
}
