import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import type { RequestState } from '../../modules/rights/index.ts';
import type { RouteAccess } from '../route-access.ts';
import { actorOf } from './actor.ts';
import { PROSE } from '../text-formats.ts';

// Staff handle data-subject requests to meet a legal obligation; only the roles accountable for privacy may.
const STAFF: RouteAccess = { audience: 'admin', roles: ['owner', 'privacy_officer'], purpose: 'essential.legal_obligation' };
const READ: RouteAccess = { ...STAFF, personalData: true };
const STATES = ['received', 'verifying', 'in_progress', 'completed', 'partially_completed', 'denied'] as const;

const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: '^rr_[0-9a-z]{13}[0-9a-f]{16}$' } } } as const;
const reasonBody = { type: 'object', additionalProperties: false, required: ['reason'], properties: { reason: { ...PROSE, minLength: 1, maxLength: 1000 } } } as const;

/**
 * The staff queue of data-subject requests: due dates, overdue and due-soon lists, approve, deny with a reason,
 * extend with a notice mailed to the subject, retry a failed execution, and the erasure certificate.
 */
export function registerRightsRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get<{ Querystring: { state?: string; due?: 'overdue' | 'due_soon'; soonDays?: number; limit?: number } }>(
    '/rights/requests',
    {
      config: { access: READ },
      schema: {
        tags: ['admin'],
        summary: 'The request queue, soonest due first: open requests by default; `due=overdue` or `due=due_soon` narrows it.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            state: { type: 'string', pattern: `^(${STATES.join('|')})(,(${STATES.join('|')}))*$`, description: 'Comma-separated states; open ones by default.' },
            due: { type: 'string', enum: ['overdue', 'due_soon'] },
            soonDays: { type: 'integer', minimum: 1, maximum: 60, default: 7 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 500 },
          },
        },
      },
    },
    async (request) => ({
      requests: await kernel.rights.queue({ states: request.query.state?.split(',') as RequestState[] | undefined, due: request.query.due, soonDays: request.query.soonDays, limit: request.query.limit }),
    }),
  );

  app.get<{ Params: { id: string } }>(
    '/rights/requests/:id',
    {
      config: { access: READ },
      schema: {
        tags: ['admin'],
        summary: 'One request with every recorded transition; a rectification with the changes it proposes (personal values decrypted: only owner and privacy_officer read requests).',
        params: idParams,
      },
    },
    async (request) => {
      // Only owners and privacy officers read requests, and both may see personal values decrypted (as in profiles).
      const view = await kernel.rights.get(request.params.id, { decrypt: true });
      request.auditSubject = view.subject ?? undefined;
      return view;
    },
  );

  app.post<{ Params: { id: string } }>(
    '/rights/requests/:id/approve',
    { config: { access: STAFF }, schema: { tags: ['admin'], summary: 'Approve a request waiting for staff (rectification) and run it.', params: idParams } },
    async (request) => kernel.rights.approve(request.params.id, actorOf(request)),
  );

  app.post<{ Params: { id: string } }>(
    '/rights/requests/:id/retry',
    { config: { access: STAFF }, schema: { tags: ['admin'], summary: 'Run a failed, interrupted or partially completed request again, or send again the notice of a denial that could not be mailed.', params: idParams } },
    async (request) => kernel.rights.retry(request.params.id, actorOf(request)),
  );

  app.post<{ Params: { id: string }; Body: { reason: string } }>(
    '/rights/requests/:id/deny',
    { config: { access: STAFF }, schema: { tags: ['admin'], summary: 'Deny a request with the reason the subject is told.', params: idParams, body: reasonBody } },
    async (request) => kernel.rights.deny(request.params.id, request.body.reason, actorOf(request)),
  );

  app.post<{ Params: { id: string }; Body: { reason: string } }>(
    '/rights/requests/:id/extend',
    {
      config: { access: STAFF },
      schema: { tags: ['admin'], summary: 'Extend the deadline once (GDPR +2 months, CCPA +45 days), mailing the subject a notice inside the first period.', params: idParams, body: reasonBody },
    },
    async (request) => kernel.rights.extend(request.params.id, request.body.reason, actorOf(request)),
  );

  app.get<{ Params: { id: string } }>(
    '/rights/requests/:id/certificate',
    { config: { access: READ }, schema: { tags: ['admin'], summary: 'The erasure certificate of a request: every store and recipient with its status.', params: idParams } },
    async (request) => {
      const certificate = await kernel.rights.certificate(request.params.id);
      // The certificate names the subject's pseudonym: the read is audited under it.
      request.auditSubject = certificate.subject;
      return certificate;
    },
  );
}
