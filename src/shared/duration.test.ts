import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareDurations, EARLIEST_CUTOFF, parseDuration, subtractDuration } from './duration.ts';

const at = new Date('2026-03-31T12:00:00.000Z');

describe('durations', () => {
  it('count back on the calendar in UTC', () => {
    assert.equal(subtractDuration(at, 'P1M').toISOString(), '2026-02-28T12:00:00.000Z');
    assert.equal(subtractDuration(at, 'P13M').toISOString(), '2025-02-28T12:00:00.000Z');
    assert.equal(subtractDuration(at, 'P1Y1W2DT3H4M5S').toISOString(), '2025-03-22T08:55:55.000Z');
    assert.equal(parseDuration('P0D'), undefined);
    assert.throws(() => subtractDuration(at, 'forever'), RangeError);
  });

  it('never answer an invalid date: a period longer than the calendar counts from the earliest cutoff', () => {
    for (const value of ['P300000Y', 'P3000000M', 'P99999999W', 'P999999999D', 'PT999999999999H', `P${'9'.repeat(400)}Y`]) {
      const cutoff = subtractDuration(at, value);
      assert.equal(cutoff.getTime(), EARLIEST_CUTOFF.getTime(), value);
      assert.equal(cutoff.toISOString(), '0001-01-01T00:00:00.000Z', value);
    }
    assert.equal(subtractDuration(at, 'P2000Y').toISOString(), '0026-03-31T12:00:00.000Z', 'within the calendar: exact');
    assert.equal(subtractDuration(at, 'P2100Y').toISOString(), '0001-01-01T00:00:00.000Z', 'before year 1: clamped');
  });

  it('order durations, those beyond the calendar as the longest', () => {
    assert.ok(compareDurations('P13M', 'P1Y') > 0);
    assert.ok(compareDurations('P30D', 'P1M') < 0);
    assert.equal(compareDurations('P12M', 'P1Y'), 0);
    assert.ok(compareDurations('P300000Y', 'P13M') > 0);
    assert.ok(compareDurations('P13M', 'P300000Y') < 0);
    assert.equal(compareDurations('P300000Y', 'P400000Y'), 0);
  });
});
