import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { STAFF_ROLES, type StaffRole } from '../../modules/access/index.ts';
import { CONFIGURED_BASES, CONSENT_MECHANISMS, type ConfiguredBasis, type NoticePurpose } from '../../modules/consent/index.ts';
import { CandorError } from '../../shared/errors.ts';
import type { RouteAccess } from '../route-access.ts';
import { actorOf } from './actor.ts';
import { LINE, PROSE } from '../text-formats.ts';

const OPERATIONS = 'essential.service.operations';
const PRIVACY_STAFF: StaffRole[] = ['owner', 'privacy_officer'];
const READ_CONFIG: RouteAccess = { audience: 'admin', roles: [...STAFF_ROLES], purpose: OPERATIONS };
const CHANGE_CONFIG: RouteAccess = { audience: 'admin', roles: PRIVACY_STAFF, purpose: OPERATIONS };
const SUBJECT_READ: RouteAccess = { audience: 'admin', roles: PRIVACY_STAFF, purpose: 'essential.legal_obligation', personalData: true };

const KEY = { type: 'string', minLength: 1, maxLength: 200, pattern: '^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$' } as const;
/** A published notice (201 when this request created it, 200 for the content already in force). */
const NOTICE_PUBLISHED = {
  type: 'object',
  required: ['version', 'hash', 'material', 'renewalRequired'],
  properties: {
    version: { type: 'integer' },
    hash: { type: 'string' },
    material: { type: 'boolean' },
    renewalRequired: { type: 'array', items: { type: 'string' }, description: 'Purposes whose earlier consents must be given again.' },
  },
} as const;
const PROFILE_ID = { type: 'string', pattern: '^prf_[a-z2-7]{20}$', description: 'A profile id; a merged-away one reads its canonical profile.' } as const;
const JURISDICTION = { type: 'string', pattern: '^[A-Z]{2}(-[A-Z0-9]{1,3})?$', description: 'ISO 3166-1 alpha-2 or ISO 3166-2 code, e.g. DE or US-CA.' } as const;
const BASES = [...CONFIGURED_BASES];
const LAWFUL_BASES = [...BASES, 'opt_out_notice'];
const STATES = ['given', 'refused', 'withdrawn', 'expired'];

const purpose = {
  type: 'object',
  required: ['key', 'basis', 'saleOrSharing', 'targetedAdvertising', 'explicit', 'optOutJurisdictions', 'description'],
  properties: {
    key: { type: 'string' },
    basis: { type: 'string', enum: BASES },
    saleOrSharing: { type: 'boolean' },
    targetedAdvertising: { type: 'boolean' },
    explicit: { type: 'boolean' },
    optOutJurisdictions: { type: 'array', items: { type: 'string' } },
    description: { type: 'string' },
  },
} as const;

const noticePurpose = {
  type: 'object',
  required: ['purpose', 'categories'],
  properties: { purpose: { type: 'string' }, categories: { type: 'array', items: { type: 'string' } } },
} as const;

const notice = {
  type: 'object',
  required: ['version', 'hash', 'text', 'purposes', 'publishedAt'],
  properties: {
    version: { type: 'integer' },
    hash: { type: 'string', description: 'SHA-256 (hex) of the text and the purposes and categories it describes.' },
    text: { type: 'string' },
    purposes: { type: 'array', items: noticePurpose },
    publishedAt: { type: 'string' },
  },
} as const;

const purposeState = {
  type: 'object',
  properties: {
    state: { type: 'string', enum: [...STATES, 'none'] },
    basis: { type: ['string', 'null'], enum: [...LAWFUL_BASES, null] },
    mechanism: { type: ['string', 'null'] },
    noticeVersion: { type: ['integer', 'null'] },
    at: { type: ['string', 'null'] },
    needsRenewal: { type: 'boolean' },
    allowed: { type: 'boolean' },
    reason: { type: 'string' },
    expiresAt: { type: ['string', 'null'] },
    gpc: { type: 'boolean' },
  },
} as const;

const ledgerEntry = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    subject: { type: 'string', description: "The pseudonym of the profile the entry was recorded for: the person's, or one merged into theirs." },
    purpose: { type: 'string' },
    state: { type: 'string', enum: STATES },
    basis: { type: 'string', enum: LAWFUL_BASES },
    noticeVersion: { type: ['integer', 'null'] },
    noticeHash: { type: ['string', 'null'] },
    mechanism: { type: 'string', enum: [...CONSENT_MECHANISMS] },
    jurisdiction: { type: ['string', 'null'] },
    source: { type: ['string', 'null'] },
    gpc: { type: 'boolean' },
    gpcOverride: { type: 'boolean' },
    receiptId: { type: ['string', 'null'] },
    at: { type: 'string' },
  },
} as const;

interface PurposeBody {
  basis: ConfiguredBasis;
  saleOrSharing: boolean;
  targetedAdvertising: boolean;
  explicit: boolean;
  optOutJurisdictions: string[];
  description: string;
}

