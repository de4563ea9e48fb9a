import { createHash, randomBytes } from 'node:crypto';
import type { Actor } from '../../shared/actor.ts';
import { SYSTEM_ACTOR } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';
import { sortableId } from '../../shared/random.ts';
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import type { SubjectSessions } from '../access/index.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Consent } from '../consent/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Identity } from '../identity/index.ts';
import { MASKED, type Profiles, type ValueState } from '../profiles/index.ts';
import { clockStatus, deadlines, extendedDueAt, JURISDICTIONS, REQUEST_TYPES, type ClockStatus, type Jurisdiction, type RequestType } from './clocks.ts';
import type { ErasureEngine } from './erasure.ts';
import type { SubjectExporter } from './export-archive.ts';
import { ERASED_NOTICE_SUBJECT, type Mailer } from './mailer.ts';
import { plannedChanges, type RequestedChange, type TraitPlan } from './rectification.ts';
import { moveRequestIn, requestAudit, requestEvent } from './request-moves.ts';
import { noticeKey, OPEN_STATES, RequestsRepo, type RequestEventRow, type RequestRow } from './requests.repo.ts';
import { CODE_TTL_MS, DEFAULT_RATE_LIMITS, MAX_CODE_ATTEMPTS, checkCode, newCode, verificationLevel, type RateLimits, type VerificationLevel } from './verification.ts';

export type RequestState = 'received' | 'verifying' | 'in_progress' | 'completed' | 'partially_completed' | 'denied';

/** The state machine: where a request may go from each state. A retry keeps a request in progress. */
export const TRANSITIONS: Readonly<Record<RequestState, readonly RequestState[]>> = {
  received: ['verifying', 'in_progress', 'denied'],
  verifying: ['in_progress', 'denied'],
  in_progress: ['in_progress', 'completed', 'partially_completed', 'denied'],
  // Staff may run what was left over again.
  partially_completed: ['in_progress'],
  completed: [],
  denied: [],
};

/** RIGHTS_TRANSITION_INVALID unless the state machine allows `from` → `to`. */
export function assertTransition(from: RequestState, to: RequestState): void {
  if (!(TRANSITIONS[from] ?? []).includes(to)) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from, to });
}

/** Types that wait for a staff decision after verification; every other type runs at once. */
export const NEEDS_APPROVAL: ReadonlySet<RequestType> = new Set(['rectification']);

/** A second request of the same type from the same person within this window answers with the first. */
export const DUPLICATE_WINDOW_MS = 30 * 86_400_000;
/** Download links of access archives live a day. */
export const DOWNLOAD_TTL_MS = 24 * 3_600_000;
/** Verification that never happened closes a day after its code expired. */
const UNVERIFIED_CLOSE_MS = 24 * 3_600_000;
const SESSION_SECONDS = 900;
/** How long a run holds its request without renewing it; a run silent longer than this was cut off (a crash). */
export const RUN_LEASE_MS = 30_000;
/** At most this many interrupted runs are resumed by one start; the rest by the next. */
const RESUME_BATCH = 1000;
/**
 * The error of an erasure whose only step left is truncating SQLite's write-ahead log, which another connection's read
 * transaction holds up (ErasureEngine): its run is tried again by itself (#retryLater, resumeInterrupted).
 */
const WAL_BUSY = 'STORAGE_CHECKPOINT_BUSY';
/** The first wait before such a run is tried again; it doubles with each attempt of the request, up to WAL_RETRY_MAX_MS. */
export const WAL_RETRY_MS = 30_000;
const WAL_RETRY_MAX_MS = 30 * 60_000;
const EMAIL_CONTEXT = 'rights.requests.email';
/** The lastError of a denied request whose notice the mail server refused (retry() sends it again). */
const DENIAL_NOT_SENT = 'RIGHTS_MAIL_FAILED';
/** lastError of a denial whose notice a retry is sending again (a claim; a crash leaves it, retried a lease later). */
const DENIAL_SENDING = 'RIGHTS_MAIL_SENDING';
const PAYLOAD_CONTEXT = 'rights.requests.payload';

/** What a request looks like to its subject and to staff: ids, states, dates and codes, never personal values. */
export interface RequestView {
  id: string;
  type: RequestType;
  jurisdiction: Jurisdiction;
  state: RequestState;
  receivedAt: string;
  dueAt: string;
  acknowledgeBy: string | null;
  acknowledgedAt: string | null;
  extended: boolean;
  clock: ClockStatus | null;
  verifiedAt: string | null;
  awaitingApproval: boolean;
  attempts: number;
  lastError: string | null;
  denialReason: string | null;
  duplicateOf: string | null;
  outcome: Record<string, unknown> | null;
  downloadExpiresAt: string | null;
  completedAt: string | null;
}

/**
 * A change a rectification request proposes, as staff see it: decrypted for roles that may read personal values,
 * masked for others when the plan in force says the trait is personal (or no longer declares it), as profiles are.
 */
export interface ProposedChange {
  key: string;
  value: unknown;
  state: ValueState;
  personal: boolean;
  /** The data category the plan in force gives the trait; null when it no longer declares it. */
  category: string | null;
}

export interface StartInput {
  type: string;
  email?: string | undefined;
  jurisdiction?: string | undefined;
  /** Rectification: the traits to correct and their right values. */
  changes?: readonly { key: string; value: unknown }[] | undefined;
  /** The client's address (IP), for the rate limit; never stored in clear. */
  client?: string | undefined;
}

/** The answer to a start: the same shape whether or not anyone is known by the address. */
export interface StartAnswer {
  requestId: string;
  verification: VerificationLevel;
  /** `verify`: a code was sent if the address is known; `none`: nothing more is needed. */
  next: 'verify' | 'none';
}

export interface VerifyAnswer {
  request: RequestView;
  duplicate: boolean;
  /** None when the request was an erasure that completed: it ended the person's sessions. */
  session: { token: string; expiresAt: string } | null;
  /** Access and portability: a link token to download the archive (also mailed). */
  download?: { token: string; expiresAt: string };
}

export interface RightsRequestsDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  identity: Identity;
  consent: Consent;
  profiles: Profiles;
  /** The tracking plan: rectified values are checked against its identify traits. */
  catalog: TraitPlan;
  subjectSessions: SubjectSessions;
  erasure: ErasureEngine;
  exporter: SubjectExporter;
  mailer: Mailer;
  logger: Logger;
  defaultJurisdiction: Jurisdiction;
  /** Base URL of the server, for download links in mail. */
  publicUrl: string;
  rateLimits?: RateLimits | undefined;
  /** How long a run holds its request without renewing it (RUN_LEASE_MS; tests shorten it). */
  runLeaseMs?: number | undefined;
  /** The first wait before an erasure held up by another connection's read of SQLite's WAL is run again (WAL_RETRY_MS; tests shorten it). */
  walRetryMs?: number | undefined;
  /** The clock (tests inject one). */
  now?: (() => Date) | undefined;
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/** The one answer to verifying a request that is not waiting for verification: it names no state (see verify). */
function notVerifying(): CandorError {
  return new CandorError('RIGHTS_TRANSITION_INVALID', { to: 'in_progress', reason: 'not_verifying' });
}

function parseJson(text: string | null): Record<string, unknown> | null {
  return text === null ? null : (JSON.parse(text) as Record<string, unknown>);
}

/**
 * Seals a value with a subject's data key as keyring.encrypt does, adding the subject to `made` when it had no key and
 * one was made for it (Keyring.prepare): what a request that is not stored after all must destroy.
 */
async function sealFor(keyring: Keyring, subjectId: string, plaintext: string, context: string, made: Set<string>): Promise<string> {
  for (const id of await keyring.prepare([subjectId])) made.add(id);
  // Right after prepare, with no await between: the key used is one prepare found or made, never one made unseen.
  return keyring.encryptPrepared(subjectId, plaintext, context);
}

/**
 * First in the transaction that stores what a request sealed for a person: keeps erasures and the inactivity rule's
 * deletions out until it commits (identity.deletedIn) and tells whether the person is gone already. If so the caller
 * writes nothing, and the data keys made while sealing (`made`: the person's, where the deletion had destroyed theirs,
 * and an erasure request's own) are destroyed here, audited; a key found is left to the deletion, which destroys it.
 */
