import type { Kysely } from 'kysely';
import type { SqlExecutor } from '../../storage/index.ts';
import type { DataSubject, EraseOutcome, ExportSection, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { SubjectSessionTables } from './subject-sessions.ts';

/** The subject's own sessions of the privacy center (never their secrets, which are stored only as digests). */
export class AccessSubjectData implements SubjectDataHandler {
  readonly module = 'access';
  readonly #db: Kysely<SubjectSessionTables>;

  constructor(db: Kysely<SubjectSessionTables>) {
    this.#db = db;
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const rows =
      subject.profileIds.length === 0
        ? []
        : await this.#db.selectFrom('access_subject_sessions').selectAll().where('profile_id', 'in', [...subject.profileIds]).orderBy('created_at').execute();
    return {
      module: this.module,
      title: 'Privacy center sessions',
      data: { sessions: rows.map((r) => ({ id: r.id, via: r.via, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at })) },
      fields: [{ field: 'sessions[]', category: 'user.authorization', purposes: ['essential.service.authentication'], source: 'candor', recipients: [], retention: 'PT1H' }],
    };
  }

  async erase(tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]> {
    let deleted = 0;
    for (let i = 0; i < subject.profileIds.length; i += 256) {
      const compiled = this.#db.deleteFrom('access_subject_sessions').where('profile_id', 'in', subject.profileIds.slice(i, i + 256)).compile();
      deleted += await tx.run(compiled.sql, compiled.parameters);
    }
    return [{ store: 'access_subject_sessions', status: 'confirmed', deleted }];
  }
}
