// Retention of subject sessions: a session is useless once expired; its row (a digest and a profile id) goes a day
// later. Its issue stays in the audit log. Registered through `SubjectSessions.retention()`.
import type { Kysely } from 'kysely';
import { subtractDuration } from '../../shared/duration.ts';
import type { RetentionHandler, RetentionRule, SweepCount, SweepOptions } from '../../shared/subject-data.ts';
import type { SubjectSessionTables } from './subject-sessions.ts';

const RULE: RetentionRule = {
  id: 'access.subject_sessions', module: 'access', store: 'access_subject_sessions', category: 'user.authorization.credentials', period: 'P1D', clock: 'expires_at', action: 'delete', source: 'module',
  description: 'Subject sessions (digests of privacy-center credentials) are deleted one day after they expired.',
};

export class SubjectSessionsRetention implements RetentionHandler {
  readonly module = 'access';
  readonly #db: Kysely<SubjectSessionTables>;

  constructor(db: Kysely<SubjectSessionTables>) {
    this.#db = db;
  }

  rules(): Promise<RetentionRule[]> {
    return Promise.resolve([RULE]);
  }

  async sweep(now: Date, options: SweepOptions): Promise<SweepCount[]> {
    const cutoff = subtractDuration(now, RULE.period).toISOString();
    let n = 0;
    if (options.dryRun) {
      const row = await this.#db.selectFrom('access_subject_sessions').select((eb) => eb.fn.countAll<number>().as('n')).where('expires_at', '<', cutoff).executeTakeFirst();
      n = Number(row?.n ?? 0);
    } else {
      for (;;) {
        // One bounded statement per batch: its own short transaction.
        const batch = this.#db.selectFrom('access_subject_sessions').select('id').where('expires_at', '<', cutoff).limit(options.batchSize);
        const result = await this.#db.deleteFrom('access_subject_sessions').where('id', 'in', batch).executeTakeFirst();
        const deleted = Number(result.numDeletedRows);
        n += deleted;
        if (deleted < options.batchSize) break;
      }
    }
    return [{ rule: RULE.id, store: RULE.store, category: RULE.category, count: n }];
  }
}
