/**
 * A small quasi-Newton minimiser (BFGS with a backtracking Armijo line search) for smooth objectives with an
 * analytic gradient. The lifetime-value models are fitted with it on log-transformed parameters, so the search is
 * unconstrained. Written here because the npm registry has no maintained BFGS/L-BFGS for plain arrays; the
 * benchmark compares it with the `fmin` package's Nelder–Mead.
 */

export interface Objective {
  /** Value and gradient at `x`. */
  (x: readonly number[]): { value: number; gradient: number[] };
}

export interface MinimizeResult {
  x: number[];
  value: number;
  iterations: number;
  evaluations: number;
  converged: boolean;
}

export interface MinimizeOptions {
  maxIterations?: number;
  /** Stop when the gradient's largest component falls below this. */
  gradientTolerance?: number;
  /** …or when an iteration improves the value by less than this (relative). */
  valueTolerance?: number;
}

const dot = (a: readonly number[], b: readonly number[]) => a.reduce((s, v, i) => s + v * (b[i] as number), 0);

export function minimize(f: Objective, start: readonly number[], options: MinimizeOptions = {}): MinimizeResult {
  const n = start.length;
  const maxIterations = options.maxIterations ?? 500;
  const gtol = options.gradientTolerance ?? 1e-6;
  const vtol = options.valueTolerance ?? 1e-12;
  let x = [...start];
  let { value, gradient } = f(x);
  let evaluations = 1;
  // Inverse Hessian approximation, starting from the identity.
  let H: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let iteration = 1; iteration <= maxIterations; iteration++) {
    if (Math.max(...gradient.map(Math.abs)) < gtol) return { x, value, iterations: iteration - 1, evaluations, converged: true };
    let direction = H.map((row) => -dot(row, gradient));
    let slope = dot(direction, gradient);
    if (!(slope < 0)) {
      // Not a descent direction (the approximation went bad): restart from steepest descent.
      H = H.map((row, i) => row.map((_, j) => (i === j ? 1 : 0)));
      direction = gradient.map((g) => -g);
      slope = dot(direction, gradient);
    }
    let step = 1;
    let next: number[] = x;
    let trial = { value: Number.POSITIVE_INFINITY, gradient };
    for (let tries = 0; tries < 60; tries++) {
      next = x.map((v, i) => v + step * (direction[i] as number));
      trial = f(next);
      evaluations++;
      if (Number.isFinite(trial.value) && trial.value <= value + 1e-4 * step * slope) break;
      step *= 0.5;
    }
    if (!Number.isFinite(trial.value) || trial.value > value) return { x, value, iterations: iteration, evaluations, converged: false };
    const s = next.map((v, i) => v - (x[i] as number));
    const y = trial.gradient.map((g, i) => g - (gradient[i] as number));
    const sy = dot(s, y);
    const improvement = value - trial.value;
    x = next;
    gradient = trial.gradient;
    const previous = value;
    value = trial.value;
    if (sy > 1e-12) {
      // BFGS update of the inverse Hessian: H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ.
      const rho = 1 / sy;
      const Hy = H.map((row) => dot(row, y));
      const yHy = dot(y, Hy);
      H = H.map((row, i) =>
        row.map((h, j) => h - rho * ((Hy[i] as number) * (s[j] as number) + (s[i] as number) * (Hy[j] as number)) + (rho * rho * yHy + rho) * (s[i] as number) * (s[j] as number)),
      );
    }
    if (improvement <= vtol * (Math.abs(previous) + 1e-12)) return { x, value, iterations: iteration, evaluations, converged: true };
  }
  return { x, value, iterations: maxIterations, evaluations, converged: false };
}
