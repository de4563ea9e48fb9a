import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { MODEL_KINDS, PROFILING_PURPOSES, type ModelKind } from '../../modules/scoring/index.ts';
import { CandorError } from '../../shared/errors.ts';
import type { RouteAccess } from '../route-access.ts';
import { actorOf } from './actor.ts';
import { decrypts } from './profiles.ts';

const PURPOSE = PROFILING_PURPOSES[0];
const RUN: RouteAccess = { audience: 'admin', roles: ['owner', 'analyst'], purpose: PURPOSE };
const AGGREGATES: RouteAccess = { audience: 'admin', roles: ['owner', 'privacy_officer', 'marketer', 'analyst'], purpose: PURPOSE };
const PERSON: RouteAccess = { ...AGGREGATES, personalData: true };
const FAIRNESS: RouteAccess = { audience: 'admin', roles: ['owner', 'privacy_officer', 'analyst'], purpose: 'fairness_audit' };

const scoresSchema = {
  type: 'object',
  properties: {
    profileId: { type: 'string' },
    profiled: { type: 'boolean' },
    notProfiledReason: { type: ['string', 'null'], description: 'Why the person is not profiled (refused, withdrawn, restricted, no consent record…).' },
    computedAt: { type: ['string', 'null'] },
    scores: { type: 'object', additionalProperties: true },
    reasons: { type: 'object', additionalProperties: { type: 'string' }, description: 'Each score explained in words.' },
    models: { type: 'object', additionalProperties: { type: 'object', properties: { id: { type: 'string' }, version: { type: 'integer' } } } },
    masked: {
      type: 'array',
      items: { type: 'string' },
      description:
        'For staff who may not decrypt, where the plan in force masks the profile order totals: what was masked (`clv.value` and `clv.spend` read null; `reasons.rfm` and `reasons.clv` are written without the amounts). Absent otherwise.',
    },
  },
} as const;

/** Scoring jobs, models, aggregates and per-profile scores with reasons (staff). */
export function registerScoringRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.post<{ Body: { models?: ModelKind[] } | undefined }>(
    '/scoring/run',
    {
      config: { access: RUN },
      schema: {
        tags: ['scoring'],
        summary: 'Fit the models on everyone whose lawful basis covers profiling and score them (RFM, personas, BG/NBD, Gamma–Gamma).',
        body: { type: ['object', 'null'], additionalProperties: false, properties: { models: { type: 'array', uniqueItems: true, items: { type: 'string', enum: [...MODEL_KINDS] } } } },
      },
    },
    async (request) => kernel.scoring.run(actorOf(request), { models: request.body?.models }),
  );

  app.get(
    '/scoring/models',
    { config: { access: AGGREGATES }, schema: { tags: ['scoring'], summary: 'The current models: parameters, version, when and on how many customers they were fitted.' } },
    async () => ({ models: await kernel.scoring.models() }),
  );

  app.get(
    '/scoring/overview',
    { config: { access: AGGREGATES }, schema: { tags: ['scoring'], summary: 'Segment sizes, persona descriptions, churn bands and the lifetime-value distribution (aggregates only).' } },
    async () => kernel.scoring.overview(),
  );

  app.get<{ Querystring: { attribute: string } }>(
    '/scoring/fairness',
    {
      config: { access: FAIRNESS },
      schema: {
        tags: ['scoring'],
        summary: 'Four-fifths audit of every segment, persona and the churn "At risk" band by an audit attribute (a trait declared for fairness_audit); aggregates only, groups under 10 pooled.',
        querystring: { type: 'object', additionalProperties: false, required: ['attribute'], properties: { attribute: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,63}$' } } },
      },
    },
    async (request) => kernel.scoring.fairness(request.query.attribute, actorOf(request)),
  );

  app.get<{ Params: { id: string } }>(
    '/profiles/:id/scores',
    {
      config: { access: PERSON },
      schema: {
        tags: ['scoring'],
        summary: "A person's scores and segments with the reason for each, or why they are not profiled.",
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: '^prf_[a-z2-7]{20}$' } } },
        response: { 200: scoresSchema },
      },
    },
    async (request) => {
      const canonical = await kernel.identity.canonical(request.params.id);
      if (canonical === null) throw new CandorError('IDENTITY_PROFILE_NOT_FOUND', { profileId: request.params.id });
      request.auditSubject = kernel.keyring.pseudonym('subject', canonical);
      const members = await kernel.identity.members(canonical);
      // The money in scores and reasons is masked where the profile's order totals are, for the same readers.
      const amounts = decrypts(request) || !(await kernel.profiles.maskedOrderFigures()).includes('totalOrderValue');
      return kernel.scoring.scoresOf(canonical, members, { amounts });
    },
  );
}

export { scoresSchema };
