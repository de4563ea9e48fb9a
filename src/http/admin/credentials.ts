import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { STAFF_ROLES, TOKEN_ROLES } from '../../modules/access/index.ts';
import type { RouteAccess } from '../route-access.ts';
import { actorOf } from './actor.ts';
import { LINE } from '../text-formats.ts';

const SECURITY = 'essential.service.security';
const OWNER: RouteAccess = { audience: 'admin', roles: ['owner'], purpose: SECURITY };

const credential = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: ['api', 'write_key'] },
    role: { type: 'string' },
    source: { type: ['string', 'null'] },
    label: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
    createdBy: { type: 'string' },
    revokedAt: { type: ['string', 'null'] },
  },
} as const;
const withSecret = { ...credential, properties: { ...credential.properties, secret: { type: 'string', description: 'Shown once; store it now.' } } } as const;
const label = { ...LINE, minLength: 1, maxLength: 100 } as const;

/** API tokens and write keys: list, create (secret shown once), revoke. */
export function registerCredentialRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/me',
    {
      config: { access: { audience: 'admin', roles: [...STAFF_ROLES], purpose: SECURITY } },
      schema: { tags: ['access'], summary: 'The credential making this request.', response: { 200: { type: 'object', properties: { tokenId: { type: 'string' }, role: { type: 'string' } } } } },
    },
    async (request) => ({ tokenId: request.principal?.tokenId, role: request.principal?.role }),
  );

  app.get(
    '/credentials',
    { config: { access: OWNER }, schema: { tags: ['access'], summary: 'Every API token and write key, without secrets.', response: { 200: { type: 'array', items: credential } } } },
    async () => kernel.access.list(),
  );

  app.post<{ Body: { role: string; label?: string } }>(
    '/tokens',
    {
      config: { access: OWNER },
      schema: {
        tags: ['access'],
        summary: 'Create an API token for a staff role.',
        body: { type: 'object', additionalProperties: false, required: ['role'], properties: { role: { type: 'string', enum: [...TOKEN_ROLES] }, label } },
        response: { 201: withSecret },
      },
    },
    async (request, reply) => {
      reply.code(201);
      return kernel.access.createToken(request.body.role, request.body.label ?? null, actorOf(request));
    },
  );

  app.post<{ Body: { source: string; label?: string } }>(
    '/write-keys',
    {
      config: { access: { audience: 'admin', roles: ['owner', 'developer'], purpose: SECURITY } },
      schema: {
        tags: ['access'],
        summary: 'Create a write key for an ingestion source.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['source'],
          properties: { source: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' }, label },
        },
        response: { 201: withSecret },
      },
    },
    async (request, reply) => {
      reply.code(201);
      return kernel.access.createWriteKey(request.body.source, request.body.label ?? null, actorOf(request));
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/credentials/:id',
    {
      config: { access: { audience: 'admin', roles: ['owner', 'developer'], purpose: SECURITY } },
      schema: {
        tags: ['access'],
        summary: 'Revoke an API token or write key (developers: write keys only); it stops working at once.',
        params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f]{16}$' } }, required: ['id'] },
        response: { 200: credential },
      },
    },
    async (request) => {
      const actor = actorOf(request);
      return kernel.access.revoke(request.params.id, actor, actor.role === 'owner' ? undefined : 'write_key');
    },
  );

  app.post(
    '/keys/rotate',
    {
      config: { access: OWNER },
      schema: {
        tags: ['keys'],
        summary: 'Add a master key version and re-wrap every data key with it.',
        response: {
          200: {
            type: 'object',
            properties: {
              version: { type: 'integer' },
              rewrapped: { type: 'integer' },
              // Data keys left on their version because they could not be unwrapped (ids only): `keys prune` keeps it.
              skipped: { type: 'array', items: { type: 'object', properties: { keyId: { type: 'string' }, masterVersion: { type: 'integer' } } } },
            },
          },
        },
      },
    },
    async (request) => kernel.keyring.rotateMasterKey(actorOf(request)),
  );
}
