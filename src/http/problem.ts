import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { CandorError, toProblem } from '../shared/errors.ts';

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
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CandorError('REQUEST_BODY_TOO_LARGE');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new CandorError('REQUEST_UNSUPPORTED_MEDIA_TYPE');
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new CandorError('REQUEST_INVALID');
  return new CandorError('INTERNAL_ERROR', undefined, { cause: error });
}

/** Answers an error as application/problem+json. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const candor = toCandorError(error);
  if (candor.category === 'internal' || candor.category === 'unavailable') {
    request.log.error({ err: candor.cause ?? candor, code: candor.code }, 'request failed');
  }
  return reply.code(candor.status).type('application/problem+json').send(toProblem(candor, request.id));
}
