import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { MIGRATIONS } from '../../kernel.ts';
import { CandorError } from '../../shared/errors.ts';
import { pendingMigrations } from '../../storage/index.ts';
import type { HttpMetrics } from '../metrics.ts';
import type { RouteAccess } from '../route-access.ts';
import { registerWellKnownRoutes } from './well-known.ts';

const OPERATIONS: RouteAccess = { audience: 'public', purpose: 'essential.service.operations' };
const status = { type: 'object', properties: { status: { type: 'string' } }, required: ['status'] } as const;

/** Health, readiness, metrics and the API description: no credential, no personal data. */
export function registerPublicRoutes(app: FastifyInstance, kernel: Kernel, metrics: HttpMetrics): void {
  app.get('/healthz', { exposeHeadRoute: true, config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'The process is up.', response: { 200: status } } }, async () => ({
    status: 'ok',
  }));

  app.get(
    '/readyz',
    { exposeHeadRoute: true, config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'The database is reachable, fully migrated and not full.', response: { 200: status } } },
    async () => {
      try {
        await kernel.storage.ping();
      } catch (error) {
        throw new CandorError('STORAGE_UNAVAILABLE', undefined, { cause: error });
      }
      const pending = await pendingMigrations(kernel.storage, MIGRATIONS);
      if (pending.length > 0) throw new CandorError('STORAGE_NOT_MIGRATED', { pending });
      // Reads still work, but writes would fail until space is freed and a write goes through again.
      if (kernel.storage.diskFull) throw new CandorError('STORAGE_FULL', { reason: 'the last write failed: the database or its disk is full' });
      // The database answers a ping, but an ingestion write has gone unanswered for longer than its timeout.
      if (kernel.collect.writesStalled) throw new CandorError('STORAGE_UNAVAILABLE', { reason: 'an ingestion write has not completed within the storage timeout' });
      return { status: 'ready' };
    },
  );

  app.get('/metrics', { config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'Prometheus metrics.' } }, async (_request, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return metrics.text();
  });

  registerWellKnownRoutes(app, kernel);

  // Serialized once (~75 KB): routes do not change after start.
  let openapi: string | undefined;
  app.get('/openapi.json', { config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'This API, described in OpenAPI 3.1.' } }, async (_request, reply) => {
    openapi ??= JSON.stringify(app.swagger());
    return reply.type('application/json; charset=utf-8').send(openapi);
  });
}
