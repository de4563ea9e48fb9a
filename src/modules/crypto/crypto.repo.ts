import type { Kysely } from 'kysely';
import { keepOutOfStatistics, type ModuleMigration, type SqlExecutor, type Storage } from '../../storage/index.ts';

export type CryptoTables = {
  crypto_master_keys: { purpose: string; version: number; check_value: string; created_at: string; retired_at: string | null };
  crypto_subject_keys: { subject_id: string; key_id: string; key_version: number; master_version: number; wrapped_key: string; created_at: string };
  crypto_destroyed_keys: { key_id: string; destroyed_at: string };
};

export type SubjectKeyRow = CryptoTables['crypto_subject_keys'];

/** A key of the key file as a first start registers it: its key check value, and whether it is an older wrap version. */
export interface FirstRegistration {
  purpose: 'wrap' | 'pseudonym';
  version: number;
  checkValue: string;
  retired: boolean;
}

/** The advisory lock ("CDKr") that serializes first starts' registrations of the key file on PostgreSQL. */
const PG_KEY_REGISTRATION_LOCK = 0x43444b72;

export const CRYPTO_MIGRATIONS: readonly ModuleMigration[] = [
  {
    name: '0001_crypto_keyring',
    async up(db) {
      await db.schema
        .createTable('crypto_master_keys')
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('check_value', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('retired_at', 'text')
        .addPrimaryKeyConstraint('crypto_master_keys_pk', ['purpose', 'version'])
        .execute();
      await db.schema
        .createTable('crypto_subject_keys')
        .addColumn('subject_id', 'text', (c) => c.primaryKey())
        .addColumn('key_id', 'text', (c) => c.notNull().unique())
        .addColumn('key_version', 'integer', (c) => c.notNull())
        .addColumn('master_version', 'integer', (c) => c.notNull())
        .addColumn('wrapped_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('crypto_subject_keys_master').on('crypto_subject_keys').column('master_version').execute();
      await db.schema
        .createTable('crypto_destroyed_keys')
        .addColumn('key_id', 'text', (c) => c.primaryKey())
        .addColumn('destroyed_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  {
    // ANALYZE copies sample values into pg_statistic, readable through pg_stats and kept after their rows are deleted:
    // none of the wrapped data keys (keepOutOfStatistics).
    name: '0120_crypto_subject_keys_no_statistics',
    async up(db, dialect) {
      await keepOutOfStatistics(db, dialect, 'crypto_subject_keys', ['wrapped_key']);
    },
  },
];

/** Every SQL statement on the crypto tables. */
export class CryptoRepo {
  readonly #storage: Storage;
  readonly #db: Kysely<CryptoTables>;
  readonly #byKeyIdSql: string;
  readonly #bySubjectSql: string;
  readonly #destroySql: string;
  readonly #tombstoneSql: string;

  constructor(storage: Storage) {
    this.#storage = storage;
    this.#db = storage.db.withTables<CryptoTables>();
    this.#byKeyIdSql = this.#db.selectFrom('crypto_subject_keys').selectAll().where('key_id', '=', '').compile().sql;
    this.#bySubjectSql = this.#db.selectFrom('crypto_subject_keys').selectAll().where('subject_id', '=', '').compile().sql;
    this.#destroySql = this.#db.deleteFrom('crypto_subject_keys').where('subject_id', '=', '').returning('key_id').compile().sql;
    this.#tombstoneSql = this.#db.insertInto('crypto_destroyed_keys').values({ key_id: '', destroyed_at: '' }).compile().sql;
  }

  registeredKeys(): Promise<CryptoTables['crypto_master_keys'][]> {
    return this.#db.selectFrom('crypto_master_keys').selectAll().orderBy('purpose').orderBy('version').execute();
  }

  /**
   * Registers the keys of a key file, older wrap versions retired, when the database has no key registered: in one
   * transaction that excludes every other that asks (PostgreSQL: an advisory lock held to the commit; SQLite write
   * transactions are serial), so starts at once on a new database register one key file, whole, and the others find
   * it registered. Returns whether these keys were registered (false: another start's were, to be checked).
   */
  async registerFirstKeys(keys: readonly FirstRegistration[]): Promise<boolean> {
    const insert = this.#db.insertInto('crypto_master_keys').values({ purpose: '', version: 0, check_value: '', created_at: '', retired_at: null }).compile().sql;
    return this.#storage.raw.transaction(async (tx) => {
      if (this.#storage.dialect === 'postgres') await tx.all('select pg_advisory_xact_lock($1)', [PG_KEY_REGISTRATION_LOCK]);
      if ((await tx.all('SELECT purpose FROM crypto_master_keys LIMIT 1', [])).length > 0) return false;
      const at = new Date().toISOString();
      for (const k of keys) await tx.run(insert, [k.purpose, k.version, k.checkValue, at, k.retired ? at : null]);
      return true;
    });
  }

  async registerKey(purpose: 'wrap' | 'pseudonym', version: number, checkValue: string): Promise<void> {
    await this.#db
      .insertInto('crypto_master_keys')
      .values({ purpose, version, check_value: checkValue, created_at: new Date().toISOString(), retired_at: null })
      .execute();
  }

  /** Marks the wrap versions below `version` retired; returns how many were not retired yet. */
  async retireWrapKeysBelow(version: number): Promise<number> {
    const result = await this.#db
      .updateTable('crypto_master_keys')
      .set({ retired_at: new Date().toISOString() })
      .where('purpose', '=', 'wrap')
      .where('version', '<', version)
      .where('retired_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async bySubject(subjectId: string): Promise<SubjectKeyRow | undefined> {
    const rows = await this.#storage.raw.all<SubjectKeyRow>(this.#bySubjectSql, [subjectId]);
    return rows[0];
  }

  /** The keys of many subjects in one query (chunks of 500). */
  async bySubjects(subjectIds: readonly string[]): Promise<SubjectKeyRow[]> {
    const rows: SubjectKeyRow[] = [];
    for (let i = 0; i < subjectIds.length; i += 500) {
      rows.push(...(await this.#db.selectFrom('crypto_subject_keys').selectAll().where('subject_id', 'in', subjectIds.slice(i, i + 500)).execute()));
    }
    return rows;
  }

  async byKeyId(keyId: string): Promise<SubjectKeyRow | undefined> {
    const rows = await this.#storage.raw.all<SubjectKeyRow>(this.#byKeyIdSql, [keyId]);
    return rows[0];
  }

  /**
   * Inserts new subject keys, all wrapped with master key version `masterVersion`, in one transaction (one commit for a
   * whole group of new people); returns the subjects whose key was inserted: a subject that got one concurrently
   * elsewhere keeps that one. Returns undefined, inserting nothing, when that version is retired (a rotation by
   * another process committed; wrap with the new one): no key is ever stored under a version a rotation has passed,
   * which a prune could then remove. The version's registration is read after the inserts, locked on PostgreSQL (a
   * rotation retiring it waits for this transaction, and its re-wrap then finds these keys), under the write lock on
   * SQLite.
   */
  async insertSubjectKeys(rows: readonly SubjectKeyRow[], masterVersion: number): Promise<Set<string> | undefined> {
    const inserted = new Set<string>();
    const retired = Symbol('retired');
    try {
      await this.#db.transaction().execute(async (trx) => {
        for (let i = 0; i < rows.length; i += 100) {
          const chunk = rows.slice(i, i + 100);
          const added = await trx.insertInto('crypto_subject_keys').values(chunk).onConflict((oc) => oc.column('subject_id').doNothing()).returning('subject_id').execute();
          for (const row of added) inserted.add(row.subject_id);
        }
        const registration = trx.selectFrom('crypto_master_keys').select('retired_at').where('purpose', '=', 'wrap').where('version', '=', masterVersion);
        const row = await (this.#storage.dialect === 'postgres' ? registration.forShare() : registration).executeTakeFirst();
        if (!row || row.retired_at !== null) throw retired;
      });
    } catch (error) {
      if (error === retired) return undefined;
      throw error;
    }
    return inserted;
  }

  async isDestroyed(keyId: string): Promise<boolean> {
    const row = await this.#db.selectFrom('crypto_destroyed_keys').select('key_id').where('key_id', '=', keyId).executeTakeFirst();
    return row !== undefined;
  }

  /** Runs fn in one write transaction on the raw path. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#storage.raw.transaction(fn);
  }

  /**
   * Deletes a subject's key and leaves a tombstone naming only the key id, inside the caller's transaction; returns
   * the key id, or undefined when the subject had no key (a concurrent destruction that committed first took it).
   */
  async destroySubjectKeyIn(tx: SqlExecutor, subjectId: string): Promise<string | undefined> {
    const [row] = await tx.all<{ key_id: string }>(this.#destroySql, [subjectId]);
    if (!row) return undefined;
    await tx.run(this.#tombstoneSql, [row.key_id, new Date().toISOString()]);
    return row.key_id;
  }

  /**
   * Subject keys still wrapped by an older master key, a page at a time in subject order after `afterSubjectId` (a
   * key that cannot be re-wrapped stays behind, so the next page starts after it, not at the first row again).
   */
  wrappedBelow(version: number, afterSubjectId: string, limit: number): Promise<SubjectKeyRow[]> {
    return this.#db
      .selectFrom('crypto_subject_keys')
      .selectAll()
      .where('master_version', '<', version)
      .where('subject_id', '>', afterSubjectId)
      .orderBy('subject_id')
      .limit(limit)
      .execute();
  }

  /**
   * Stores re-wrapped keys. A row is matched by its subject and its key id: a key destroyed since it was read (an
   * erasure) and a new key made for the same subject meanwhile is left alone, not overwritten with the old key.
   */
  async rewrap(rows: readonly SubjectKeyRow[]): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      for (const row of rows) {
        await trx
          .updateTable('crypto_subject_keys')
          .set({ wrapped_key: row.wrapped_key, master_version: row.master_version })
          .where('subject_id', '=', row.subject_id)
          .where('key_id', '=', row.key_id)
          .execute();
      }
    });
  }

  /** Removes the registrations of wrap versions taken out of the key file (pruned). */
  async deregisterWrapKeys(versions: readonly number[]): Promise<void> {
    if (versions.length === 0) return;
    await this.#db.deleteFrom('crypto_master_keys').where('purpose', '=', 'wrap').where('version', 'in', versions).execute();
  }

  async maxWrapVersion(): Promise<number> {
    const row = await this.#db
      .selectFrom('crypto_master_keys')
      .select((eb) => eb.fn.max<number>('version').as('v'))
      .where('purpose', '=', 'wrap')
      .executeTakeFirst();
    return Number(row?.v ?? 0);
  }

  async countByMasterVersion(): Promise<Record<number, number>> {
    const rows = await this.#db
      .selectFrom('crypto_subject_keys')
      .select(['master_version', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('master_version')
      .execute();
    return Object.fromEntries(rows.map((r) => [Number(r.master_version), Number(r.n)]));
  }
}
