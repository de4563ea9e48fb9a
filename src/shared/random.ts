import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 16 * 1024;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** The offset of `size` fresh bytes in the pool, refilled by the CSPRNG when they would run past its end. */
function take(size: number): number {
  if (offset + size > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const at = offset;
  offset += size;
  return at;
}

/**
 * Cryptographically random bytes from a pooled buffer refilled by the CSPRNG (as Node's randomUUID does):
 * one system call per 16 KB instead of one per IV or id on the ingestion hot path. Every byte is handed out once.
 */
export function randomBytesPooled(size: number): Buffer {
  if (size > POOL_BYTES / 4) return randomFillSync(Buffer.allocUnsafe(size));
  const at = take(size);
  return Buffer.from(pool.subarray(at, at + size));
}

/** `size` random bytes from the same pool, as hex, without a buffer of their own (for ids made per event). */
export function randomHexPooled(size: number): string {
  if (size > POOL_BYTES / 4) return randomBytesPooled(size).toString('hex');
  const at = take(size);
  return pool.toString('hex', at, at + size);
}

let lastMs = 0;
let sequence = 0;

/**
 * A sortable unique id: milliseconds, a per-process sequence, then randomness. New rows land at the end of
 * indexes instead of at random places.
 */
export function sortableId(prefix: string): string {
  const now = Date.now();
  sequence = now === lastMs ? sequence + 1 : 0;
  lastMs = now;
  return `${prefix}${now.toString(36).padStart(9, '0')}${sequence.toString(36).padStart(4, '0')}${randomHexPooled(8)}`;
}
