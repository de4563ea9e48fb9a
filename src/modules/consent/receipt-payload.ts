import type { JWTPayload } from 'jose';
import type { ConsentMechanism, LedgerEntry, PurposeConfig } from './consent.types.ts';

/** Version string of the Kantara Consent Receipt specification the payload follows. */
export const RECEIPT_VERSION = 'KI-CR-v1.1.0';

export interface ReceiptItem {
  entry: LedgerEntry;
  purpose: PurposeConfig | undefined;
  /** Data categories the entry's notice names for the purpose. */
  categories: readonly string[];
  /** Those of them that are special categories or sensitive personal information. */
  sensitiveCategories: readonly string[];
}

export interface ReceiptInput {
  receiptId: string;
  at: Date;
  /** Pseudonym of the subject the receipt is for; never a plain identifier. */
  principal: string;
  /** Pseudonyms of linked profiles the same change applied to (a GPC signal across a device's profiles). */
  linkedPrincipals: readonly string[];
  controller: string;
  policyUrl: string | null;
  jurisdiction: string | null;
  mechanism: ConsentMechanism;
  source: string | null;
  notice: { version: number; hash: string } | null;
  items: readonly ReceiptItem[];
}

function consentType(item: ReceiptItem): 'explicit' | 'expressed' | 'opt-out' {
  if (item.entry.basis === 'opt_out_notice' || item.entry.basis === 'legitimate_interests') return 'opt-out';
  return item.purpose?.explicit ? 'explicit' : 'expressed';
}

/**
 * The receipt payload, shaped after the Kantara Consent Receipt v1.1 and the ISO/IEC TS 27560 record: who
 * (pseudonym), which controller, under which notice, and per purpose the lawful basis, consent type, state and data
 * categories. `jti`, `iat` and `sub` are added when it is signed.
 */
export function receiptPayload(input: ReceiptInput): JWTPayload {
  const sensitive = input.items.some((i) => i.purpose?.explicit === true || i.sensitiveCategories.length > 0);
  const spiCat = [...new Set(input.items.flatMap((i) => i.sensitiveCategories))].sort();
  return {
    version: RECEIPT_VERSION,
    jurisdiction: input.jurisdiction,
    consentTimestamp: Math.floor(input.at.getTime() / 1000),
    collectionMethod: input.mechanism,
    consentReceiptID: input.receiptId,
    language: 'en',
    piiPrincipalId: input.principal,
    ...(input.linkedPrincipals.length > 0 ? { linkedPiiPrincipalIds: [...input.linkedPrincipals] } : {}),
    piiControllers: [{ name: input.controller, piiController: input.controller }],
    policyUrl: input.policyUrl,
    notice: input.notice,
    services: [
      {
        service: input.controller,
        purposes: input.items.map((item) => ({
          purpose: item.entry.purpose,
          purposeDescription: item.purpose?.description ?? null,
          lawfulBasis: item.entry.basis,
          consentType: consentType(item),
          state: item.entry.state,
          collectionMethod: item.entry.mechanism,
          piiPrincipalId: item.entry.subject,
          piiCategory: [...item.categories],
          sensitive: item.purpose?.explicit === true,
          thirdPartyDisclosure: item.purpose?.saleOrSharing === true,
          gpc: item.entry.gpc,
          noticeVersion: item.entry.noticeVersion,
          entryId: item.entry.id,
          termination: 'Until withdrawn, or when it expires',
        })),
      },
    ],
    sensitive,
    spiCat,
    source: input.source,
  };
}
