import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { CandorError, toProblem } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/error-codes.ts';
import type { Logger } from '../shared/logger.ts';
import { isMissingTableOrColumn, unknownMigrations, type ModuleMigration, type Storage } from '../storage/index.ts';

/** Longest path parameter the router reads (Fastify's `maxParamLength`); a longer one is answered REQUEST_VALIDATION_FAILED. */
export const MAX_PARAM_LENGTH = 200;

interface ValidationIssue {
  instancePath?: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Field paths and rule names of schema violations, never the offending values. */
function issues(validation: readonly ValidationIssue[], part: string | undefined) {
  return validation.map((v) => {
    const field =
      typeof v.params?.additionalProperty === 'string'
        ? `${v.instancePath ?? ''}/${v.params.additionalProperty}`
        : typeof v.params?.missingProperty === 'string'
          ? `${v.instancePath ?? ''}/${v.params.missingProperty}`
          : (v.instancePath ?? '');
    return { in: part ?? 'body', path: field || '/', rule: v.keyword, message: v.message ?? '' };
  });
}

/** Translates anything thrown while answering into a CandorError. */
export function toCandorError(error: unknown): CandorError {
  if (error instanceof CandorError) return error;
  const e = error as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
  if (Array.isArray(e.validation)) {
    const list = issues(e.validation, e.validationContext);
    const code = e.validation.some((v) => v.keyword === 'additionalProperties') ? 'REQUEST_UNKNOWN_FIELD' : 'REQUEST_VALIDATION_FAILED';
    return new CandorError(code, { errors: list });
  }
  switch (e.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // A path segment longer than the router reads (no id of Candor's is that long).
      return new CandorError('REQUEST_VALIDATION_FAILED', { errors: [{ in: 'params', path: '/', rule: 'maxLength', message: `a path parameter is longer than ${MAX_PARAM_LENGTH} characters` }] });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CandorError('REQUEST_BODY_TOO_LARGE');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new CandorError('REQUEST_UNSUPPORTED_MEDIA_TYPE');
    // A compressed body that does not inflate: not the coding it says, or cut short.
    case 'Z_DATA_ERROR':
    case 'Z_BUF_ERROR':
      return new CandorError('REQUEST_INVALID', { reason: 'body_not_inflatable', detail: 'the body is not valid in its Content-Encoding (not that coding, or cut short)' });
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new CandorError('REQUEST_INVALID');
  return new CandorError('INTERNAL_ERROR', undefined, { cause: error });
}

/** Whether an error, or an internal error's cause, is the database saying a table or column does not exist. */
function missingTableOrColumn(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (isMissingTableOrColumn(e)) return true;
    if (e instanceof CandorError && e.category !== 'internal') return false;
  }
  return false;
}

/**
 * Explains a request that failed on a missing table or column while the database records migrations this code does
 * not know: a newer release migrated the database under this server, which answers STORAGE_NEWER_THAN_CODE (naming
 * them) instead of INTERNAL_ERROR, and says so in the log once. Any other error is returned as it is.
 */
export function newerSchemaCheck(storage: Storage, migrations: readonly ModuleMigration[], logger: Logger): (error: unknown) => Promise<unknown> {
  let logged = false;
  return async (error) => {
    if (!missingTableOrColumn(error)) return error;
    const unknown = await unknownMigrations(storage, migrations).catch(() => []);
    if (unknown.length === 0) return error;
    if (!logged) {
      logged = true;
      logger.error({ err: error, unknownMigrations: unknown }, 'a newer Candor release migrated the database under this server, which can no longer use it: stop it and run that release (STORAGE_NEWER_THAN_CODE)');
    }
    return new CandorError('STORAGE_NEWER_THAN_CODE', { unknownMigrations: unknown }, { cause: error });
  };
}

/** Seconds a client is asked to wait (Retry-After) before it repeats a write refused with STORAGE_FULL. */
export const STORAGE_FULL_RETRY_AFTER_S = 30;
/** Seconds a client is asked to wait before it repeats a request refused with STORAGE_UNAVAILABLE or STORAGE_BUSY. */
export const STORAGE_UNAVAILABLE_RETRY_AFTER_S = 5;

/**
 * Retry-After (seconds) of the codes that ask a client to come back: a full disk is freed by an operator, not in a
 * moment; the database away, busy or a write queue full, or a server that is stopping, a moment.
 */
const RETRY_AFTER_S: Partial<Record<ErrorCode, number>> = {
  STORAGE_FULL: STORAGE_FULL_RETRY_AFTER_S,
  STORAGE_UNAVAILABLE: STORAGE_UNAVAILABLE_RETRY_AFTER_S,
  STORAGE_BUSY: STORAGE_UNAVAILABLE_RETRY_AFTER_S,
  SERVER_STOPPING: 5,
};

/** Answers an error as application/problem+json. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const candor = toCandorError(error);
  // A request refused by a server that is stopping is no failure to look into.
  if ((candor.category === 'internal' || candor.category === 'unavailable') && candor.code !== 'SERVER_STOPPING') {
    request.log.error({ err: candor.cause ?? candor, code: candor.code }, 'request failed');
  }
  const retryAfter = RETRY_AFTER_S[candor.code];
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
  return reply.code(candor.status).type('application/problem+json').send(toProblem(candor, request.id));
}

/**
 * Answers a request Node's HTTP parser could not read (a bare CR or NUL in a header, two Content-Length headers, headers
 * over the size limit, a request that took too long) with a problem+json REQUEST_INVALID and closes the connection:
 * Fastify's own answer to these is neither problem+json nor coded. `answered`: an answer is being written on the
 * connection, or the request was answered before its body arrived (the error is about that body); then nothing is
 * written, which would go after that answer as an answer to no request, and the connection is only closed.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Socket, answered = false): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable && !answered) {
    const reason = error.code === 'HPE_HEADER_OVERFLOW' ? 'the request headers are larger than the server accepts' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'the request took too long to arrive' : 'the request is not well-formed HTTP';
    const body = JSON.stringify(toProblem(new CandorError('REQUEST_INVALID', { reason })));
    socket.write(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * Answers a request with an Expect header other than 100-continue (Node's 'checkExpectation'): 417 as problem+json,
 * REQUEST_EXPECTATION_UNSUPPORTED, where Node's own answer has no body. The body, if any, is not read: the connection
 * is closed once the answer is out.
 */
export function answerUnsupportedExpectation(_request: IncomingMessage, response: ServerResponse): void {
  const body = JSON.stringify(toProblem(new CandorError('REQUEST_EXPECTATION_UNSUPPORTED', { header: 'expect', supported: ['100-continue'] })));
  response.writeHead(417, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
}
