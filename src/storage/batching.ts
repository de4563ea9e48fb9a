/**
 * Helpers for statements over many rows at once, so that a hot path needs only a few distinct SQL texts (each
 * compiled once) and bounded parameter counts.
 */

/** The power of two at or above n (the size class of an IN list or a multi-row INSERT). */
export function bucket(n: number): number {
  let size = 1;
  while (size < n) size *= 2;
  return size;
}

/** Pads a non-empty list to its bucket size by repeating the last element (harmless in an IN list). */
export function padded<T>(items: readonly T[]): T[] {
  const out = [...items];
  const last = items[items.length - 1] as T;
  while (out.length < bucket(items.length)) out.push(last);
  return out;
}

/** Splits n rows into power-of-two chunks of at most 256 rows. */
export function chunkSizes(n: number): number[] {
  const sizes: number[] = [];
  let left = n;
  while (left > 0) {
    let size = 256;
    while (size > left) size /= 2;
    sizes.push(size);
    left -= size;
  }
  return sizes;
}
