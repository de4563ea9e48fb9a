import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PurposeConfig } from './consent.types.ts';
import { addMonths, decideFor, type Current, type PurposeRuntime } from './decide.ts';

const runtime = (config: Partial<PurposeConfig> = {}, renewalFrom = 0, explicitSince = ''): PurposeRuntime => {
  const full: PurposeConfig = { key: 'analytics.reporting', basis: 'consent', saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: 'd', ...config };
  return { config: full, optOut: new Set(full.optOutJurisdictions), renewalFrom, explicitSince };
};
const at = Date.parse('2026-01-31T12:00:00.000Z');
const current = (fields: Partial<Current> = {}): Current => ({
  entryId: 'e1', state: 'given', basis: 'consent', mechanism: 'banner_accept', noticeVersion: 1, jurisdiction: null, gpc: false, gpcOverride: false,
  at: new Date(at).toISOString(), expiresAtMs: addMonths(at, 13), ...fields,
});

describe('consent decisions', () => {
  it('adds calendar months, clamping to the end of shorter months', () => {
    assert.equal(new Date(addMonths(at, 1)).toISOString(), '2026-02-28T12:00:00.000Z');
    assert.equal(new Date(addMonths(at, 13)).toISOString(), '2027-02-28T12:00:00.000Z');
    assert.equal(new Date(addMonths(Date.parse('2027-02-28T00:00:00.000Z'), -12)).toISOString(), '2026-02-28T00:00:00.000Z');
    assert.equal(new Date(addMonths(Date.parse('2027-03-31T00:00:00.000Z'), -1)).toISOString(), '2027-02-28T00:00:00.000Z');
  });

  it('denies by default and allows only a current, unexpired consent under a notice that still covers it', () => {
    assert.equal(decideFor(runtime(), undefined, at).reason, 'no_record');
    assert.equal(decideFor(runtime(), current(), at).reason, 'given');
    assert.equal(decideFor(runtime(), current(), addMonths(at, 13)).reason, 'expired');
    assert.equal(decideFor(runtime({}, 2), current(), at).reason, 'renewal_required');
    assert.equal(decideFor(runtime({}, 2), current({ noticeVersion: 2 }), at).reason, 'given');
    for (const state of ['refused', 'withdrawn', 'expired'] as const) assert.equal(decideFor(runtime(), current({ state }), at).reason, state);
    assert.equal(decideFor(runtime(), current({ basis: 'legitimate_interests' }), at).reason, 'no_record', 'a given under another basis is no consent');
  });

  it('reports explicit consent only for purposes that ask for it', () => {
    assert.equal(decideFor(runtime({ explicit: true }), current(), at).explicit, true);
    assert.equal(decideFor(runtime(), current(), at).explicit, false);
    // Made explicit after the consent was given: that consent was never explicit, and must be given again.
    const later = runtime({ explicit: true }, 0, new Date(at + 1).toISOString());
    assert.deepEqual(decideFor(later, current(), at + 10), { allowed: false, basis: null, reason: 'renewal_required', explicit: false });
    assert.equal(decideFor(later, current({ at: new Date(at + 1).toISOString() }), at + 10).explicit, true);
  });

  it('accepts an opt-out notice only while its jurisdiction is listed for the purpose', () => {
    const notice = current({ basis: 'opt_out_notice', mechanism: 'notice_opt_out', jurisdiction: 'US-CA' });
    assert.deepEqual(decideFor(runtime({ optOutJurisdictions: ['US-CA'] }), notice, addMonths(at, 60)), { allowed: true, basis: 'opt_out_notice', reason: 'opt_out_notice', explicit: false });
    assert.equal(decideFor(runtime(), notice, at).reason, 'jurisdiction_not_opt_out');
  });

  it('allows non-consent bases without a record; only legitimate interests can be objected to', () => {
    assert.equal(decideFor(runtime({ basis: 'contract' }), current({ state: 'refused' }), at).allowed, true);
    assert.equal(decideFor(runtime({ basis: 'legal_obligation' }), undefined, at).basis, 'legal_obligation');
    assert.equal(decideFor(runtime({ basis: 'legitimate_interests' }), undefined, at).allowed, true);
    assert.equal(decideFor(runtime({ basis: 'legitimate_interests' }), current({ state: 'withdrawn' }), at).reason, 'objected');
  });

  it('returns shared frozen answers (no allocation per decision)', () => {
    const a = decideFor(runtime(), current(), at);
    assert.equal(a, decideFor(runtime(), current(), at));
    assert.ok(Object.isFrozen(a));
  });
});
