import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { MAX_SUBJECT_SESSION_SECONDS, SESSION_ISSUER_ROLE } from '../../modules/access/index.ts';
import { CandorError } from '../../shared/errors.ts';
import { ID_SCHEMA, idsAsText, refuseUnusableText } from './consent.ts';
import { resolveSubject } from './subject.ts';

/** The source recorded for identifiers a session request links (the backend's sign-in). */
const SESSION_SOURCE = 'privacy_center';

/**
 * POST /v1/subject-sessions: the business's backend, having signed a customer in, asks for a short-lived session
 * with which that customer's browser reaches the privacy-center endpoints about themselves.
 */
export function registerSubjectSessionRoute(app: FastifyInstance, kernel: Kernel): void {
  app.post<{ Body: { userId?: string | number; anonymousId?: string | number; ttlSeconds?: number } }>(
    '/v1/subject-sessions',
    {
      // A secret the backend keeps (an API token with the session_issuer role), never a write key: browsers carry
      // those, so anyone could open a session as any customer with one.
      config: { access: { audience: 'admin', roles: [SESSION_ISSUER_ROLE, 'owner'], purpose: 'essential.service.authentication' } },
      schema: {
        tags: ['subject'],
        summary: 'Issue a customer session (css_…) for the person your backend has signed in; the secret is shown once.',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { userId: ID_SCHEMA, anonymousId: ID_SCHEMA, ttlSeconds: { type: 'integer', minimum: 60, maximum: MAX_SUBJECT_SESSION_SECONDS } },
        },
        response: { 201: { type: 'object', properties: { token: { type: 'string' }, expiresAt: { type: 'string' } } } },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new CandorError('AUTH_CREDENTIAL_MISSING');
      // Whole-number ids name the person a message's or a consent's `"userId": 777` names.
      const body = idsAsText(request.body);
      refuseUnusableText(body, ['userId', 'anonymousId']);
      // Tied to the profile holding the id signed in, not to the person it is merged into: each request reaches that
      // profile's person as it is then, so after an unmerge the session reaches its own side only.
      const { holder } = await resolveSubject(kernel, body, SESSION_SOURCE);
      reply.code(201);
      return kernel.subjectSessions.issue(holder, kernel.keyring.pseudonym('subject', holder), { ttlSeconds: body.ttlSeconds ?? 900, via: `token:${principal.tokenId}` }, { id: principal.tokenId, role: principal.role });
    },
  );
}
