import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { EARLIEST_TIME_MS, inTimeRange, isoTime, LATEST_TIME_MS } from './iso-time.ts';

const iso = (text: string) => {
  const ms = isoTime(text);
  return Number.isNaN(ms) ? 'NaN' : new Date(ms).toISOString();
};

describe('isoTime', () => {
  it('reads ISO 8601 dates and date-times, without a zone as UTC', () => {
    assert.equal(iso('2027-01-04T10:00:00'), '2027-01-04T10:00:00.000Z');
    assert.equal(iso('2027-01-04 10:00'), '2027-01-04T10:00:00.000Z');
    assert.equal(iso('2027-01-04'), '2027-01-04T00:00:00.000Z');
    assert.equal(iso('2027-01-04T10:00:00.123456789Z'), '2027-01-04T10:00:00.123Z');
    assert.equal(iso('2027-01-04T10:00:00+05:30'), '2027-01-04T04:30:00.000Z');
    assert.equal(iso('2027-01-04T10:00:00-0600'), '2027-01-04T16:00:00.000Z');
    assert.equal(iso('+002027-01-04T10:00:00Z'), '2027-01-04T10:00:00.000Z', 'an expanded year within range');
    assert.equal(iso('2024-02-29'), '2024-02-29T00:00:00.000Z');
  });

  it('refuses text that is not ISO 8601 and dates no calendar has, instead of guessing', () => {
    for (const text of ['May 5 2027', 'Tue, 04 Jan 2027 10:00:00 GMT', '1767520800', '2027-02-30', '2027-02-29', '2027-13-01', '2027-01-04T24:00:00Z', '2027-01-04T10:60', '2027-01-04T10:00:00+24:00', ' 2027-01-04', '']) {
      assert.equal(iso(text), 'NaN', text);
    }
  });

  it('takes times from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z only, whose ISO text has a four-digit year', () => {
    assert.equal(isoTime('0001-01-01T00:00:00Z'), EARLIEST_TIME_MS);
    assert.equal(isoTime('9999-12-31T23:59:59.999Z'), LATEST_TIME_MS);
    assert.equal(new Date(EARLIEST_TIME_MS).toISOString(), '0001-01-01T00:00:00.000Z');
    assert.equal(new Date(LATEST_TIME_MS).toISOString(), '9999-12-31T23:59:59.999Z');
    // Each a millisecond, or a zone, outside the range.
    for (const text of ['-000001-01-01T00:00:00Z', '0000-12-31T23:59:59.999Z', '0001-01-01T00:00:00+00:01', '+010000-01-01T00:00:00Z', '9999-12-31T23:59:59-00:01', '-271821-04-20T00:00:00Z']) {
      assert.equal(iso(text), 'NaN', text);
    }
    assert.equal(iso('0001-01-01T00:00:00-00:01'), '0001-01-01T00:01:00.000Z');
    assert.equal(iso('9999-12-31T23:59:59+00:01'), '9999-12-31T23:58:59.000Z');
  });

  it('answers the same whatever time zone the process runs in', () => {
    const script = `import { isoTime } from ${JSON.stringify(new URL('./iso-time.ts', import.meta.url).href)}; process.stdout.write(new Date(isoTime('2027-01-04T10:00:00')).toISOString());`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TZ: 'Asia/Kolkata' } }).toString();
    assert.equal(out, '2027-01-04T10:00:00.000Z');
  });
});

describe('inTimeRange', () => {
  it('holds for epoch milliseconds from year 1 to 9999, and not for NaN or infinities', () => {
    assert.ok(inTimeRange(0) && inTimeRange(EARLIEST_TIME_MS) && inTimeRange(LATEST_TIME_MS));
    for (const ms of [EARLIEST_TIME_MS - 1, LATEST_TIME_MS + 1, -8.64e15, 8.64e15, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) assert.equal(inTimeRange(ms), false, String(ms));
  });
});
