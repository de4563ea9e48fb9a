import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { GPC_LAST_UPDATE } from '../../modules/consent/index.ts';
import type { RouteAccess } from '../route-access.ts';

const OPERATIONS: RouteAccess = { audience: 'public', purpose: 'essential.service.operations' };

const jwk = {
  type: 'object',
  required: ['kty', 'kid', 'alg', 'use'],
  properties: {
    kty: { type: 'string' },
    crv: { type: 'string' },
    x: { type: 'string' },
    kid: { type: 'string' },
    alg: { type: 'string' },
    use: { type: 'string' },
  },
} as const;

/** Well-known documents: the consent receipt verification keys and the Global Privacy Control support resource. */
export function registerWellKnownRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/.well-known/jwks.json',
    {
      // Also answered to HEAD (as every public document): checkers probe with it.
      exposeHeadRoute: true,
      config: { access: OPERATIONS },
      schema: {
        tags: ['consent'],
        summary: 'The public keys consent receipts are signed with (JSON Web Key Set); anyone can verify a receipt with them.',
        response: { 200: { type: 'object', required: ['keys'], properties: { keys: { type: 'array', items: jwk } } } },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return kernel.consent.jwks();
    },
  );

  app.get(
    '/.well-known/gpc.json',
    {
      exposeHeadRoute: true,
      config: { access: OPERATIONS },
      schema: {
        tags: ['consent'],
        summary: 'Global Privacy Control support: this site honours the Sec-GPC signal.',
        response: {
          200: {
            type: 'object',
            required: ['gpc', 'lastUpdate'],
            properties: { gpc: { type: 'boolean' }, lastUpdate: { type: 'string', description: 'YYYY-MM-DD' } },
          },
        },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=86400');
      return { gpc: true, lastUpdate: GPC_LAST_UPDATE };
    },
  );
}
