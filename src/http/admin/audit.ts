import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import type { RouteAccess } from '../route-access.ts';

const ACCOUNTABILITY: RouteAccess = { audience: 'admin', roles: ['owner', 'privacy_officer'], purpose: 'essential.legal_obligation', personalData: true };

const entry = {
  type: 'object',
  properties: {
    seq: { type: 'integer' },
    at: { type: 'string' },
    actor: { type: 'string' },
    role: { type: 'string' },
    action: { type: 'string' },
    purpose: { type: 'string' },
    subject: { type: ['string', 'null'] },
    resource: { type: ['string', 'null'] },
    outcome: { type: 'string' },
    details: { type: ['string', 'null'] },
    prevHash: { type: 'string' },
    hash: { type: 'string' },
  },
} as const;

/** Reading and verifying the audit log (itself an audited read: entries carry subject pseudonyms). */
export function registerAuditRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get<{ Querystring: { after?: number; limit?: number; action?: string; subject?: string } }>(
    '/audit',
    {
      config: { access: ACCOUNTABILITY },
      schema: {
        tags: ['audit'],
        summary: 'Audit entries in order, after a sequence number.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            after: { type: 'integer', minimum: 0, default: 0 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            action: { type: 'string', maxLength: 100 },
            subject: { type: 'string', maxLength: 100, description: 'A subject pseudonym.' },
          },
        },
        response: { 200: { type: 'array', items: entry } },
      },
    },
    async (request) => {
      const { after, limit, action, subject } = request.query;
      request.auditSubject = subject;
      return kernel.audit.list({ afterSeq: after, limit: limit ?? 100, action, subject });
    },
  );

  app.get(
    '/audit/verify',
    {
      config: { access: { ...ACCOUNTABILITY, personalData: false } },
      schema: {
        tags: ['audit'],
        summary: 'Re-compute the hash chain and name the first entry that was altered, removed or reordered.',
        response: {
          200: {
            type: 'object',
            properties: {
              ok: { type: 'boolean' },
              entries: { type: 'integer' },
              head: { type: 'object', properties: { seq: { type: 'integer' }, hash: { type: 'string' } } },
              firstBad: { type: 'object', properties: { seq: { type: 'integer' }, problem: { type: 'string' } } },
            },
          },
        },
      },
    },
    async () => kernel.audit.verify(),
  );
}
