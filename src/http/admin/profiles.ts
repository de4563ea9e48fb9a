import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import type { StaffRole } from '../../modules/access/index.ts';
import { isIdentifierType } from '../../modules/identity/index.ts';
import { shownMessageId } from '../../modules/profiles/index.ts';
import { CandorError } from '../../shared/errors.ts';
import type { RouteAccess } from '../route-access.ts';
import { actorOf } from './actor.ts';
import { LINE } from '../text-formats.ts';

// Staff look at a person's profile to serve and support them, not to profile them.
const PURPOSE = 'essential.service.operations.support';
/** Roles that see personal trait values decrypted; every other reader sees them masked. */
const DECRYPTING: readonly StaffRole[] = ['owner', 'privacy_officer'];
const READ: RouteAccess = { audience: 'admin', roles: ['owner', 'privacy_officer', 'marketer', 'analyst'], purpose: PURPOSE, personalData: true };
const UNMERGE: RouteAccess = { audience: 'admin', roles: DECRYPTING, purpose: PURPOSE };

const nullableString = { type: ['string', 'null'] } as const;
const MESSAGE_ID = { ...nullableString, description: 'The messageId of the message, as its sender chose it; `••••` for roles other than owner and privacy_officer (it may hold personal data).' } as const;
const valueState = { type: 'string', enum: ['plain', 'decrypted', 'masked', 'unreadable'] } as const;
const params = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^prf_[a-z2-7]{20}$', description: 'Any profile id; merged profiles resolve to their canonical profile.' } },
} as const;

const identifier = {
  type: 'object',
  properties: {
    type: { type: 'string' },
    valueHash: { type: 'string', description: 'Keyed pseudonym of the value; the value itself is never stored.' },
    profileId: { type: 'string' },
    firstSeenAt: { type: 'string' },
    source: { type: 'string' },
  },
} as const;
const merge = {
  type: 'object',
  properties: {
    mergeId: { type: 'string' },
    from: { type: 'string' },
    into: { type: 'string' },
    rule: { type: 'string' },
    at: { type: 'string' },
    triggerType: { type: 'string' },
    triggerHash: { type: 'string' },
    source: { type: 'string' },
    messageId: MESSAGE_ID,
    undoneAt: nullableString,
  },
} as const;
const trait = {
  type: 'object',
  properties: {
    key: { type: 'string' },
    value: { description: 'The value; `••••` when masked, null when unreadable.' },
    state: valueState,
    category: { type: 'string' },
    personal: { type: 'boolean', description: 'Stored encrypted. A value stored in clear is masked as well where the plan in force declares the trait personal or no longer declares it.' },
    updatedAt: { type: 'string' },
    source: { type: 'string' },
    messageId: MESSAGE_ID,
    profileId: { type: 'string' },
  },
} as const;
const computed = {
  type: 'object',
  properties: {
    firstSeenAt: nullableString,
    lastSeenAt: nullableString,
    eventCount: { type: 'integer' },
    orderCount: { type: 'integer' },
    totalOrderValue: { type: ['number', 'null'] },
    averageOrderValue: { type: ['number', 'null'] },
    currency: nullableString,
    masked: {
      type: 'array',
      items: { type: 'string' },
      description: 'For roles other than owner and privacy_officer: the order figures shown null because the plan in force declares an order field they come from (`total` or `revenue`, `currency` of Order Completed) personal, or no longer declares one an earlier version did.',
    },
  },
} as const;
const change = {
  type: 'object',
  properties: {
    profileId: { type: 'string' },
    key: { type: 'string' },
    changedAt: { type: 'string' },
    value: {},
    valueState,
    previousValue: { description: 'Absent when the trait had no value before.' },
    previousState: { type: ['string', 'null'], enum: ['plain', 'decrypted', 'masked', 'unreadable', null] },
    category: { type: 'string' },
    personal: { type: 'boolean', description: 'Stored encrypted, as in a trait.' },
    source: { type: 'string' },
    messageId: MESSAGE_ID,
  },
} as const;

/** The canonical profile of a requested id, named as the audited subject of this request. */
async function canonicalFor(kernel: Kernel, request: FastifyRequest, id: string): Promise<string> {
  const canonical = await kernel.identity.canonical(id);
  if (canonical === null) throw new CandorError('IDENTITY_PROFILE_NOT_FOUND', { profileId: id });
  request.auditSubject = kernel.keyring.pseudonym('subject', canonical);
  return canonical;
}

/** Whether the request's role reads personal values decrypted (owner, privacy officer). */
export const decrypts = (request: FastifyRequest): boolean => (DECRYPTING as readonly string[]).includes(request.principal?.role ?? '');

