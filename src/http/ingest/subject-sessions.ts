import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { MAX_SUBJECT_SESSION_SECONDS } from '../../modules/access/index.ts';
import { MAX_ID_LENGTH } from '../../modules/collect/index.ts';
import { CandorError } from '../../shared/errors.ts';
import { refuseUnusableText } from './consent.ts';
import { subjectOf } from './subject.ts';

const id = { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH } as const;

/**
 * POST /v1/subject-sessions: the business's backend, having signed a customer in, asks for a short-lived session
 * with which that customer's browser reaches the privacy-center endpoints about themselves.
 */
export function registerSubjectSessionRoute(app: FastifyInstance, kernel: Kernel): void {
  app.post<{ Body: { userId?: string; anonymousId?: string; ttlSeconds?: number } }>(
    '/v1/subject-sessions',
    {
      config: { access: { audience: 'ingest', purpose: 'essential.service.authentication' } },
      schema: {
        tags: ['subject'],
        summary: 'Issue a customer session (css_…) for the person your backend has signed in; the secret is shown once.',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { userId: id, anonymousId: id, ttlSeconds: { type: 'integer', minimum: 60, maximum: MAX_SUBJECT_SESSION_SECONDS }, writeKey: { type: 'string' } },
        },
        response: { 201: { type: 'object', properties: { token: { type: 'string' }, expiresAt: { type: 'string' } } } },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal?.source) throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: 'write_key' });
      refuseUnusableText(request.body, ['userId', 'anonymousId']);
      const profileId = await subjectOf(kernel, request.body, principal.source);
      const canonical = (await kernel.identity.canonical(profileId)) ?? profileId;
      reply.code(201);
      return kernel.subjectSessions.issue(canonical, kernel.keyring.pseudonym('subject', canonical), { ttlSeconds: request.body.ttlSeconds ?? 900, via: `write_key:${principal.source}` }, { id: principal.tokenId, role: principal.role });
    },
  );
}
