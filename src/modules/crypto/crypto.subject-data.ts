import type { SqlExecutor } from '../../storage/index.ts';
import type { DataSubject, EraseOutcome, ExportSection, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { CryptoRepo } from './crypto.repo.ts';

/**
 * The metadata of a subject's data keys (never the keys). Destroying them is not done here: a key must outlive the
 * transaction that deletes the rows it protects (if that transaction rolls back the data must stay readable), so
 * the erasure engine destroys it right after the commit and lists it on the certificate.
 */
export class CryptoSubjectData implements SubjectDataHandler {
  readonly module = 'crypto';
  readonly #repo: CryptoRepo;

  constructor(repo: CryptoRepo) {
    this.#repo = repo;
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const rows = await this.#repo.bySubjects(subject.profileIds);
    return {
      module: this.module,
      title: 'Encryption keys',
      data: {
        note: 'Your personal data is encrypted with these keys; erasure destroys them. The keys themselves are never disclosed.',
        dataKeys: rows.map((r) => ({ profileId: r.subject_id, keyId: r.key_id, keyVersion: r.key_version, masterKeyVersion: r.master_version, createdAt: r.created_at })),
      },
      fields: [{ field: 'dataKeys[]', category: 'system.operations', purposes: ['essential.service.security'], source: 'candor', recipients: [], retention: null }],
    };
  }

  async erase(_tx: SqlExecutor, _subject: DataSubject): Promise<EraseOutcome[]> {
    return [];
  }
}
