// The person's other rights requests when the person goes (an erasure, or retention's deletion of an inactive person):
// closed in the transaction that deletes them, and the keys sealing their addresses destroyed after its commit. Run by
// the rights module's subject-data handler (RightsSubjectData.closeIn and destroyKeys).
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import type { DataSubject, SubjectDeletion } from '../../shared/subject-data.ts';
import type { AuditEvent } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import { moveRequestIn } from './request-moves.ts';
import { noticeKey, RequestsRepo, type RequestRow } from './requests.repo.ts';
import { assertTransition, type RequestState } from './requests.ts';

const PURPOSE = 'essential.legal_obligation';

/** Closes a deleted person's other rights requests, and destroys the keys that sealed their addresses. */
export class OtherRequests {
  readonly #requests: RequestsRepo;
  readonly #keyring: Pick<Keyring, 'destroySubjectKey'>;

  constructor(deps: { storage: Storage; keyring: Pick<Keyring, 'destroySubjectKey'> }) {
    this.#requests = new RequestsRepo(deps.storage);
    this.#keyring = deps.keyring;
  }

  /**
   * Closes the person's other requests in the deleting transaction, each with its event (the audit entries are
   * returned, for the end of the transaction): an open one is denied — an erasure request as the erasing request's
   * duplicate, any other `subject_erased` — and loses its code, address and changes (an erasure request's address,
   * sealed with its own key, goes after the commit with that key: shredAddresses); a denied erasure request whose
   * notice was refused no longer waits to send it. A run under way, or cut off, is left to end by itself (its erasure
   * finds the person erased and lets its address go).
   */
  async closeIn(tx: SqlExecutor, subject: DataSubject, deletion: SubjectDeletion): Promise<{ entries: AuditEvent[] }> {
    const erasing = deletion.requestId;
    const cause = erasing === null ? { deletedFor: deletion.reason } : { erasureRequest: erasing };
    const entries: AuditEvent[] = [];
    for (const row of await this.#requests.closableIn(tx, subject.profileIds, erasing)) {
      let changes: Partial<RequestRow>;
      let detail: Record<string, unknown>;
      if (row.state === 'denied') {
        changes = { last_error: null };
        detail = { noticeDropped: 'subject_erased', ...cause };
      } else {
        assertTransition(row.state as RequestState, 'denied');
        const duplicate = row.type === 'erasure' && erasing !== null;
        changes = {
          denial_reason: duplicate ? 'duplicate' : 'subject_erased',
          // An erasure request's address goes with its key, after the commit; any other's key is the person's.
          ...(row.type === 'erasure' ? {} : { email: null }),
          ...(duplicate ? { duplicate_of: erasing } : {}),
          code_hash: null,
          payload: null,
          awaiting_approval: 0,
          run_lease_until: null,
          last_error: null,
          completed_at: deletion.at,
        };
        detail = { subjectErased: true, ...cause, ...(duplicate ? { duplicateOf: erasing } : {}) };
      }
      // Compare-and-set: a request that moved meanwhile (its verification won the race) is left to its run.
      const moved = await moveRequestIn(this.#requests, tx, row, { to: 'denied', changes, actor: deletion.actor, at: deletion.at, detail });
      if (moved) entries.push(moved.audit);
    }
    return { entries };
  }

  /** After the commit: the keys sealing the addresses of the person's other (closed) erasure requests, then the addresses; returns the keys destroyed. */
  async shredAddresses(subject: DataSubject, deletion: SubjectDeletion): Promise<number> {
    let destroyed = 0;
    for (const id of await this.#requests.sealedAddresses(subject.profileIds, deletion.requestId)) {
      if (await this.#keyring.destroySubjectKey(noticeKey(id), deletion.actor, PURPOSE)) destroyed++;
      await this.#requests.clearAddress(id);
    }
    return destroyed;
  }
}