/** Purposes, notices and one subject's consent: every staff role reads the configuration, privacy staff change it. */
export function registerConsentRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/consent/purposes',
    {
      config: { access: READ_CONFIG },
      schema: { tags: ['consent'], summary: 'Every purpose with its lawful basis, sale/sharing and advertising flags.', response: { 200: { type: 'array', items: purpose } } },
    },
    async () => kernel.consent.purposes(),
  );

  app.put<{ Params: { key: string }; Body: PurposeBody }>(
    '/consent/purposes/:key',
    {
      config: { access: CHANGE_CONFIG },
      schema: {
        tags: ['consent'],
        summary: 'Add or change a purpose (a data use of the taxonomy) and its lawful basis; audited.',
        params: { type: 'object', required: ['key'], properties: { key: KEY } },
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['basis', 'description'],
          properties: {
            basis: { type: 'string', enum: BASES },
            saleOrSharing: { type: 'boolean', default: false, description: 'Counts as sale or sharing under the CCPA; a GPC signal opts out of it.' },
            targetedAdvertising: { type: 'boolean', default: false, description: 'Targeted advertising; a GPC signal opts out of it.' },
            explicit: { type: 'boolean', default: false, description: 'Needs explicit consent (GDPR Art. 9(2)(a)).' },
            optOutJurisdictions: { type: 'array', maxItems: 100, uniqueItems: true, items: JURISDICTION, default: [], description: 'Where an opt-out notice is a lawful basis.' },
            description: { ...PROSE, minLength: 1, maxLength: 2000 },
          },
        },
        response: { 200: purpose },
      },
    },
    async (request) => kernel.consent.setPurpose({ key: request.params.key, ...request.body }, actorOf(request)),
  );

  app.get(
    '/consent/notices/current',
    {
      config: { access: READ_CONFIG },
      schema: { tags: ['consent'], summary: 'The notice version in force: its text, content hash and the purposes and categories it describes.', response: { 200: notice } },
    },
    async () => kernel.consent.currentNotice(),
  );

  app.post<{ Body: { text: string; purposes: NoticePurpose[] } }>(
    '/consent/notices',
    {
      config: { access: CHANGE_CONFIG },
      schema: {
        tags: ['consent'],
        summary: 'Publish a notice version. Adding a purpose or widening its categories is material: earlier consents for it need renewal.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['text', 'purposes'],
          properties: {
            text: { ...PROSE, minLength: 1, maxLength: 100_000 },
            purposes: {
              type: 'array',
              minItems: 1,
              maxItems: 200,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['purpose', 'categories'],
                properties: {
                  purpose: KEY,
                  categories: { type: 'array', minItems: 1, maxItems: 200, items: KEY },
                },
              },
            },
          },
        },
        response: { 201: NOTICE_PUBLISHED, 200: NOTICE_PUBLISHED },
      },
    },
    async (request, reply) => {
      const { created, ...published } = await kernel.consent.publishNotice(request.body, actorOf(request));
      // The content in force already: no version is created, and the one in force is answered as it was published.
      reply.code(created ? 201 : 200);
      return published;
    },
  );

  app.get<{ Params: { subjectId: string } }>(
    '/subjects/:subjectId/consent',
    {
      config: { access: SUBJECT_READ },
      schema: {
        tags: ['consent'],
        summary: "A subject's current consent state per purpose (of the canonical profile, for a merged-away id) and the full ledger history of every profile of the person; audited as a personal-data read.",
        params: { type: 'object', required: ['subjectId'], properties: { subjectId: PROFILE_ID } },
        response: {
          200: {
            type: 'object',
            required: ['subject', 'purposes', 'history'],
            properties: {
              subject: { type: 'string', description: 'The subject pseudonym, as it appears in the ledger, receipts and audit entries.' },
              purposes: { type: 'object', additionalProperties: purposeState },
              history: { type: 'array', items: ledgerEntry },
            },
          },
        },
      },
    },
    async (request) => {
      // State is kept on the canonical profile: a merged-away id would show the state it had before the merge. The
      // history is the person's: the entries of every profile merged into it too, each naming its own pseudonym.
      const members = await kernel.identity.members(request.params.subjectId);
      const canonical = members[0] ?? null;
      const profileId = canonical ?? request.params.subjectId;
      const subject = kernel.consent.pseudonym(profileId);
      const [purposes, history] = await Promise.all([kernel.consent.state(profileId), kernel.consent.personHistory(members.length > 0 ? members : [profileId])]);
      // A person erased since keeps their ledger (the proof of what they agreed to); an id nobody had is not "no consent".
      if (canonical === null && history.length === 0) throw new CandorError('IDENTITY_PROFILE_NOT_FOUND');
      request.auditSubject = subject;
      return { subject, purposes, history };
    },
  );

  app.get<{ Params: { subjectId: string; receiptId: string } }>(
    '/subjects/:subjectId/consent/receipts/:receiptId',
    {
      config: { access: SUBJECT_READ },
      schema: {
        tags: ['consent'],
        summary: "One of a subject's signed consent receipts (JWS) by id, for any of the person's profiles; audited as a personal-data read.",
        params: {
          type: 'object',
          required: ['subjectId', 'receiptId'],
          properties: { subjectId: PROFILE_ID, receiptId: { ...LINE, minLength: 1, maxLength: 100 } },
        },
        response: {
          200: {
            type: 'object',
            required: ['receiptId', 'receipt', 'subjects', 'mechanism', 'at'],
            properties: {
              receiptId: { type: 'string' },
              receipt: { type: 'string', description: 'The compact JWS, verifiable against /.well-known/jwks.json.' },
              subjects: { type: 'array', items: { type: 'string' }, description: 'The pseudonyms the receipt concerns, its principal first.' },
              mechanism: { type: 'string', enum: [...CONSENT_MECHANISMS] },
              at: { type: 'string' },
            },
          },
        },
      },
    },
    async (request) => {
      const members = await kernel.identity.members(request.params.subjectId);
      const profileId = members[0] ?? request.params.subjectId;
      request.auditSubject = kernel.consent.pseudonym(profileId);
      const found = await kernel.consent.receipt(request.params.receiptId, members.length > 0 ? members : [profileId]);
      return { receiptId: found.receiptId, receipt: found.receipt, subjects: found.subjects, mechanism: found.mechanism, at: found.at };
    },
  );
}
