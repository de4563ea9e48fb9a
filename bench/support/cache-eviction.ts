// The cost of keeping a Map-based cache at its limit, per insertion: one entry evicted through `keys().next()` each
// time (how the caches did it before makeRoom) against `makeRoom` (the oldest eighth at once).
// `node bench/support/cache-eviction.ts [limit] [insertions]`.
import { makeRoom } from '../../src/shared/make-room.ts';

const limit = Number(process.argv[2] ?? 100_000);
const insertions = Number(process.argv[3] ?? 200_000);
const filled = () => new Map(Array.from({ length: limit }, (_, i) => [`key-${i}`, { i }] as const));

const oneAtATime = filled();
let started = performance.now();
for (let i = limit; i < limit + insertions; i++) {
  const oldest = oneAtATime.keys().next().value;
  if (oldest !== undefined) oneAtATime.delete(oldest);
  oneAtATime.set(`key-${i}`, { i });
}
const before = ((performance.now() - started) * 1000) / insertions;

const eighth = filled();
started = performance.now();
for (let i = limit; i < limit + insertions; i++) {
  makeRoom(eighth, limit);
  eighth.set(`key-${i}`, { i });
}
const after = ((performance.now() - started) * 1000) / insertions;
console.log(`cache of ${limit} entries, µs per insertion at the limit: one evicted at a time ${before.toFixed(2)}, an eighth at once (makeRoom) ${after.toFixed(2)}`);
