import type { SqlExecutor } from '../../storage/index.ts';
import type { DataSubject, EraseOutcome, ExportSection, FieldDisclosure, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { ConsentRepo } from './consent.repo.ts';
import type { LedgerEntry, PurposeState } from './consent.types.ts';

/** Why the ledger rows of an erased subject stay: they are the controller's proof of consent. */
export const LEDGER_KEPT_REASON =
  'GDPR Art. 7(1): the controller must be able to demonstrate consent. Ledger rows name the subject only by a keyed pseudonym and hold purposes, states, notice versions, mechanisms and receipt ids; nothing else about the person.';

const LEGAL = ['essential.legal_obligation'];
const FIELDS: readonly FieldDisclosure[] = [
  { field: 'history[]', category: 'user.privacy_preferences', purposes: LEGAL, source: 'candor', recipients: [], retention: null },
  { field: 'history[].receiptId', category: 'user.privacy_preferences', purposes: LEGAL, source: 'candor', recipients: [], retention: null },
  { field: 'current', category: 'user.privacy_preferences', purposes: LEGAL, source: 'candor', recipients: [], retention: null },
];

export interface ConsentSubjectDataDeps {
  repo: ConsentRepo;
  pseudonym(profileId: string): string;
  history(profileId: string): Promise<LedgerEntry[]>;
  state(profileId: string): Promise<Record<string, PurposeState>>;
  forget(profileId: string): Promise<void>;
}

/** A subject's consent: the ledger history with receipt ids and the current state per purpose. */
export class ConsentSubjectData implements SubjectDataHandler {
  readonly module = 'consent';
  readonly #deps: ConsentSubjectDataDeps;

  constructor(deps: ConsentSubjectDataDeps) {
    this.#deps = deps;
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const history: (LedgerEntry & { profileId: string })[] = [];
    for (const profileId of subject.profileIds) {
      for (const entry of await this.#deps.history(profileId)) history.push({ ...entry, profileId });
    }
    history.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id < b.id ? -1 : 1));
    return {
      module: this.module,
      title: 'Consent',
      data: {
        subject: this.#deps.pseudonym(subject.profileId),
        current: await this.#deps.state(subject.profileId),
        history: history.map((e) => ({
          at: e.at,
          purpose: e.purpose,
          state: e.state,
          basis: e.basis,
          mechanism: e.mechanism,
          noticeVersion: e.noticeVersion,
          noticeHash: e.noticeHash,
          jurisdiction: e.jurisdiction,
          source: e.source,
          gpc: e.gpc,
          receiptId: e.receiptId,
        })),
      },
      fields: FIELDS,
    };
  }

  async erase(tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]> {
    const erased = await this.#deps.repo.eraseSubjects(tx, subject.profileIds.map((id) => this.#deps.pseudonym(id)));
    return [
      { store: 'consent_current', status: 'confirmed', deleted: erased.current },
      { store: 'consent_restrictions', status: 'confirmed', deleted: erased.restrictions },
      { store: 'consent_ledger', status: 'confirmed', deleted: 0, ...(erased.ledgerKept > 0 ? { kept: { count: erased.ledgerKept, reason: LEDGER_KEPT_REASON } } : {}) },
      { store: 'consent_receipts', status: 'confirmed', deleted: 0, ...(erased.receiptsKept > 0 ? { kept: { count: erased.receiptsKept, reason: LEDGER_KEPT_REASON } } : {}) },
    ];
  }

  async afterErase(subject: DataSubject): Promise<void> {
    for (const id of subject.profileIds) await this.#deps.forget(id);
  }
}
