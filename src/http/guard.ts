import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kernel } from '../kernel.ts';
import type { Principal } from '../modules/access/index.ts';
import { CandorError, isCandorError } from '../shared/errors.ts';
import type { RouteAccess, RouteRecord } from './route-access.ts';

/** Base64 as Basic credentials are written (RFC 7617: RFC 4648's alphabet), the padding optional. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/** A credential read from the Authorization header, and the scheme it came in. */
interface Presented {
  readonly value: string;
  readonly scheme: 'bearer' | 'basic';
}

/**
 * The credential an Authorization header presents, or undefined when it presents none (then a write key in the body
 * may). A Bearer or Basic header with anything after its value, or a Basic value that is not base64, is a malformed
 * credential, not a missing one; an empty one, or one with an empty user name, presents none.
 */
function credentialOf(request: FastifyRequest): Presented | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  // RFC 9110: the scheme, then one or more spaces, then the credential (a token68 has no space in it).
  const [scheme = '', value = '', ...rest] = header.trim().split(/ +/);
  const kind = scheme.toLowerCase();
  if (kind !== 'bearer' && kind !== 'basic') return undefined;
  if (rest.length > 0) throw new CandorError('AUTH_CREDENTIAL_INVALID');
  if (kind === 'bearer') return value ? { value, scheme: kind } : undefined;
  // Segment sends the write key as the HTTP Basic user name with an empty password.
  if (!BASE64.test(value)) throw new CandorError('AUTH_CREDENTIAL_INVALID');
  const user = Buffer.from(value, 'base64').toString('utf8').split(':', 1)[0];
  return user ? { value: user, scheme: kind } : undefined;
}

/** API tokens and write keys (kernel.access), as opposed to customer sessions (css_). */
const ACCESS_CREDENTIAL = /^(?:cnd|cwk)_/;
/** Customer sessions (kernel.subjectSessions). */
const SUBJECT_SESSION_PREFIX = 'css_';

/** The security requirement /openapi.json shows for each audience (schemes in server.ts), staff roles as its scopes. */
function securityOf(access: RouteAccess): Record<string, string[]>[] {
  switch (access.audience) {
    case 'public':
      return [];
    case 'ingest':
      return [{ writeKey: [] }, { writeKeyBearer: [] }];
    case 'subject':
      return [{ subjectSession: [] }];
    case 'admin':
      return [{ apiToken: [...(access.roles ?? [])] }];
  }
}

/** Whether a request's body comes in a content coding (Content-Encoding other than identity), supported or not. */
function isCompressed(request: FastifyRequest): boolean {
  const header = request.headers['content-encoding'];
  return header !== undefined && header.split(',').some((coding) => !['', 'identity'].includes(coding.trim().toLowerCase()));
}

function writeKeyInBody(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const record = body as Record<string, unknown>;
  if (typeof record.writeKey === 'string') return record.writeKey;
  const first = Array.isArray(record.batch) ? (record.batch[0] as Record<string, unknown> | undefined) : undefined;
  return typeof first?.writeKey === 'string' ? first.writeKey : undefined;
}

/**
 * Makes every route declare its access (registration fails otherwise) and enforces the declaration on every
 * request: credential kind per audience, role per route, an audit entry for denied attempts and for every
 * read of personal data, a "not found" answer included.
 */
