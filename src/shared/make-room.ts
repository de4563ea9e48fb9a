/**
 * Makes room in a cache kept as a Map in insertion (or use) order, oldest first: once it holds `limit` entries, the
 * oldest eighth of them (at least one) goes at once, through `remove` (which must delete the key from the map; the
 * default does only that). Evicting one entry per insertion through `map.keys().next()` is slow in V8: a Map's
 * iteration walks past every entry deleted since its table was last rebuilt, so at 100,000 entries each eviction
 * cost ~15–80 µs; a walk per eighth costs ~1–3 µs per insertion.
 */
export function makeRoom<K, V>(map: Map<K, V>, limit: number, remove: (key: K, value: V) => void = (key) => map.delete(key)): void {
  if (map.size < limit) return;
  let count = map.size - limit + Math.max(1, limit >>> 3);
  const oldest: [K, V][] = [];
  for (const entry of map) {
    if (count-- <= 0) break;
    oldest.push(entry);
  }
  for (const [key, value] of oldest) remove(key, value);
}
