import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import type { RouteAccess } from '../route-access.ts';
import { LINE } from '../text-formats.ts';

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
            after: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            action: { ...LINE, maxLength: 100 },
            subject: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$', description: 'A subject pseudonym (43 characters of base64url): anything else, an e-mail address say, is refused and never written into the log.' },
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

  app.get<{ Querystring: { expectSeq?: number; expectHash?: string } }>(
    '/audit/verify',
    {
      config: { access: { ...ACCOUNTABILITY, personalData: false } },
      schema: {
        tags: ['audit'],
        summary: 'Re-compute the hash chain and name the first entry that was altered, removed or reordered.',
        description: 'With expectSeq and expectHash (a head recorded earlier), a log cut short or rewritten after it is caught too.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          dependentRequired: { expectSeq: ['expectHash'], expectHash: ['expectSeq'] },
          properties: { expectSeq: { type: 'integer', minimum: 1 }, expectHash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
        },
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
    async (request) => {
      const { expectSeq, expectHash } = request.query;
      return kernel.audit.verify(expectSeq !== undefined && expectHash !== undefined ? { seq: expectSeq, hash: expectHash } : undefined);
    },
  );
}
