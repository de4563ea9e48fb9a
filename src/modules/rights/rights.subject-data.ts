// What the rights module itself holds about a person: their rights requests with every transition (exported; kept at
// erasure as the record of how each request was answered), and the start counts of the rate limit (a keyed
// pseudonym of the address, deleted after the rate window). When the person goes (an erasure, or retention's deletion
// of an inactive person) it closes their other requests and destroys the keys sealing their addresses. Registered in
// the kernel's `subjectData` and retention handlers.
import type { Kysely } from 'kysely';
import { isCandorError } from '../../shared/errors.ts';
import { subtractDuration } from '../../shared/duration.ts';
import type {
  DataSubject,
  EraseOutcome,
  ExportSection,
  FieldDisclosure,
  RetentionHandler,
  RetentionRule,
  SubjectClosing,
  SubjectDataHandler,
  SubjectDeletion,
  SweepCount,
  SweepOptions,
} from '../../shared/subject-data.ts';
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import type { Keyring } from '../crypto/index.ts';
import { OtherRequests } from './other-requests.ts';
import { REASON_REMOVED, RequestsRepo, type RequestsTables } from './requests.repo.ts';
import { requestView, type RequestView } from './requests.ts';

/** Why a person's request records stay after their erasure. */
export const REQUESTS_KEPT_REASON =
  'GDPR Art. 5(2) and 12, CCPA regulations §7101: the controller must be able to show how and when each request was answered. The rows hold the type, states and their times, deadlines, outcome (counts, receipt and request ids), the codes of Candor’s own denial reasons, the profile id and a keyed pseudonym; staff members’ free-text denial and extension reasons are replaced with “[removed at erasure]”; the address and requested changes are encrypted with a data key this erasure destroys (an erasure request’s own address with the request’s key: this erasure’s once its notice is sent, any other’s right after the commit).';

export const RATE_EVENTS_RULE = 'rights.rate_events';
/** The erasure certificate's line for the person's other rights requests, closed by the erasure. */
export const OTHER_REQUESTS_LINE = 'rights_requests (the person\'s other requests)';
const EMAIL_CONTEXT = 'rights.requests.email';
const PAYLOAD_CONTEXT = 'rights.requests.payload';
const LEGAL = ['essential.legal_obligation'];
/** Rows per `in` list: well under the parameter limits of both databases. */
const CHUNK = 256;

const FIELDS: readonly FieldDisclosure[] = [
  { field: 'requests[]', category: 'user.privacy_preferences', purposes: LEGAL, source: 'candor', recipients: [], retention: null },
  { field: 'requests[].email', category: 'user.contact.email', purposes: LEGAL, source: 'privacy center', recipients: [], retention: null },
  { field: 'requests[].changes', category: 'user', purposes: LEGAL, source: 'privacy center', recipients: [], retention: null },
  { field: 'requests[].events[]', category: 'user.privacy_preferences', purposes: LEGAL, source: 'candor', recipients: [], retention: null },
];

export interface RightsSubjectDataDeps {
  storage: Storage;
  keyring: Pick<Keyring, 'decrypt' | 'pseudonym' | 'destroySubjectKey'>;
  /** The rate limit's window: a start older than this counts for nothing and is deleted. */
  rateWindowMs: number;
}

/** A value sealed with a data key: the plaintext, or why there is none. */
type Sealed<T> = { state: 'decrypted'; value: T } | { state: 'none' | 'shredded'; value: null };

/**
 * The person's rights requests (exported, kept at erasure, their other open ones closed when the person goes) and the
 * retention of the rate limit's start counts.
 */
export class RightsSubjectData implements SubjectDataHandler, RetentionHandler {
  readonly module = 'rights';
  readonly #deps: RightsSubjectDataDeps;
  readonly #db: Kysely<RequestsTables>;
  readonly #repo: RequestsRepo;
  readonly #otherRequests: OtherRequests;

  constructor(deps: RightsSubjectDataDeps) {
    this.#deps = deps;
    this.#db = deps.storage.db.withTables<RequestsTables>();
    this.#repo = new RequestsRepo(deps.storage);
    this.#otherRequests = new OtherRequests(deps);
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const rows = await this.#repo.allOfProfiles(subject.profileIds);
    const events = await this.#repo.eventsOf(rows.map((r) => r.id));
    const now = new Date();
    const requests = [];
    for (const row of rows) {
      const email = await this.#open(row.email, EMAIL_CONTEXT);
      const changes = await this.#open(row.payload, PAYLOAD_CONTEXT);
      // The request as the person sees it in the privacy center, less its download link's expiry (the link is no
      // data about them), with what only the archive gives.
      const view: Partial<RequestView> = requestView(row, now);
      delete view.downloadExpiresAt;
      requests.push({
        ...view,
        channel: row.channel,
        profileId: row.profile_id,
        extendedAt: row.extended_at,
        extensionReason: row.extension_reason,
        updatedAt: row.updated_at,
        email: email.value,
        emailState: email.state,
        changes: changes.value === null ? null : (JSON.parse(changes.value) as unknown),
        changesState: changes.state,
        // Who moved it is given by role only: staff members' ids are not the subject's data.
        events: (events.get(row.id) ?? []).map((e) => ({ at: e.at, from: e.from_state, to: e.to_state, by: e.role, detail: JSON.parse(e.detail) as unknown })),
      });
    }
    return { module: this.module, title: 'Rights requests', data: { requests }, fields: FIELDS };
  }

