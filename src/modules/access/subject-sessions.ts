import { createHash, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import type { ModuleMigration, Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import type { RetentionHandler, SubjectDataHandler } from '../../shared/subject-data.ts';
import { AccessSubjectData } from './access.subject-data.ts';
import { SubjectSessionsRetention } from './subject-sessions.retention.ts';

export type SubjectSessionTables = {
  access_subject_sessions: {
    id: string;
    digest: string;
    profile_id: string;
    issued_by: string;
    via: string;
    created_at: string;
    expires_at: string;
    revoked_at: string | null;
  };
};

export const SUBJECT_SESSION_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0005_access_subject_sessions',
    async up(db) {
      await db.schema
        .createTable('access_subject_sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('profile_id', 'text', (c) => c.notNull())
        .addColumn('issued_by', 'text', (c) => c.notNull())
        .addColumn('via', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'text')
        .execute();
      await db.schema.createIndex('access_subject_sessions_profile').on('access_subject_sessions').column('profile_id').execute();
    },
  },
  {
    // Sessions are issued only to a session_issuer (or owner) API token now, never to a write key, which browsers
    // carry: a session a write key obtained before the upgrade ends here instead of living out its hour.
    name: '0108_access_subject_sessions_revoke_write_key',
    async up(db) {
      const now = new Date().toISOString();
      await sql`UPDATE access_subject_sessions SET revoked_at = ${now} WHERE substr(via, 1, 10) = 'write_key:' AND revoked_at IS NULL AND expires_at > ${now}`.execute(db);
    },
  },
];

const TOKEN_PATTERN = /^css_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
/** Sessions are short: a customer's browser holds them. */
export const MAX_SUBJECT_SESSION_SECONDS = 3600;
const digest = (secret: string) => createHash('sha256').update(secret).digest('hex');

/**
 * A verified customer: the profile a subject session was issued for — the one holding the identifier that was
 * verified, which may be merged into another; routes act for its canonical profile as it is at each request.
 */
export interface SubjectPrincipal {
  sessionId: string;
  profileId: string;
}

/**
 * Subject sessions: short-lived credentials (`css_…`) with which a customer reaches the endpoints about themselves
 * (the privacy center). Issued for a profile by a party that verified the person — the business's backend with its
 * session_issuer token, or Candor's own verification — stored as SHA-256 digests (the secret is 256 random bits),
 * revocable.
 */
export class SubjectSessions {
  readonly #storage: Storage;
  readonly #db: Kysely<SubjectSessionTables>;
  readonly #audit: AuditLog;

  constructor(storage: Storage, audit: AuditLog) {
    this.#storage = storage;
    this.#db = storage.db.withTables<SubjectSessionTables>();
    this.#audit = audit;
  }

  /** Issues a session for a profile; the secret is returned once. `subject` is the profile's pseudonym, for the audit log. */
  async issue(profileId: string, subject: string, options: { ttlSeconds: number; via: string }, actor: Actor): Promise<{ token: string; expiresAt: string }> {
    const ttl = Math.min(Math.max(Math.floor(options.ttlSeconds), 60), MAX_SUBJECT_SESSION_SECONDS);
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = new Date(now + ttl * 1000).toISOString();
    const insert = this.#db
      .insertInto('access_subject_sessions')
      .values({ id, digest: digest(secret), profile_id: profileId, issued_by: actor.id, via: options.via, created_at: new Date(now).toISOString(), expires_at: expiresAt, revoked_at: null })
      .compile();
    // Audited in the issue's own transaction, last: a session that exists always has its entry.
    await this.#storage.raw.transaction(async (tx) => {
      await tx.run(insert.sql, insert.parameters);
      await this.#audit.appendIn(tx, [
        { actor: actor.id, role: actor.role, action: 'access.subject_session.issue', purpose: 'essential.service.authentication', subject, resource: `subject_session:${id}`, details: { via: options.via, ttlSeconds: ttl } },
      ]);
    });
    return { token: `css_${id}_${secret}`, expiresAt };
  }

  /** Verifies a presented session; throws AUTH_SUBJECT_SESSION_INVALID when unknown, expired or revoked. */
  async authenticate(presented: string): Promise<SubjectPrincipal> {
    const match = TOKEN_PATTERN.exec(presented);
    if (!match) throw new CandorError('AUTH_SUBJECT_SESSION_INVALID');
    const [, id, secret] = match as unknown as [string, string, string];
    const row = await this.#db.selectFrom('access_subject_sessions').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || row.digest !== digest(secret) || row.revoked_at !== null || Date.parse(row.expires_at) <= Date.now()) {
      throw new CandorError('AUTH_SUBJECT_SESSION_INVALID');
    }
    return { sessionId: row.id, profileId: row.profile_id };
  }

  /** Ends a session (the customer signs out). */
  async revoke(sessionId: string): Promise<void> {
    await this.#db.updateTable('access_subject_sessions').set({ revoked_at: new Date().toISOString() }).where('id', '=', sessionId).where('revoked_at', 'is', null).execute();
  }

  /**
   * After a restore: ends every session the restored database holds active. Each was issued before the backup was
   * taken, and some were ended since (a sign-out, an unmerge, an erasure) in the database the restore replaced, which
   * this one does not know: none may work again. Sessions are cheap to issue again. Audited in the same transaction
   * (`access.subject_session.revoke`, details: how many, `restoredFrom`); answers how many were ended.
   */
  async endAllAfterRestore(backup: string, actor: Actor): Promise<number> {
    const at = new Date().toISOString();
    const update = this.#db.updateTable('access_subject_sessions').set({ revoked_at: at }).where('revoked_at', 'is', null).where('expires_at', '>', at).compile();
    return this.#storage.raw.transaction(async (tx) => {
      const ended = await tx.run(update.sql, update.parameters);
      if (ended > 0) {
        await this.#audit.appendIn(tx, [
          { actor: actor.id, role: actor.role, action: 'access.subject_session.revoke', purpose: 'essential.service.authentication', resource: null, details: { sessions: ended, restoredFrom: backup } },
        ]);
      }
      return ended;
    });
  }

  /** The subject sessions' handler for access and erasure requests. */
  subjectData(): SubjectDataHandler {
    return new AccessSubjectData(this.#db);
  }

  /** Expired sessions' retention rule and sweep (registered with `retention`). */
  retention(): RetentionHandler {
    return new SubjectSessionsRetention(this.#db);
  }

  /** Ends every session issued for any of these profiles (erasure, an unmerge). */
  async revokeAll(profileIds: readonly string[]): Promise<void> {
    const at = new Date().toISOString();
    for (let i = 0; i < profileIds.length; i += 256) {
      await this.#db.updateTable('access_subject_sessions').set({ revoked_at: at }).where('profile_id', 'in', profileIds.slice(i, i + 256)).where('revoked_at', 'is', null).execute();
    }
  }
}
