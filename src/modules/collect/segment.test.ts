import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { identifiersOf, MAX_DEPTH, parseMessage, planInput, TOO_DEEP, undeniedPurposes } from './segment.ts';

const now = Date.parse('2026-11-22T12:00:00.000Z');

describe('Segment message envelope', () => {
  it('reads a track call with Segment field names', () => {
    const out = parseMessage({ type: 'track', event: 'Order Completed', userId: 'u1', messageId: 'm1', timestamp: '2026-11-22T11:00:00Z', properties: { total: 5 } }, undefined, now, 100);
    assert.ok(out.ok);
    assert.equal(out.message.kind, 'track');
    assert.equal(out.message.name, 'Order Completed');
    assert.equal(out.message.occurredAt, '2026-11-22T11:00:00.000Z');
    assert.equal(out.message.messageIdGiven, true);
  });

  it('gives the plan the top-level keys outside the Segment and RudderStack protocols, and none of the envelope', () => {
    const envelope = {
      type: 'track', event: 'x', userId: 'u1', anonymousId: 'a1', messageId: 'm1', timestamp: '2026-11-22T11:00:00Z', originalTimestamp: '2026-11-22T11:00:00Z', sentAt: '2026-11-22T11:00:01Z',
      receivedAt: '2026-11-22T11:00:02Z', properties: {}, traits: {}, context: {}, integrations: {}, channel: 'mobile', version: 2, _metadata: {}, writeKey: 'k', action: '', destinationProps: {},
      previousId: null, groupId: null, name: null, category: null,
    };
    const plain = parseMessage(envelope, undefined, now, 100);
    assert.ok(plain.ok);
    assert.deepEqual(plain.message.otherKeys, []);
    const extra = parseMessage({ ...envelope, email: 'top@example.org', userProperties: { plan: 'pro' }, 'a.b': 1 }, undefined, now, 100);
    assert.ok(extra.ok);
    assert.deepEqual(extra.message.otherKeys, ['email', 'userProperties', 'a.b']);
    assert.deepEqual(planInput(extra.message).data.otherKeys, ['email', 'userProperties', 'a.b']);
  });

  it('refuses a message without userId or anonymousId', () => {
    const out = parseMessage({ type: 'track', event: 'x' }, undefined, now, 10);
    assert.deepEqual(out.ok ? undefined : out.code, 'COLLECT_IDENTITY_MISSING');
  });

  it('refuses an id of another type instead of reading it as absent, and reads null and blank ids as absent', () => {
    for (const [field, value] of [['userId', { id: 'u1' }], ['userId', true], ['anonymousId', ['a']], ['messageId', { m: 1 }], ['userId', Number.NaN]] as const) {
      const out = parseMessage({ type: 'track', event: 'x', anonymousId: 'a1', [field]: value }, undefined, now, 10);
      assert.deepEqual(out.ok ? undefined : [out.code, out.detail], ['COLLECT_MESSAGE_INVALID', `${field} must be a string or a whole number up to 2^53`], field);
    }
    const absent = parseMessage({ type: 'track', event: 'x', anonymousId: 'a1', userId: null, previousId: '  ' }, undefined, now, 10);
    assert.ok(absent.ok);
    assert.ok(parseMessage({ type: 'track', event: 'x', userId: 42 }, undefined, now, 10).ok, 'a number is read as text');
  });

  it('refuses unparseable and far-future timestamps but allows small clock skew', () => {
    const bad = parseMessage({ anonymousId: 'a', timestamp: 'yesterday-ish' }, 'page', now, 10);
    assert.equal(bad.ok ? undefined : bad.code, 'COLLECT_TIMESTAMP_INVALID');
    const future = parseMessage({ anonymousId: 'a', timestamp: '2026-11-23T12:00:00Z' }, 'page', now, 10);
    assert.equal(future.ok ? undefined : future.code, 'COLLECT_TIMESTAMP_IN_FUTURE');
    assert.ok(parseMessage({ anonymousId: 'a', timestamp: '2026-11-22T12:02:00Z' }, 'page', now, 10).ok);
  });

  it('reads ISO 8601 times only, and refuses dates no calendar has', () => {
    const at = (timestamp: unknown) => {
      const out = parseMessage({ anonymousId: 'a', timestamp }, 'page', now, 10);
      return out.ok ? out.message.occurredAt : out.code;
    };
    assert.equal(at('2026-11-22T11:00:00Z'), '2026-11-22T11:00:00.000Z');
    assert.equal(at('2026-11-22T11:00:00.123456789Z'), '2026-11-22T11:00:00.123Z');
    assert.equal(at('2026-11-22T12:30:00+01:30'), '2026-11-22T11:00:00.000Z');
    assert.equal(at('2026-11-22T05:00:00-0600'), '2026-11-22T11:00:00.000Z');
    assert.equal(at('2026-11-22 11:00:00'), '2026-11-22T11:00:00.000Z', 'a space for T; no zone is UTC');
    assert.equal(at('2026-11-22'), '2026-11-22T00:00:00.000Z');
    assert.equal(at('2024-02-29T00:00:00Z'), '2024-02-29T00:00:00.000Z');
    assert.equal(at(Date.parse('2026-11-22T11:00:00Z')), '2026-11-22T11:00:00.000Z', 'a number: milliseconds since 1970');
    for (const text of ['May 5', 'x 1', '-1', '2025-02-30T00:00:00Z', '2025-02-29', '2026-13-01', '2026-11-22T24:00:00Z', '2026-11-22T11:60Z', 'Sun, 22 Nov 2026 11:00:00 GMT', '2026-11-22T11:00:00+25:00', '']) {
      assert.equal(at(text), 'COLLECT_TIMESTAMP_INVALID', text);
    }
  });

  it('refuses ids and names that cannot name anything: half a surrogate pair, control characters, an over-long messageId', () => {
    const detail = (raw: Record<string, unknown>) => {
      const out = parseMessage({ type: 'track', event: 'Viewed', anonymousId: 'a', ...raw }, undefined, now, 10);
      return out.ok ? 'ok' : `${out.code} ${out.detail}`;
    };
    assert.equal(detail({ messageId: 'm-\ud800x' }), 'COLLECT_MESSAGE_INVALID messageId: not well-formed Unicode');
    assert.equal(detail({ messageId: 'm\u0000' }), 'COLLECT_MESSAGE_INVALID messageId: a control character');
    assert.equal(detail({ messageId: 'm'.repeat(257) }), 'COLLECT_MESSAGE_INVALID messageId longer than 256 characters');
    assert.equal(detail({ messageId: 'm'.repeat(256) }), 'ok');
    assert.equal(detail({ userId: 'u\udc00' }), 'COLLECT_MESSAGE_INVALID userId: not well-formed Unicode');
    assert.equal(detail({ anonymousId: 'a\u0007' }), 'COLLECT_MESSAGE_INVALID anonymousId: a control character');
    assert.equal(detail({ event: 'Viewed\u0000' }), 'COLLECT_MESSAGE_INVALID event: a control character');
    assert.equal(detail({ messageId: 'm-😀', userId: 'ü-1' }), 'ok', 'whole surrogate pairs and other text are fine');
  });

  it('refuses a message nested deeper than its limit, measured without walking it', () => {
    const out = parseMessage({ type: 'track', event: 'x', anonymousId: 'a' }, undefined, now, TOO_DEEP);
    assert.equal(out.ok ? undefined : `${out.code} ${out.detail}`, `COLLECT_MESSAGE_INVALID nested deeper than ${MAX_DEPTH} levels`);
  });

  it('refuses times beyond what a date can hold, given or reached by the clock correction, instead of failing', () => {
    const invalid = (raw: Record<string, unknown>) => {
      const out = parseMessage({ anonymousId: 'a', ...raw }, 'page', now, 10);
      return out.ok ? undefined : out.code;
    };
    assert.equal(invalid({ timestamp: -1e20 }), 'COLLECT_TIMESTAMP_INVALID');
    assert.equal(invalid({ originalTimestamp: 1e17, sentAt: 1e17 + 1000 }), 'COLLECT_TIMESTAMP_INVALID');
    assert.equal(invalid({ originalTimestamp: -8.6e15, sentAt: 8.6e15 }), 'COLLECT_TIMESTAMP_INVALID');
    assert.equal(invalid({ timestamp: 8.64e15 + 1 }), 'COLLECT_TIMESTAMP_INVALID');
  });

  it('refuses times before year 1 or after 9999, given in any field or reached by the clock correction, which ISO text would sort wrong', () => {
    const read = (raw: Record<string, unknown>) => {
      const out = parseMessage({ anonymousId: 'a', ...raw }, 'page', now, 10);
      return out.ok ? out.message.occurredAt : `${out.code} ${out.detail}`;
    };
    for (const [field, value] of [
      ['timestamp', '-000001-01-01T00:00:00Z'],
      ['timestamp', -8640000000000000],
      ['timestamp', '0000-12-31T23:59:59.999Z'],
      ['timestamp', '0001-01-01T00:30:00+01:00'],
      ['timestamp', -62_135_596_800_001],
      ['timestamp', '+010000-01-01T00:00:00Z'],
      ['originalTimestamp', '-000001-01-01T00:00:00Z'],
      ['originalTimestamp', 253_402_300_800_000],
      ['sentAt', '-000001-01-01T00:00:00Z'],
      ['sentAt', '+010000-01-01T00:00:00Z'],
    ] as const) {
      assert.equal(read({ [field]: value, ...(field === 'sentAt' ? { timestamp: '2026-11-22T11:00:00Z' } : {}) }), `COLLECT_TIMESTAMP_INVALID ${field}`, `${field} ${value}`);
    }
    // The first and last millisecond of the range are times.
    assert.equal(read({ timestamp: '0001-01-01T00:00:00Z' }), '0001-01-01T00:00:00.000Z');
    assert.equal(read({ originalTimestamp: -62_135_596_800_000 }), '0001-01-01T00:00:00.000Z');
    assert.equal(read({ originalTimestamp: '9999-12-31T23:59:59.999Z', sentAt: '9999-12-31T23:59:59.999Z' }), '2026-11-22T12:00:00.000Z');
    // Both times in range, the corrected one not: 9,998 years between the event and its send, counted back from now.
    assert.equal(read({ originalTimestamp: '0001-01-01T00:00:00Z', sentAt: '9999-01-01T00:00:00Z' }), 'COLLECT_TIMESTAMP_INVALID timestamp');
    assert.equal(read({ timestamp: '9999-01-01T00:00:00Z', sentAt: '0001-01-01T00:00:00Z' }), 'COLLECT_TIMESTAMP_INVALID timestamp');
  });

  it('corrects the device clock with sentAt as Segment does', () => {
    // The device clock is an hour fast: it sent 10 s after the event happened.
    const out = parseMessage({ anonymousId: 'a', originalTimestamp: '2026-11-22T12:59:50Z', sentAt: '2026-11-22T13:00:00Z' }, 'page', now, 10);
    assert.ok(out.ok);
    assert.equal(out.message.occurredAt, '2026-11-22T11:59:50.000Z');
  });

  it("corrects a Segment library's timestamp with its sentAt, keeps the sender's time as the duplicate key, and limits the corrected time", () => {
    const read = (raw: Record<string, unknown>) => {
      const out = parseMessage({ anonymousId: 'a', ...raw }, 'page', now, 10);
      return out.ok ? [out.message.occurredAt, out.message.dedupAt] : [out.code];
    };
    // The device clock is ten minutes fast, then three hours slow: the event 10 s before its send, received at noon.
    assert.deepEqual(read({ timestamp: '2026-11-22T12:09:50Z', sentAt: '2026-11-22T12:10:00Z' }), ['2026-11-22T11:59:50.000Z', '2026-11-22T12:09:50.000Z']);
    assert.deepEqual(read({ timestamp: '2026-11-22T08:59:50Z', sentAt: '2026-11-22T09:00:00Z' }), ['2026-11-22T11:59:50.000Z', '2026-11-22T08:59:50.000Z']);
    // timestamp wins over originalTimestamp, as without sentAt.
    assert.deepEqual(read({ timestamp: '2026-11-22T12:09:50Z', originalTimestamp: '2026-11-22T12:09:00Z', sentAt: '2026-11-22T12:10:00Z' })[0], '2026-11-22T11:59:50.000Z');
    // A retry is sent later: another corrected time, the same key.
    assert.deepEqual(read({ timestamp: '2026-11-22T12:09:50Z', sentAt: '2026-11-22T12:11:00Z' })[1], '2026-11-22T12:09:50.000Z');
    // Without sentAt (an import of history) the timestamp is taken as sent, and the future limit applies to it.
    assert.deepEqual(read({ timestamp: '2025-01-01T00:00:00Z' }), ['2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z']);
    assert.deepEqual(read({ timestamp: '2026-11-22T12:10:00Z' }), ['COLLECT_TIMESTAMP_IN_FUTURE']);
    // With sentAt the limit applies to the corrected time: an event dated ten minutes after the send that carries it.
    assert.deepEqual(read({ timestamp: '2026-11-22T12:10:00Z', sentAt: '2026-11-22T12:00:00Z' }), ['COLLECT_TIMESTAMP_IN_FUTURE']);
    assert.deepEqual(read({ timestamp: 8.6e15, sentAt: -8.6e15 }), ['COLLECT_TIMESTAMP_INVALID']);
  });

  it('refuses unknown types, oversized events and malformed parts', () => {
    const type = parseMessage({ type: 'purchase', anonymousId: 'a' }, undefined, now, 10);
    assert.equal(type.ok ? undefined : type.code, 'COLLECT_MESSAGE_TYPE_UNKNOWN');
    const big = parseMessage({ anonymousId: 'a' }, 'page', now, 40_000);
    assert.equal(big.ok ? undefined : big.code, 'COLLECT_EVENT_TOO_LARGE');
    const props = parseMessage({ anonymousId: 'a', event: 'x', properties: [1, 2] }, 'track', now, 10);
    assert.equal(props.ok ? undefined : props.code, 'COLLECT_MESSAGE_INVALID');
    const alias = parseMessage({ userId: 'u' }, 'alias', now, 10);
    assert.equal(alias.ok ? undefined : alias.code, 'COLLECT_MESSAGE_INVALID');
  });

  it('lists user id, anonymous id, email and phone as identifiers', () => {
    const out = parseMessage({ userId: 'u1', anonymousId: 'a1', traits: { email: 'A@B.co' } }, 'identify', now, 10);
    assert.ok(out.ok);
    assert.deepEqual(identifiersOf(out.message, { email: 'A@B.co', phone: '+31 6 1234 5678' }), [
      { type: 'user_id', value: 'u1' },
      { type: 'anonymous_id', value: 'a1' },
      { type: 'email', value: 'A@B.co' },
      { type: 'phone', value: '+31 6 1234 5678' },
    ]);
  });

  it("takes email and phone from an identify call's traits only: a group's are the company's", () => {
    for (const kind of ['group', 'track', 'page', 'screen'] as const) {
      const out = parseMessage({ anonymousId: 'a1', groupId: 'acme', event: 'x', traits: { email: 'info@acme.co', phone: '+31 20 123 4567' } }, kind, now, 10);
      assert.ok(out.ok, kind);
      assert.deepEqual(identifiersOf(out.message, { email: 'info@acme.co', phone: '+31 20 123 4567' }), [{ type: 'anonymous_id', value: 'a1' }], kind);
    }
  });

  it("puts a screen's top-level category, like a page's, through the plan as its category property", () => {
    for (const kind of ['page', 'screen'] as const) {
      const out = parseMessage({ anonymousId: 'a', name: 'Checkout', category: 'Shop' }, kind, now, 10);
      assert.ok(out.ok);
      assert.deepEqual(planInput(out.message).data.properties, { name: 'Checkout', category: 'Shop' }, kind);
    }
    const track = parseMessage({ anonymousId: 'a', event: 'Viewed', category: 'Shop' }, 'track', now, 10);
    assert.ok(track.ok);
    assert.equal(planInput(track.message).data.properties, undefined, 'a track call has no category field');
  });
});

