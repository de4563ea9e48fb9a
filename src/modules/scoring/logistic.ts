/**
 * L2-regularised logistic regression fitted by Newton's method (iteratively reweighted least squares), with Platt
 * calibration on out-of-fold scores, for churn and lead scores. The linear algebra (the Newton step's symmetric
 * solve) is ml-matrix's; the loop is ours because the npm packages for logistic regression offer neither a
 * regularisation term nor calibration.
 */
import { CholeskyDecomposition, Matrix } from 'ml-matrix';

/** Rows of features (row-major, n × d) and 0/1 outcomes. */
export interface Dataset {
  x: Float64Array;
  y: Uint8Array;
  n: number;
  d: number;
}

export interface LogisticModel {
  intercept: number;
  weights: Float64Array;
  /** Platt scaling of the linear score: P = σ(a·z + b); identity (1, 0) when not calibrated. */
  calibration: { a: number; b: number };
  lambda: number;
  iterations: number;
}

export interface FitOptions {
  /** L2 penalty on the weights (not the intercept), in units of the summed log-likelihood. */
  lambda?: number;
  maxIterations?: number;
  tolerance?: number;
}

const sigmoid = (z: number) => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** The linear score z = b₀ + w·x of row i. */
export function linearScore(model: Pick<LogisticModel, 'intercept' | 'weights'>, x: Float64Array, i: number, d: number): number {
  let z = model.intercept;
  const base = i * d;
  for (let j = 0; j < d; j++) z += (model.weights[j] as number) * (x[base + j] as number);
  return z;
}

export function predict(model: LogisticModel, x: Float64Array, i: number, d: number): number {
  return sigmoid(model.calibration.a * linearScore(model, x, i, d) + model.calibration.b);
}

/** Fits the weights by Newton–Raphson on the penalised log-likelihood. */
export function fitLogistic(data: Dataset, options: FitOptions = {}): LogisticModel {
  const { x, y, n, d } = data;
  const lambda = options.lambda ?? 1;
  const maxIterations = options.maxIterations ?? 50;
  const tolerance = options.tolerance ?? 1e-8;
  const k = d + 1; // intercept first
  const beta = new Float64Array(k);
  const gradient = new Float64Array(k);
  const hessian = new Float64Array(k * k);
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    gradient.fill(0);
    hessian.fill(0);
    for (let i = 0; i < n; i++) {
      const base = i * d;
      let z = beta[0] as number;
      for (let j = 0; j < d; j++) z += (beta[j + 1] as number) * (x[base + j] as number);
      const p = sigmoid(z);
      const r = p - (y[i] as number);
      const w = Math.max(p * (1 - p), 1e-12);
      gradient[0] = (gradient[0] as number) + r;
      hessian[0] = (hessian[0] as number) + w;
      for (let j = 0; j < d; j++) {
        const xj = x[base + j] as number;
        if (xj === 0) continue;
        gradient[j + 1] = (gradient[j + 1] as number) + r * xj;
        const wx = w * xj;
        hessian[j + 1] = (hessian[j + 1] as number) + wx; // row 0, column j+1
        const row = (j + 1) * k;
        for (let l = 0; l <= j; l++) {
          const xl = x[base + l] as number;
          if (xl !== 0) hessian[row + l + 1] = (hessian[row + l + 1] as number) + wx * xl;
        }
      }
    }
    for (let j = 1; j < k; j++) {
      gradient[j] = (gradient[j] as number) + lambda * (beta[j] as number);
      hessian[j * k + j] = (hessian[j * k + j] as number) + lambda;
    }
    // Mirror the lower triangle (and the first row into the first column).
    const H = new Matrix(k, k);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j <= i; j++) {
        const v = i === 0 ? (hessian[0] as number) : j === 0 ? (hessian[i] as number) : (hessian[i * k + j] as number);
        H.set(i, j, v);
        H.set(j, i, v);
      }
    }
    const step = new CholeskyDecomposition(H).solve(Matrix.columnVector(Array.from(gradient)));
    let largest = 0;
    for (let j = 0; j < k; j++) {
      const s = step.get(j, 0);
      beta[j] = (beta[j] as number) - s;
      largest = Math.max(largest, Math.abs(s));
    }
    if (largest < tolerance) {
      iterations++;
      break;
    }
  }
  return { intercept: beta[0] as number, weights: beta.slice(1), calibration: { a: 1, b: 0 }, lambda, iterations };
}

/** Platt scaling: the 1-D logistic fit of outcomes on scores (out-of-fold scores, so it is not fitted on itself). */
export function plattScaling(scores: Float64Array, y: Uint8Array): { a: number; b: number } {
  const model = fitLogistic({ x: scores, y, n: scores.length, d: 1 }, { lambda: 1e-6 });
  return { a: model.weights[0] as number, b: model.intercept };
}

/** Indices of k folds, each with the same share of positives (deterministic for a seed). */
export function stratifiedFolds(y: Uint8Array, k: number, seed = 1): number[][] {
  let state = seed >>> 0 || 1;
  const random = () => {
    // xorshift32: reproducible shuffles without a dependency.
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x1_0000_0000;
  };
  const folds: number[][] = Array.from({ length: k }, () => []);
  for (const label of [0, 1]) {
    const members: number[] = [];
    for (let i = 0; i < y.length; i++) if (y[i] === label) members.push(i);
    for (let i = members.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [members[i], members[j]] = [members[j] as number, members[i] as number];
    }
    members.forEach((index, i) => (folds[i % k] as number[]).push(index));
  }
  return folds;
}

/** Rows `indices` of a dataset, as a new dataset. */
export function subset(data: Dataset, indices: readonly number[]): Dataset {
  const x = new Float64Array(indices.length * data.d);
  const y = new Uint8Array(indices.length);
  indices.forEach((row, i) => {
    x.set(data.x.subarray(row * data.d, (row + 1) * data.d), i * data.d);
    y[i] = data.y[row] as number;
  });
  return { x, y, n: indices.length, d: data.d };
}

/** Fits on all rows and calibrates with Platt scaling on `folds`-fold out-of-fold linear scores. */
export function fitCalibrated(data: Dataset, options: FitOptions & { folds?: number; seed?: number } = {}): LogisticModel {
  const folds = stratifiedFolds(data.y, options.folds ?? 3, options.seed ?? 1);
  const scores = new Float64Array(data.n);
  for (let f = 0; f < folds.length; f++) {
    const test = folds[f] as number[];
    const train = folds.flatMap((fold, g) => (g === f ? [] : fold));
    const model = fitLogistic(subset(data, train), options);
    for (const i of test) scores[i] = linearScore(model, data.x, i, data.d);
  }
  const model = fitLogistic(data, options);
  return { ...model, calibration: plattScaling(scores, data.y) };
}