  async erase(tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]> {
    let requests = 0;
    let events = 0;
    for (let i = 0; i < subject.profileIds.length; i += CHUNK) {
      const ids = subject.profileIds.slice(i, i + CHUNK);
      const count = this.#db.selectFrom('rights_requests').select((eb) => eb.fn.countAll<number>().as('n')).where('profile_id', 'in', ids).compile();
      requests += Number((await tx.all<{ n: number | string }>(count.sql, count.parameters))[0]?.n ?? 0);
      const countEvents = this.#db
        .selectFrom('rights_request_events')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('request_id', 'in', (eb) => eb.selectFrom('rights_requests').select('id').where('profile_id', 'in', ids))
        .compile();
      events += Number((await tx.all<{ n: number | string }>(countEvents.sql, countEvents.parameters))[0]?.n ?? 0);
    }
    // Staff members' free text may name or describe the person: it goes, the record of the answer stays.
    const reasons = await this.#repo.removeStaffReasonsIn(tx, subject.profileIds);
    const kept = (count: number) => (count > 0 ? { kept: { count, reason: REQUESTS_KEPT_REASON } } : {});
    return [
      { store: 'rights_requests', status: 'confirmed', deleted: 0, ...kept(requests), detail: `${reasons} free-text staff reasons (denial, extension) replaced with "${REASON_REMOVED}"` },
      { store: 'rights_request_events', status: 'confirmed', deleted: 0, ...kept(events) },
      {
        store: 'rights_rate_events',
        status: 'confirmed',
        deleted: 0,
        detail: `starts counted for the rate limit under a keyed pseudonym of the address: those of the addresses on the subject's requests are deleted right after this erasure's commit, every start by retention rule ${RATE_EVENTS_RULE} once older than ${this.#period()}`,
      },
    ];
  }

  /**
   * Closes the person's other requests (all but the erasing one) in the deletion's transaction: see OtherRequests.closeIn.
   * Their audit entries go back to the caller, to be appended last in that transaction.
   */
  async closeIn(tx: SqlExecutor, subject: DataSubject, deletion: SubjectDeletion): Promise<SubjectClosing> {
    const { entries } = await this.#otherRequests.closeIn(tx, subject, deletion);
    const how =
      deletion.requestId === null
        ? `${entries.length} other requests of the person closed by this deletion: open ones denied (\`subject_erased\`)`
        : `${entries.length} other requests of the person closed by this erasure: open ones denied (an erasure request as this one's duplicate, the others \`subject_erased\`)`;
    return {
      outcome: {
        store: OTHER_REQUESTS_LINE,
        status: 'confirmed',
        deleted: 0,
        detail: `${how} with their verification codes, addresses and requested changes cleared, and denials whose notice was not sent left without it; the data keys sealing erasure requests' addresses are destroyed after the commit, then the addresses cleared. A request whose run is under way (or was cut off) ends by itself and lets its address go`,
      },
      counts: { requestsClosed: entries.length },
      audit: entries,
    };
  }

  /** After the deletion's commit: the keys sealing the addresses of the person's other erasure requests, then the addresses. */
  destroyKeys(subject: DataSubject, deletion: SubjectDeletion): Promise<number> {
    return this.#otherRequests.shredAddresses(subject, deletion);
  }

  /** Deletes the rate limit's start counts of the addresses on the person's requests, while their keys still exist. */
  async afterErase(subject: DataSubject): Promise<void> {
    const keys = new Set<string>();
    for (const row of await this.#repo.allOfProfiles(subject.profileIds)) {
      const email = await this.#open(row.email, EMAIL_CONTEXT);
      if (email.value !== null) keys.add(`id:${this.#deps.keyring.pseudonym('rights.rate', email.value)}`);
    }
    await this.#repo.deleteStarts([...keys]);
  }

  /**
   * When the person last acted on their rights, read on `executor` (retention's inactivity rule counts it as activity):
   * the latest time one of their requests was received, verified or completed; null when they made none.
   */
  lastActivityIn(executor: SqlExecutor, profileIds: readonly string[]): Promise<string | null> {
    return this.#repo.lastActivityIn(executor, profileIds);
  }

  async rules(): Promise<readonly RetentionRule[]> {
    return [
      {
        id: RATE_EVENTS_RULE,
        module: this.module,
        store: 'rights_rate_events',
        category: 'user.unique_id.pseudonymous',
        period: this.#period(),
        clock: 'at (the start)',
        action: 'delete',
        source: 'module',
        description: 'Starts of rights requests counted for the rate limit, under a keyed pseudonym of the address or client: deleted once older than the rate window, when they count for nothing.',
      },
    ];
  }

  async sweep(now: Date, options: SweepOptions): Promise<SweepCount[]> {
    const cutoff = subtractDuration(now, this.#period()).toISOString();
    const count = options.dryRun ? await this.#repo.countStartsBefore(cutoff) : await this.#repo.deleteStartsBefore(cutoff, options.batchSize);
    return [{ rule: RATE_EVENTS_RULE, store: 'rights_rate_events', category: 'user.unique_id.pseudonymous', count }];
  }

  /** The rate window as an ISO-8601 duration. */
  #period(): string {
    const seconds = Math.max(1, Math.ceil(this.#deps.rateWindowMs / 1000));
    return seconds % 3600 === 0 ? `PT${seconds / 3600}H` : `PT${seconds}S`;
  }

  /** Decrypts a sealed value; `shredded` once its key is destroyed (after an erasure, or an erasure request's notice). */
  async #open(ciphertext: string | null, context: string): Promise<Sealed<string>> {
    if (ciphertext === null) return { state: 'none', value: null };
    try {
      return { state: 'decrypted', value: await this.#deps.keyring.decrypt(ciphertext, context) };
    } catch (error) {
      if (isCandorError(error, 'CRYPTO_KEY_DESTROYED') || isCandorError(error, 'CRYPTO_KEY_UNKNOWN')) return { state: 'shredded', value: null };
      throw error;
    }
  }
}
