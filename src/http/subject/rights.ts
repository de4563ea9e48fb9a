import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { JURISDICTIONS, REQUEST_TYPES } from '../../modules/rights/index.ts';
import { CandorError } from '../../shared/errors.ts';
import type { RouteAccess } from '../route-access.ts';

// Answering a data-subject request is a legal obligation of the controller.
const PUBLIC: RouteAccess = { audience: 'public', purpose: 'essential.legal_obligation' };
const OWN: RouteAccess = { audience: 'subject', purpose: 'essential.legal_obligation' };

const requestId = { type: 'string', pattern: '^rr_[0-9a-z]{13}[0-9a-f]{16}$' } as const;
const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: requestId } } as const;
const email = { type: 'string', minLength: 3, maxLength: 320 } as const;
const changes = {
  type: 'array',
  minItems: 1,
  maxItems: 50,
  description: 'Rectification only: the traits to correct and their right values.',
  items: { type: 'object', additionalProperties: false, required: ['key', 'value'], properties: { key: { type: 'string', minLength: 1, maxLength: 200 }, value: {} } },
} as const;
const startBody = {
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: { type: { type: 'string', enum: [...REQUEST_TYPES] }, email, jurisdiction: { type: 'string', enum: [...JURISDICTIONS] }, changes },
} as const;

interface StartBody {
  type: string;
  email?: string;
  jurisdiction?: string;
  changes?: { key: string; value: unknown }[];
}

/** The customer behind a subject session. */
function sessionOf(request: { subject: { profileId: string; sessionId: string } | undefined }) {
  const subject = request.subject;
  if (!subject) throw new CandorError('AUTH_SUBJECT_SESSION_REQUIRED');
  return { profileId: subject.profileId, actor: { id: `subject_session:${subject.sessionId}`, role: 'subject' } };
}

/**
 * Data-subject requests from the privacy center: start one with an e-mail address (no session; the answer is the
 * same whether or not the address is known), verify the code (which issues a subject session), download an access
 * archive through an expiring link; and, with a session, start requests, see their status and get a fresh link.
 */
export function registerSubjectRightsRoutes(app: FastifyInstance, kernel: Kernel): void {
  const downloadUrl = (token: string) => `/v1/rights/downloads/${token}`;

  app.post<{ Body: StartBody & { email: string } }>(
    '/v1/rights/requests',
    {
      config: { access: PUBLIC },
      schema: {
        tags: ['subject'],
        summary: 'Start a data-subject request with an e-mail address; a code is sent if we know it (the answer never says).',
        body: { ...startBody, required: ['type', 'email'] },
        response: { 202: { description: 'Accepted: the request is started (whether a code was sent is not said).', type: 'object', additionalProperties: true } },
      },
    },
    async (request, reply) => {
      const answer = await kernel.rights.start({ ...request.body, client: request.ip });
      reply.code(202);
      return answer;
    },
  );

  app.post<{ Params: { id: string }; Body: { code: string; secondIdentifier?: { type: string; value: string } } }>(
    '/v1/rights/requests/:id/verify',
    {
      config: { access: PUBLIC },
      schema: {
        tags: ['subject'],
        summary: 'Verify a request with the 6-digit code (and, for access, portability and rectification, a second identifier); answers a subject session.',
        params: idParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['code'],
          properties: {
            code: { type: 'string', pattern: '^\\d{6}$' },
            secondIdentifier: {
              type: 'object',
              additionalProperties: false,
              required: ['type', 'value'],
              properties: { type: { type: 'string', minLength: 1, maxLength: 80 }, value: { type: 'string', minLength: 1, maxLength: 320 } },
            },
          },
        },
      },
    },
    async (request) => {
      const answer = await kernel.rights.verify(request.params.id, request.body.code, { secondIdentifier: request.body.secondIdentifier });
      return { ...answer, ...(answer.download ? { download: { ...answer.download, url: downloadUrl(answer.download.token) } } : {}) };
    },
  );

  app.get<{ Params: { token: string } }>(
    '/v1/rights/downloads/:token',
    {
      config: { access: PUBLIC },
      schema: {
        tags: ['subject'],
        summary: 'Download the archive of an access or portability request (zip); the link expires after 24 hours.',
        params: { type: 'object', additionalProperties: false, required: ['token'], properties: { token: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' } } },
      },
    },
    async (request, reply) => {
      const { requestId: id, archive } = await kernel.rights.download(request.params.token);
      reply.header('content-type', 'application/zip');
      reply.header('content-disposition', `attachment; filename="candor-${id}.zip"`);
      reply.header('cache-control', 'no-store');
      return Buffer.from(archive);
    },
  );

  app.post<{ Body: StartBody }>(
    '/v1/me/rights/requests',
    {
      config: { access: OWN },
      schema: {
        tags: ['subject'],
        summary: 'Start a request as the signed-in customer; opt-outs and withdrawal run at once, access needs a code sent to an address we know you by.',
        body: startBody,
        response: {
          201: { description: 'A new request.', type: 'object', additionalProperties: true },
          200: { description: 'The same request started a moment ago (`duplicate: true`).', type: 'object', additionalProperties: true },
        },
      },
    },
    async (request, reply) => {
      const { profileId, actor } = sessionOf(request);
      const answer = await kernel.rights.startForSession(profileId, request.body, actor);
      reply.code(answer.duplicate ? 200 : 201);
      return answer;
    },
  );

  app.get(
    '/v1/me/rights/requests',
    { config: { access: { ...OWN, personalData: true } }, schema: { tags: ['subject'], summary: 'My requests with their state and due dates.' } },
    async (request) => {
      const { profileId } = sessionOf(request);
      request.auditSubject = kernel.keyring.pseudonym('subject', (await kernel.identity.canonical(profileId)) ?? profileId);
      return { requests: await kernel.rights.mine(profileId) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/me/rights/requests/:id',
    { config: { access: { ...OWN, personalData: true } }, schema: { tags: ['subject'], summary: 'One of my requests (another person’s answers RIGHTS_REQUEST_NOT_FOUND).', params: idParams } },
    async (request) => {
      const { profileId } = sessionOf(request);
      request.auditSubject = kernel.keyring.pseudonym('subject', (await kernel.identity.canonical(profileId)) ?? profileId);
      return kernel.rights.mineOne(profileId, request.params.id);
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/me/rights/requests/:id/download-link',
    { config: { access: OWN }, schema: { tags: ['subject'], summary: 'A fresh 24-hour download link for my completed access or portability request.', params: idParams } },
    async (request) => {
      const { profileId } = sessionOf(request);
      const link = await kernel.rights.downloadLink(profileId, request.params.id);
      return { ...link, url: downloadUrl(link.token) };
    },
  );
}
