import { sql, type Kysely } from 'kysely';
import { isUniqueViolation, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { AuditEntry } from './audit.chain.ts';

/** "CDAu": one appender of the audit log at a time on PostgreSQL (see lockIn). */
const PG_AUDIT_LOCK = 0x43444175;

/** The append-only audit table. */
export type AuditTables = {
  audit_log: {
    seq: number;
    at: string;
    actor: string;
    role: string;
    action: string;
    purpose: string;
    subject: string | null;
    resource: string | null;
    outcome: string;
    details: string | null;
    prev_hash: string;
    hash: string;
  };
};

type AuditRow = AuditTables['audit_log'];

export const AUDIT_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0002_audit_log',
    async up(db, dialect) {
      await db.schema
        .createTable('audit_log')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('subject', 'text')
        .addColumn('resource', 'text')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('details', 'text')
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_log_subject').on('audit_log').columns(['subject', 'seq']).execute();
      await db.schema.createIndex('audit_log_action').on('audit_log').columns(['action', 'seq']).execute();
      // Append-only at the database too: changing history needs someone to drop these triggers first.
      if (dialect === 'sqlite') {
        for (const op of ['UPDATE', 'DELETE']) {
          await sql
            .raw(`CREATE TRIGGER audit_log_no_${op.toLowerCase()} BEFORE ${op} ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END`)
            .execute(db);
        }
      } else {
        await sql.raw(`CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$`).execute(db);
        await sql.raw(`CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`).execute(db);
        await sql.raw(`CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`).execute(db);
      }
    },
  },
  {
    // SQLite's INSERT OR REPLACE (and REPLACE) deletes the row it collides with without firing DELETE triggers: an
    // insert of an existing sequence number is refused, as a unique violation (PostgreSQL's upsert fires the UPDATE
    // trigger already).
    name: '0104_audit_log_no_replace',
    async up(db, dialect) {
      if (dialect !== 'sqlite') return;
      await sql
        .raw(`CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq) BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: audit_log.seq (append-only)'); END`)
        .execute(db);
    },
  },
];

function fromRow(row: AuditRow): AuditEntry {
  return {
    seq: Number(row.seq),
    at: row.at,
    actor: row.actor,
    role: row.role,
    action: row.action,
    purpose: row.purpose,
    subject: row.subject,
    resource: row.resource,
    outcome: row.outcome as AuditEntry['outcome'],
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

function toParams(e: AuditEntry): unknown[] {
  return [e.seq, e.at, e.actor, e.role, e.action, e.purpose, e.subject, e.resource, e.outcome, e.details, e.prevHash, e.hash];
}

export interface AuditQuery {
  afterSeq?: number | undefined;
  limit: number;
  action?: string | undefined;
  subject?: string | undefined;
}

/** Every SQL statement on audit_log. */
export class AuditRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<AuditTables>;
  readonly #insertSql = new Map<number, string>();

  constructor(storage: Storage) {
    this.#storage = storage;
    this.#db = storage.db.withTables<AuditTables>();
  }

  /** INSERT of n rows, compiled once per batch size by Kysely for this dialect. */
  #insertText(n: number): string {
    let text = this.#insertSql.get(n);
    if (text === undefined) {
      const blank: AuditRow = { seq: 0, at: '', actor: '', role: '', action: '', purpose: '', subject: null, resource: null, outcome: '', details: null, prev_hash: '', hash: '' };
      text = this.#db.insertInto('audit_log').values(Array.from({ length: n }, () => blank)).compile().sql;
      this.#insertSql.set(n, text);
    }
    return text;
  }

  /**
   * On PostgreSQL, takes the audit log's append lock for the rest of the caller's transaction: appenders (this
   * process's queue, transactions that append their own entries, other processes) then read the head and insert one
   * after the other instead of racing for the same number and retrying. SQLite's write lock already serializes them.
   */
  async lockIn(tx: SqlExecutor): Promise<void> {
    if (this.#storage.dialect === 'postgres') await tx.all('select pg_advisory_xact_lock($1)', [PG_AUDIT_LOCK]);
  }

  /** Chains `chain(head)` after the head read in one transaction with the append lock, inserts it, and returns it. */
  async appendChained(chain: (head: { seq: number; hash: string } | undefined) => AuditEntry[]): Promise<AuditEntry[]> {
    return this.#storage.raw.transaction(async (tx) => {
      await this.lockIn(tx);
      const entries = chain(await this.headIn(tx));
      for (let i = 0; i < entries.length; i += 100) {
        const part = entries.slice(i, i + 100);
        await tx.run(this.#insertText(part.length), part.flatMap(toParams));
      }
      return entries;
    });
  }

  /** The last entry's sequence number and hash, read inside the caller's transaction. */
  async headIn(tx: SqlExecutor): Promise<{ seq: number; hash: string } | undefined> {
    const compiled = this.#db.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).compile();
    const row = (await tx.all<{ seq: number; hash: string }>(compiled.sql, compiled.parameters))[0];
    return row ? { seq: Number(row.seq), hash: row.hash } : undefined;
  }

  /**
   * Inserts chained entries inside the caller's transaction; false, with nothing inserted, when the first sequence
   * number was taken meanwhile (PostgreSQL: by a transaction that committed; the insert waits for it rather than failing
   * the caller's transaction). The others cannot be taken while the first is held.
   */
  async insertIn(tx: SqlExecutor, entries: readonly AuditEntry[]): Promise<boolean> {
    const [first, ...rest] = entries;
    if (first === undefined) return true;
    try {
      if ((await tx.run(`${this.#insertText(1)} ON CONFLICT (seq) DO NOTHING`, toParams(first))) === 0) return false;
    } catch (error) {
      // SQLite refuses a taken number by trigger (statement-level: the transaction goes on).
      if (this.#storage.dialect === 'sqlite' && isUniqueViolation(error)) return false;
      throw error;
    }
    for (let i = 0; i < rest.length; i += 100) {
      const part = rest.slice(i, i + 100);
      await tx.run(this.#insertText(part.length), part.flatMap(toParams));
    }
    return true;
  }

  async list(query: AuditQuery): Promise<AuditEntry[]> {
    let q = this.#db.selectFrom('audit_log').selectAll().where('seq', '>', query.afterSeq ?? 0);
    if (query.action !== undefined) q = q.where('action', '=', query.action);
    if (query.subject !== undefined) q = q.where('subject', '=', query.subject);
    const rows = await q.orderBy('seq', 'asc').limit(query.limit).execute();
    return rows.map(fromRow);
  }

  /** Every entry in sequence order, a page at a time. */
  async *scan(pageSize = 5000): AsyncGenerator<AuditEntry> {
    let after = 0;
    for (;;) {
      const page = await this.list({ afterSeq: after, limit: pageSize });
      yield* page;
      const last = page.at(-1);
      if (!last || page.length < pageSize) return;
      after = last.seq;
    }
  }
}
