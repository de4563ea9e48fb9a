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
  app.get('/healthz', { config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'The process is up.', response: { 200: status } } }, async () => ({
    status: 'ok',
  }));

  app.get(
    '/readyz',
    { config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'The database is reachable and fully migrated.', response: { 200: status } } },
    async () => {
      try {
        await kernel.storage.ping();
      } catch (error) {
        throw new CandorError('STORAGE_UNAVAILABLE', undefined, { cause: error });
      }
      const pending = await pendingMigrations(kernel.storage, MIGRATIONS);
      if (pending.length > 0) throw new CandorError('STORAGE_NOT_MIGRATED', { pending });
      return { status: 'ready' };
    },
  );

  app.get('/metrics', { config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'Prometheus metrics.' } }, async (_request, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return metrics.text();
  });

  registerWellKnownRoutes(app, kernel);

  app.get('/openapi.json', { config: { access: OPERATIONS }, schema: { tags: ['operations'], summary: 'This API, described in OpenAPI 3.1.' } }, async () =>
    app.swagger(),
  );
}
