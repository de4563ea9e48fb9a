import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { CandorError } from '../../shared/errors.ts';
import { scoresSchema } from '../admin/scoring.ts';
import type { RouteAccess } from '../route-access.ts';

const OWN: RouteAccess = { audience: 'subject', purpose: 'essential.legal_obligation', personalData: true };

/** A customer sees their own scores and segments with the reason for each (GDPR Art. 15(1)(h), Art. 22). */
export function registerSubjectScoreRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/v1/me/scores',
    {
      config: { access: OWN },
      schema: { tags: ['subject'], summary: 'My scores and segments, each with its reason in words — or why I am not profiled.', response: { 200: scoresSchema } },
    },
    async (request) => {
      const subject = request.subject;
      if (!subject) throw new CandorError('AUTH_SUBJECT_SESSION_REQUIRED');
      const profileId = (await kernel.identity.canonical(subject.profileId)) ?? subject.profileId;
      request.auditSubject = kernel.keyring.pseudonym('subject', profileId);
      return kernel.scoring.scoresOf(profileId, await kernel.identity.members(profileId));
    },
  );
}
