import { sql, type Kysely } from 'kysely';
import type { ModuleMigration, SqlExecutor, Storage } from '../../storage/index.ts';
import type { ConsentMechanism, ConsentState, LawfulBasis, LedgerEntry } from './consent.types.ts';

/** The consent module's tables. Booleans are 0/1, lists are JSON text, times ISO-8601 UTC text. */
export type ConsentTables = {
  consent_purposes: {
    key: string;
    basis: string;
    sale_or_sharing: number;
    targeted_advertising: number;
    explicit: number;
    opt_out_jurisdictions: string;
    description: string;
    updated_at: string;
    updated_by: string;
  };
  consent_notices: {
    version: number;
    hash: string;
    text: string;
    purposes: string;
    material: number;
    renewal_required: string;
    published_at: string;
    published_by: string;
  };
  consent_ledger: {
    id: string;
    subject: string;
    purpose: string;
    state: string;
    basis: string;
    notice_version: number | null;
    notice_hash: string | null;
    mechanism: string;
    jurisdiction: string | null;
    source: string | null;
    gpc: number;
    gpc_override: number;
    receipt_id: string | null;
    at: string;
  };
  consent_current: {
    subject: string;
    purpose: string;
    entry_id: string;
    state: string;
    basis: string;
    notice_version: number | null;
    mechanism: string;
    jurisdiction: string | null;
    gpc: number;
    gpc_override: number;
    at: string;
  };
  consent_signing_keys: {
    kid: string;
    alg: string;
    public_jwk: string;
    private_key: string;
    created_at: string;
    retired_at: string | null;
  };
};

export type PurposeRow = ConsentTables['consent_purposes'];
export type NoticeRow = ConsentTables['consent_notices'];
export type LedgerRow = ConsentTables['consent_ledger'];
export type CurrentRow = ConsentTables['consent_current'];
export type SigningKeyRow = ConsentTables['consent_signing_keys'];

/** Triggers that make a table append-only, as for audit_log: changing history needs someone to drop them first. */
async function appendOnly(db: Kysely<unknown>, dialect: string, table: string): Promise<void> {
  if (dialect === 'sqlite') {
    for (const op of ['UPDATE', 'DELETE']) {
      await sql
        .raw(`CREATE TRIGGER ${table}_no_${op.toLowerCase()} BEFORE ${op} ON ${table} BEGIN SELECT RAISE(ABORT, '${table} is append-only'); END`)
        .execute(db);
    }
  } else {
    await sql.raw(`CREATE TRIGGER ${table}_no_update_delete BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION consent_append_only()`).execute(db);
    await sql.raw(`CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION consent_append_only()`).execute(db);
  }
}