/** Profiles for staff: the merged view, trait history and unmerge. Every read is audited with the subject's pseudonym. */
export function registerProfileRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.post<{ Body: { type: string; value: string } }>(
    '/profiles/lookup',
    {
      config: { access: READ },
      schema: {
        tags: ['profiles'],
        summary: 'Find the profile holding an identifier (user id, anonymous id, email, phone, custom:…), compared by its keyed pseudonym.',
        description: 'A POST so that identifiers never appear in URLs (and so in proxy logs). Answers 404 IDENTITY_PROFILE_NOT_FOUND when nobody holds it. Audited either way, never with the identifier: a hit under the profile\'s pseudonym, a miss as outcome `failure` naming nobody.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['type', 'value'],
          properties: { type: { ...LINE, minLength: 1, maxLength: 100 }, value: { ...LINE, minLength: 1, maxLength: 1000 } },
        },
        response: { 200: { type: 'object', properties: { id: { type: 'string', description: 'The canonical profile.' } } } },
      },
    },
    async (request) => {
      // A custom type's name is lower-cased, as ingestion stores it (`custom:CRM` is `custom:crm`).
      const lowered = request.body.type.toLowerCase();
      const type = lowered.startsWith('custom:') ? lowered : request.body.type;
      // An identifier type Candor does not have is a mistake to name, not a person nobody holds.
      if (!isIdentifierType(type)) {
        throw new CandorError('REQUEST_VALIDATION_FAILED', { errors: [{ in: 'body', path: '/type', rule: 'enum', message: 'user_id, anonymous_id, email, phone or custom:<name>' }] });
      }
      const [found] = await kernel.identity.lookupBatch(kernel.storage.raw, [{ identifiers: [{ type, value: request.body.value }], source: 'admin', at: new Date().toISOString() }]);
      if (!found) throw new CandorError('IDENTITY_PROFILE_NOT_FOUND');
      request.auditSubject = kernel.keyring.pseudonym('subject', found);
      return { id: found };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/profiles/:id',
    {
      config: { access: READ },
      schema: {
        tags: ['profiles'],
        summary: 'A profile as one view over its merge members: identifiers (types and pseudonyms), merge provenance, traits and computed traits.',
        description:
          'Personal trait values are decrypted for owner and privacy_officer and masked for other roles: values stored encrypted, and values stored in clear of a trait the plan in force declares personal or no longer declares (only a trait it declares not personal is shown in clear).',
        params,
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string', description: 'The canonical profile.' },
              requestedId: { type: 'string' },
              members: { type: 'array', items: { type: 'string' } },
              decrypted: { type: 'boolean' },
              identifiers: { type: 'array', items: identifier },
              merges: { type: 'array', items: merge },
              traits: { type: 'array', items: trait },
              computed,
            },
          },
        },
      },
    },
    async (request) => {
      const canonical = await canonicalFor(kernel, request, request.params.id);
      const decrypt = decrypts(request);
      const members = await kernel.identity.members(canonical);
      const [identifiers, merges, view] = await Promise.all([
        kernel.identity.identifiersOf(canonical),
        kernel.identity.merges(canonical),
        kernel.profiles.get(members, { decrypt }),
      ]);
      // The merge's messageId is masked as the traits' are (identity knows nothing of readers).
      const shownMerges = merges.map((m) => ({ ...m, messageId: shownMessageId(m.messageId, decrypt) }));
      return { id: canonical, requestedId: request.params.id, members, decrypted: decrypt, identifiers, merges: shownMerges, traits: view.traits, computed: view.computed };
    },
  );

  app.get<{ Params: { id: string }; Querystring: { key?: string; limit?: number; before?: string } }>(
    '/profiles/:id/history',
    {
      config: { access: READ },
      schema: {
        tags: ['profiles'],
        summary: 'Changes of the traits of a profile and its merge members, newest first, with previous values.',
        description: 'Values and previous values are masked for roles other than owner and privacy_officer as in the profile.',
        params,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            key: { ...LINE, minLength: 1, maxLength: 200, description: 'Only this trait.' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            before: { ...LINE, minLength: 1, maxLength: 500, description: 'The `next` of the previous page.' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              decrypted: { type: 'boolean' },
              changes: { type: 'array', items: change },
              next: { ...nullableString, description: 'Pass as `before` for the next page (which may be short or empty); null at the end.' },
            },
          },
        },
      },
    },
    async (request) => {
      const canonical = await canonicalFor(kernel, request, request.params.id);
      const decrypt = decrypts(request);
      const members = await kernel.identity.members(canonical);
      const { changes, next } = await kernel.profiles.traitHistoryPage(members, request.query.key, { decrypt, limit: request.query.limit ?? 100, before: request.query.before });
      return { id: canonical, decrypted: decrypt, changes, next };
    },
  );

  app.post<{ Params: { id: string }; Body: { mergeId: string } }>(
    '/profiles/:id/unmerge',
    {
      config: { access: UNMERGE },
      schema: {
        tags: ['profiles'],
        summary: 'Split a wrong merge back out: the merged-in profile becomes canonical again with its identifiers.',
        description:
          'Audited for both profiles. The two sides are not merged again automatically. When the consent split that follows failed (answered with the error; the unmerge itself is done), sending it again runs the split and answers identifiersMoved 0; once it has run, IDENTITY_MERGE_ALREADY_UNDONE.',
        params,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['mergeId'],
          properties: { mergeId: { type: 'string', pattern: '^mrg_[a-z2-7]{20}$' } },
        },
        response: {
          200: { type: 'object', properties: { restored: { type: 'string' }, identifiersMoved: { type: 'integer' } } },
        },
      },
    },
    async (request) => kernel.identity.unmerge(request.params.id, request.body.mergeId, actorOf(request), UNMERGE.purpose),
  );
}
