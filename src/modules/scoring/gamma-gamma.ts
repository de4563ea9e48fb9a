/**
 * The Gamma–Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV", JMR 42(4); Colombo &
 * Jiang 1999): a customer's transaction values vary around their mean ζ with shape p, and ζ ~ InvGamma(q, γ) across
 * customers. Fitted by maximum likelihood on repeat buyers' (x, m̄): number of repeat transactions and their mean
 * value. Our own implementation (no JavaScript library has it), checked against the published CDNOW figures.
 */
import { digamma, gammaln } from './special.ts';
import { minimize } from './optimize.ts';

export interface SpendSummary {
  /** Repeat transactions (≥ 1). */
  x: number;
  /** Their mean value. */
  m: number;
}

export interface GammaGammaParams {
  p: number;
  q: number;
  gamma: number;
}

export interface GammaGammaFit {
  params: GammaGammaParams;
  logLikelihood: number;
  customers: number;
  iterations: number;
  converged: boolean;
}

/** Log-likelihood of the mean spends and its gradient with respect to (p, q, γ). */
export function gammaGammaLogLikelihood(params: GammaGammaParams, rows: readonly SpendSummary[], withGradient = false): { value: number; gradient: [number, number, number] } {
  const { p, q, gamma } = params;
  const lgQ = gammaln(q);
  const lnGamma = Math.log(gamma);
  const psiQ = withGradient ? digamma(q) : 0;
  let value = 0;
  let gp = 0;
  let gq = 0;
  let gg = 0;
  for (const { x, m } of rows) {
    const px = p * x;
    const lnM = Math.log(m);
    const lnX = Math.log(x);
    const lnGMX = Math.log(gamma + m * x);
    value += gammaln(px + q) - gammaln(px) - lgQ + q * lnGamma + (px - 1) * lnM + px * lnX - (px + q) * lnGMX;
    if (withGradient) {
      const psiPXQ = digamma(px + q);
      gp += x * (psiPXQ - digamma(px) + lnM + lnX - lnGMX);
      gq += psiPXQ - psiQ + lnGamma - lnGMX;
      gg += q / gamma - (px + q) / (gamma + m * x);
    }
  }
  return { value, gradient: [gp, gq, gg] };
}

/** Maximum-likelihood fit on repeat buyers (rows with x ≥ 1 and m > 0; others are ignored). */
export function fitGammaGamma(all: readonly SpendSummary[], start: GammaGammaParams = { p: 1, q: 1, gamma: 1 }): GammaGammaFit {
  const rows = all.filter((r) => r.x >= 1 && r.m > 0);
  const n = Math.max(1, rows.length);
  const toParams = (v: readonly number[]): GammaGammaParams => ({ p: Math.exp(v[0] as number), q: Math.exp(v[1] as number), gamma: Math.exp(v[2] as number) });
  const result = minimize(
    (v) => {
      const params = toParams(v);
      const { value, gradient } = gammaGammaLogLikelihood(params, rows, true);
      return { value: -value / n, gradient: [-gradient[0] * params.p / n, -gradient[1] * params.q / n, -gradient[2] * params.gamma / n] };
    },
    [Math.log(start.p), Math.log(start.q), Math.log(start.gamma)],
    { gradientTolerance: 1e-9, maxIterations: 1000 },
  );
  const params = toParams(result.x);
  return { params, logLikelihood: gammaGammaLogLikelihood(params, rows).value, customers: rows.length, iterations: result.iterations, converged: result.converged };
}

/**
 * E[Z | x, m̄]: the expected value of this customer's future transactions, a weighted mean of the population mean
 * pγ/(q−1) and their own m̄ (eq. 5). For someone with no repeat purchase it is the population mean.
 */
export function expectedSpend(params: GammaGammaParams, s: SpendSummary): number {
  const { p, q, gamma } = params;
  if (s.x <= 0 || !(s.m > 0)) return (p * gamma) / (q - 1);
  return ((gamma + s.m * s.x) * p) / (p * s.x + q - 1);
}
