import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import { MAX_ID_LENGTH } from '../../modules/collect/index.ts';
import { CALLER_MECHANISMS } from '../../modules/consent/index.ts';
import { unusableText } from '../../shared/text.ts';
import { CandorError } from '../../shared/errors.ts';
import { knownProfilesOf, recordGpcForDevice, resolveSubject } from './subject.ts';

interface ConsentBody {
  userId?: string | number;
  anonymousId?: string | number;
  purposes?: Record<string, 'given' | 'refused' | 'withdrawn'>;
  withdrawAll?: boolean;
  mechanism: (typeof CALLER_MECHANISMS)[number];
  noticeVersion?: number;
  jurisdiction?: string;
  source?: string;
  confirmOverGpc?: boolean;
  gpc?: boolean;
}

/**
 * A userId or anonymousId as ingestion takes it: text, or a whole number JSON carries exactly (up to 2^53), read as
 * text. The length limits apply to text, the bounds to numbers.
 */
export const ID_SCHEMA = { type: ['string', 'integer'], minLength: 1, maxLength: MAX_ID_LENGTH, minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER } as const;

/** Where the change was made: an http(s) URL (recorded without query, fragment, credentials) or a property token. */
const SOURCE = {
  type: 'string',
  maxLength: 2000,
  description: 'An http(s) URL, recorded as its origin and path, or a property token (letters, digits and . _ : / -, at most 200); anything else is refused with CONSENT_CHANGE_INVALID, reason source.',
} as const;

/** Turns whole-number ids of a validated body into their text, as ingestion reads a message's ids. */
export function idsAsText<T extends { userId?: string | number | undefined; anonymousId?: string | number | undefined }>(body: T): T & { userId?: string; anonymousId?: string } {
  if (typeof body.userId === 'number') body.userId = String(body.userId);
  if (typeof body.anonymousId === 'number') body.anonymousId = String(body.anonymousId);
  return body as T & { userId?: string; anonymousId?: string };
}

/**
 * Refuses (REQUEST_VALIDATION_FAILED) an id that ingestion would refuse — longer than MAX_ID_LENGTH UTF-16 units, not
 * well-formed Unicode, or with a control character — and stored free text that cannot be kept as given, before
 * anyone is created for the person: a consent must name the person events name.
 */
export function refuseUnusableText(body: Readonly<Record<string, unknown>>, ids: readonly string[], texts: readonly string[] = []): void {
  const errors: { in: 'body'; path: string; rule: string; message: string }[] = [];
  for (const field of [...ids, ...texts]) {
    const value = body[field];
    if (typeof value !== 'string') continue;
    if (ids.includes(field) && value.length > MAX_ID_LENGTH) errors.push({ in: 'body', path: `/${field}`, rule: 'maxLength', message: `must be at most ${MAX_ID_LENGTH} characters` });
    else if (unusableText(value)) errors.push({ in: 'body', path: `/${field}`, rule: 'format', message: 'must be well-formed Unicode without control characters' });
  }
  if (errors.length > 0) throw new CandorError('REQUEST_VALIDATION_FAILED', { errors });
}

/**
 * POST /v1/consent: a consent banner, app or server records a person's choices (or withdraws all of them in one
 * call) and gets a signed receipt back. A `Sec-GPC: 1` header is recorded as an opt-out of sale/sharing and
 * targeted advertising first, and the answer says it was honoured; a request whose choices are refused still records
 * it for the known people its ids name, and the refusal says so.
 */
