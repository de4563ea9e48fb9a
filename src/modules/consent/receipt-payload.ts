import type { JWTPayload } from 'jose';
import type { ConsentMechanism, LedgerEntry, PurposeConfig } from './consent.types.ts';
import { addMonths } from './decide.ts';

/** Version string of the Kantara Consent Receipt specification the payload follows. */
export const RECEIPT_VERSION = 'KI-CR-v1.1.0';

/** `jurisdiction` of a receipt for a change that named none (Kantara v1.1 requires a non-empty string). */
export const UNSPECIFIED_JURISDICTION = 'unspecified';

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
  /** Where to ask the controller about privacy: an e-mail address or a URL; absent or null when none is configured. */
  controllerContact?: string | null | undefined;
  policyUrl: string | null;
  /** The change's ISO 3166 code; null when it named none (signed as UNSPECIFIED_JURISDICTION). */
  jurisdiction: string | null;
  mechanism: ConsentMechanism;
  source: string | null;
  notice: { version: number; hash: string } | null;
  /** A given consent stops counting this many calendar months after it was given (named in `termination`). */
  expiryMonths: number;
  items: readonly ReceiptItem[];
}

function consentType(item: ReceiptItem): 'explicit' | 'expressed' | 'opt-out' {
  if (item.entry.basis === 'opt_out_notice' || item.entry.basis === 'legitimate_interests') return 'opt-out';
  return item.purpose?.explicit ? 'explicit' : 'expressed';
}

/**
 * Kantara `termination`: when what the entry records ends, true for its state and basis. A consent ends when it is
 * withdrawn or expires (on the date given); an opt-out notice does not expire; a refusal, withdrawal or objection
 * stands until the person changes it (over a GPC opt-out, only with an explicit confirmation); an expiry has ended it.
 */
function termination(entry: LedgerEntry, expiryMonths: number): string {
  if (entry.state === 'expired') return 'Ended: the consent expired; processing needs consent given again';
  if (entry.state === 'given') {
    if (entry.basis === 'opt_out_notice') {
      return 'Until the person opts out, or the jurisdiction no longer allows an opt-out notice for this purpose; it does not expire';
    }
    if (entry.basis === 'legitimate_interests') return 'Until the person objects';
    return `Until withdrawn, or until it expires at ${new Date(addMonths(Date.parse(entry.at), expiryMonths)).toISOString()}`;
  }
  if (entry.basis === 'legitimate_interests') return 'The objection stands until the person withdraws it; it does not expire';
  if (entry.gpc) return 'The opt-out stands until the person gives consent with an explicit confirmation over their Global Privacy Control signal; it does not expire';
  return 'The opt-out stands until the person gives consent; it does not expire';
}

/** The top-level category of a fideslang data-use key (`marketing` for `marketing.communications.email`). */
function purposeCategory(dataUse: string): string {
  return dataUse.split('.', 1)[0] ?? dataUse;
}

/** Kantara `piiControllers[0]`: the name, and the contact when one is configured (`email` only when it is an address). */
function piiController(name: string, contact: string | null): Record<string, unknown> {
  return {
    name,
    piiController: name,
    contact,
    email: contact !== null && !/^[a-z][a-z0-9+.-]*:/i.test(contact) && contact.includes('@') ? contact : null,
    onBehalf: false,
  };
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
    jurisdiction: input.jurisdiction ?? UNSPECIFIED_JURISDICTION,
    consentTimestamp: Math.floor(input.at.getTime() / 1000),
    collectionMethod: input.mechanism,
    consentReceiptID: input.receiptId,
    language: 'en',
    piiPrincipalId: input.principal,
    ...(input.linkedPrincipals.length > 0 ? { linkedPiiPrincipalIds: [...input.linkedPrincipals] } : {}),
    piiControllers: [piiController(input.controller, input.controllerContact ?? null)],
    policyUrl: input.policyUrl,
    notice: input.notice,
    services: [
      {
        service: input.controller,
        purposes: input.items.map((item) => ({
          purpose: item.entry.purpose,
          purposeDescription: item.purpose?.description ?? null,
          purposeCategory: [purposeCategory(item.entry.purpose)],
          // Every purpose listed is one the change is about: a receipt holds only the entries the change wrote.
          primaryPurpose: true,
          lawfulBasis: item.entry.basis,
          consentType: consentType(item),
          state: item.entry.state,
          collectionMethod: item.entry.mechanism,
          piiPrincipalId: item.entry.subject,
          piiCategory: [...item.categories],
          // As the receipt's own flag, for this purpose: it asks for explicit consent, or a category it covers is sensitive.
          sensitive: item.purpose?.explicit === true || item.sensitiveCategories.length > 0,
          thirdPartyDisclosure: item.purpose?.saleOrSharing === true,
          // Recipients are not known when consent is recorded; the privacy notice (policyUrl) names them.
          ...(item.purpose?.saleOrSharing === true ? { thirdPartyName: null } : {}),
          gpc: item.entry.gpc,
          // An opt-in the person confirmed explicitly over their GPC opt-out (the ledger's gpcOverride).
          gpcOverride: item.entry.gpcOverride,
          noticeVersion: item.entry.noticeVersion,
          entryId: item.entry.id,
          termination: termination(item.entry, input.expiryMonths),
        })),
      },
    ],
    sensitive,
    spiCat,
    source: input.source,
  };
}
