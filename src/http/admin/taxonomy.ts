import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { STAFF_ROLES, type StaffRole } from '../../modules/access/index.ts';
import { EXTENSIBLE_KINDS, TAXONOMY_KINDS, type CustomEntryInput } from '../../modules/taxonomy/index.ts';
import { actorOf } from './actor.ts';
import { LINE, PROSE } from '../text-formats.ts';

const OPERATIONS = 'essential.service.operations';
const PRIVACY_STAFF: StaffRole[] = ['owner', 'privacy_officer'];

/** The taxonomy: every staff role can read it, privacy staff can extend it. */
export function registerTaxonomyRoutes(app: FastifyInstance, kernel: Kernel): void {
  app.get<{ Params: { kind: string } }>(
    '/taxonomy/:kind',
    {
      config: { access: { audience: 'admin', roles: [...STAFF_ROLES], purpose: OPERATIONS } },
      schema: {
        tags: ['taxonomy'],
        summary: 'One list of the taxonomy: built-in entries, then custom ones by key in code point order.',
        params: { type: 'object', properties: { kind: { type: 'string', enum: [...TAXONOMY_KINDS] } }, required: ['kind'] },
      },
    },
    async (request) => kernel.taxonomy.list(request.params.kind),
  );

  app.post<{ Params: { kind: string }; Body: CustomEntryInput }>(
    '/taxonomy/:kind',
    {
      config: { access: { audience: 'admin', roles: PRIVACY_STAFF, purpose: OPERATIONS } },
      schema: {
        tags: ['taxonomy'],
        summary: 'Add a custom data category, data use or data subject for this deployment.',
        params: { type: 'object', properties: { kind: { type: 'string', enum: [...EXTENSIBLE_KINDS] } }, required: ['kind'] },
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['key', 'name', 'description'],
          properties: {
            key: { ...LINE, minLength: 1, maxLength: 200 },
            name: { ...LINE, minLength: 1, maxLength: 200 },
            description: { ...PROSE, minLength: 1, maxLength: 2000 },
            parentKey: { ...LINE, type: ['string', 'null'], maxLength: 200 },
            specialCategory: {
              type: ['string', 'null'],
              enum: [null, 'racial_or_ethnic_origin', 'political_opinions', 'religious_or_philosophical_beliefs', 'trade_union_membership', 'genetic', 'biometric', 'health', 'sex_life_or_sexual_orientation', 'criminal_convictions'],
            },
            protectedAttribute: { type: 'boolean' },
            sensitivePersonalInformation: { type: 'boolean' },
          },
        },
      },
    },
    async (request, reply) => {
      reply.code(201);
      return kernel.taxonomy.addCustom(request.params.kind, request.body, actorOf(request));
    },
  );
}