export const CONSENT_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0010_consent_ledger',
    async up(db, dialect) {
      await db.schema
        .createTable('consent_ledger')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('basis', 'text', (c) => c.notNull())
        .addColumn('notice_version', 'integer')
        .addColumn('notice_hash', 'text')
        .addColumn('mechanism', 'text', (c) => c.notNull())
        .addColumn('jurisdiction', 'text')
        .addColumn('source', 'text')
        .addColumn('gpc', 'integer', (c) => c.notNull())
        .addColumn('gpc_override', 'integer', (c) => c.notNull())
        .addColumn('receipt_id', 'text')
        .addColumn('at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('consent_ledger_subject').on('consent_ledger').columns(['subject', 'at', 'id']).execute();
      if (dialect === 'postgres') {
        await sql.raw(`CREATE FUNCTION consent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$`).execute(db);
      }
      await appendOnly(db, dialect, 'consent_ledger');
      // The latest entry per subject and purpose, upserted with each ledger insert, so a batch loads in one query.
      await db.schema
        .createTable('consent_current')
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('entry_id', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('basis', 'text', (c) => c.notNull())
        .addColumn('notice_version', 'integer')
        .addColumn('mechanism', 'text', (c) => c.notNull())
        .addColumn('jurisdiction', 'text')
        .addColumn('gpc', 'integer', (c) => c.notNull())
        .addColumn('gpc_override', 'integer', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('consent_current_pk', ['subject', 'purpose'])
        .execute();
      await db.schema.createIndex('consent_current_due').on('consent_current').columns(['state', 'at']).execute();
    },
  },
  {
    name: '0011_consent_purposes_notices',
    async up(db, dialect) {
      await db.schema
        .createTable('consent_purposes')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('basis', 'text', (c) => c.notNull())
        .addColumn('sale_or_sharing', 'integer', (c) => c.notNull())
        .addColumn('targeted_advertising', 'integer', (c) => c.notNull())
        .addColumn('explicit', 'integer', (c) => c.notNull())
        .addColumn('opt_out_jurisdictions', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('consent_notices')
        .addColumn('version', 'integer', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('purposes', 'text', (c) => c.notNull())
        .addColumn('material', 'integer', (c) => c.notNull())
        .addColumn('renewal_required', 'text', (c) => c.notNull())
        .addColumn('published_at', 'text', (c) => c.notNull())
        .addColumn('published_by', 'text', (c) => c.notNull())
        .execute();
      // A published notice is evidence of what people agreed to: it never changes.
      await appendOnly(db, dialect, 'consent_notices');
    },
  },
  {
    name: '0012_consent_signing_keys',
    async up(db) {
      await db.schema
        .createTable('consent_signing_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('alg', 'text', (c) => c.notNull())
        .addColumn('public_jwk', 'text', (c) => c.notNull())
        .addColumn('private_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('retired_at', 'text')
        .execute();
    },
  },
];

export function entryFromRow(row: LedgerRow): LedgerEntry {
  return {
    id: row.id,
    subject: row.subject,
    purpose: row.purpose,
    state: row.state as ConsentState,
    basis: row.basis as LawfulBasis,
    noticeVersion: row.notice_version === null ? null : Number(row.notice_version),
    noticeHash: row.notice_hash,
    mechanism: row.mechanism as ConsentMechanism,
    jurisdiction: row.jurisdiction,
    source: row.source,
    gpc: Number(row.gpc) === 1,
    gpcOverride: Number(row.gpc_override) === 1,
    receiptId: row.receipt_id,
    at: row.at,
  };
}

function ledgerParams(e: LedgerEntry): unknown[] {
  return [
    e.id, e.subject, e.purpose, e.state, e.basis, e.noticeVersion, e.noticeHash, e.mechanism, e.jurisdiction, e.source,
    e.gpc ? 1 : 0, e.gpcOverride ? 1 : 0, e.receiptId, e.at,
  ];
}

function currentParams(e: LedgerEntry): unknown[] {
  return [e.subject, e.purpose, e.id, e.state, e.basis, e.noticeVersion, e.mechanism, e.jurisdiction, e.gpc ? 1 : 0, e.gpcOverride ? 1 : 0, e.at];
}

const BLANK_LEDGER: LedgerRow = {
  id: '', subject: '', purpose: '', state: '', basis: '', notice_version: null, notice_hash: null, mechanism: '', jurisdiction: null,
  source: null, gpc: 0, gpc_override: 0, receipt_id: null, at: '',
};
const BLANK_CURRENT: CurrentRow = {
  subject: '', purpose: '', entry_id: '', state: '', basis: '', notice_version: null, mechanism: '', jurisdiction: null, gpc: 0, gpc_override: 0, at: '',
};

/** Rows per multi-row statement (and subjects per load query). */
export const CHUNK = 100;

/** Every SQL statement on the consent tables. */
export class ConsentRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<ConsentTables>;
  readonly #currentSql = new Map<string, string>();
  readonly #insertSql = new Map<number, string>();
  readonly #upsertSql = new Map<number, string>();

  constructor(storage: Storage) {
    this.#storage = storage;
    this.#db = storage.db.withTables<ConsentTables>();
  }

  /** SELECT of the current rows of n subjects, compiled once per n; locking them for a write on PostgreSQL. */
  #currentText(n: number, forUpdate: boolean): string {
    const lock = forUpdate && this.#storage.dialect === 'postgres';
    const cacheKey = `${n}:${lock}`;
    let text = this.#currentSql.get(cacheKey);
    if (text === undefined) {
      const query = this.#db.selectFrom('consent_current').selectAll().where('subject', 'in', Array.from({ length: n }, () => ''));
      text = (lock ? query.forUpdate() : query).compile().sql;
      this.#currentSql.set(cacheKey, text);
    }
    return text;
  }

  #insertText(n: number): string {
    let text = this.#insertSql.get(n);
    if (text === undefined) {
      text = this.#db.insertInto('consent_ledger').values(Array.from({ length: n }, () => BLANK_LEDGER)).compile().sql;
      this.#insertSql.set(n, text);
    }
    return text;
  }

  /**
   * Upsert of n current rows: the entry committed last wins. Writers of one subject are serialised (its rows are
   * locked by current(..., forUpdate) on PostgreSQL; SQLite runs one write transaction at a time), so commit order
   * is the order of the changes, whatever the clocks of several API nodes say.
   */
  #upsertText(n: number): string {
    let text = this.#upsertSql.get(n);
    if (text === undefined) {
      text = this.#db
        .insertInto('consent_current')
        .values(Array.from({ length: n }, () => BLANK_CURRENT))
        .onConflict((oc) =>
          oc
            .columns(['subject', 'purpose'])
            .doUpdateSet((eb) => ({
              entry_id: eb.ref('excluded.entry_id'),
              state: eb.ref('excluded.state'),
              basis: eb.ref('excluded.basis'),
              notice_version: eb.ref('excluded.notice_version'),
              mechanism: eb.ref('excluded.mechanism'),
              jurisdiction: eb.ref('excluded.jurisdiction'),
              gpc: eb.ref('excluded.gpc'),
              gpc_override: eb.ref('excluded.gpc_override'),
              at: eb.ref('excluded.at'),
            })),
        )
        .compile().sql;
      this.#upsertSql.set(n, text);
    }
    return text;
  }

  /**
   * The current rows of the subjects (pseudonyms), one query per 100 subjects. Inside a write transaction they are
   * locked on PostgreSQL, so a concurrent change to the same subject waits and then sees this one (SQLite's write
   * transactions are serial anyway).
   */
  async current(subjects: readonly string[], executor: SqlExecutor = this.#storage.raw, forUpdate = false): Promise<CurrentRow[]> {
    const out: CurrentRow[] = [];
    for (let i = 0; i < subjects.length; i += CHUNK) {
      const part = subjects.slice(i, i + CHUNK);
      out.push(...(await executor.all<CurrentRow>(this.#currentText(part.length, forUpdate), part)));
    }
    return out;
  }

  /** Runs fn in one write transaction on the raw path (ledger insert and current upsert commit together). */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#storage.raw.transaction(fn);
  }

  /** Appends entries to the ledger and moves the current row of each subject and purpose to its newest entry. */
  async append(tx: SqlExecutor, entries: readonly LedgerEntry[]): Promise<void> {
    for (let i = 0; i < entries.length; i += CHUNK) {
      const part = entries.slice(i, i + CHUNK);
      await tx.run(this.#insertText(part.length), part.flatMap(ledgerParams));
    }
    // One row per subject and purpose per statement: PostgreSQL refuses to update a row twice in one upsert.
    const latest = new Map<string, LedgerEntry>();
    for (const e of entries) latest.set(`${e.subject}\0${e.purpose}`, e);
    const rows = [...latest.values()];
    for (let i = 0; i < rows.length; i += CHUNK) {
      const part = rows.slice(i, i + CHUNK);
      await tx.run(this.#upsertText(part.length), part.flatMap(currentParams));
    }
  }

  /** A subject's ledger entries, oldest first. */
  async history(subject: string): Promise<LedgerEntry[]> {
    const rows = await this.#db.selectFrom('consent_ledger').selectAll().where('subject', '=', subject).orderBy('at').orderBy('id').execute();
    return rows.map(entryFromRow);
  }

  /** Current given consents recorded before a time, a page at a time in (at, subject, purpose) order. */
  givenBefore(before: string, after: { at: string; subject: string; purpose: string } | undefined, limit: number): Promise<CurrentRow[]> {
    let q = this.#db.selectFrom('consent_current').selectAll().where('state', '=', 'given').where('basis', '=', 'consent').where('at', '<', before);
    if (after) {
      q = q.where((eb) =>
        eb.or([
          eb('at', '>', after.at),
          eb.and([eb('at', '=', after.at), eb('subject', '>', after.subject)]),
          eb.and([eb('at', '=', after.at), eb('subject', '=', after.subject), eb('purpose', '>', after.purpose)]),
        ]),
      );
    }
    return q.orderBy('at').orderBy('subject').orderBy('purpose').limit(limit).execute();
  }

  purposes(): Promise<PurposeRow[]> {
    return this.#db.selectFrom('consent_purposes').selectAll().orderBy('key').execute();
  }

  /** Inserts every row or none (another process seeding at the same time wins); returns whether these were written. */
  async seedPurposes(rows: readonly PurposeRow[], notice: NoticeRow): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom('consent_purposes').select('key').limit(1).execute();
      if (existing.length > 0) return false;
      await trx.insertInto('consent_purposes').values([...rows]).execute();
      const notices = await trx.selectFrom('consent_notices').select('version').limit(1).execute();
      if (notices.length === 0) await trx.insertInto('consent_notices').values(notice).execute();
      return true;
    });
  }

  async upsertPurpose(row: PurposeRow): Promise<void> {
    await this.#db
      .insertInto('consent_purposes')
      .values(row)
      .onConflict((oc) =>
        oc.column('key').doUpdateSet({
          basis: row.basis,
          sale_or_sharing: row.sale_or_sharing,
          targeted_advertising: row.targeted_advertising,
          explicit: row.explicit,
          opt_out_jurisdictions: row.opt_out_jurisdictions,
          description: row.description,
          updated_at: row.updated_at,
          updated_by: row.updated_by,
        }),
      )
      .execute();
  }

  notices(): Promise<NoticeRow[]> {
    return this.#db.selectFrom('consent_notices').selectAll().orderBy('version').execute();
  }

  async insertNotice(row: NoticeRow): Promise<void> {
    await this.#db.insertInto('consent_notices').values(row).execute();
  }

  signingKeys(): Promise<SigningKeyRow[]> {
    return this.#db.selectFrom('consent_signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute();
  }

  async insertSigningKey(row: SigningKeyRow): Promise<void> {
    await this.#db.insertInto('consent_signing_keys').values(row).execute();
  }
}
