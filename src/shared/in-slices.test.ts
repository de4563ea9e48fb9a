import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inSlices, SLICE_ITEMS } from './in-slices.ts';

describe('inSlices', () => {
  it('works through slices of SLICE_ITEMS in order, and joins their results', async () => {
    const items = Array.from({ length: 2 * SLICE_ITEMS + 3 }, (_, i) => i);
    const slices: [number, number][] = [];
    const out = await inSlices(items, (slice, start) => {
      slices.push([start, slice.length]);
      return slice.map((item, i) => item - (start + i));
    });
    assert.deepEqual(slices, [[0, SLICE_ITEMS], [SLICE_ITEMS, SLICE_ITEMS], [2 * SLICE_ITEMS, 3]]);
    assert.equal(out.length, items.length);
    assert.ok(out.every((d) => d === 0));
  });

  it('gives the event loop a turn between slices, and none within a single one', async () => {
    const events: string[] = [];
    await inSlices(Array<number>(SLICE_ITEMS + 1).fill(0), (slice, start) => {
      events.push(`slice ${start}`);
      if (start === 0) setImmediate(() => events.push('turn'));
      return [...slice];
    });
    assert.deepEqual(events, ['slice 0', 'turn', `slice ${SLICE_ITEMS}`]);
    const small: string[] = [];
    const done = inSlices(Array<number>(SLICE_ITEMS).fill(0), (slice) => {
      small.push('slice');
      return [...slice];
    });
    // Worked through at once, before the call returns.
    assert.deepEqual(small, ['slice']);
    await done;
  });
});
