import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import type { CALLER_MECHANISMS } from '../../modules/consent/index.ts';
import { CandorError } from '../../shared/errors.ts';
import type { RouteAccess } from '../route-access.ts';
import { LINE } from '../text-formats.ts';
import { registerSubjectRightsRoutes } from './rights.ts';
import { registerSubjectScoreRoutes } from './scores.ts';

const OWN_CONSENT: RouteAccess = { audience: 'subject', purpose: 'essential.legal_obligation' };

/** The customer behind a subject session: the canonical profile, and an actor for the audit log. */
async function me(kernel: Kernel, request: { subject: { profileId: string; sessionId: string } | undefined }) {
  const subject = request.subject;
  if (!subject) throw new CandorError('AUTH_SUBJECT_SESSION_REQUIRED');
  const profileId = (await kernel.identity.canonical(subject.profileId)) ?? subject.profileId;
  // The session's own profile: should an unmerge split it off the person meanwhile, a change made now follows it.
  return { profileId, holder: subject.profileId, actor: { id: `subject_session:${subject.sessionId}`, role: 'subject' } };
}

/**
 * Endpoints a customer uses about themselves (the privacy center), with a subject session: see their consent
 * state, the notice and the history with receipts (each fetchable by id); give, refuse or withdraw consent; withdraw everything at once.
 */
export function registerSubjectRoutes(app: FastifyInstance, kernel: Kernel): void {
  // The privacy center runs on the business's own site; its requests carry the session as a bearer token, no cookies.
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('access-control-allow-origin', '*');
    return payload;
  });
  app.get(
    '/v1/me/consent',
    {
      config: { access: { ...OWN_CONSENT, personalData: true } },
      schema: { tags: ['subject'], summary: 'My consent: the current notice, my choice per purpose, and every change with its receipt id.' },
    },
    async (request) => {
      const { profileId } = await me(kernel, request);
      request.auditSubject = kernel.consent.pseudonym(profileId);
      const notice = kernel.consent.currentNotice();
      // The person's profiles: entries made on a profile merged into this one (a consent before sign-in) are theirs too.
      const members = await kernel.identity.members(profileId);
      const [state, history] = await Promise.all([kernel.consent.state(profileId), kernel.consent.personHistory(members.length > 0 ? members : [profileId])]);
      return {
        notice: { version: notice.version, hash: notice.hash, text: notice.text, purposes: notice.purposes },
        // state() gives every purpose its basis (on record, else configured); one configured since it ran has none yet.
        purposes: kernel.consent.purposes().map((p) => ({ key: p.key, description: p.description, explicit: p.explicit, ...state[p.key], basis: state[p.key]?.basis ?? p.basis })),
        history: history.map((e) => ({ purpose: e.purpose, state: e.state, basis: e.basis, mechanism: e.mechanism, noticeVersion: e.noticeVersion, at: e.at, receiptId: e.receiptId })),
      };
    },
  );

  app.get<{ Params: { receiptId: string } }>(
    '/v1/me/consent/receipts/:receiptId',
    {
      config: { access: { ...OWN_CONSENT, personalData: true } },
      schema: {
        tags: ['subject'],
        summary: 'One of my consent receipts (a signed JWS), by the id my consent history lists; only receipts about me.',
        params: { type: 'object', required: ['receiptId'], properties: { receiptId: { ...LINE, minLength: 1, maxLength: 100 } } },
      },
    },
    async (request) => {
      const { profileId } = await me(kernel, request);
      request.auditSubject = kernel.consent.pseudonym(profileId);
      // The person's profiles: a receipt written on a profile merged into this one (a GPC signal before sign-in) is theirs too.
      const members = await kernel.identity.members(profileId);
      const found = await kernel.consent.receipt(request.params.receiptId, members.length > 0 ? members : [profileId]);
      return { receiptId: found.receiptId, receipt: found.receipt, mechanism: found.mechanism, at: found.at };
    },
  );

  app.post<{ Body: { purposes: Record<string, 'given' | 'refused' | 'withdrawn'>; noticeVersion?: number; jurisdiction?: string; confirmOverGpc?: boolean } }>(
    '/v1/me/consent',
    {
      config: { access: OWN_CONSENT },
      schema: {
        tags: ['subject'],
        summary: 'Give, refuse or withdraw consent for purposes; answers with a signed receipt.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['purposes'],
          properties: {
            purposes: { type: 'object', minProperties: 1, maxProperties: 100, additionalProperties: { type: 'string', enum: ['given', 'refused', 'withdrawn'] } },
            noticeVersion: { type: 'integer', minimum: 1 },
            jurisdiction: { type: 'string', pattern: '^[A-Z]{2}(-[A-Z0-9]{1,3})?$' },
            confirmOverGpc: { type: 'boolean' },
          },
        },
      },
    },
    async (request) => {
      const { profileId, holder, actor } = await me(kernel, request);
      const changes = Object.entries(request.body.purposes).map(([purpose, state]) => ({ purpose, state }));
      const mechanism: (typeof CALLER_MECHANISMS)[number] = 'privacy_center';
      const result = await kernel.consent.record(
        profileId,
        changes,
        { mechanism, noticeVersion: request.body.noticeVersion, jurisdiction: request.body.jurisdiction, gpc: request.headers['sec-gpc'] === '1', confirmOverGpc: request.body.confirmOverGpc, holder },
        actor,
      );
      return { receipt: result.receipt, receiptId: result.receiptId, gpcHonoured: result.gpcHonoured, rejected: result.rejected, recorded: result.entries.map((e) => ({ purpose: e.purpose, state: e.state, basis: e.basis, at: e.at })) };
    },
  );

  app.post(
    '/v1/me/consent/withdraw-all',
    { config: { access: OWN_CONSENT }, schema: { tags: ['subject'], summary: 'Withdraw every consent in one call, as easily as it was given.' } },
    async (request) => {
      const { profileId, holder, actor } = await me(kernel, request);
      const result = await kernel.consent.withdrawAll(profileId, { mechanism: 'privacy_center', gpc: request.headers['sec-gpc'] === '1', holder }, actor);
      return { receipt: result.receipt, receiptId: result.receiptId, gpcHonoured: result.gpcHonoured, recorded: result.entries.map((e) => ({ purpose: e.purpose, state: e.state, basis: e.basis, at: e.at })) };
    },
  );

  registerSubjectRightsRoutes(app, kernel);
  registerSubjectScoreRoutes(app, kernel);

  app.delete(
    '/v1/me/session',
    {
      config: { access: { audience: 'subject', purpose: 'essential.service.authentication' } },
      schema: { tags: ['subject'], summary: 'Sign out: end this session.', response: { 204: { description: 'Signed out; no body.', type: 'null' } } },
    },
    async (request, reply) => {
      if (request.subject) await kernel.subjectSessions.revoke(request.subject.sessionId);
      reply.code(204);
      return '';
    },
  );
}
