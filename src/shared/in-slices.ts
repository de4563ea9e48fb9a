/**
 * Most items of one request a step works through in one synchronous go: a batch of more is worked through in slices
 * of this many, the event loop given a turn between them (other requests, timers). A batch may hold 27,962 messages
 * (MAX_BATCH_MESSAGES), which in one go would keep the process from everything else for seconds.
 */
export const SLICE_ITEMS = 2_500;

/** Lets the event loop run what is waiting (I/O, timers) before going on: a macrotask, not a microtask. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * `work` on consecutive slices of at most SLICE_ITEMS of `items`, in order (`start`: the index of a slice's first item),
 * each awaited and the event loop given a turn before the next; their results concatenated. Up to SLICE_ITEMS items
 * are one slice, with no turn given.
 */
export async function inSlices<T, R>(items: readonly T[], work: (slice: readonly T[], start: number) => R[] | Promise<R[]>): Promise<R[]> {
  if (items.length <= SLICE_ITEMS) return work(items, 0);
  const out: R[] = [];
  for (let start = 0; start < items.length; start += SLICE_ITEMS) {
    if (start > 0) await nextTurn();
    for (const r of await work(items.slice(start, start + SLICE_ITEMS), start)) out.push(r);
  }
  return out;
}
