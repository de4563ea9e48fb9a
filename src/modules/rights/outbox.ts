import { subtractDuration } from '../../shared/duration.ts';
import type { DataSubject, EraseOutcome, RetentionHandler, RetentionRule, SweepCount, SweepOptions } from '../../shared/subject-data.ts';
import type { Storage } from '../../storage/index.ts';
import type { Identity } from '../identity/index.ts';
import type { ErasureFileStore } from './erasure.ts';
import { ERASED_NOTICE_SUBJECT, type Mailer } from './mailer.ts';
import { RequestsRepo } from './requests.repo.ts';

/** How long a message stays in the outbox: long enough to be picked up, never as a record of who wrote to whom. */
export const OUTBOX_RETENTION = 'P7D';
export const OUTBOX_RULE = 'rights.outbox';
const STORE = 'mail outbox (<dataDir>/outbox)';
const CATEGORY = 'user.contact.email';

export interface MailOutboxDeps {
  mailer: Mailer;
  identity: Pick<Identity, 'normalize' | 'hash'>;
  storage: Storage;
}

/**
 * The mail outbox as a store of personal data (each message names its recipient's address in clear): an erasure
 * deletes the messages addressed to the subject or about their requests, and the retention sweeper deletes every
 * message once it is older than OUTBOX_RETENTION — the notice that an erasure was done, written after it, included.
 */
export class MailOutbox implements ErasureFileStore, RetentionHandler {
  readonly module = 'rights';
  readonly #deps: MailOutboxDeps;
  readonly #requests: RequestsRepo;

  constructor(deps: MailOutboxDeps) {
    this.#deps = deps;
    this.#requests = new RequestsRepo(deps.storage);
  }

  /**
   * Deletes the outbox messages addressed to any of the subject's e-mail addresses or about any of their requests,
   * except the notice that this erasure was done: a replay after a restore finds it written by the live erasure, which
   * it must not take back (the live erasure writes it after this step). A person deleted for inactivity (no request)
   * keeps none.
   */
  async erase(subject: DataSubject, erasure: { readonly requestId: string | null }): Promise<EraseOutcome[]> {
    const { mailer, identity } = this.#deps;
    const addresses = new Set(subject.identifiers.filter((i) => i.type === 'email').map((i) => i.valueHash));
    const requests = new Set(await this.#requests.idsOfProfiles(subject.profileIds));
    const theirs = mailer.outbox().filter((m) => {
      if (erasure.requestId !== null && m.requestId === erasure.requestId && m.subject === ERASED_NOTICE_SUBJECT) return false;
      if (m.requestId !== null && requests.has(m.requestId)) return true;
      return m.to.some((address) => {
        const normalized = identity.normalize({ type: 'email', value: address });
        return normalized !== undefined && addresses.has(identity.hash(normalized));
      });
    });
    const deleted = mailer.removeFromOutbox(theirs.map((m) => m.id));
    const after =
      mailer.via === 'outbox'
        ? `a notice that the erasure was done may be written to the subject after this certificate; like every outbox message it is deleted ${OUTBOX_RETENTION} after it was written (retention rule ${OUTBOX_RULE})`
        : 'mail is sent through the configured SMTP server; messages left by an earlier outbox configuration were looked at too';
    return [{ store: STORE, status: 'confirmed', deleted, detail: `messages addressed to the subject or about their requests deleted (bytes overwritten first); ${after}` }];
  }

  async rules(): Promise<readonly RetentionRule[]> {
    return [
      {
        id: OUTBOX_RULE,
        module: this.module,
        store: STORE,
        category: CATEGORY,
        period: OUTBOX_RETENTION,
        clock: 'written',
        action: 'delete',
        source: 'module',
        description: 'Messages to data subjects written to the local outbox (no SMTP server configured) name their address in clear: deleted once this old.',
      },
    ];
  }

  async sweep(now: Date, options: SweepOptions): Promise<SweepCount[]> {
    const cutoff = subtractDuration(now, OUTBOX_RETENTION).getTime();
    const expired = this.#deps.mailer.outbox().filter((m) => m.writtenAt.getTime() < cutoff);
    const count = options.dryRun ? expired.length : this.#deps.mailer.removeFromOutbox(expired.map((m) => m.id));
    return [{ rule: OUTBOX_RULE, store: STORE, category: CATEGORY, count }];
  }
}
