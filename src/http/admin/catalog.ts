import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { MAX_PLAN_FIELDS, MAX_PLAN_VERSION } from '../../modules/catalog/index.ts';
import { STAFF_ROLES, type StaffRole } from '../../modules/access/index.ts';
import type { RouteAccess } from '../route-access.ts';
import { actorOf } from './actor.ts';

const OPERATIONS = 'essential.service.operations';
const READ: RouteAccess = { audience: 'admin', roles: [...STAFF_ROLES], purpose: OPERATIONS };
const EDITORS: StaffRole[] = ['owner', 'privacy_officer', 'developer'];
// Checking a plan compiles it, which costs about as much as publishing it: only those who may publish may check.
const EDIT: RouteAccess = { audience: 'admin', roles: EDITORS, purpose: OPERATIONS };

const version = {
  type: 'object',
  properties: { version: { type: 'integer' }, hash: { type: 'string' }, publishedAt: { type: 'string' }, publishedBy: { type: 'string' } },
} as const;
const published = { type: 'object', properties: { ...version.properties, plan: { type: 'object', additionalProperties: true } } } as const;
const problems = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    problems: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, problem: { type: 'string' } } } },
  },
} as const;
const counted = (extra: Record<string, object>) => ({ type: 'array', items: { type: 'object', properties: { ...extra, count: { type: 'integer' } } } });
const statsRow = {
  type: 'object',
  properties: {
    source: { type: 'string' },
    kind: { type: 'string' },
    event: { type: 'string' },
    accepted: { type: 'integer' },
    refused: { type: 'object', properties: { CATALOG_EVENT_UNDECLARED: { type: 'integer' }, CATALOG_EVENT_INVALID: { type: 'integer' } } },
    dropped: counted({ path: { type: 'string' } }),
    violations: counted({ path: { type: 'string' }, rule: { type: 'string' } }),
  },
} as const;
// The plan is checked by the catalog against its own meta-schema, which reports every problem with its path.
const planBody = { type: 'object', description: 'A tracking plan document (see src/modules/catalog/README.md).' } as const;

/** The tracking plan: every staff role can read it and its counts; owners, privacy officers and developers check and publish. */
export function registerCatalogRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/catalog/plan',
    {
      config: { access: READ },
      schema: { tags: ['catalog'], summary: 'The tracking plan in force.', response: { 200: published } },
    },
    async () => kernel.catalog.plan(),
  );

  app.get(
    '/catalog/plan/versions',
    {
      config: { access: READ },
      schema: { tags: ['catalog'], summary: 'Every published version of the tracking plan, oldest first.', response: { 200: { type: 'array', items: version } } },
    },
    async () => kernel.catalog.versions(),
  );

  app.get<{ Params: { version: number } }>(
    '/catalog/plan/versions/:version',
    {
      config: { access: READ },
      schema: {
        tags: ['catalog'],
        summary: 'One published version of the tracking plan.',
        params: { type: 'object', properties: { version: { type: 'integer', minimum: 1, maximum: MAX_PLAN_VERSION } }, required: ['version'] },
        response: { 200: published },
      },
    },
    async (request) => kernel.catalog.plan(request.params.version),
  );

  app.put<{ Body: unknown }>(
    '/catalog/plan',
    {
      config: { access: EDIT },
      schema: {
        tags: ['catalog'],
        summary: 'Publish a new version of the tracking plan (201); it is in force at once. The document of the latest version again answers 200 with unchanged; an invalid one 400 CATALOG_PLAN_INVALID with every problem.',
        body: planBody,
        response: {
          200: { type: 'object', properties: { version: { type: 'integer' }, hash: { type: 'string' }, unchanged: { type: 'boolean' } } },
          201: { type: 'object', properties: { version: { type: 'integer' }, hash: { type: 'string' } } },
        },
      },
    },
    async (request, reply) => {
      const result = await kernel.catalog.publish(request.body, actorOf(request));
      reply.code(result.unchanged ? 200 : 201);
      return result;
    },
  );

  app.post<{ Body: unknown }>(
    '/catalog/plan/validate',
    {
      config: { access: EDIT },
      schema: {
        tags: ['catalog'],
        summary: `Check a tracking plan without publishing it: every problem at once (at most ${MAX_PLAN_FIELDS} annotated fields).`,
        body: planBody,
        response: { 200: problems },
      },
    },
    async (request) => kernel.catalog.validatePlan(request.body),
  );

  app.get<{ Querystring: { source?: string; event?: string } }>(
    '/catalog/stats',
    {
      config: { access: READ },
      schema: {
        tags: ['catalog'],
        summary: 'Per source, kind and event: messages accepted, refused by code, undeclared fields dropped and violations by path.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { source: { type: 'string', maxLength: 64 }, event: { type: 'string', maxLength: 200 } },
        },
        response: { 200: { type: 'array', items: statsRow } },
      },
    },
    async (request) => kernel.catalog.stats({ source: request.query.source, event: request.query.event }),
  );
}