export function registerConsentIngestRoute(app: FastifyInstance, kernel: Kernel): void {
  app.post<{ Body: ConsentBody }>(
    '/v1/consent',
    {
      config: { access: { audience: 'ingest', purpose: 'essential.legal_obligation' } },
      schema: {
        tags: ['consent'],
        summary: "Record a person's consent choices; answers with a signed receipt (JWS).",
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['mechanism'],
          properties: {
            userId: ID_SCHEMA,
            anonymousId: ID_SCHEMA,
            purposes: { type: 'object', additionalProperties: { type: 'string', enum: ['given', 'refused', 'withdrawn'] }, maxProperties: 100 },
            withdrawAll: { type: 'boolean' },
            mechanism: { type: 'string', enum: [...CALLER_MECHANISMS] },
            noticeVersion: { type: 'integer', minimum: 1 },
            jurisdiction: { type: 'string', pattern: '^[A-Z]{2}(-[A-Z0-9]{1,3})?$' },
            source: SOURCE,
            confirmOverGpc: { type: 'boolean' },
            // A GPC signal sent by an SDK or a server relaying a browser's Sec-GPC: 1, as the header counts.
            gpc: { type: 'boolean' },
            writeKey: { type: 'string' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              receipt: { type: 'string', description: 'Compact JWS; verify with /.well-known/jwks.json' },
              receiptId: { type: 'string' },
              gpcHonoured: { type: 'boolean' },
              recorded: { type: 'array', items: { type: 'object', properties: { purpose: { type: 'string' }, state: { type: 'string' }, basis: { type: 'string' }, at: { type: 'string' } } } },
              rejected: { type: 'array', items: { type: 'object', properties: { purpose: { type: 'string' }, code: { type: 'string' } } } },
            },
          },
        },
      },
    },
    async (request) => {
      const body = idsAsText(request.body);
      const principal = request.principal;
      if (!principal?.source) throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: 'write_key' });
      refuseUnusableText(body as unknown as Record<string, unknown>, ['userId', 'anonymousId'], ['source']);
      const { consent } = kernel;
      const actor = { id: principal.tokenId, role: principal.role };
      const meta = {
        mechanism: body.mechanism,
        noticeVersion: body.noticeVersion,
        jurisdiction: body.jurisdiction,
        source: body.source,
        gpc: request.headers['sec-gpc'] === '1' || body.gpc === true,
        confirmOverGpc: body.confirmOverGpc,
      };
      const changes = Object.entries(body.purposes ?? {}).map(([purpose, state]) => ({ purpose, state }));
      try {
        // Free text in `source` would be kept for good: refused before anything is written (a GPC signal is recorded without it).
        consent.checkSource(body.source);
        if (!body.withdrawAll && changes.length === 0) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'no_changes' });
        // Withdrawing everything and choosing purposes in one call would leave one of the two unsaid.
        if (body.withdrawAll && changes.length > 0) throw new CandorError('CONSENT_CHANGE_INVALID', { reason: 'withdraw_all_with_purposes' });
        // Refuse what can be refused before any profile or identifier is created for the person: a request none of
        // whose changes can be recorded. A request with some is recorded, and answers the others in `rejected`.
        // A version another process published a moment ago is read now (a withdrawal under it is never refused).
        if (body.noticeVersion !== undefined) await consent.checkNotice(body.noticeVersion);
        if (changes.length > 0) await consent.checkChanges(changes, { noticeVersion: body.noticeVersion });
      } catch (error) {
        // The signal is an opt-out whatever else the request asks: recorded for the people Candor knows by its ids.
        throw meta.gpc ? await consent.refusedWithGpc(error, await knownProfilesOf(kernel, body, principal.source), meta, actor) : error;
      }
      const { profileId, holder } = await resolveSubject(kernel, body, principal.source);
      // The signal covers the device: first the other profiles its ids belong to, whatever the choices below answer.
      if (meta.gpc) await recordGpcForDevice(kernel, profileId, body, principal.source, { source: body.source, jurisdiction: body.jurisdiction }, actor);
      // The device's own profile (holder): should an unmerge split it off the person meanwhile, the change follows it.
      const written = { ...meta, holder };
      const result = body.withdrawAll ? await consent.withdrawAll(profileId, written, actor) : await consent.record(profileId, changes, written, actor);
      return {
        receipt: result.receipt,
        receiptId: result.receiptId,
        gpcHonoured: result.gpcHonoured,
        recorded: result.entries.map((e) => ({ purpose: e.purpose, state: e.state, basis: e.basis, at: e.at })),
        rejected: 'rejected' in result ? result.rejected : [],
      };
    },
  );

  app.post<{ Body: { userId?: string | number; anonymousId?: string | number; purpose: string; jurisdiction: string; noticeVersion: number; source?: string; gpc?: boolean } }>(
    '/v1/consent/opt-out-notice',
    {
      config: { access: { audience: 'ingest', purpose: 'essential.legal_obligation' } },
      schema: {
        tags: ['consent'],
        summary: 'Record that an opt-out notice was shown for a purpose in a jurisdiction that allows that basis (never silent).',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['purpose', 'jurisdiction', 'noticeVersion'],
          properties: {
            userId: ID_SCHEMA,
            anonymousId: ID_SCHEMA,
            purpose: { type: 'string', minLength: 1, maxLength: 200 },
            jurisdiction: { type: 'string', pattern: '^[A-Z]{2}(-[A-Z0-9]{1,3})?$' },
            noticeVersion: { type: 'integer', minimum: 1 },
            source: SOURCE,
            // The SDK's GPC flag, as the Sec-GPC: 1 header counts.
            gpc: { type: 'boolean' },
            writeKey: { type: 'string' },
          },
        },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (!principal?.source) throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: 'write_key' });
      const body = idsAsText(request.body);
      refuseUnusableText(body, ['userId', 'anonymousId'], ['source']);
      const { purpose, jurisdiction, noticeVersion, source } = body;
      const meta = { jurisdiction, noticeVersion, ...(source ? { source } : {}) };
      const gpc = request.headers['sec-gpc'] === '1' || body.gpc === true;
      const actor = { id: principal.tokenId, role: principal.role };
      // Refuse what can be refused before any profile or identifier is created for the person (a GPC signal is
      // recorded all the same for the people Candor knows by the request's ids).
      try {
        await kernel.consent.checkOptOutNotice(purpose, meta);
      } catch (error) {
        throw gpc ? await kernel.consent.refusedWithGpc(error, await knownProfilesOf(kernel, body, principal.source), meta, actor) : error;
      }
      const { profileId, holder } = await resolveSubject(kernel, body, principal.source);
      if (gpc) await recordGpcForDevice(kernel, profileId, body, principal.source, { source, jurisdiction }, actor);
      const result = await kernel.consent.recordOptOutNotice(profileId, purpose, { ...meta, gpc, holder }, actor);
      return {
        // No receipt when nothing was written: the person's own consent to the purpose stands (`kept`).
        ...(result.receipt !== null ? { receipt: result.receipt, receiptId: result.receiptId } : {}),
        ...(result.gpcHonoured ? { gpcHonoured: true } : {}),
        recorded: result.entries.map((e) => ({ purpose: e.purpose, state: e.state, basis: e.basis, at: e.at })),
        kept: result.kept,
      };
    },
  );
}
