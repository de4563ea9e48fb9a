import type { FastifyInstance } from 'fastify';
import { planWarningOptions, type Kernel } from '../../kernel.ts';
import { MAX_PLAN_FIELDS, MAX_PLAN_VERSION } from '../../modules/catalog/index.ts';
import { STAFF_ROLES, type StaffRole } from '../../modules/access/index.ts';
import type { RouteAccess } from '../route-access.ts';
import { LINE } from '../text-formats.ts';
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
/**
 * Fields (`path`) and events (no `path`: the event's occurrence) the consent gate can never keep, or not for some of their
 * purposes, with the purposes and notice in force (publishing is not refused for them).
 */
const warnings = {
  type: 'array',
  items: { type: 'object', properties: { section: { type: 'string' }, event: { type: 'string' }, path: { type: 'string' }, warning: { type: 'string' } } },
} as const;
const problems = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    problems: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, problem: { type: 'string' } } } },
    warnings,
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
/** The ETag of the plan in force: its version number, quoted. */
const versionTag = (version: number) => `"${version}"`;
/** An If-Match a publish takes: one version's ETag (its number the base of the publish), or `*` (no base). */
const IF_MATCH = /^\s*(?:\*|"([1-9][0-9]{0,9})")\s*$/;
// The plan is checked by the catalog against its own meta-schema, which reports every problem with its path.
const planBody = { type: 'object', description: 'A tracking plan document (see src/modules/catalog/README.md).' } as const;

/** The tracking plan: every staff role can read it and its counts; owners, privacy officers and developers check and publish. */
export function registerCatalogRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/catalog/plan',
    {
      config: { access: READ },
      schema: { tags: ['catalog'], summary: 'The tracking plan in force (the latest version), with its version as ETag ("N"): the base to publish a change on with If-Match.', response: { 200: published } },
    },
    async (_request, reply) => {
      // The latest version, even one another process published a moment ago: its ETag is what a publish's base must be.
      await kernel.catalog.refresh();
      const published = await kernel.catalog.plan();
      reply.header('etag', versionTag(published.version));
      return published;
    },
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

  app.put<{ Body: unknown; Headers: { 'if-match'?: string } }>(
    '/catalog/plan',
    {
      config: { access: EDIT },
      schema: {
        tags: ['catalog'],
        summary:
          'Publish a new version of the tracking plan (201); it is in force at once. `warnings` lists the fields (with `path`) and events (without `path`: the event\'s occurrence) that the consent gate can never keep, or not for some of their purposes, with the purposes and notice in force. The document of the latest version again answers 200 with unchanged; an invalid one 400 CATALOG_PLAN_INVALID with every problem. With If-Match: "N" (the ETag of GET …/plan) only if version N is still the latest, else 409 CATALOG_PLAN_CONFLICT.',
        headers: {
          type: 'object',
          properties: { 'if-match': { type: 'string', pattern: IF_MATCH.source, description: 'The version the document was edited from, as GET …/plan tags it ("N"), or *.' } },
        },
        body: planBody,
        response: {
          200: { type: 'object', properties: { version: { type: 'integer' }, hash: { type: 'string' }, unchanged: { type: 'boolean' }, warnings } },
          201: { type: 'object', properties: { version: { type: 'integer' }, hash: { type: 'string' }, warnings } },
        },
      },
    },
    async (request, reply) => {
      const base = IF_MATCH.exec(request.headers['if-match'] ?? '')?.[1];
      const result = await kernel.catalog.publish(request.body, actorOf(request), { baseVersion: base === undefined ? undefined : Number(base), ...planWarningOptions(kernel) });
      reply.code(result.unchanged ? 200 : 201).header('etag', versionTag(result.version));
      return result;
    },
  );

  app.post<{ Body: unknown }>(
    '/catalog/plan/validate',
    {
      config: { access: EDIT },
      schema: {
        tags: ['catalog'],
        summary: `Check a tracking plan without publishing it: every problem at once (at most ${MAX_PLAN_FIELDS} annotated fields), and the warnings publishing it would answer (fields with \`path\`, events without).`,
        body: planBody,
        response: { 200: problems },
      },
    },
    async (request) => kernel.catalog.validatePlan(request.body, planWarningOptions(kernel)),
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
          properties: { source: { ...LINE, maxLength: 64 }, event: { ...LINE, maxLength: 200 } },
        },
        response: { 200: { type: 'array', items: statsRow } },
      },
    },
    async (request) => kernel.catalog.stats({ source: request.query.source, event: request.query.event }),
  );
}
