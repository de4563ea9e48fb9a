// Calendar arithmetic for retention tests: a sweep's `now` some months on.

/** `n` calendar months after `at` (before it for a negative `n`). */
export const months = (at: Date, n: number): Date => {
  const out = new Date(at.getTime());
  out.setUTCMonth(out.getUTCMonth() + n);
  return out;
};