export function installGuard(app: FastifyInstance, kernel: Kernel, routes: RouteRecord[]): void {
  app.decorateRequest('principal', undefined);
  app.decorateRequest('auditSubject', undefined);
  app.decorateRequest('subject', undefined);

  app.addHook('onRoute', (route) => {
    const access = route.config?.access;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method, url: route.url, access });
    if (!access) throw new Error(`route ${methods.join(',')} ${route.url} declares no access (audience, roles, purpose)`);
    if (!kernel.taxonomy.dataUse(access.purpose)) throw new Error(`route ${route.url} declares unknown purpose ${access.purpose}`);
    if (access.audience === 'admin' && (access.roles ?? []).length === 0) throw new Error(`admin route ${route.url} allows no role`);
    if (access.audience !== 'admin' && access.roles !== undefined) throw new Error(`route ${route.url} lists roles outside the admin audience`);
    // /openapi.json shows each operation's credential and roles (@fastify/swagger reads the schema after this hook).
    const extension: Record<string, unknown> = {
      'x-candor-access': { audience: access.audience, roles: [...(access.roles ?? [])], purpose: access.purpose, personalData: access.personalData === true },
    };
    // A staff or privacy-center route that declares no query string takes none: one sent is refused as an unknown field
    // (REQUEST_UNKNOWN_FIELD), as on the routes that declare theirs, instead of being ignored (`?limit=5` read as paging
    // it is not). Ingestion's routes take what client libraries may append.
    const querystring = route.schema?.querystring ?? ((access.audience === 'admin' || access.audience === 'subject') ? { type: 'object', additionalProperties: false } : undefined);
    route.schema = { ...route.schema, ...(querystring === undefined ? {} : { querystring }), security: securityOf(access), ...extension };
  });

  app.addHook('onRequest', async (request) => {
    const access = request.routeOptions.config.access;
    if (!access || access.audience === 'public') return;
    const presented = credentialOf(request);
    if (access.audience === 'subject') {
      // An API token or a write key is a credential of the wrong kind here, once it is known to be a real one.
      if (presented && ACCESS_CREDENTIAL.test(presented.value)) {
        await kernel.access.authenticate(presented.value);
        throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: 'subject_session' });
      }
      if (presented?.scheme !== 'bearer') throw new CandorError('AUTH_SUBJECT_SESSION_REQUIRED');
      request.subject = await kernel.subjectSessions.authenticate(presented.value);
      return;
    }
    if (!presented) {
      // Browser clients put the write key in the body; it is checked once the body is parsed. A compressed body would
      // be inflated first, for anyone (a few KB of gzip hold megabytes): it needs the key in the header. Browsers do not
      // compress; the server libraries that do send the key as HTTP Basic.
      if (access.audience === 'ingest' && !isCompressed(request)) return;
      throw new CandorError('AUTH_CREDENTIAL_MISSING', access.audience === 'ingest' ? { reason: 'a compressed body needs the write key in the Authorization header' } : undefined);
    }
    await admit(request, presented.value, presented.scheme);
  });

  app.addHook('preHandler', async (request) => {
    const access = request.routeOptions.config.access;
    if (access?.audience !== 'ingest' || request.principal) return;
    const presented = writeKeyInBody(request.body);
    if (!presented) throw new CandorError('AUTH_CREDENTIAL_MISSING');
    await admit(request, presented, 'body');
  });

  async function admit(request: FastifyRequest, presented: string, scheme: Presented['scheme'] | 'body'): Promise<void> {
    const access = request.routeOptions.config.access as NonNullable<typeof request.routeOptions.config.access>;
    const wanted = access.audience === 'admin' ? 'api' : 'write_key';
    // A customer's session is a credential of the wrong kind here, once it is known to be a live one.
    if (presented.startsWith(SUBJECT_SESSION_PREFIX)) {
      await kernel.subjectSessions.authenticate(presented);
      throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: wanted });
    }
    const principal: Principal = await kernel.access.authenticate(presented);
    if (principal.kind !== wanted) throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: wanted });
    // Basic is the write keys' (Segment's) way in; staff routes take API tokens as Bearer only.
    if (access.audience === 'admin' && scheme !== 'bearer') throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: wanted, scheme: 'bearer' });
    if (access.audience === 'admin' && !(access.roles ?? []).includes(principal.role as never)) {
      await auditDenied(request, principal, access.purpose);
      throw new CandorError('AUTH_ROLE_FORBIDDEN', { role: principal.role });
    }
    request.principal = principal;
  }

  /** The audit entry of a refused role: who, for which route and purpose. */
  function auditDenied(request: FastifyRequest, principal: Principal, purpose: string): Promise<unknown> {
    return kernel.audit.append({
      actor: principal.tokenId,
      role: principal.role,
      action: 'access.denied',
      purpose,
      resource: `${request.method} ${request.routeOptions.url}`,
      outcome: 'denied',
    });
  }

  // A role refused by the handler once it sees the object (a developer revoking an API token, not a write key) is
  // audited as the guard's own refusals are. The guard's refusals never reach here with a principal set.
  app.addHook('onError', async (request, _reply, error) => {
    const access = request.routeOptions.config.access;
    if (!access || !request.principal || !isCandorError(error, 'AUTH_ROLE_FORBIDDEN')) return;
    try {
      await auditDenied(request, request.principal, access.purpose);
    } catch (failure) {
      // The answer stays the refusal (onError cannot change it); the missing entry must not go unnoticed.
      request.log.error({ err: failure, code: 'AUDIT_APPEND_FAILED' }, 'audit entry of a refused role not written');
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const access = request.routeOptions.config.access;
    // A "not found" tells something too (whether someone is a customer, for a look-up): it is audited as a miss.
    const miss = reply.statusCode === 404;
    if (!access?.personalData || (reply.statusCode >= 300 && !miss) || !(request.principal || request.subject)) return payload;
    await kernel.audit.append({
      actor: request.principal?.tokenId ?? `subject_session:${request.subject?.sessionId}`,
      role: request.principal?.role ?? 'subject',
      action: 'api.personal_data.read',
      purpose: access.purpose,
      subject: request.auditSubject ?? null,
      resource: `${request.method} ${request.routeOptions.url}`,
      outcome: miss ? 'failure' : 'success',
      details: miss ? { found: false } : undefined,
    });
    return payload;
  });
}
