import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kernel } from '../kernel.ts';
import type { Principal } from '../modules/access/index.ts';
import { CandorError, isCandorError } from '../shared/errors.ts';
import type { RouteRecord } from './route-access.ts';

/** Base64 as Basic credentials are written (RFC 7617: RFC 4648's alphabet), the padding optional. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/**
 * The credential an Authorization header presents, or undefined when it presents none this audience reads (then a
 * write key in the body may). A Basic header (where allowed) whose value is not base64 is a malformed credential, not
 * a missing one; an empty one, or one with an empty user name, presents none.
 */
function credentialOf(request: FastifyRequest, allowBasic: boolean): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  // RFC 9110: the scheme, then one or more spaces.
  const [scheme = '', value = ''] = header.trim().split(/ +/, 2);
  if (scheme.toLowerCase() === 'bearer') return value || undefined;
  if (allowBasic && scheme.toLowerCase() === 'basic') {
    // Segment sends the write key as the HTTP Basic user name with an empty password.
    if (!BASE64.test(value)) throw new CandorError('AUTH_CREDENTIAL_INVALID');
    return Buffer.from(value, 'base64').toString('utf8').split(':', 1)[0] || undefined;
  }
  return undefined;
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
  });

  app.addHook('onRequest', async (request) => {
    const access = request.routeOptions.config.access;
    if (!access || access.audience === 'public') return;
    if (access.audience === 'subject') {
      const presented = credentialOf(request, false);
      if (!presented) throw new CandorError('AUTH_SUBJECT_SESSION_REQUIRED');
      request.subject = await kernel.subjectSessions.authenticate(presented);
      return;
    }
    const presented = credentialOf(request, access.audience === 'ingest');
    if (!presented) {
      // Browser clients put the write key in the body; it is checked once the body is parsed.
      if (access.audience === 'ingest') return;
      throw new CandorError('AUTH_CREDENTIAL_MISSING');
    }
    await admit(request, presented);
  });

  app.addHook('preHandler', async (request) => {
    const access = request.routeOptions.config.access;
    if (access?.audience !== 'ingest' || request.principal) return;
    const presented = writeKeyInBody(request.body);
    if (!presented) throw new CandorError('AUTH_CREDENTIAL_MISSING');
    await admit(request, presented);
  });

  async function admit(request: FastifyRequest, presented: string): Promise<void> {
    const access = request.routeOptions.config.access as NonNullable<typeof request.routeOptions.config.access>;
    const principal: Principal = await kernel.access.authenticate(presented);
    const wanted = access.audience === 'admin' ? 'api' : 'write_key';
    if (principal.kind !== wanted) throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: wanted });
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
