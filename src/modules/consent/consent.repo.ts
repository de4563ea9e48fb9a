import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { compareText, keepOutOfStatistics, textOrder, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { ConsentMechanism, ConsentState, LawfulBasis, LedgerEntry, RestrictiveConsentStates } from './consent.types.ts';
import { DEFAULT_PURPOSES } from './defaults.ts';

/** The consent module's tables. Booleans are 0/1, lists are JSON text, times ISO-8601 UTC text. */
export type ConsentTables = {
  consent_purposes: {
    key: string;
    basis: string;
    sale_or_sharing: number;
    targeted_advertising: number;
    explicit: number;
    /** Since when the purpose asks for explicit consent (null while it does not): consents given before are not. */
    explicit_since: string | null;
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
  consent_restrictions: {
    id: string;
    subject: string;
    kind: string;
    request_id: string | null;
    since: string;
    set_by: string;
    lifted_at: string | null;
    lifted_by: string | null;
  };
  consent_signing_keys: {
    kid: string;
    alg: string;
    public_jwk: string;
    private_key: string;
    created_at: string;
    retired_at: string | null;
  };
  consent_receipts: {
    id: string;
    /** Pseudonym of the receipt's principal (`sub`). */
    subject: string;
    /** JSON list of every pseudonym the receipt concerns, the principal first (linked profiles of a GPC signal). */
    subjects: string;
    mechanism: string;
    kid: string;
    jws: string;
    at: string;
  };
};

export type PurposeRow = ConsentTables['consent_purposes'];
export type NoticeRow = ConsentTables['consent_notices'];
export type LedgerRow = ConsentTables['consent_ledger'];
export type CurrentRow = ConsentTables['consent_current'];
export type SigningKeyRow = ConsentTables['consent_signing_keys'];
export type RestrictionRow = ConsentTables['consent_restrictions'];
export type ReceiptRow = ConsentTables['consent_receipts'];
/** `restriction`: processing restricted (GDPR Art. 18); `objection_marketing`: objection to direct marketing (Art. 21). */
export type RestrictionKind = 'restriction' | 'objection_marketing';

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

/**
 * SQLite's INSERT OR REPLACE (and REPLACE) deletes the row it collides with without firing DELETE triggers: a trigger
 * refuses an insert whose key is taken, as a unique violation. (PostgreSQL's upsert fires the UPDATE trigger already.)
 */
async function noReplace(db: Kysely<unknown>, table: string, key: string): Promise<void> {
  await sql
    .raw(`CREATE TRIGGER ${table}_no_replace BEFORE INSERT ON ${table} WHEN EXISTS (SELECT 1 FROM ${table} WHERE ${key} = NEW.${key}) BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: ${table}.${key} (append-only)'); END`)
    .execute(db);
}

type MigrationDb = Parameters<ModuleMigration['up']>[0];

/**
 * Sets explicit_since of the explicit purposes to the time each has been explicit since without a break, as the audit
 * log's `consent.purpose.set` entries tell (an entry of the first start's seeding states the default configuration;
 * an entry that does not say counts as making it explicit), never later than the purpose's last change, which is used
 * where the log tells nothing. `onlyAtLastChange`: only rows whose explicit_since is their last change.
 */
async function explicitSinceFromAudit(db: MigrationDb, onlyAtLastChange: boolean): Promise<void> {
  const purposes = (await db.selectFrom('consent_purposes').select(['key', 'updated_at', 'explicit_since']).where('explicit', '=', 1).execute()) as Pick<PurposeRow, 'key' | 'updated_at' | 'explicit_since'>[];
  const candidates = purposes.filter((p) => !onlyAtLastChange || p.explicit_since === p.updated_at);
  if (candidates.length === 0) return;
  const changes = (await db
    .selectFrom('audit_log')
    .select(['purpose', 'at', 'details'])
    .where('action', '=', 'consent.purpose.set')
    .where('purpose', 'in', candidates.map((p) => p.key))
    .orderBy('seq')
    .execute()) as { purpose: string; at: string; details: string | null }[];
  const since = new Map<string, string | null>();
  for (const change of changes) {
    let details: { explicit?: unknown; seeded?: unknown } = {};
    try {
      details = JSON.parse(change.details ?? '{}') as typeof details;
    } catch {
      // Unreadable: says nothing, counted as making the purpose explicit.
    }
    const explicit = typeof details.explicit === 'boolean' ? details.explicit : details.seeded === true ? DEFAULT_PURPOSES.find((p) => p.key === change.purpose)?.explicit === true : undefined;
    if (explicit === false) since.set(change.purpose, null);
    else if (explicit === undefined || (since.get(change.purpose) ?? null) === null) since.set(change.purpose, change.at);
  }
  for (const p of candidates) {
    const from = since.get(p.key) ?? null;
    const value = from !== null && from < p.updated_at ? from : p.updated_at;
    if (value !== p.explicit_since) await db.updateTable('consent_purposes').set({ explicit_since: value }).where('key', '=', p.key).execute();
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
  {
    name: '0013_consent_restrictions',
    async up(db) {
      // Restrictions of processing and objections to direct marketing: in force while lifted_at is null, kept after.
      await db.schema
        .createTable('consent_restrictions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('request_id', 'text')
        .addColumn('since', 'text', (c) => c.notNull())
        .addColumn('set_by', 'text', (c) => c.notNull())
        .addColumn('lifted_at', 'text')
        .addColumn('lifted_by', 'text')
        .execute();
      await db.schema.createIndex('consent_restrictions_subject').on('consent_restrictions').columns(['subject', 'kind']).execute();
    },
  },
  {
    // A consent counts as explicit only if the purpose asked for explicit consent when it was given: a purpose made
    // explicit later does not turn earlier consents into explicit ones. Purposes explicit now count from when the audit
    // log shows them explicit (see explicitSinceFromAudit), else from their last change.
    name: '0094_consent_purposes_explicit_since',
    async up(db) {
      await db.schema.alterTable('consent_purposes').addColumn('explicit_since', 'text').execute();
      await explicitSinceFromAudit(db, false);
    },
  },
  {
    // Every signed receipt, so that one the subject was not handed (GPC during ingestion, merges, rights requests)
    // can be fetched by the id its ledger entries carry. Evidence, like the ledger: append-only.
    name: '0096_consent_receipts',
    async up(db, dialect) {
      await db.schema
        .createTable('consent_receipts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('subjects', 'text', (c) => c.notNull())
        .addColumn('mechanism', 'text', (c) => c.notNull())
        .addColumn('kid', 'text', (c) => c.notNull())
        .addColumn('jws', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('consent_receipts_subject').on('consent_receipts').columns(['subject', 'at']).execute();
      await appendOnly(db, dialect, 'consent_receipts');
    },
  },
  {
    name: '0105_consent_no_replace',
    async up(db, dialect) {
      if (dialect !== 'sqlite') return;
      await noReplace(db, 'consent_ledger', 'id');
      await noReplace(db, 'consent_notices', 'version');
      await noReplace(db, 'consent_receipts', 'id');
    },
  },
  {
    // 0094 as first released counted every explicit purpose from its last change: one whose description was edited
    // before the upgrade turned every consent given before the edit into one to renew. Moved back as 0094 now does.
    name: '0106_consent_purposes_explicit_since_repair',
    async up(db) {
      await explicitSinceFromAudit(db, true);
    },
  },
  {
    // The rows that put a GPC opt-out in force, for the sweep that writes a flagged purpose's GPC refusals
    // (gpcSubjectsWithout), which runs every hour: it reads those people's rows, not every consent of everyone.
    name: '0115_consent_current_gpc',
    async up(db) {
      await db.schema
        .createIndex('consent_current_gpc')
        .on('consent_current')
        .column('subject')
        .where(sql<boolean>`(gpc = 1 AND state IN ('refused', 'withdrawn')) OR gpc_override = 1`)
        .execute();
    },
  },
  {
    // ANALYZE copies sample values into pg_statistic, readable through pg_stats and kept after their rows are deleted:
    // none of the sealed private keys receipts are signed with (keepOutOfStatistics).
    name: '0121_consent_signing_keys_no_statistics',
    async up(db, dialect) {
      await keepOutOfStatistics(db, dialect, 'consent_signing_keys', ['private_key']);
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

/**
 * The statements `restrictiveConsentStates` runs: plain SQL, the same on both databases. Every GPC opt-out
 * (`gpc` = 1 on a refusal or withdrawal, as the service's isGpcOptOut tells one) is among the refusals and withdrawals.
 */
export const RESTRICTIVE_CONSENT_SQL = {
  optOuts: "SELECT subject, purpose, state, gpc, at FROM consent_current WHERE state IN ('refused', 'withdrawn')",
  restrictions: "SELECT subject, kind, since FROM consent_restrictions WHERE lifted_at IS NULL AND kind IN ('restriction', 'objection_marketing')",
} as const;

/**
 * The restrictive consent states a database holds (current refusals and withdrawals, GPC opt-outs among them;
 * restrictions and objections in force), read with any executor of plain SQL: a restore reads them from the database
 * it is about to replace (SQLite opened read-only, or a PostgreSQL client), before any migration.
 */
export async function restrictiveConsentStates(all: (sql: string) => Promise<readonly Record<string, unknown>[]> | readonly Record<string, unknown>[]): Promise<RestrictiveConsentStates> {
  const optOuts = (await all(RESTRICTIVE_CONSENT_SQL.optOuts)).map((row) => ({
    subject: String(row.subject),
    purpose: String(row.purpose),
    state: row.state === 'refused' ? ('refused' as const) : ('withdrawn' as const),
    gpc: Number(row.gpc) === 1,
    at: String(row.at),
  }));
  const restrictions = (await all(RESTRICTIVE_CONSENT_SQL.restrictions)).map((row) => ({
    subject: String(row.subject),
    kind: row.kind === 'restriction' ? ('restriction' as const) : ('objection_marketing' as const),
    since: String(row.since),
  }));
  return { optOuts, restrictions };
}

/** Rows per multi-row statement (and subjects per load query). */
export const CHUNK = 100;

/**
 * First key of the per-subject advisory locks ("CDcs"), taken with pg_advisory_xact_lock(int4, int4): that key space
 * never overlaps the single bigint keys of the other advisory locks (the audit log's, the identity writers', ...).
 */
const PG_SUBJECT_LOCK_SPACE = 0x43446373;

/** The second key of a subject's advisory lock: 32 bits of a hash of its pseudonym (a collision only makes two people wait for each other). */
function subjectLockKey(pseudonym: string): number {
  return createHash('sha256').update(pseudonym).digest().readInt32BE(0);
}

/** Every SQL statement on the consent tables. */
export class ConsentRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<ConsentTables>;
  readonly #currentSql = new Map<string, string>();
  readonly #insertSql = new Map<number, string>();
  readonly #upsertSql = new Map<number, string>();
  readonly #restrictionSql = new Map<number, string>();
  readonly #loadSql = new Map<number, string>();

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
      // Rows locked in key order, not in the order a scan meets their latest versions.
      text = (lock ? query.orderBy('subject').orderBy('purpose').forUpdate() : query).compile().sql;
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
   * Upsert of n current rows: the entry committed last wins. Writers of one subject are serialised (lockSubjects on
   * PostgreSQL; SQLite runs one write transaction at a time), so commit order is the order of the changes, whatever
   * the clocks of several API nodes say.
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
   * On PostgreSQL, takes a transaction-scoped advisory lock per subject (pseudonym), in one fixed order (of the lock
   * keys), so that the writers of a person in every process run one after the other and two writers of several people
   * never wait for each other in a cycle; it also covers a person with no rows yet (a first consent). Taken first in a
   * consent write, before its row locks and the audit log's lock. Nothing to do on SQLite (one writer at a time).
   */
  async lockSubjects(tx: SqlExecutor, subjects: readonly string[]): Promise<void> {
    if (this.#storage.dialect !== 'postgres' || subjects.length === 0) return;
    const keys = [...new Set(subjects.map(subjectLockKey))].sort((a, b) => a - b);
    // unnest yields the keys in array order: locked one after the other in that order.
    await tx.all(`select pg_advisory_xact_lock(${PG_SUBJECT_LOCK_SPACE}, k) from unnest($1::int4[]) as k`, [keys]);
  }

  /**
   * The current rows of the subjects (pseudonyms), one query per 100 subjects. Inside a write transaction they are
   * locked on PostgreSQL, in key order, so a concurrent change to the same subject waits and then sees this one
   * (SQLite's write transactions are serial anyway).
   */
  async current(subjects: readonly string[], executor: SqlExecutor = this.#storage.raw, forUpdate = false): Promise<CurrentRow[]> {
    const out: CurrentRow[] = [];
    for (let i = 0; i < subjects.length; i += CHUNK) {
      const part = subjects.slice(i, i + CHUNK);
      out.push(...(await executor.all<CurrentRow>(this.#currentText(part.length, forUpdate), part)));
    }
    return out;
  }

  /**
   * The hot path's load: the current rows and the restrictions in force of up to 100 subjects per query (one
   * UNION ALL, so that a restriction costs ingestion no extra round trip). Restriction rows come back as current rows
   * with state `flag` and the kind as purpose, and are split off here.
   */
  async currentAndRestrictions(subjects: readonly string[]): Promise<{ current: CurrentRow[]; restrictions: RestrictionRow[] }> {
    const current: CurrentRow[] = [];
    const restrictions: RestrictionRow[] = [];
    for (let i = 0; i < subjects.length; i += CHUNK) {
      const part = subjects.slice(i, i + CHUNK);
      let text = this.#loadSql.get(part.length);
      if (text === undefined) {
        const ids = Array.from({ length: part.length }, () => '');
        const flags = this.#db
          .selectFrom('consent_restrictions')
          .select((eb) => [
            'subject',
            'kind as purpose',
            'id as entry_id',
            sql<string>`'flag'`.as('state'),
            'kind as basis',
            eb.cast<number | null>(sql`null`, 'integer').as('notice_version'),
            'set_by as mechanism',
            'request_id as jurisdiction',
            eb.cast<number>(sql`0`, 'integer').as('gpc'),
            eb.cast<number>(sql`0`, 'integer').as('gpc_override'),
            'since as at',
          ])
          .where('subject', 'in', ids)
          .where('lifted_at', 'is', null);
        text = this.#db
          .selectFrom('consent_current')
          .select(['subject', 'purpose', 'entry_id', 'state', 'basis', 'notice_version', 'mechanism', 'jurisdiction', 'gpc', 'gpc_override', 'at'])
          .where('subject', 'in', ids)
          .unionAll(flags)
          .compile().sql;
        this.#loadSql.set(part.length, text);
      }
      for (const row of await this.#storage.raw.all<CurrentRow>(text, [...part, ...part])) {
        if (row.state !== 'flag') {
          current.push(row);
          continue;
        }
        restrictions.push({ id: row.entry_id, subject: row.subject, kind: row.purpose, request_id: row.jurisdiction, since: row.at, set_by: row.mechanism, lifted_at: null, lifted_by: null });
      }
    }
    return { current, restrictions };
  }

  /** The restrictions and objections in force for the subjects (pseudonyms), one query per 100 subjects. */
  async restrictions(subjects: readonly string[], executor: SqlExecutor = this.#storage.raw): Promise<RestrictionRow[]> {
    const out: RestrictionRow[] = [];
    for (let i = 0; i < subjects.length; i += CHUNK) {
      const part = subjects.slice(i, i + CHUNK);
      const key = part.length;
      let text = this.#restrictionSql.get(key);
      if (text === undefined) {
        text = this.#db.selectFrom('consent_restrictions').selectAll().where('subject', 'in', Array.from({ length: key }, () => '')).where('lifted_at', 'is', null).compile().sql;
        this.#restrictionSql.set(key, text);
      }
      out.push(...(await executor.all<RestrictionRow>(text, part)));
    }
    return out;
  }

  /** Records a restriction or objection, inside the caller's transaction. */
  async insertRestriction(tx: SqlExecutor, row: RestrictionRow): Promise<void> {
    const compiled = this.#db.insertInto('consent_restrictions').values(row).compile();
    await tx.run(compiled.sql, compiled.parameters);
  }

  /** Lifts the restrictions of one kind in force for a subject; returns how many were lifted. */
  liftRestriction(tx: SqlExecutor, subject: string, kind: RestrictionKind, at: string, by: string): Promise<number> {
    const compiled = this.#db
      .updateTable('consent_restrictions')
      .set({ lifted_at: at, lifted_by: by })
      .where('subject', '=', subject)
      .where('kind', '=', kind)
      .where('lifted_at', 'is', null)
      .compile();
    return tx.run(compiled.sql, compiled.parameters);
  }

  /** Every restriction and objection of a subject, in force or lifted, oldest first. */
  restrictionHistory(subject: string): Promise<RestrictionRow[]> {
    return this.#db.selectFrom('consent_restrictions').selectAll().where('subject', '=', subject).orderBy('since').orderBy('id').execute();
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

  /**
   * Erasure: deletes the current state and the restrictions of these subjects (pseudonyms) inside the caller's
   * transaction, and counts their ledger entries, which stay (append-only evidence of consent). Rows per table.
   */
  async eraseSubjects(tx: SqlExecutor, subjects: readonly string[]): Promise<{ current: number; restrictions: number; ledgerKept: number; receiptsKept: number }> {
    const out = { current: 0, restrictions: 0, ledgerKept: 0, receiptsKept: 0 };
    for (let i = 0; i < subjects.length; i += CHUNK) {
      const part = subjects.slice(i, i + CHUNK);
      const current = this.#db.deleteFrom('consent_current').where('subject', 'in', part).compile();
      out.current += await tx.run(current.sql, current.parameters);
      const restrictions = this.#db.deleteFrom('consent_restrictions').where('subject', 'in', part).compile();
      out.restrictions += await tx.run(restrictions.sql, restrictions.parameters);
      const kept = this.#db.selectFrom('consent_ledger').select((eb) => eb.fn.countAll<number>().as('n')).where('subject', 'in', part).compile();
      out.ledgerKept += Number((await tx.all<{ n: number }>(kept.sql, kept.parameters))[0]?.n ?? 0);
      // Receipts are the signed form of those entries and stay with them: those of which the person is the principal,
      // and those that name them among the linked profiles (a GPC signal over a shared device, a rights request).
      const named = (pseudonym: string) => sql<boolean>`subjects LIKE ${`%${escapeLike(JSON.stringify(pseudonym))}%`} ESCAPE '\\'`;
      const receipts = this.#db
        .selectFrom('consent_receipts')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where((eb) => eb.or([eb('subject', 'in', part), ...part.map(named)]))
        .compile();
      out.receiptsKept += Number((await tx.all<{ n: number }>(receipts.sql, receipts.parameters))[0]?.n ?? 0);
    }
    return out;
  }

  /** Stores a signed receipt inside the caller's transaction (the one that wrote the entries it covers). */
  async insertReceipt(tx: SqlExecutor, row: ReceiptRow): Promise<void> {
    const compiled = this.#db.insertInto('consent_receipts').values(row).compile();
    await tx.run(compiled.sql, compiled.parameters);
  }

  /** A stored receipt by id. */
  async receipt(id: string): Promise<ReceiptRow | undefined> {
    return this.#db.selectFrom('consent_receipts').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** A subject's ledger entries, oldest first, read on `tx` (inside the caller's transaction). */
  async historyIn(tx: SqlExecutor, subject: string): Promise<LedgerEntry[]> {
    const compiled = this.#db.selectFrom('consent_ledger').selectAll().where('subject', '=', subject).orderBy('at').orderBy('id').compile();
    return (await tx.all<LedgerRow>(compiled.sql, compiled.parameters)).map(entryFromRow);
  }

  /** A subject's ledger entries, oldest first. */
  async history(subject: string): Promise<LedgerEntry[]> {
    const rows = await this.#db.selectFrom('consent_ledger').selectAll().where('subject', '=', subject).orderBy('at').orderBy('id').execute();
    return rows.map(entryFromRow);
  }

  /**
   * The ledger entries of several subjects (the profiles of one person), oldest first (by time, then entry id, in
   * code point order); one query per 100 subjects.
   */
  async historyOf(subjects: readonly string[]): Promise<LedgerEntry[]> {
    const rows: LedgerRow[] = [];
    for (let i = 0; i < subjects.length; i += CHUNK) {
      rows.push(...(await this.#db.selectFrom('consent_ledger').selectAll().where('subject', 'in', subjects.slice(i, i + CHUNK)).execute()));
    }
    return rows.sort((a, b) => compareText(a.at, b.at) || compareText(a.id, b.id)).map(entryFromRow);
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

  /**
   * Subjects (pseudonyms) with a GPC opt-out in force — a current GPC refusal or withdrawal of some purpose, or an opt-in
   * confirmed over one — but none for `purpose`, a page at a time in subject order after `after`. Reads the rows of
   * people with a GPC opt-out in force only (index consent_current_gpc), not every consent of everyone.
   */
  async gpcSubjectsWithout(purpose: string, after: string | undefined, limit: number): Promise<string[]> {
    const optOut = ['refused', 'withdrawn'];
    let q = this.#db
      .selectFrom('consent_current as c')
      .select('c.subject')
      .distinct()
      // Literally the condition of the partial index consent_current_gpc, which holds only these rows: SQLite uses a partial
      // index only where it can see that the query's condition implies the index's, which bound parameters hide.
      .where(sql<boolean>`((c.gpc = 1 AND c.state IN ('refused', 'withdrawn')) OR c.gpc_override = 1)`)
      // Not those who have the refusal already, nor those who confirmed an opt-in to the purpose over their GPC opt-out
      // (it stands: read every run, they would each cost a locked, empty write).
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('consent_current as p')
              .select('p.subject')
              .whereRef('p.subject', '=', 'c.subject')
              .where('p.purpose', '=', purpose)
              .where((w) => w.or([w.and([w('p.gpc', '=', 1), w('p.state', 'in', optOut)]), w.and([w('p.state', '=', 'given'), w('p.gpc_override', '=', 1)])])),
          ),
        ),
      );
    if (after !== undefined) q = q.where('c.subject', '>', after);
    const rows = await q.orderBy('c.subject').limit(limit).execute();
    return rows.map((row) => row.subject);
  }

  /** Configured purposes by key (by code point, whatever the database's collation). */
  purposes(): Promise<PurposeRow[]> {
    return this.#db.selectFrom('consent_purposes').selectAll().orderBy('key', textOrder(this.#storage.dialect).asc).execute();
  }

  /**
   * Inserts the default purposes, and notice version 1 when there is no notice yet, in the caller's transaction, unless
   * a purpose exists; returns whether these were written (another process seeding at the same moment fails with a
   * unique violation).
   */
  async seedPurposesIn(tx: SqlExecutor, rows: readonly PurposeRow[], notice: NoticeRow): Promise<boolean> {
    const anyPurpose = this.#db.selectFrom('consent_purposes').select('key').limit(1).compile();
    if ((await tx.all(anyPurpose.sql, anyPurpose.parameters)).length > 0) return false;
    const purposes = this.#db.insertInto('consent_purposes').values([...rows]).compile();
    await tx.run(purposes.sql, purposes.parameters);
    const anyNotice = this.#db.selectFrom('consent_notices').select('version').limit(1).compile();
    if ((await tx.all(anyNotice.sql, anyNotice.parameters)).length === 0) await this.insertNoticeIn(tx, notice);
    return true;
  }

  /** Adds or changes a purpose in the caller's transaction. */
  async upsertPurposeIn(tx: SqlExecutor, row: PurposeRow): Promise<void> {
    const query = this.#db
      .insertInto('consent_purposes')
      .values(row)
      .onConflict((oc) =>
        oc.column('key').doUpdateSet({
          basis: row.basis,
          sale_or_sharing: row.sale_or_sharing,
          targeted_advertising: row.targeted_advertising,
          explicit: row.explicit,
          explicit_since: row.explicit_since,
          opt_out_jurisdictions: row.opt_out_jurisdictions,
          description: row.description,
          updated_at: row.updated_at,
          updated_by: row.updated_by,
        }),
      )
      .compile();
    await tx.run(query.sql, query.parameters);
  }

  notices(): Promise<NoticeRow[]> {
    return this.#db.selectFrom('consent_notices').selectAll().orderBy('version').execute();
  }

  /** Inserts a notice version in the caller's transaction; a version taken meanwhile fails with a unique violation. */
  async insertNoticeIn(tx: SqlExecutor, row: NoticeRow): Promise<void> {
    const query = this.#db.insertInto('consent_notices').values(row).compile();
    await tx.run(query.sql, query.parameters);
  }

  signingKeys(): Promise<SigningKeyRow[]> {
    return this.#db.selectFrom('consent_signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute();
  }

  /**
   * Retires every active receipt signing key inside the caller's transaction (a rotation, before it adds the new one);
   * answers their key ids. On PostgreSQL every key row is locked first: of two rotations at the same moment, the second
   * waits for the first to commit and then retires the key it made, so one key is active after both.
   */
  async retireSigningKeysIn(tx: SqlExecutor, at: string): Promise<string[]> {
    if (this.#storage.dialect === 'postgres') {
      const lock = this.#db.selectFrom('consent_signing_keys').select('kid').orderBy('kid').forUpdate().compile();
      await tx.all(lock.sql, lock.parameters);
    }
    const active = this.#db.selectFrom('consent_signing_keys').select('kid').where('retired_at', 'is', null).orderBy('created_at').orderBy('kid').compile();
    const kids = (await tx.all<{ kid: string }>(active.sql, active.parameters)).map((r) => r.kid);
    const retire = this.#db.updateTable('consent_signing_keys').set({ retired_at: at }).where('retired_at', 'is', null).compile();
    await tx.run(retire.sql, retire.parameters);
    return kids;
  }

  /** Inserts a receipt signing key inside the caller's transaction (the one that audits its creation). */
  async insertSigningKeyIn(tx: SqlExecutor, row: SigningKeyRow): Promise<void> {
    const query = this.#db.insertInto('consent_signing_keys').values(row).compile();
    await tx.run(query.sql, query.parameters);
  }
}

/** A text matched literally inside a LIKE pattern with `ESCAPE '\\'`. */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
