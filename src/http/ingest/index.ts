import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { registerConsentIngestRoute } from './consent.ts';
import { registerSegmentRoutes } from './segment.ts';
import { registerSubjectSessionRoute } from './subject-sessions.ts';

/** Endpoints for sources holding a write key: the Segment tracking API and consent recording. */
export function registerIngestRoutes(app: FastifyInstance, kernel: Kernel): void {
  registerSegmentRoutes(app, kernel);
  registerConsentIngestRoute(app, kernel);
  registerSubjectSessionRoute(app, kernel);
}
