// The person's other rights requests when the person goes: closed in the transaction that deletes them (an erasure's,
// or retention's deletion of an inactive person), and the keys sealing their addresses destroyed after its commit.
import type { Actor } from '../../shared/actor.ts';
import type { DataSubject } from '../../shared/subject-data.ts';
import { sortableId } from '../../shared/random.ts';
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import type { AuditEvent } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import { noticeKey, RequestsRepo, type RequestRow } from './requests.repo.ts';

const PURPOSE = 'essential.legal_obligation';

/** What deletes the person: an erasure request (by its id) or the retention rule for inactive people. */
export type DeletedBy = { readonly erasureRequest: string } | { readonly inactivity: true };

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
  async closeIn(tx: SqlExecutor, subject: DataSubject, at: { by: DeletedBy; startedAt: string; actor: Actor }): Promise<{ entries: AuditEvent[] }> {
    const erasing = 'erasureRequest' in at.by ? at.by.erasureRequest : null;
    const cause = erasing === null ? { deletedFor: 'inactivity' } : { erasureRequest: erasing };
    const entries: AuditEvent[] = [];
    for (const row of await this.#requests.closableIn(tx, subject.profileIds, erasing)) {
      const from = row.state;
      let changes: Partial<RequestRow>;
      let detail: Record<string, unknown>;
      if (from === 'denied') {
        changes = { last_error: null, updated_at: at.startedAt };
        detail = { noticeDropped: 'subject_erased', ...cause };
      } else {
        const duplicate = row.type === 'erasure' && erasing !== null;
        changes = {
          state: 'denied',
          denial_reason: duplicate ? 'duplicate' : 'subject_erased',
          // An erasure request's address goes with its key, after the commit; any other's key is the person's.
          ...(row.type === 'erasure' ? {} : { email: null }),
          ...(duplicate ? { duplicate_of: erasing } : {}),
          code_hash: null,
          payload: null,
          awaiting_approval: 0,
          run_lease_until: null,
          last_error: null,
          completed_at: at.startedAt,
          updated_at: at.startedAt,
        };
        detail = { subjectErased: true, ...cause, ...(duplicate ? { duplicateOf: erasing } : {}) };
      }
      const event = { id: sortableId('rre_'), request_id: row.id, at: at.startedAt, from_state: from, to_state: 'denied', actor: at.actor.id, role: at.actor.role, detail: JSON.stringify(detail) };
      // Compare-and-set: a request that moved meanwhile (its verification won the race) is left to its run.
      if (!(await this.#requests.updateIn(tx, row.id, from, changes, event))) continue;
      entries.push({
        actor: at.actor.id,
        role: at.actor.role,
        action: 'rights.request.denied',
        purpose: PURPOSE,
        subject: row.subject,
        resource: `rights_request:${row.id}`,
        details: { type: row.type, from, ...detail },
      });
    }
    return { entries };
  }

  /** After the commit: the keys sealing the addresses of the person's other (closed) erasure requests, then the addresses; returns the keys destroyed. */
  async shredAddresses(subject: DataSubject, by: DeletedBy, actor: Actor): Promise<number> {
    let destroyed = 0;
    for (const id of await this.#requests.sealedAddresses(subject.profileIds, 'erasureRequest' in by ? by.erasureRequest : null)) {
      if (await this.#keyring.destroySubjectKey(noticeKey(id), actor, PURPOSE)) destroyed++;
      await this.#requests.clearAddress(id);
    }
    return destroyed;
  }
}
