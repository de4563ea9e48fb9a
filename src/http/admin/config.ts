import type { FastifyInstance } from 'fastify';
import { describeConfig } from '../../config/index.ts';
import type { Kernel } from '../../kernel.ts';

/** The running configuration, secrets masked. */
export function registerConfigRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get(
    '/config',
    {
      config: { access: { audience: 'admin', roles: ['owner'], purpose: 'essential.service.operations' } },
      schema: { tags: ['operations'], summary: 'The running configuration with sensitive values masked.' },
    },
    async () => describeConfig(kernel.config),
  );
}
