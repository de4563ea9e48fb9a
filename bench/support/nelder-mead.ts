// Plain Nelder–Mead (the textbook downhill simplex: reflection 1, expansion 2, contraction ½, shrink ½), the
// baseline bench:scoring fits BG/NBD with. Written here because the npm `fmin` package's build does not load as an
// ES module under Node 24.
export function nelderMead(f: (x: number[]) => number, start: readonly number[], options: { maxIterations?: number; tolerance?: number } = {}): { x: number[]; fx: number; iterations: number; evaluations: number } {
  const n = start.length;
  const maxIterations = options.maxIterations ?? 2000;
  const tolerance = options.tolerance ?? 1e-10;
  let evaluations = 0;
  const value = (x: number[]) => {
    evaluations++;
    return f(x);
  };
  let simplex = [start.slice(), ...start.map((_, i) => start.map((v, j) => (i === j ? (v !== 0 ? v * 1.05 : 0.00025) : v)))].map((x) => ({ x, fx: value(x) }));
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    simplex.sort((a, b) => a.fx - b.fx);
    const best = simplex[0] as { x: number[]; fx: number };
    const worst = simplex[n] as { x: number[]; fx: number };
    if (Math.abs(worst.fx - best.fx) <= tolerance * (Math.abs(best.fx) + 1e-12)) break;
    const centroid = start.map((_, j) => simplex.slice(0, n).reduce((s, p) => s + (p.x[j] as number), 0) / n);
    const along = (t: number) => centroid.map((c, j) => c + t * ((worst.x[j] as number) - c));
    const reflected = along(-1);
    const fr = value(reflected);
    const secondWorst = (simplex[n - 1] as { fx: number }).fx;
    if (fr < best.fx) {
      const expanded = along(-2);
      const fe = value(expanded);
      simplex[n] = fe < fr ? { x: expanded, fx: fe } : { x: reflected, fx: fr };
    } else if (fr < secondWorst) {
      simplex[n] = { x: reflected, fx: fr };
    } else {
      const contracted = fr < worst.fx ? along(-0.5) : along(0.5);
      const fc = value(contracted);
      if (fc < Math.min(fr, worst.fx)) simplex[n] = { x: contracted, fx: fc };
      else simplex = simplex.map((p, i) => (i === 0 ? p : (() => { const x = p.x.map((v, j) => (best.x[j] as number) + 0.5 * (v - (best.x[j] as number))); return { x, fx: value(x) }; })()));
    }
  }
  simplex.sort((a, b) => a.fx - b.fx);
  const best = simplex[0] as { x: number[]; fx: number };
  return { x: best.x, fx: best.fx, iterations, evaluations };
}
