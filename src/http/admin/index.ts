import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { registerAuditRoutes } from './audit.ts';
import { registerCatalogRoutes } from './catalog.ts';
import { registerCollectRoutes } from './collect.ts';
import { registerConfigRoutes } from './config.ts';
import { registerConsentRoutes } from './consent.ts';
import { registerCredentialRoutes } from './credentials.ts';
import { registerProfileRoutes } from './profiles.ts';
import { registerRightsRoutes } from './rights.ts';
import { registerScoringRoutes } from './scoring.ts';
import { registerTaxonomyRoutes } from './taxonomy.ts';

/** Staff endpoints under /v1/admin: each declares the roles allowed and the purpose of the access. */
export function registerAdminRoutes(app: FastifyInstance, kernel: Kernel): void {
  registerCredentialRoutes(app, kernel);
  registerAuditRoutes(app, kernel);
  registerTaxonomyRoutes(app, kernel);
  registerCatalogRoutes(app, kernel);
  registerConsentRoutes(app, kernel);
  registerProfileRoutes(app, kernel);
  registerRightsRoutes(app, kernel);
  registerScoringRoutes(app, kernel);
  registerCollectRoutes(app, kernel);
  registerConfigRoutes(app, kernel);
}
