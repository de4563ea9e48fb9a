import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { STAFF_ROLES } from '../../modules/access/index.ts';
import { CandorError } from '../../shared/errors.ts';
import { LINE } from '../text-formats.ts';
import { decrypts } from './profiles.ts';

/** Whether YYYY-MM-DD text names a day of the calendar (not 2026-02-30 or 2026-13-45). */
function isCalendarDay(text: string): boolean {
  const at = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(at.getTime()) && at.toISOString().slice(0, 10) === text;
}

/** Ingestion figures (no personal data) and the events stored about one person (audited). */
export function registerCollectRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get<{ Querystring: { source?: string; since?: string } }>(
    '/collect/refusals',
    {
      config: { access: { audience: 'admin', roles: [...STAFF_ROLES], purpose: 'analytics.reporting' } },
      schema: {
        tags: ['ingest'],
        summary: 'Events not stored for lack of a lawful basis, per day, source, event and purpose (counts only).',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { source: { ...LINE, maxLength: 64 }, since: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' } },
        },
        response: {
          200: {
            type: 'array',
            items: { type: 'object', properties: { day: { type: 'string' }, source: { type: 'string' }, event: { type: 'string' }, purpose: { type: 'string' }, count: { type: 'integer' } } },
          },
        },
      },
    },
    async (request) => {
      const { since } = request.query;
      // The pattern lets 2026-13-45 through: a day no calendar has is refused, not read as a string to compare.
      if (since !== undefined && !isCalendarDay(since)) {
        throw new CandorError('REQUEST_VALIDATION_FAILED', { errors: [{ in: 'querystring', path: '/since', rule: 'format', message: 'a calendar day, YYYY-MM-DD' }] });
      }
      return kernel.collect.refusals(request.query);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { limit?: number } }>(
    '/subjects/:id/events',
    {
      config: { access: { audience: 'admin', roles: ['owner', 'privacy_officer', 'marketer', 'analyst'], purpose: 'essential.service.operations.support', personalData: true } },
      schema: {
        tags: ['ingest'],
        summary: 'Events stored about a person (all merged profiles), newest first; personal fields decrypted for owner and privacy officer only.',
        description:
          'For other roles `personal` reads `masked` (null when the event holds nothing personal and nothing was left out), and `data` leaves out the fields stored in clear that the plan in force declares personal or no longer declares (an object or array of objects it declares no field inside goes whole). An event whose occurrence is of a special category or precise location in the plan in force (for an event it no longer declares, in the version it was stored under) reads for them only as something that happened then: `event` `••••`, `purposes` and `data` empty, `personal` `masked`, and `masked` lists `event`, `purposes` and `data` (absent on other events). Their `messageId` reads `••••` (the sender chose it; it may hold personal data).',
        params: { type: 'object', properties: { id: { type: 'string', pattern: '^prf_[a-z2-7]{20}$' } }, required: ['id'] },
        querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } },
      },
    },
    async (request) => {
      const canonical = await kernel.identity.canonical(request.params.id);
      if (!canonical) throw new CandorError('IDENTITY_PROFILE_NOT_FOUND', { id: request.params.id });
      request.auditSubject = kernel.keyring.pseudonym('subject', canonical);
      const decrypt = decrypts(request);
      return kernel.collect.events(await kernel.identity.members(canonical), { decrypt, limit: request.query.limit ?? 100 });
    },
  );
}
