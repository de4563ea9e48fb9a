// Special functions of the lifetime models (from @stdlib), loaded on first use: most processes never fit a model, and
// loading these packages' many small modules cost ~80 ms of every server start.
import { createRequire } from 'node:module';
import type Digamma from '@stdlib/math-base-special-digamma';
import type Gammaln from '@stdlib/math-base-special-gammaln';
import type Hyp2f1 from '@stdlib/math-base-special-hyp2f1';

const require = createRequire(import.meta.url);
let loaded: { digamma: typeof Digamma; gammaln: typeof Gammaln; hyp2f1: typeof Hyp2f1 } | undefined;

function special() {
  loaded ??= {
    digamma: require('@stdlib/math-base-special-digamma') as typeof Digamma,
    gammaln: require('@stdlib/math-base-special-gammaln') as typeof Gammaln,
    hyp2f1: require('@stdlib/math-base-special-hyp2f1') as typeof Hyp2f1,
  };
  return loaded;
}

/** ψ(x), the digamma function. */
export const digamma = (x: number): number => special().digamma(x);
/** ln Γ(x). */
export const gammaln = (x: number): number => special().gammaln(x);
/** The Gaussian hypergeometric function ₂F₁(a, b; c; z). */
export const hyp2f1 = (a: number, b: number, c: number, z: number): number => special().hyp2f1(a, b, c, z);
