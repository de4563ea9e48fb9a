import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCandorError } from '../../shared/errors.ts';
import { addBusinessDays, addCalendarMonths, clockStatus, deadlines, extendedDueAt } from './clocks.ts';

const at = (s: string) => new Date(s);
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

describe('legal clocks', () => {
  it('adds calendar months, clamping to the last day of a shorter month', () => {
    assert.equal(day(addCalendarMonths(Date.parse('2025-01-31T10:00:00Z'), 1)), '2025-02-28');
    assert.equal(day(addCalendarMonths(Date.parse('2024-01-31T10:00:00Z'), 1)), '2024-02-29');
    assert.equal(day(addCalendarMonths(Date.parse('2025-03-31T10:00:00Z'), 1)), '2025-04-30');
    assert.equal(day(addCalendarMonths(Date.parse('2025-12-15T10:00:00Z'), 1)), '2026-01-15');
    assert.equal(day(addCalendarMonths(Date.parse('2025-11-30T10:00:00Z'), 3)), '2026-02-28');
  });

  it('counts business days from the day after receipt, skipping weekends', () => {
    // 2025-06-06 is a Friday.
    assert.equal(day(addBusinessDays(Date.parse('2025-06-06T23:59:00Z'), 1)), '2025-06-09');
    assert.equal(day(addBusinessDays(Date.parse('2025-06-07T08:00:00Z'), 1)), '2025-06-09');
    assert.equal(day(addBusinessDays(Date.parse('2025-06-08T08:00:00Z'), 5)), '2025-06-13');
    assert.equal(day(addBusinessDays(Date.parse('2025-06-02T08:00:00Z'), 10)), '2025-06-16');
    assert.equal(day(addBusinessDays(Date.parse('2025-06-02T08:00:00Z'), 15)), '2025-06-23');
  });

  it('gives a GDPR request one calendar month, ending with the last millisecond of the day (31 Jan -> 28/29 Feb)', () => {
    assert.equal(deadlines('access', 'gdpr', at('2025-01-31T09:30:00Z')).dueAt, '2025-02-28T23:59:59.999Z');
    assert.equal(deadlines('erasure', 'gdpr', at('2024-01-31T23:59:59Z')).dueAt, '2024-02-29T23:59:59.999Z');
    assert.equal(deadlines('erasure', 'gdpr', at('2024-01-30T00:00:00Z')).dueAt, '2024-02-29T23:59:59.999Z');
    assert.equal(deadlines('access', 'gdpr', at('2025-05-15T00:00:00Z')).dueAt, '2025-06-15T23:59:59.999Z');
    const d = deadlines('access', 'gdpr', at('2025-01-31T09:30:00Z'));
    assert.equal(d.acknowledgeBy, null);
    assert.equal(d.extendedDueAt, '2025-04-30T23:59:59.999Z');
    // Opt-outs under the GDPR keep the one-month clock.
    assert.equal(deadlines('opt_out_sale_sharing', 'gdpr', at('2025-01-31T09:30:00Z')).dueAt, '2025-02-28T23:59:59.999Z');
  });

  it('extends a GDPR request by two months only with a notice inside the first month, once', () => {
    const received = at('2025-01-31T09:30:00Z');
    assert.equal(extendedDueAt('access', 'gdpr', received, at('2025-02-28T23:59:59.999Z'), false), '2025-04-30T23:59:59.999Z');
    assert.throws(() => extendedDueAt('access', 'gdpr', received, at('2025-03-01T00:00:00.000Z'), false), (e) => isCandorError(e, 'RIGHTS_EXTENSION_TOO_LATE'));
    assert.throws(() => extendedDueAt('access', 'gdpr', received, at('2025-02-10T00:00:00Z'), true), (e) => isCandorError(e, 'RIGHTS_EXTENSION_ALREADY_USED'));
  });

  it('gives a CCPA request 10 business days to acknowledge and 45 calendar days to answer, extendable once by 45', () => {
    // 2025-06-02 is a Monday.
    const d = deadlines('access', 'ccpa', at('2025-06-02T15:00:00Z'));
    assert.equal(d.acknowledgeBy, '2025-06-16T23:59:59.999Z');
    assert.equal(d.dueAt, '2025-07-17T23:59:59.999Z');
    assert.equal(d.extendedDueAt, '2025-08-31T23:59:59.999Z');
    assert.equal(extendedDueAt('erasure', 'ccpa', at('2025-06-02T15:00:00Z'), at('2025-07-17T23:00:00Z'), false), '2025-08-31T23:59:59.999Z');
    assert.throws(() => extendedDueAt('erasure', 'ccpa', at('2025-06-02T15:00:00Z'), at('2025-07-18T00:00:00Z'), false), (e) => isCandorError(e, 'RIGHTS_EXTENSION_TOO_LATE'));
  });

  it('gives CCPA opt-outs 15 business days and no extension', () => {
    // Received on a Saturday: counting starts on Monday.
    const d = deadlines('opt_out_sale_sharing', 'ccpa', at('2025-06-07T12:00:00Z'));
    assert.equal(d.dueAt, '2025-06-27T23:59:59.999Z');
    assert.equal(d.acknowledgeBy, null);
    assert.equal(deadlines('limit_sensitive', 'ccpa', at('2025-06-02T00:00:00Z')).dueAt, '2025-06-23T23:59:59.999Z');
    assert.throws(() => extendedDueAt('limit_sensitive', 'ccpa', at('2025-06-02T00:00:00Z'), at('2025-06-03T00:00:00Z'), false), (e) => isCandorError(e, 'RIGHTS_EXTENSION_NOT_ALLOWED'));
  });

  it('says overdue after the due millisecond and due soon within the window before it', () => {
    const due = '2025-02-28T23:59:59.999Z';
    assert.equal(clockStatus(due, at('2025-02-28T23:59:59.999Z')), 'due_soon');
    assert.equal(clockStatus(due, at('2025-03-01T00:00:00.000Z')), 'overdue');
    assert.equal(clockStatus(due, at('2025-02-21T23:59:59.999Z')), 'on_time');
    assert.equal(clockStatus(due, at('2025-02-22T00:00:00.000Z')), 'due_soon');
    assert.equal(clockStatus(due, at('2025-02-27T00:00:00.000Z'), 1), 'on_time');
  });
});
