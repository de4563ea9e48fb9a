import { CATEGORY_STATUS, ERROR_CODES, type ErrorCategory, type ErrorCode } from './error-codes.ts';

/** Safe details: ids, field paths, counts — never personal values. */
export type ErrorDetails = Readonly<Record<string, unknown>>;

/** The one error type of Candor: a stable code, its category and public message, and safe details. */
export class CandorError extends Error {
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  readonly details: ErrorDetails | undefined;

  constructor(code: ErrorCode, details?: ErrorDetails, options?: { cause?: unknown }) {
    super(ERROR_CODES[code].message, options);
    this.name = 'CandorError';
    this.code = code;
    this.category = ERROR_CODES[code].category;
    this.details = details;
  }

  get status(): number {
    return CATEGORY_STATUS[this.category];
  }
}

/** Whether a value is a CandorError with the given code (or any code). */
export function isCandorError(error: unknown, code?: ErrorCode): error is CandorError {
  return error instanceof CandorError && (code === undefined || error.code === code);
}

/** RFC 9457 problem document for an error; internal causes never leave the server. */
export function toProblem(error: CandorError, instance?: string): Record<string, unknown> {
  return {
    type: `urn:candor:error:${error.code}`,
    title: error.message,
    status: error.status,
    code: error.code,
    category: error.category,
    ...(error.details ? { details: error.details } : {}),
    ...(instance ? { instance } : {}),
  };
}
