import { randomInt, timingSafeEqual } from 'node:crypto';
import { CandorError } from '../../shared/errors.ts';
import type { RequestType } from './clocks.ts';

/** A code lives ten minutes. */
export const CODE_TTL_MS = 10 * 60_000;
/** Three wrong codes lock the verification. */
export const MAX_CODE_ATTEMPTS = 3;

/**
 * How much proof a request needs (proportional, as GDPR Art. 12(6) and CCPA regulations §7060–7062 ask):
 * - `none`: opt-outs and consent withdrawal — acting on them can only protect the person;
 * - `code`: a 6-digit code sent to an address the subject is known by (erasure, restriction, objection);
 * - `code_and_identifier`: requests that hand out or change personal data (access, portability, rectification) also
 *   need a second identifier already linked to the same person (a user id, phone number, …), unless the request
 *   was started with a subject session the business issued to its signed-in customer.
 */
export type VerificationLevel = 'none' | 'code' | 'code_and_identifier';

const LEVELS: Readonly<Record<RequestType, VerificationLevel>> = {
  access: 'code_and_identifier',
  portability: 'code_and_identifier',
  rectification: 'code_and_identifier',
  erasure: 'code',
  restriction: 'code',
  objection: 'code',
  opt_out_sale_sharing: 'none',
  limit_sensitive: 'none',
  withdraw_consent: 'none',
};

export function verificationLevel(type: RequestType): VerificationLevel {
  return LEVELS[type];
}

/** A 6-digit code from the CSPRNG, leading zeros kept. */
export function newCode(): string {
  return String(randomInt(0, 1_000_000)).padStart(6, '0');
}

/** What is stored of a code: a keyed hash (the caller's HMAC over request id and code) and its expiry. */
export interface StoredCode {
  readonly hash: string | null;
  readonly expiresAt: string | null;
}

/**
 * Checks a presented code against the stored one at `now`. `attempt` is this attempt's number (1 for the first); the
 * caller counts it atomically within the limit (a failed one before answering, a right one with the verification).
 * Throws RIGHTS_VERIFICATION_LOCKED past three attempts, RIGHTS_CODE_EXPIRED after ten minutes, RIGHTS_CODE_INVALID
 * otherwise; a request for an unknown address has a hash no code matches, so it answers exactly like a wrong code.
 */
export function checkCode(stored: StoredCode, attempt: number, presentedHash: string, now: Date): void {
  if (attempt > MAX_CODE_ATTEMPTS) throw new CandorError('RIGHTS_VERIFICATION_LOCKED');
  if (stored.hash === null || stored.expiresAt === null) throw new CandorError('RIGHTS_CODE_INVALID', { attemptsLeft: MAX_CODE_ATTEMPTS - attempt });
  if (now.getTime() > Date.parse(stored.expiresAt)) throw new CandorError('RIGHTS_CODE_EXPIRED');
  const a = Buffer.from(stored.hash);
  const b = Buffer.from(presentedHash);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new CandorError('RIGHTS_CODE_INVALID', { attemptsLeft: MAX_CODE_ATTEMPTS - attempt });
}

/** Limits on starting requests, per address and per client (IP address), in a sliding window. */
export interface RateLimits {
  readonly perIdentifier: number;
  readonly perClient: number;
  readonly windowMs: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = { perIdentifier: 5, perClient: 20, windowMs: 3_600_000 };