describe('purposes a message denies (context.consentManagement.deniedConsentIds)', () => {
  // The taxonomy's parent chain: a custom purpose under marketing.advertising, whose key does not start with `marketing.`.
  const parents: Record<string, string | null> = { promo_targeting: 'marketing.advertising', 'marketing.advertising': 'marketing', marketing: null, 'analytics.reporting': 'analytics', analytics: null };
  const uses = { dataUse: (key: string) => (key in parents ? { key, parentKey: parents[key] } : undefined) };
  const denying = (denied: readonly string[]) => {
    const out = parseMessage({ type: 'track', event: 'x', anonymousId: 'a1', context: { consentManagement: { deniedConsentIds: denied } } }, undefined, now, 10);
    assert.ok(out.ok);
    return out.message;
  };

  it('denies a purpose below a denied id by the taxonomy, not only by its name', () => {
    assert.deepEqual(undeniedPurposes(denying(['Marketing']), ['promo_targeting', 'analytics.reporting', 'marketing.advertising'], uses), ['analytics.reporting']);
    assert.deepEqual(undeniedPurposes(denying(['analytics']), ['promo_targeting', 'analytics.reporting'], uses), ['promo_targeting']);
    const none = ['promo_targeting'];
    assert.equal(undeniedPurposes(denying([]), none, uses), none, 'nothing denied: the same array');
  });
});