async function deletedMeanwhile(deps: Pick<RightsRequestsDeps, 'identity' | 'keyring'>, tx: SqlExecutor, profileId: string, made: ReadonlySet<string>, actor: Actor): Promise<boolean> {
  if ((await deps.identity.deletedIn(tx, [profileId])).size === 0) return false;
  await deps.keyring.destroyMadeIn(tx, made, actor);
  return true;
}

/**
 * Data-subject requests (GDPR Art. 15–22, CCPA/CPRA): intake by e-mail address or subject session, proportional
 * verification, the state machine with every transition recorded and audited, duplicate detection, the legal
 * clocks, execution through the erasure engine, the exporter, consent and profiles, retries that keep a failed
 * request in progress with its attempt count and last error code, and the staff queue.
 */
export class RightsRequests {
  readonly #repo: RequestsRepo;
  readonly #deps: RightsRequestsDeps;
  readonly #limits: RateLimits;
  readonly #now: () => Date;
  readonly #pending = new Set<Promise<void>>();
  readonly #leaseMs: number;
  readonly #walRetryMs: number;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(deps: RightsRequestsDeps) {
    this.#deps = deps;
    this.#repo = new RequestsRepo(deps.storage);
    this.#limits = deps.rateLimits ?? DEFAULT_RATE_LIMITS;
    this.#now = deps.now ?? (() => new Date());
    this.#leaseMs = deps.runLeaseMs ?? RUN_LEASE_MS;
    this.#walRetryMs = deps.walRetryMs ?? WAL_RETRY_MS;
  }

  /** Waits for mail and work started in the background (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** Cancels resumptions scheduled for later and waits for work under way (shutdown). */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await this.settled();
  }

  #background(work: () => Promise<void>): void {
    const promise = work().catch((err: unknown) => this.#deps.logger.warn({ err: isCandorError(err) ? err.code : 'error' }, 'rights request background work failed'));
    const tracked = promise.finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Intake

  #parseType(type: string): RequestType {
    if (!(REQUEST_TYPES as readonly string[]).includes(type)) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'type', allowed: [...REQUEST_TYPES] });
    return type as RequestType;
  }

  #parseJurisdiction(value: string | undefined): Jurisdiction {
    if (value === undefined || value === '') return this.#deps.defaultJurisdiction;
    if (!(JURISDICTIONS as readonly string[]).includes(value)) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'jurisdiction', allowed: [...JURISDICTIONS] });
    return value as Jurisdiction;
  }

  /**
   * Rectification: the changes must be well formed and each a value the tracking plan in force accepts for a declared
   * identify trait (RIGHTS_RECTIFICATION_INVALID otherwise), refused before anything is stored or mailed. The check
   * depends on the changes only, never on who asks, so it reveals nothing about an address.
   */
  async #checkChanges(type: RequestType, changes: StartInput['changes']): Promise<void> {
    if (type !== 'rectification') {
      if (changes !== undefined) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'changes_only_for_rectification' });
      return;
    }
    if (!Array.isArray(changes) || changes.length === 0 || changes.length > 50) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'changes' });
    for (const c of changes) {
      if (typeof c.key !== 'string' || c.key.length === 0 || c.key.length > 200) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'changes' });
    }
    await this.#deps.catalog.refreshIfChanged();
    plannedChanges(this.#deps.catalog, changes);
  }

  async #rateLimit(keys: string[]): Promise<void> {
    const at = this.#now();
    const since = new Date(at.getTime() - this.#limits.windowMs).toISOString();
    const limits = keys.map((key) => ({ key, limit: key.startsWith('id:') ? this.#limits.perIdentifier : this.#limits.perClient }));
    // Only accepted starts count: refused ones would let anyone use up a client's (a proxy's) allowance for everyone.
    // Counted and recorded atomically: parallel starts (several servers) get no more than the limit between them.
    if (!(await this.#repo.recordStart(limits, at.toISOString(), since))) throw new CandorError('RIGHTS_RATE_LIMITED', { windowSeconds: Math.round(this.#limits.windowMs / 1000) });
  }

  /** The canonical profile known by an address, or null (also for an erased person: nothing reveals either). */
  async #profileByEmail(email: string): Promise<string | null> {
    try {
      const subject = await this.#deps.erasure.findSubject({ identifier: { type: 'email', value: email } });
      return subject?.profileId ?? null;
    } catch (error) {
      if (isCandorError(error, 'RIGHTS_SUBJECT_ERASED')) return null;
      throw error;
    }
  }

  #newRow(type: RequestType, jurisdiction: Jurisdiction, channel: 'email' | 'session', receivedAt: Date): RequestRow {
    const d = deadlines(type, jurisdiction, receivedAt);
    const at = receivedAt.toISOString();
    return {
      id: sortableId('rr_'),
      type,
      jurisdiction,
      state: 'received',
      profile_id: null,
      subject: null,
      email: null,
      payload: null,
      channel,
      received_at: at,
      due_at: d.dueAt,
      acknowledge_by: d.acknowledgeBy,
      acknowledged_at: null,
      extended_at: null,
      extension_reason: null,
      code_hash: null,
      code_expires_at: null,
      code_attempts: 0,
      verified_at: null,
      awaiting_approval: 0,
      attempts: 0,
      last_error: null,
      denial_reason: null,
      duplicate_of: null,
      outcome: null,
      download_hash: null,
      download_expires_at: null,
      completed_at: null,
      updated_at: at,
      run_lease_until: null,
    };
  }

  #event(requestId: string, from: RequestState | null, to: RequestState, actor: Actor, detail: Record<string, unknown> = {}): RequestEventRow {
    return requestEvent(requestId, from, to, actor, this.#now().toISOString(), detail);
  }

  #codeHash(requestId: string, code: string): string {
    return this.#deps.keyring.pseudonym('rights.verification', `${requestId}:${code}`);
  }

  /**
   * Starts a request from an e-mail address alone (the privacy center without a session). The answer, what is
   * stored and the work done before answering are the same whether or not anyone is known by the address: the
   * code is sent (and the address encrypted) in the background, only when someone is.
   */
  async start(input: StartInput): Promise<StartAnswer> {
    const type = this.#parseType(input.type);
    const jurisdiction = this.#parseJurisdiction(input.jurisdiction);
    await this.#checkChanges(type, input.changes);
    const normalized = typeof input.email === 'string' ? this.#deps.identity.normalize({ type: 'email', value: input.email }) : undefined;
    if (!normalized) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'email' });
    const email = normalized.value;
    const keyring = this.#deps.keyring;
    await this.#rateLimit([`id:${keyring.pseudonym('rights.rate', email)}`, `client:${keyring.pseudonym('rights.rate', input.client ?? 'unknown')}`]);
    const found = await this.#profileByEmail(email);
    const now = this.#now();
    const level = verificationLevel(type);
    const code = newCode();
    const { row, profileId } = await this.#repo.transaction(async (tx) => {
      // First: no deletion commits until this does. A person deleted since the look-up is an unknown address, as an
      // erased person's is: the answer and what is stored are the same.
      const gone = await this.#deps.identity.deletedIn(tx, found === null ? [] : [found]);
      const profileId = found !== null && !gone.has(found) ? found : null;
      const row = this.#newRow(type, jurisdiction, 'email', now);
      // A request nobody can verify still gets a code hash (of a code never sent), so that verifying it answers exactly as a wrong code.
      const codeHash = this.#codeHash(row.id, profileId === null ? newCode() + randomBytes(8).toString('hex') : code);
      if (level !== 'none') {
        row.state = 'verifying';
        row.code_hash = codeHash;
        row.code_expires_at = new Date(now.getTime() + CODE_TTL_MS).toISOString();
      } else if (profileId === null) {
        row.state = 'denied';
        row.denial_reason = 'unknown_subject';
      } else {
        // Stored with its run claimed, as a session start is: a crash before the run leaves it resumable.
        row.state = 'in_progress';
        Object.assign(row, this.#claim(row));
      }
      if (profileId !== null) {
        row.profile_id = profileId;
        row.subject = keyring.pseudonym('subject', profileId);
      }
      await this.#repo.insert(tx, row, this.#event(row.id, null, row.state as RequestState, SYSTEM_ACTOR, { channel: 'email', level }));
      await this.#audit(tx, SYSTEM_ACTOR, `rights.request.${row.state}`, row, { type, jurisdiction, channel: 'email' });
      return { row, profileId };
    });
    if (profileId !== null) {
      this.#background(async () => {
        const made = new Set<string>();
        const encrypted = await sealFor(keyring, this.#addressKey(row, profileId), email, EMAIL_CONTEXT, made);
        const payload = input.changes ? await sealFor(keyring, profileId, JSON.stringify(input.changes), PAYLOAD_CONTEXT, made) : null;
        const sealed = await this.#repo.transaction(async (tx) => {
          if (await deletedMeanwhile(this.#deps, tx, profileId, made, SYSTEM_ACTOR)) return false;
          await this.#repo.updateIn(tx, row.id, row.state, { email: encrypted, payload }, null);
          return true;
        });
        if (!sealed) {
          // A reader may have loaded a destroyed key again while the transaction ran.
          for (const id of made) keyring.forgetSubject(id);
          // The deletion closed a request waiting for its code (none is sent); one stored with its run claimed was left
          // to end by itself, which it does here as the deletion would have closed it.
          if (level === 'none') {
            await this.#endRun(row, 'denied', { denial_reason: 'subject_erased', run_lease_until: null, completed_at: this.#now().toISOString() }, SYSTEM_ACTOR, { subjectErased: true }, Number(row.attempts));
          }
          return;
        }
        if (level === 'none') {
          // The receipt is mailed once the run ended (#runNow): a mail server that refuses it cannot stop the run.
          await this.#runNow({ ...row, email: encrypted, payload }, SYSTEM_ACTOR);
        } else {
          await this.#mail(email, row, 'code', code);
        }
      });
    }
    return { requestId: row.id, verification: level, next: level === 'none' ? 'none' : 'verify' };
  }

  /**
   * Starts a request for the customer behind a subject session. The session counts as verification, except for
   * access, portability and rectification, which still need a code sent to an address linked to the person.
   * A request of the same type still open or made within 30 days is answered instead, flagged duplicate.
   */
  async startForSession(sessionProfileId: string, input: StartInput, actor: Actor): Promise<{ request: RequestView; duplicate: boolean; next: 'verify' | 'none' }> {
    const type = this.#parseType(input.type);
    const jurisdiction = this.#parseJurisdiction(input.jurisdiction);
    await this.#checkChanges(type, input.changes);
    const profileId = (await this.#deps.identity.canonical(sessionProfileId)) ?? sessionProfileId;
    const members = await this.#deps.identity.members(profileId);
    const now = this.#now();
    const earlier = await this.#repo.earlier(members, type, new Date(now.getTime() - DUPLICATE_WINDOW_MS).toISOString(), '');
    if (earlier) return { request: requestView(earlier, now), duplicate: true, next: 'none' };
    const row = this.#newRow(type, jurisdiction, 'session', now);
    row.profile_id = profileId;
    row.subject = this.#deps.keyring.pseudonym('subject', profileId);
    const level = verificationLevel(type);
    const keyring = this.#deps.keyring;
    // The data keys made for what is sealed here: destroyed should the person be gone when the request is stored.
    const made = new Set<string>();
    let email: string | undefined;
    let code: string | undefined;
    if (level === 'code_and_identifier') {
      email = await this.#linkedEmail(input.email, profileId);
      code = newCode();
      row.state = 'verifying';
      row.code_hash = this.#codeHash(row.id, code);
      row.code_expires_at = new Date(now.getTime() + CODE_TTL_MS).toISOString();
      row.email = await sealFor(keyring, this.#addressKey(row, profileId), email, EMAIL_CONTEXT, made);
    } else {
      row.state = 'in_progress';
      row.verified_at = now.toISOString();
      if (input.email !== undefined) row.email = await sealFor(keyring, this.#addressKey(row, profileId), await this.#linkedEmail(input.email, profileId), EMAIL_CONTEXT, made);
    }
    if (input.changes) row.payload = await sealFor(keyring, profileId, JSON.stringify(input.changes), PAYLOAD_CONTEXT, made);
    if (row.state === 'in_progress' && NEEDS_APPROVAL.has(type)) row.awaiting_approval = 1;
    // A request that runs at once is stored with its run claimed, so a crash during the run leaves it resumable.
    if (row.state === 'in_progress' && row.awaiting_approval === 0) Object.assign(row, this.#claim(row));
    const stored = await this.#repo.transaction(async (tx) => {
      if (await deletedMeanwhile(this.#deps, tx, profileId, made, actor)) return false;
      await this.#repo.insert(tx, row, this.#event(row.id, null, row.state as RequestState, actor, { channel: 'session', level }));
      await this.#audit(tx, actor, `rights.request.${row.state}`, row, { type, jurisdiction, channel: 'session' });
      return true;
    });
    if (!stored) {
      // A reader may have loaded a destroyed key again while the transaction ran.
      for (const id of made) keyring.forgetSubject(id);
      throw new CandorError('RIGHTS_SUBJECT_ERASED');
    }
    if (code !== undefined && email !== undefined) await this.#mail(email, row, 'code', code);
    const current = row.state === 'in_progress' && row.awaiting_approval === 0 ? (await this.#runNow(row, actor)).row : row;
    return { request: requestView(current, this.#now()), duplicate: false, next: row.state === 'verifying' ? 'verify' : 'none' };
  }

  /**
   * An address given with a session must be one the person is known by: RIGHTS_REQUEST_INVALID with reason
   * `email_required` when none (or no address) is given, `email_not_linked` when it is not theirs. The session holder
   * learns only which addresses are linked to themselves, so this reveals nothing about anyone else's.
   */
  async #linkedEmail(email: string | undefined, profileId: string): Promise<string> {
    const normalized = typeof email === 'string' ? this.#deps.identity.normalize({ type: 'email', value: email }) : undefined;
    if (!normalized) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'email_required' });
    const subject = await this.#deps.erasure.findSubject({ profileId });
    const hash = this.#deps.identity.hash(normalized);
    if (!subject?.identifiers.some((i) => i.type === 'email' && i.valueHash === hash)) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'email_not_linked' });
    return normalized.value;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Verification

  /**
   * Checks the code of a request (and, where the type asks for it, a second identifier linked to the same person).
   * A failed attempt (wrong or expired code, wrong second identifier) is counted by one conditional statement that
   * commits before anything else is written; a right one is counted by the conditional update that moves the request
   * on, so that a verification the server fails to record uses up none of the person's attempts. Either way an attempt
   * counts only while fewer than three are counted: of guesses sent in parallel no more than three get an answer that
   * depends on the code. Success issues a subject session, detects a duplicate (answering the earlier request), and
   * moves the request on: it runs at once unless its type waits for staff approval. A request that is not waiting
   * for verification answers one error whatever its state, so that nobody learns from it whether the address was known
   * (a verification-free request of a known address is completed, of an unknown one denied).
   */
  async verify(requestId: string, code: string, options: { secondIdentifier?: { type: string; value: string } | undefined } = {}): Promise<VerifyAnswer> {
    const row = await this.#repo.get(requestId);
    if (!row) throw new CandorError('RIGHTS_REQUEST_NOT_FOUND');
    if (row.state !== 'verifying') throw notVerifying();
    const type = row.type as RequestType;
    const second = options.secondIdentifier;
    // Depends on the type and channel only, never on the code or the person: checked before an attempt is used.
    const needsSecond = verificationLevel(type) === 'code_and_identifier' && row.channel !== 'session';
    if (needsSecond && !second) throw new CandorError('RIGHTS_SECOND_FACTOR_REQUIRED');
    const now = this.#now();
    const presented = typeof code === 'string' && /^\d{6}$/.test(code) ? this.#codeHash(row.id, code) : '';
    try {
      // Past three counted attempts this answers RIGHTS_VERIFICATION_LOCKED before comparing.
      checkCode({ hash: row.code_hash, expiresAt: row.code_expires_at }, Number(row.code_attempts) + 1, presented, now);
    } catch (error) {
      if (!isCandorError(error, 'RIGHTS_CODE_INVALID') && !isCandorError(error, 'RIGHTS_CODE_EXPIRED')) throw error;
      const attempt = await this.#countFailedAttempt(row.id, now, error.code === 'RIGHTS_CODE_INVALID');
      throw error.code === 'RIGHTS_CODE_INVALID' ? new CandorError('RIGHTS_CODE_INVALID', { attemptsLeft: MAX_CODE_ATTEMPTS - attempt }) : error;
    }
    const profileId = row.profile_id as string;
    if (needsSecond && second) {
      // Every pseudonym the identifier may be stored under (a phone number also in a release's earlier form).
      const forms = second.type === 'email' ? [] : this.#deps.identity.pseudonymsOf(second);
      const subject = await this.#deps.erasure.findSubject({ profileId });
      if (!subject?.identifiers.some((i) => forms.some((f) => f.type === i.type && f.valueHash === i.valueHash))) {
        const attempt = await this.#countFailedAttempt(row.id, now, true);
        throw new CandorError('RIGHTS_SECOND_FACTOR_INVALID', { attemptsLeft: Math.max(0, MAX_CODE_ATTEMPTS - attempt) });
      }
    }
    const found = await this.#deps.identity.canonical(profileId);
    if (found === null) return this.#closeErased(row, type, now);
    const canonical = found;
    const members = await this.#deps.identity.members(canonical);
    // The session is issued once the request has moved on, so that of two verifications at once only one gets one.
    const issueSession = async () => {
      const holder = await this.#addressHolder(row, canonical);
      return this.#deps.subjectSessions.issue(holder, this.#deps.keyring.pseudonym('subject', holder), { ttlSeconds: SESSION_SECONDS, via: 'rights_verification' }, SYSTEM_ACTOR);
    };
    const earlier = await this.#repo.earlier(members, type, new Date(now.getTime() - DUPLICATE_WINDOW_MS).toISOString(), row.id);
    const actor: Actor = { id: `subject:${row.subject}`, role: 'subject' };
    if (earlier) {
      await this.#verifiedMove(row, 'denied', { verified_at: now.toISOString(), code_hash: null, denial_reason: 'duplicate', duplicate_of: earlier.id, completed_at: now.toISOString(), ...this.#noAddress(row) }, actor, { duplicateOf: earlier.id });
      await this.#shredAddress(row, actor);
      // No session for an erasure: the earlier one ends the person's sessions (or already did).
      return { request: requestView(earlier, now), duplicate: true, session: type === 'erasure' ? null : await issueSession() };
    }
    const approval = NEEDS_APPROVAL.has(type) ? 1 : 0;
    const claim = approval === 1 ? {} : this.#claim(row);
    const moved = await this.#verifiedMove(row, 'in_progress', { verified_at: now.toISOString(), code_hash: null, awaiting_approval: approval, profile_id: canonical, ...claim }, actor, { verified: true, awaitingApproval: approval === 1 });
    // No session for an erasure: it ends the person's sessions, and one issued after a run that erased and then failed
    // (a refused notice) would let the erased person's profile gather consent again.
    const session = type === 'erasure' ? null : await issueSession();
    // The run issues (and mails) the download link of an access or portability request; the view shows its expiry.
    const done = approval === 1 ? { row: moved } : await this.#runNow(moved, actor);
    const answer: VerifyAnswer = { request: requestView(done.row, this.#now()), duplicate: false, session };
    if (done.download) answer.download = done.download;
    return answer;
  }

  /**
   * Verified after its person was erased (by an earlier request, from another server, say): there is nobody left to act
   * for, and no session is issued. Closed as a duplicate of that request when it is of the same type (an erasure asked
   * for twice), else as for an unknown subject; answered RIGHTS_SUBJECT_ERASED.
   */
  async #closeErased(row: RequestRow, type: RequestType, now: Date): Promise<never> {
    const actor: Actor = { id: `subject:${row.subject}`, role: 'subject' };
    const earlier = await this.#repo.earlier(row.profile_id === null ? [] : [row.profile_id], type, '', row.id);
    const closed = { verified_at: now.toISOString(), code_hash: null, completed_at: now.toISOString(), ...this.#noAddress(row) };
    if (earlier) await this.#verifiedMove(row, 'denied', { ...closed, denial_reason: 'duplicate', duplicate_of: earlier.id }, actor, { duplicateOf: earlier.id });
    else await this.#verifiedMove(row, 'denied', { ...closed, denial_reason: 'unknown_subject' }, actor, { subjectErased: true });
    await this.#shredAddress(row, actor);
    throw new CandorError('RIGHTS_SUBJECT_ERASED', earlier ? { duplicateOf: earlier.id } : undefined);
  }

  /**
   * The profile holding the address a request's code was sent to (the canonical profile or one merged into it): a
   * verification's session is tied to it, so that after an unmerge it reaches that side only. The canonical profile
   * when the address cannot be read.
   */
  async #addressHolder(row: RequestRow, canonical: string): Promise<string> {
    const email = await this.#email(row);
    const normalized = email === null ? undefined : this.#deps.identity.normalize({ type: 'email', value: email });
    if (!normalized) return canonical;
    const hash = this.#deps.identity.hash(normalized);
    const held = (await this.#deps.identity.identifiersOf(canonical)).find((i) => i.type === 'email' && i.valueHash === hash);
    return held?.profileId ?? canonical;
  }

  /**
   * Counts a failed verification attempt on its own (it stays counted whatever fails after it) and, when `recorded`,
   * records it as an event; returns its number. RIGHTS_VERIFICATION_LOCKED when three were counted meanwhile.
   */
  async #countFailedAttempt(requestId: string, now: Date, recorded: boolean): Promise<number> {
    const attempt = await this.#repo.countCodeAttempt(requestId, MAX_CODE_ATTEMPTS, now.toISOString());
    if (attempt === undefined) throw await this.#notCounted(requestId);
    if (recorded) await this.#repo.addEvent(this.#event(requestId, 'verifying', 'verifying', SYSTEM_ACTOR, { failedAttempt: attempt }));
    return attempt;
  }

  /** The answer to a verification attempt that could not be counted: locked while still verifying, else not verifying. */
  async #notCounted(requestId: string): Promise<CandorError> {
    return (await this.#repo.get(requestId))?.state === 'verifying' ? new CandorError('RIGHTS_VERIFICATION_LOCKED') : notVerifying();
  }

  /**
   * The move that ends a verification with the right code, counting its attempt in the same update (only while fewer
   * than three are counted): if the move fails, the attempt is not used up. RIGHTS_VERIFICATION_LOCKED when failed
   * attempts used up the rest meanwhile.
   */
  async #verifiedMove(row: RequestRow, to: RequestState, changes: Partial<RequestRow>, actor: Actor, detail: Record<string, unknown>): Promise<RequestRow> {
    try {
      return await this.#move(row, to, changes, actor, detail, undefined, MAX_CODE_ATTEMPTS);
    } catch (error) {
      if (isCandorError(error, 'RIGHTS_TRANSITION_INVALID') && error.details?.reason === 'changed_meanwhile') throw await this.#notCounted(row.id);
      throw error;
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Execution

  /**
   * Moves a request, checking the state machine and that nobody moved it meanwhile (and, with `maxCodeAttempts`,
   * counting the verification attempt the move ends, see RequestsRepo.updateIn); records and audits the change.
   */
  async #move(row: RequestRow, to: RequestState, changes: Partial<RequestRow>, actor: Actor, detail: Record<string, unknown>, attempts?: number, maxCodeAttempts?: number): Promise<RequestRow> {
    const from = row.state as RequestState;
    assertTransition(from, to);
    const at = this.#now().toISOString();
    const moved = await this.#repo.transaction(async (tx) => {
      const done = await moveRequestIn(this.#repo, tx, row, { to, changes, actor, at, detail, attempts, maxCodeAttempts });
      // Last in the transaction (see #audit).
      if (done) await this.#deps.audit.appendIn(tx, [done.audit]);
      return done?.row;
    });
    if (!moved) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from, to, reason: 'changed_meanwhile' });
    return moved;
  }

  /**
   * Audits a change inside the transaction that makes it, as its last statement (on PostgreSQL the audit head is held
   * from there to the commit): a change that commits always has its entry; one whose entry cannot be written is not made.
   */
  async #audit(tx: SqlExecutor, actor: Actor, action: string, row: RequestRow, details: Record<string, unknown>): Promise<void> {
    await this.#deps.audit.appendIn(tx, [requestAudit(actor, action, row, details)]);
  }

  /** The key an address is sealed with: the request's own for an erasure (see noticeKey), the person's otherwise. */
  #addressKey(row: RequestRow, profileId: string): string {
    return row.type === 'erasure' ? noticeKey(row.id) : profileId;
  }

  #leaseUntil(): string {
    return new Date(this.#now().getTime() + this.#leaseMs).toISOString();
  }

  /**
   * The changes that claim a run, written by the same update as the move that starts it (compare-and-set on the
   * attempt count): the attempt is counted and the run holds the request for a lease its heartbeat renews.
   */
  #claim(row: RequestRow): Pick<RequestRow, 'attempts' | 'run_lease_until'> {
    return { attempts: Number(row.attempts) + 1, run_lease_until: this.#leaseUntil() };
  }

  /** A run whose lease ran out: the process running it stopped (a crash) before it ended. */
  #interrupted(row: RequestRow): boolean {
    return row.state === 'in_progress' && Number(row.awaiting_approval) === 0 && row.run_lease_until !== null && Date.parse(row.run_lease_until) <= this.#now().getTime();
  }

  /** An erasure request's address goes with the request when it closes without a run (its own key, see noticeKey). */
  #noAddress(row: RequestRow): Partial<RequestRow> {
    return row.type === 'erasure' ? { email: null } : {};
  }

  async #shredAddress(row: RequestRow, actor: Actor): Promise<void> {
    if (row.type === 'erasure' && row.email !== null) await this.#deps.keyring.destroySubjectKey(noticeKey(row.id), actor, 'essential.legal_obligation');
  }

  /**
   * Runs a request in progress whose run this process claimed (#claim). While it runs, a heartbeat renews the lease;
   * only the claimer records the end (compare-and-set on the attempt count). A failure keeps it in progress with the
   * attempt count and the error code (never cancelled); staff retry it (retry()) once the cause is fixed, and an
   * erasure held up by another connection's read of SQLite's WAL is retried by itself (#retryLater). When the
   * end is recorded: a completed access or portability request gets its download link (mailed), and a
   * verification-free request from the privacy center its receipt; mail that fails then is logged, the run stands.
   */
  async #runNow(row: RequestRow, actor: Actor): Promise<{ row: RequestRow; download?: { token: string; expiresAt: string } }> {
    const attempt = Number(row.attempts);
    // One renewal at a time, none once the run ended, and the end waits for the one in flight; the renewal itself
    // changes only a lease still held by this attempt, so one landing after the end (another node) changes nothing.
    let renewal: Promise<void> | undefined;
    let running = true;
    const heartbeat = setInterval(() => {
      if (!running || renewal !== undefined) return;
      renewal = this.#repo
        .renewLease(row.id, attempt, this.#leaseUntil())
        .then(() => undefined)
        .catch((err: unknown) => this.#deps.logger.warn({ err: isCandorError(err) ? err.code : 'error', requestId: row.id }, 'rights request lease not renewed'))
        .finally(() => {
          renewal = undefined;
        });
    }, Math.max(20, Math.floor(this.#leaseMs / 3)));
    heartbeat.unref();
    const stopHeartbeat = async () => {
      running = false;
      clearInterval(heartbeat);
      await renewal;
    };
    let result: { outcome: Record<string, unknown>; partial: boolean };
    let ended: { row: RequestRow; recorded: boolean };
    try {
      result = await this.#execute(row, actor, attempt);
    } catch (error) {
      await stopHeartbeat();
      const code = isCandorError(error) ? error.code : 'INTERNAL_ERROR';
      if (!isCandorError(error)) this.#deps.logger.error({ err: error, requestId: row.id }, 'rights request failed');
      ended = await this.#endRun(row, 'in_progress', { last_error: code, run_lease_until: null }, actor, { failed: code, attempt }, attempt);
      if (ended.recorded) await this.#receipt(ended.row);
      if (ended.recorded && code === WAL_BUSY) this.#retryLater(ended.row);
      return { row: ended.row };
    }
    await stopHeartbeat();
    const now = this.#now().toISOString();
    const to: RequestState = result.partial ? 'partially_completed' : 'completed';
    ended = await this.#endRun(row, to, { last_error: null, run_lease_until: null, outcome: JSON.stringify(result.outcome), completed_at: now, ...(row.type === 'erasure' ? { email: null, payload: null } : {}) }, actor, { attempt }, attempt);
    if (!ended.recorded) return { row: ended.row };
    await this.#receipt(ended.row);
    if (ended.row.state === 'completed' && (row.type === 'access' || row.type === 'portability')) {
      const issued = await this.#issueDownload(ended.row);
      return { row: issued.row, download: issued.download };
    }
    return { row: ended.row };
  }

  /** The receipt of a verification-free request started by address, once its run ended and unless already sent; a failure is logged. */
  async #receipt(row: RequestRow): Promise<void> {
    if (row.channel !== 'email' || verificationLevel(row.type as RequestType) !== 'none' || row.acknowledged_at !== null) return;
    try {
      const email = await this.#email(row);
      if (email !== null) await this.#mail(email, row, 'receipt');
    } catch (error) {
      this.#deps.logger.warn({ err: isCandorError(error) ? error.code : 'error', requestId: row.id }, 'rights request receipt not sent');
    }
  }

  /** Records the end of a run, unless another process took the run over meanwhile (then the row as it is now, not recorded). */
  async #endRun(row: RequestRow, to: RequestState, changes: Partial<RequestRow>, actor: Actor, detail: Record<string, unknown>, attempt: number): Promise<{ row: RequestRow; recorded: boolean }> {
    try {
      return { row: await this.#move(row, to, changes, actor, detail, attempt), recorded: true };
    } catch (error) {
      if (!isCandorError(error, 'RIGHTS_TRANSITION_INVALID')) throw error;
      this.#deps.logger.warn({ requestId: row.id, attempt }, 'rights request run taken over by another process; its end not recorded');
      return { row: (await this.#repo.get(row.id)) ?? row, recorded: false };
    }
  }

  /**
   * Resumes the runs cut off by a crash (the kernel calls it at start): each run whose lease ran out is claimed again
   * (compare-and-set, so of several servers only one runs it) and run; an erasure already carried out is not redone,
   * the request is completed and its notice sent if it was not. A run whose lease is still live (another process may
   * be running it) is looked at again when the lease runs out. Erasures whose last run found SQLite's write-ahead log
   * held by another connection's read (STORAGE_CHECKPOINT_BUSY) are run again too. Returns how many runs were resumed
   * (those included) and deferred.
   */
  async resumeInterrupted(): Promise<{ resumed: number; deferred: number }> {
    let resumed = 0;
    let deferred = 0;
    for (const row of await this.#repo.runs(RESUME_BATCH)) {
      if (this.#interrupted(row)) {
        if (await this.#resume(row, { resumed: true, interruptedAttempt: Number(row.attempts) })) resumed++;
      } else {
        this.#resumeLater(row);
        deferred++;
      }
    }
    for (const row of await this.#repo.failedWith(WAL_BUSY, RESUME_BATCH)) {
      if (await this.#resume(row, { retry: true, after: WAL_BUSY })) resumed++;
    }
    return { resumed, deferred };
  }

  /**
   * An erasure whose run found SQLite's write-ahead log held by another connection's read (STORAGE_CHECKPOINT_BUSY) is
   * run again by itself while this process runs: after walRetryMs, doubling with each attempt of the request up to
   * WAL_RETRY_MAX_MS; unless it was run meanwhile (staff, a start) or ended.
   */
  #retryLater(row: RequestRow): void {
    const delay = Math.min(this.#walRetryMs * 2 ** Math.max(0, Number(row.attempts) - 1), WAL_RETRY_MAX_MS);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#background(async () => {
        const now = await this.#repo.get(row.id);
        if (!now || now.state !== 'in_progress' || now.run_lease_until !== null || now.last_error !== WAL_BUSY || Number(now.attempts) !== Number(row.attempts)) return;
        await this.#resume(now, { retry: true, after: WAL_BUSY });
      });
    }, delay);
    timer.unref();
    this.#timers.add(timer);
  }

  /** Claims a run again (compare-and-set on the attempt count) and runs it; false when another process claimed it first. */
  async #resume(row: RequestRow, detail: Record<string, unknown>): Promise<boolean> {
    let claimed: RequestRow;
    try {
      claimed = await this.#move(row, 'in_progress', this.#claim(row), SYSTEM_ACTOR, detail, Number(row.attempts));
    } catch (error) {
      // Claimed by another process first.
      if (isCandorError(error, 'RIGHTS_TRANSITION_INVALID')) return false;
      throw error;
    }
    await this.#runNow(claimed, SYSTEM_ACTOR);
    return true;
  }

  #resumeLater(row: RequestRow): void {
    const left = Date.parse(row.run_lease_until ?? '') - this.#now().getTime();
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        this.#background(async () => {
          const now = await this.#repo.get(row.id);
          if (!now || now.state !== 'in_progress' || now.run_lease_until === null) return;
          if (this.#interrupted(now)) await this.#resume(now, { resumed: true, interruptedAttempt: Number(now.attempts) });
          else this.#resumeLater(now);
        });
      },
      Math.min(Math.max(left, 0), this.#leaseMs) + 50,
    );
    timer.unref();
    this.#timers.add(timer);
  }

  async #execute(row: RequestRow, actor: Actor, attempt: number): Promise<{ outcome: Record<string, unknown>; partial: boolean }> {
    const deps = this.#deps;
    const profileId = (await deps.identity.canonical(row.profile_id as string)) ?? (row.profile_id as string);
    const members = await deps.identity.members(profileId);
    const meta = { requestId: row.id };
    switch (row.type as RequestType) {
      case 'access':
      case 'portability':
        // The archive is built when it is downloaded, from the data as it is then.
        return { outcome: { archive: 'available_by_link', linkHours: DOWNLOAD_TTL_MS / 3_600_000 }, partial: false };
      case 'erasure': {
        const email = await this.#email(row);
        // A run cut off or failed after the erasure committed is not redone: the erasure's own row says it was, and
        // what was left of it (keys, ledger line, the WAL's truncation) is finished now, if a start did not already.
        let certificate = await deps.erasure.complete(row.id, actor);
        if (!certificate) {
          // Erased meanwhile by another request of theirs (two verified at once): that erasure stands for this one, whose
          // sealed address goes as on completion (the other request sends the notice).
          const erasedMeanwhile = async () => {
            await this.#shredAddress(row, actor);
            return { outcome: { erased: false, reason: 'already_erased' }, partial: false };
          };
          const subject = await deps.erasure.findSubject({ profileId }).catch((error: unknown) => {
            if (isCandorError(error, 'RIGHTS_SUBJECT_ERASED')) return 'erased' as const;
            throw error;
          });
          if (subject === 'erased') return erasedMeanwhile();
          if (!subject) {
            // Nothing to erase: the sealed address goes as on completion (the run's end clears the ciphertext).
            await this.#shredAddress(row, actor);
            return { outcome: { erased: false, reason: 'nothing_held' }, partial: false };
          }
          try {
            certificate = await deps.erasure.erase(subject, { requestId: row.id }, actor);
          } catch (error) {
            if (isCandorError(error, 'RIGHTS_SUBJECT_ERASED')) return erasedMeanwhile();
            throw error;
          }
          await deps.subjectSessions.revokeAll(subject.profileIds);
        }
        if (email !== null) {
          // Unsent, the notice fails the run (RIGHTS_MAIL_FAILED): the erasure stands, the sealed address is kept and a
          // retry sends it. Once sent, the address goes (its key, then the ciphertext): a resumed run does not send it again.
          await this.#mail(email, row, 'erased');
          await this.#shredAddress(row, actor);
          await this.#repo.update(row.id, 'in_progress', { email: null }, null, attempt);
        }
        return { outcome: { certificate: row.id, status: certificate.status, stores: certificate.stores.length }, partial: certificate.status !== 'complete' };
      }
      case 'restriction':
        await deps.consent.restrict(members, meta, actor);
        return { outcome: { restricted: members.length }, partial: false };
      case 'objection': {
        const result = await deps.consent.objectToMarketing(members, meta, actor);
        return { outcome: { objection: 'direct_marketing', withdrawn: result.entries.length, receiptId: result.receiptId }, partial: false };
      }
      case 'opt_out_sale_sharing': {
        const result = await deps.consent.optOutOfSaleSharing(members, meta, actor);
        return { outcome: { optedOut: result.entries.length, receiptId: result.receiptId }, partial: false };
      }
      case 'limit_sensitive': {
        const withdrawn: string[] = [];
        for (const id of members) withdrawn.push(...(await deps.consent.limitSensitive(id, meta, actor)).purposes);
        return { outcome: { withdrawn: [...new Set(withdrawn)].sort() }, partial: false };
      }
      case 'withdraw_consent': {
        let entries = 0;
        for (const id of members) entries += (await deps.consent.withdrawAll(id, { mechanism: 'privacy_center' }, actor)).entries.length;
        return { outcome: { withdrawn: entries }, partial: false };
      }
      case 'rectification': {
        if (row.payload === null) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'changes' });
        const requested = JSON.parse(await deps.keyring.decrypt(row.payload, PAYLOAD_CONTEXT)) as RequestedChange[];
        // Checked again: the plan may have changed since the request was made.
        await deps.catalog.refresh();
        const result = await deps.profiles.rectify(members, plannedChanges(deps.catalog, requested), meta, actor);
        // Art. 19: rectifications go to every recipient; none is configured yet, and the outcome says so.
        return { outcome: { changed: result.changed, recipients: [], propagation: 'no recipients configured' }, partial: false };
      }
    }
  }

  async #email(row: RequestRow): Promise<string | null> {
    if (row.email === null) return null;
    try {
      return await this.#deps.keyring.decrypt(row.email, EMAIL_CONTEXT);
    } catch (error) {
      if (isCandorError(error, 'CRYPTO_KEY_DESTROYED') || isCandorError(error, 'CRYPTO_KEY_UNKNOWN')) return null;
      throw error;
    }
  }

  /** A new download link for a completed access or portability request, mailed when an address is on file (a failure is logged). */
  async #issueDownload(row: RequestRow): Promise<{ row: RequestRow; download: { token: string; expiresAt: string } }> {
    const token = randomBytes(32).toString('base64url');
    const expiresAt = new Date(this.#now().getTime() + DOWNLOAD_TTL_MS).toISOString();
    const issued: RequestRow = { ...row, download_hash: hashToken(token), download_expires_at: expiresAt };
    await this.#repo.update(row.id, row.state, { download_hash: issued.download_hash, download_expires_at: expiresAt }, null);
    try {
      const email = await this.#email(issued);
      if (email !== null) await this.#mail(email, issued, 'download', token);
    } catch (error) {
      this.#deps.logger.warn({ err: isCandorError(error) ? error.code : 'error', requestId: row.id }, 'rights request download link not mailed');
    }
    return { row: issued, download: { token, expiresAt } };
  }

  async #mail(to: string, row: RequestRow, kind: 'code' | 'receipt' | 'download' | 'erased' | 'extended' | 'denied', secret?: string): Promise<void> {
    const base = this.#deps.publicUrl.replace(/\/$/, '');
    const texts: Record<typeof kind, [string, string]> = {
      code: ['Your verification code', `Your code is ${secret ?? ''}. It is valid for 10 minutes.\n\nRequest ${row.id} (${row.type}). If you did not ask for this, ignore this message.`],
      receipt: ['We received your request', `We received your request ${row.id} (${row.type}) and will answer by ${row.due_at.slice(0, 10)}.`],
      download: ['Your data is ready', `Download your data within 24 hours: ${base}/v1/rights/downloads/${secret ?? ''}\n\nRequest ${row.id}.`],
      erased: [ERASED_NOTICE_SUBJECT, `We erased the data we held about you (request ${row.id}).`],
      extended: ['We need more time for your request', `We extended the deadline of your request ${row.id} to ${row.due_at.slice(0, 10)}. Reason: ${secret ?? ''}`],
      denied: ['About your request', `We could not carry out your request ${row.id}. Reason: ${secret ?? ''}`],
    };
    const [subject, text] = texts[kind];
    await this.#deps.mailer.send({ to, subject, text, requestId: row.id });
    if (row.acknowledged_at === null) {
      row.acknowledged_at = this.#now().toISOString();
      await this.#repo.update(row.id, row.state, { acknowledged_at: row.acknowledged_at }, null);
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Subjects' own view

  /** The requests of the person behind a session (every merged profile), newest first. */
  async mine(profileId: string): Promise<RequestView[]> {
    const canonical = (await this.#deps.identity.canonical(profileId)) ?? profileId;
    const now = this.#now();
    return (await this.#repo.ofProfiles(await this.#deps.identity.members(canonical))).map((r) => requestView(r, now));
  }

  /** One request of the person behind a session; RIGHTS_REQUEST_NOT_FOUND for anyone else's, as for an unknown id. */
  async mineOne(profileId: string, requestId: string): Promise<RequestView> {
    return requestView(await this.#own(profileId, requestId), this.#now());
  }

  async #own(profileId: string, requestId: string): Promise<RequestRow> {
    const row = await this.#repo.get(requestId);
    const canonical = (await this.#deps.identity.canonical(profileId)) ?? profileId;
    const members = new Set(await this.#deps.identity.members(canonical));
    if (!row || row.profile_id === null || !members.has(row.profile_id)) throw new CandorError('RIGHTS_REQUEST_NOT_FOUND');
    return row;
  }

  /** A fresh download link for a completed access or portability request of the person behind a session. */
  async downloadLink(profileId: string, requestId: string): Promise<{ token: string; expiresAt: string }> {
    const row = await this.#own(profileId, requestId);
    if ((row.type !== 'access' && row.type !== 'portability') || row.state !== 'completed') throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'no_archive' });
    return (await this.#issueDownload(row)).download;
  }

  /** The archive behind a download link, built now by the exporter (which audits it); RIGHTS_DOWNLOAD_INVALID when unknown or expired. */
  async download(token: string): Promise<{ requestId: string; archive: Uint8Array }> {
    const row = typeof token === 'string' && token.length === 43 ? await this.#repo.byDownloadHash(hashToken(token)) : undefined;
    if (!row || row.download_expires_at === null || this.#now().getTime() > Date.parse(row.download_expires_at) || row.profile_id === null) {
      throw new CandorError('RIGHTS_DOWNLOAD_INVALID');
    }
    // A merge of the person undone since the link was issued: whoever got it may be on the other side (a device merged
    // in by mistake), so it is no longer valid either; the person gets a fresh one with a session.
    const issuedAt = Date.parse(row.download_expires_at) - DOWNLOAD_TTL_MS;
    const merges = await this.#deps.identity.merges(row.profile_id);
    if (merges.some((m) => m.undoneAt !== null && Date.parse(m.undoneAt) >= issuedAt)) throw new CandorError('RIGHTS_DOWNLOAD_INVALID');
    // A person erased since the link was issued: the link is simply no longer valid.
    const subject = await this.#deps.erasure.findSubject({ profileId: row.profile_id }).catch((error: unknown) => {
      if (isCandorError(error, 'RIGHTS_SUBJECT_ERASED')) return null;
      throw error;
    });
    if (!subject) throw new CandorError('RIGHTS_DOWNLOAD_INVALID');
    const archive = await this.#deps.exporter.archive(subject, { requestId: row.id }, { id: `subject:${row.subject}`, role: 'subject' });
    return { requestId: row.id, archive };
  }

  // ------------------------------------------------------------------------------------------------------------
  // Staff

  /**
   * The queue with due dates: open requests and denials whose notice was not sent (or the requests in `states`), soonest
   * due first; `due` narrows to overdue or due-soon ones.
   */
  async queue(options: { states?: readonly RequestState[]; due?: 'overdue' | 'due_soon'; soonDays?: number; limit?: number } = {}): Promise<RequestView[]> {
    await this.closeUnverified();
    const now = this.#now();
    // By default also the denials whose notice was refused: staff have to send it again (retry).
    const rows = await this.#repo.queue(options.states ?? OPEN_STATES, options.limit ?? 500, options.states === undefined ? DENIAL_NOT_SENT : undefined);
    return rows.map((r) => requestView(r, now, options.soonDays)).filter((v) => options.due === undefined || v.clock === options.due);
  }

  /**
   * One request with its recorded transitions; a rectification also with the changes it proposes, personal values
   * decrypted only when `decrypt` (the reader's role may see them) and masked otherwise.
   */
  async get(
    requestId: string,
    options: { decrypt: boolean } = { decrypt: false },
  ): Promise<RequestView & { subject: string | null; changes?: ProposedChange[] | null; events: { at: string; from: string | null; to: string; actor: string; role: string; detail: unknown }[] }> {
    const row = await this.#repo.get(requestId);
    if (!row) throw new CandorError('RIGHTS_REQUEST_NOT_FOUND');
    const events = await this.#repo.events(requestId);
    return {
      ...requestView(row, this.#now()),
      subject: row.subject,
      ...(row.type === 'rectification' ? { changes: await this.#proposed(row, options.decrypt) } : {}),
      events: events.map((e) => ({ at: e.at, from: e.from_state, to: e.to_state, actor: e.actor, role: e.role, detail: JSON.parse(e.detail) as unknown })),
    };
  }

  /** The changes of a rectification request for staff; null when none is stored (an unknown address) or none is readable any more. */
  async #proposed(row: RequestRow, decrypt: boolean): Promise<ProposedChange[] | null> {
    if (row.payload === null) return null;
    let requested: RequestedChange[];
    try {
      requested = JSON.parse(await this.#deps.keyring.decrypt(row.payload, PAYLOAD_CONTEXT)) as RequestedChange[];
    } catch (error) {
      if (isCandorError(error, 'CRYPTO_KEY_DESTROYED') || isCandorError(error, 'CRYPTO_KEY_UNKNOWN')) return null;
      throw error;
    }
    await this.#deps.catalog.refreshIfChanged();
    const declared = this.#deps.catalog.check('identify', undefined, { traits: {} }).declared;
    return requested.map((change) => {
      const field = declared.get(`traits.${change.key}`);
      // A trait the plan no longer declares is treated as personal: the most restrictive reading.
      const personal = field?.personal ?? true;
      const shown = !personal ? { value: change.value, state: 'plain' as const } : decrypt ? { value: change.value, state: 'decrypted' as const } : { value: MASKED, state: 'masked' as const };
      return { key: change.key, ...shown, personal, category: field?.category ?? null };
    });
  }

  async #staffRow(requestId: string): Promise<RequestRow> {
    const row = await this.#repo.get(requestId);
    if (!row) throw new CandorError('RIGHTS_REQUEST_NOT_FOUND');
    return row;
  }

  /** Approves a request waiting for staff (rectification) and runs it. */
  async approve(requestId: string, actor: Actor): Promise<RequestView> {
    const row = await this.#staffRow(requestId);
    if (row.state !== 'in_progress' || Number(row.awaiting_approval) !== 1) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'not_awaiting_approval' });
    const approved = await this.#move(row, 'in_progress', { awaiting_approval: 0, ...this.#claim(row) }, actor, { approved: true }, Number(row.attempts));
    return requestView((await this.#runNow(approved, actor)).row, this.#now());
  }

  /**
   * Runs a failed, interrupted (its run cut off by a crash) or partially completed request again; it stays in progress
   * if it fails again. A request whose run is under way is RIGHTS_TRANSITION_INVALID (reason `running`). A denied
   * request whose notice was refused (lastError RIGHTS_MAIL_FAILED) gets its notice sent again, and stays denied.
   */
  async retry(requestId: string, actor: Actor): Promise<RequestView> {
    const row = await this.#staffRow(requestId);
    // A denial whose notice was refused: the denial stands, only the notice is sent again.
    // A denial whose notice was refused (or whose re-send was cut off by a crash a lease ago): sent again.
    const stuckSending = row.last_error === DENIAL_SENDING && Date.parse(row.updated_at) + this.#leaseMs <= this.#now().getTime();
    if (row.state === 'denied' && (row.last_error === DENIAL_NOT_SENT || stuckSending)) {
      // Claimed first (compare-and-set on the attempt count, marked as being sent): of retries sent at once, one sends
      // the notice; the others, and any that reads the row while it is sent, find nothing to retry.
      const claimed = { ...row, attempts: Number(row.attempts) + 1, last_error: DENIAL_SENDING, updated_at: this.#now().toISOString() };
      const won = await this.#repo.update(row.id, 'denied', { attempts: claimed.attempts, last_error: DENIAL_SENDING, updated_at: claimed.updated_at }, null, Number(row.attempts));
      if (!won) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'running' });
      return requestView(await this.#tellDenial(claimed, actor, true), this.#now());
    }
    if (row.state === 'denied' && row.last_error === DENIAL_SENDING) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'running' });
    const open = row.state === 'in_progress' && Number(row.awaiting_approval) === 0;
    if (open && row.run_lease_until !== null && !this.#interrupted(row)) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'running' });
    const failed = open && (row.last_error !== null || this.#interrupted(row));
    if (!failed && row.state !== 'partially_completed') throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'nothing_to_retry' });
    const claimed = await this.#move(row, 'in_progress', this.#claim(row), actor, { retry: true }, Number(row.attempts));
    return requestView((await this.#runNow(claimed, actor)).row, this.#now());
  }

  /**
   * Denies a request with a reason, said to the subject by mail when an address is on file. The denial stands even if
   * the mail is refused: the request then keeps its (sealed) address and `lastError` RIGHTS_MAIL_FAILED, with an
   * event, and retry() sends the notice again.
   */
  async deny(requestId: string, reason: string, actor: Actor): Promise<RequestView> {
    if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 1000) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'denial_reason' });
    const row = await this.#staffRow(requestId);
    if (row.state === 'in_progress' && row.run_lease_until !== null && !this.#interrupted(row)) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'running' });
    // A failed run's error is in its events; on a denied request lastError speaks of the denial's notice only.
    const denied = await this.#move(row, 'denied', { denial_reason: reason, code_hash: null, completed_at: this.#now().toISOString(), run_lease_until: null, last_error: null }, actor, { denied: true });
    return requestView(await this.#tellDenial(denied, actor, false), this.#now());
  }

  /**
   * Mails a denial to the address on file, then lets an erasure request's sealed address go (its key, then the
   * ciphertext). A refused mail keeps the address and records DENIAL_NOT_SENT as lastError with an event, for retry().
   * Without a readable address (none given, or shredded since) there is nobody to tell: the address goes.
   */
  async #tellDenial(row: RequestRow, actor: Actor, again: boolean): Promise<RequestRow> {
    let email: string | null;
    try {
      email = await this.#email(row);
      if (email !== null) await this.#mail(email, row, 'denied', row.denial_reason ?? '');
    } catch (error) {
      this.#deps.logger.warn({ err: isCandorError(error) ? error.code : 'error', requestId: row.id }, 'rights request denial not mailed');
      const failed: RequestRow = { ...row, last_error: DENIAL_NOT_SENT, updated_at: this.#now().toISOString() };
      await this.#repo.update(row.id, 'denied', { last_error: DENIAL_NOT_SENT, updated_at: failed.updated_at }, this.#event(row.id, 'denied', 'denied', actor, { noticeFailed: DENIAL_NOT_SENT, ...(again ? { retry: true } : {}) }));
      return failed;
    }
    const detail = email !== null ? { noticeSent: true, retry: true } : { noticeSent: false, reason: 'no_address', retry: true };
    await this.#shredAddress(row, actor);
    const changes: Partial<RequestRow> = { last_error: null, ...this.#noAddress(row) };
    if (again || row.last_error !== null || (row.type === 'erasure' && row.email !== null)) {
      changes.updated_at = this.#now().toISOString();
      await this.#repo.update(row.id, 'denied', changes, again ? this.#event(row.id, 'denied', 'denied', actor, detail) : null);
    }
    return { ...row, ...changes };
  }

  /**
   * Extends the deadline once, where the law allows it, with a notice mailed to the subject inside the first period.
   * The extension is recorded only once the notice is sent.
   */
  async extend(requestId: string, reason: string, actor: Actor): Promise<RequestView> {
    if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 1000) throw new CandorError('RIGHTS_REQUEST_INVALID', { reason: 'extension_reason' });
    const row = await this.#staffRow(requestId);
    if (!(OPEN_STATES as readonly string[]).includes(row.state)) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'closed' });
    const now = this.#now();
    const dueAt = extendedDueAt(row.type as RequestType, row.jurisdiction as Jurisdiction, new Date(row.received_at), now, row.extended_at !== null);
    const email = await this.#email(row);
    if (email === null) throw new CandorError('RIGHTS_MAIL_FAILED', { reason: 'no_address' });
    const extended: RequestRow = { ...row, due_at: dueAt, extended_at: now.toISOString(), extension_reason: reason };
    await this.#mail(email, extended, 'extended', reason);
    const ok = await this.#repo.transaction(async (tx) => {
      const event = this.#event(row.id, row.state as RequestState, row.state as RequestState, actor, { extendedTo: dueAt });
      if (!(await this.#repo.updateIn(tx, row.id, row.state, { due_at: dueAt, extended_at: extended.extended_at, extension_reason: reason, updated_at: now.toISOString() }, event))) return false;
      await this.#audit(tx, actor, 'rights.request.extend', extended, { dueAt, noticeSent: true });
      return true;
    });
    if (!ok) throw new CandorError('RIGHTS_TRANSITION_INVALID', { from: row.state, reason: 'changed_meanwhile' });
    return requestView(extended, now);
  }

  /** The erasure certificate of a request, or RIGHTS_REQUEST_NOT_FOUND. */
  async certificate(requestId: string): Promise<NonNullable<Awaited<ReturnType<ErasureEngine['certificate']>>>> {
    const certificate = await this.#deps.erasure.certificate(requestId);
    if (!certificate) throw new CandorError('RIGHTS_REQUEST_NOT_FOUND');
    return certificate;
  }

  /** Denies requests whose verification never happened, a day after their code expired. Returns how many. */
  async closeUnverified(): Promise<number> {
    const now = this.#now();
    let closed = 0;
    for (const row of await this.#repo.queue(['verifying'], 1000)) {
      if (row.code_expires_at === null || Date.parse(row.code_expires_at) + UNVERIFIED_CLOSE_MS > now.getTime()) continue;
      try {
        await this.#move(row, 'denied', { denial_reason: 'not_verified', code_hash: null, completed_at: now.toISOString(), ...this.#noAddress(row) }, SYSTEM_ACTOR, { unverified: true });
        await this.#shredAddress(row, SYSTEM_ACTOR);
        closed++;
      } catch (error) {
        if (!isCandorError(error, 'RIGHTS_TRANSITION_INVALID')) throw error;
      }
    }
    return closed;
  }
}

/** A request as staff and its subject see it (no address, payload, code or link digest); `clock` for open ones. */
export function requestView(row: RequestRow, now: Date, soonDays?: number): RequestView {
  const state = row.state as RequestState;
  const open = (OPEN_STATES as readonly string[]).includes(state);
  return {
    id: row.id,
    type: row.type as RequestType,
    jurisdiction: row.jurisdiction as Jurisdiction,
    state,
    receivedAt: row.received_at,
    dueAt: row.due_at,
    acknowledgeBy: row.acknowledge_by,
    acknowledgedAt: row.acknowledged_at,
    extended: row.extended_at !== null,
    clock: open ? clockStatus(row.due_at, now, soonDays) : null,
    verifiedAt: row.verified_at,
    awaitingApproval: Number(row.awaiting_approval) === 1,
    attempts: Number(row.attempts),
    lastError: row.last_error,
    denialReason: row.denial_reason,
    duplicateOf: row.duplicate_of,
    outcome: parseJson(row.outcome),
    downloadExpiresAt: row.download_expires_at,
    completedAt: row.completed_at,
  };
}
