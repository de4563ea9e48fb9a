import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LedgerEntry, PurposeConfig } from './consent.types.ts';
import { DEFAULT_PURPOSES } from './defaults.ts';
import { receiptPayload, type ReceiptInput, type ReceiptItem } from './receipt-payload.ts';

const PRINCIPAL = 'psn_0123456789abcdef';

function item(purposeKey: string, fields: Partial<LedgerEntry> = {}): ReceiptItem {
  const purpose: PurposeConfig | undefined = DEFAULT_PURPOSES.find((p) => p.key === purposeKey);
  const entry: LedgerEntry = {
    id: `led_${purposeKey}`,
    subject: PRINCIPAL,
    purpose: purposeKey,
    state: 'given',
    basis: purpose?.basis ?? 'consent',
    noticeVersion: 1,
    noticeHash: 'hash',
    mechanism: 'banner_accept',
    jurisdiction: null,
    source: null,
    gpc: false,
    gpcOverride: false,
    receiptId: 'rcp_1',
    at: '2026-01-01T00:00:00.000Z',
    ...fields,
  };
  return { entry, purpose, categories: ['user.device.cookie_id'], sensitiveCategories: [] };
}

function payload(overrides: Partial<ReceiptInput> = {}) {
  return receiptPayload({
    receiptId: 'rcp_1',
    at: new Date('2026-01-01T00:00:00Z'),
    principal: PRINCIPAL,
    linkedPrincipals: [],
    controller: 'Acme Shoes B.V.',
    policyUrl: null,
    jurisdiction: null,
    mechanism: 'banner_accept',
    source: null,
    notice: { version: 1, hash: 'hash' },
    expiryMonths: 13,
    items: [item('marketing.communications.email'), item('marketing.advertising.third_party.targeted'), item('analytics.reporting')],
    ...overrides,
  }) as unknown as {
    piiControllers: Record<string, unknown>[];
    services: { purposes: Record<string, unknown>[] }[];
  };
}

const purposes = (p: ReturnType<typeof payload>) => p.services[0]?.purposes ?? [];

describe('consent receipt payload', () => {
  it('gives the controller contact as null when none is configured', () => {
    const [controller] = payload().piiControllers;
    assert.deepEqual(controller, { name: 'Acme Shoes B.V.', piiController: 'Acme Shoes B.V.', contact: null, email: null, onBehalf: false });
  });

  it('puts a contact e-mail address in contact and email', () => {
    const [controller] = payload({ controllerContact: 'privacy@shoes.example' }).piiControllers;
    assert.equal(controller?.contact, 'privacy@shoes.example');
    assert.equal(controller?.email, 'privacy@shoes.example');
  });

  it('puts a contact URL in contact only', () => {
    const [controller] = payload({ controllerContact: 'https://shoes.example/privacy/contact' }).piiControllers;
    assert.equal(controller?.contact, 'https://shoes.example/privacy/contact');
    assert.equal(controller?.email, null);
  });

  it('names the top-level category of each purpose\'s data use in purposeCategory', () => {
    assert.deepEqual(purposes(payload()).map((p) => p.purposeCategory), [['marketing'], ['marketing'], ['analytics']]);
  });

  it('marks every purpose of the change as a primary purpose', () => {
    assert.deepEqual(purposes(payload()).map((p) => p.primaryPurpose), [true, true, true]);
  });

  it('gives thirdPartyName null exactly where the purpose is sale or sharing', () => {
    const [email, ads, analytics] = purposes(payload());
    assert.equal(ads?.thirdPartyDisclosure, true);
    assert.ok(ads !== undefined && 'thirdPartyName' in ads);
    assert.equal(ads.thirdPartyName, null);
    assert.equal(email?.thirdPartyDisclosure, false);
    assert.ok(!('thirdPartyName' in (email ?? {})));
    assert.ok(!('thirdPartyName' in (analytics ?? {})));
  });

  it('gives each entry the termination that is true for its state and basis', () => {
    const terminations = purposes(payload({
      items: [
        item('analytics.reporting', { at: '2026-01-31T10:00:00.000Z' }),
        item('analytics.reporting', { basis: 'opt_out_notice', mechanism: 'notice_opt_out' }),
        item('analytics.reporting', { state: 'refused' }),
        item('third_party_sharing', { state: 'refused', mechanism: 'gpc', gpc: true }),
        item('analytics.reporting', { state: 'withdrawn' }),
        item('essential.fraud_detection', { state: 'refused' }),
        item('analytics.reporting', { state: 'expired', mechanism: 'expiry' }),
      ],
    })).map((p) => p.termination);
    assert.deepEqual(terminations, [
      // 13 calendar months after 31 January 2026: the last day of February 2027.
      'Until withdrawn, or until it expires at 2027-02-28T10:00:00.000Z',
      'Until the person opts out, or the jurisdiction no longer allows an opt-out notice for this purpose; it does not expire',
      'The opt-out stands until the person gives consent; it does not expire',
      'The opt-out stands until the person gives consent with an explicit confirmation over their Global Privacy Control signal; it does not expire',
      'The opt-out stands until the person gives consent; it does not expire',
      'The objection stands until the person withdraws it; it does not expire',
      'Ended: the consent expired; processing needs consent given again',
    ]);
  });

  it('says of each entry whether it is an opt-in the person confirmed over their GPC opt-out', () => {
    const items = purposes(payload({
      items: [
        item('third_party_sharing', { state: 'refused', mechanism: 'gpc', gpc: true }),
        item('third_party_sharing', { mechanism: 'privacy_center', gpcOverride: true }),
        item('analytics.reporting'),
      ],
    }));
    assert.deepEqual(items.map((p) => [p.gpc, p.gpcOverride]), [[true, false], [false, true], [false, false]]);
  });

  it('gives the jurisdiction of the change, and "unspecified" when it named none (Kantara asks for a non-empty string)', () => {
    assert.equal((payload({ jurisdiction: 'US-CA' }) as unknown as { jurisdiction: unknown }).jurisdiction, 'US-CA');
    assert.equal((payload({ jurisdiction: null }) as unknown as { jurisdiction: unknown }).jurisdiction, 'unspecified');
  });

  it('names the person by pseudonym only', () => {
    const p = payload({ controllerContact: 'privacy@shoes.example' });
    assert.deepEqual([...new Set(purposes(p).map((x) => x.piiPrincipalId))], [PRINCIPAL]);
    assert.ok(!JSON.stringify(p).includes('prf_'));
  });
});
