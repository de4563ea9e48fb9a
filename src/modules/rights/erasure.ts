import { SYSTEM_ACTOR, type Actor } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import type { DataSubject, DeletionAuditEntry, DeletionLedgerEntry, EraseOutcome, IdentifierPseudonym, SubjectDataHandler, SubjectDeletion } from '../../shared/subject-data.ts';
import type { Logger } from '../../shared/logger.ts';
import { isUniqueViolation, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Identity } from '../identity/index.ts';
import { certificateStatus, NO_RECIPIENTS, type ErasureCertificate, type RecipientOutcome } from './certificate.ts';
import { DeletionLedger, nextLedgerEntry, verifyLedgerLines } from './deletion-ledger.ts';
import { ErasureRepo, type ErasureRow } from './erasure.repo.ts';

export type { ErasureCertificate } from './certificate.ts';

/** A recipient of subjects' data (a destination, a processor) that is told of erasures; registered by its module. */
export interface ErasureRecipient {
  readonly name: string;
  /** Passes the erasure on; `confirmed` only when the recipient confirmed the deletion. */
  forward(subject: DataSubject, requestId: string): Promise<{ status: RecipientOutcome['status']; detail?: string }>;
}

/**
 * A store outside the database (files) that holds data about subjects. It cannot join the transaction: it is erased
 * after the commit and the destruction of the keys, and again if the erasure is resumed, so erasing twice must be
 * harmless. Its outcomes are listed in the certificate. Retention's deletion of an inactive person erases it too.
 */
export interface ErasureFileStore {
  readonly module: string;
  /**
   * `erasure.requestId`: the erasure request being carried out (or replayed after a restore); null when retention
   * deletes an inactive person.
   */
  erase(subject: DataSubject, erasure: { readonly requestId: string | null }): Promise<EraseOutcome[]>;
}

export interface ErasureDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  identity: Identity;
  /** Every module's handler, in the kernel's order. */
  handlers: readonly SubjectDataHandler[];
  /** Path of the ledger file (`<dataDir>/deletion-ledger.jsonl`). */
  ledgerPath: string;
  recipients?: readonly ErasureRecipient[];
  /** Stores outside the database: files such as the mail outbox. */
  fileStores?: readonly ErasureFileStore[];
  /** How long the truncation of SQLite's write-ahead log is tried while another connection reads (storage's default). */
  checkpointWaitMs?: number;
  /** Where the ledger reports a torn last line it skipped or cut away (default: a process warning). */
  logger?: Pick<Logger, 'warn'>;
}

/** What compact() did: each table rewritten, with the bytes it took before and after (none on SQLite). */
export interface CompactReport {
  readonly dialect: 'sqlite' | 'postgres';
  readonly tables: readonly { readonly table: string; readonly bytesBefore: number; readonly bytesAfter: number }[];
  /**
   * What kept the rewrite from dropping the rows the last erasure deleted (VACUUM FULL copies a deleted row that a
   * transaction still running may see): transactions open since before it ended, prepared transactions, replication
   * slots holding back removal. Empty when nothing did; otherwise end them and compact again.
   */
  readonly heldBy: readonly { readonly kind: 'transaction' | 'prepared_transaction' | 'replication_slot'; readonly name: string; readonly database: string | null; readonly since: string | null }[];
  /**
   * PostgreSQL, when tables were rewritten: whether the pg_statistic catalog was rewritten too (`rewritten`), so the
   * statistics rows that ANALYZE replaced left its file, or was not: only a superuser may (`not_allowed`), or a
   * session held it longer than STATISTICS_LOCK_WAIT_MS (`busy`); then they stay until PostgreSQL vacuums it and new
   * rows overwrite them. Null on SQLite and when nothing was rewritten.
   */
  readonly statisticsCatalog: 'rewritten' | 'not_allowed' | 'busy' | null;
  readonly ms: number;
}

/** How a subject is asked for: a profile id, or any identifier (user id, anonymous id, email, phone, custom). */
export type SubjectLookup = { profileId: string } | { identifier: { type: string; value: string } };

const PURPOSE = 'essential.legal_obligation';
const SUPPRESSION_REASON = 'erasure';
const PG_LEDGER_LOCK = 0x43444c67; // "CDLg": one ledger writer at a time on PostgreSQL
/** How long compact() waits for pg_statistic's lock, during which planning in the database waits behind it. */
export const STATISTICS_LOCK_WAIT_MS = 1000;

/** The certificate's line for the database file: what the erasure did to the bytes the deleted rows leave behind. */
const STORAGE_LINE = { sqlite: 'sqlite database file', postgres: 'postgresql database' } as const;
/** What the PostgreSQL line says: the rows are gone from every query and dump, their bytes not yet from the files. */
export const POSTGRES_STORAGE_DETAIL =
  'deleted rows are gone from every query and from logical dumps (pg_dump) taken from now on. Their bytes stay in the tables\' data files (and in WAL segments not yet recycled) until the tables are rewritten: VACUUM and autovacuum only mark the space reusable, `candor compact` (VACUUM FULL of the tables erasures name) removes them. Until then those bytes hold the plain fields in clear (non-personal event properties and traits, order ids, totals, times, profile ids) and the personal fields as ciphertexts, next to the destroyed data key wrapped with the master key: readable with the key file until the rewrite, or until that master key version is pruned (`candor keys rotate`, then `candor keys prune`). The planner statistics of those tables were taken again from the rows left (ANALYZE), so pg_stats holds none of the deleted values; the statistics rows they replaced stay in the pg_statistic catalog\'s file until PostgreSQL vacuums it. Columns holding key material or ciphertexts are never sampled';

const lineKey = (s: { module: string; store: string }) => `${s.module}\u0000${s.store}`;

/** Where an erasure stands between its commit and its certificate. */
interface Progress {
  row: ErasureRow;
  subject: DataSubject;
  stores: (EraseOutcome & { module: string })[];
  ledger: { seq: number; hash: string };
}

/**
 * Erasure you can prove. Order, and what happens when a step fails:
 * 1. one transaction: every handler's erase, the identifiers onto the suppression list, every handler's closeIn (the
 *    rights handler closes the person's other requests, with their audit entries), the profiles marked erased, the
 *    deletion ledger row, the erasure row in state `keys_pending` — a failure rolls all of it back;
 * 2. after the commit: handlers drop their caches; every profile's data key is destroyed (crypto-shredding), then the
 *    handlers' own keys for the subject (destroyKeys: those sealing the addresses of the person's other erasure
 *    requests); stores outside the database (files: the mail outbox) delete what they hold about the subject;
 * 3. the ledger line is appended to the file and fsynced; SQLite's WAL is checkpointed and truncated;
 * 4. audit entry; the certificate is stored and the erasure marked `done`.
 * If step 2 or 3 fails the erasure stays `keys_pending` and the error is thrown; `complete()` (a retried request) and
 * `replayMissing()` (every kernel start) finish it. A WAL another connection keeps from being truncated
 * (STORAGE_CHECKPOINT_BUSY) is such a failure: the stored certificate then lists the database file as not erased.
 * Nothing is skipped silently.
 */
export class ErasureEngine {
  readonly #deps: ErasureDeps;
  readonly #repo: ErasureRepo;
  readonly #ledger: DeletionLedger;

  constructor(deps: ErasureDeps) {
    this.#deps = deps;
    this.#repo = new ErasureRepo(deps.storage);
    this.#ledger = new DeletionLedger(deps.ledgerPath, deps.logger ? { logger: deps.logger } : {});
  }

  /** Everyone linked to the profile or identifier (follows merges); null when unknown. Throws RIGHTS_SUBJECT_ERASED if the identifier is on the suppression list. */
  async findSubject(by: SubjectLookup): Promise<DataSubject | null> {
    const { identity } = this.#deps;
    if ('profileId' in by) {
      if ((await this.#repo.erasedBy([by.profileId])) !== undefined) throw new CandorError('RIGHTS_SUBJECT_ERASED');
      return identity.linked({ profileIds: [by.profileId], identifiers: [] });
    }
    const normalized = identity.normalize(by.identifier);
    if (!normalized) throw new CandorError('IDENTITY_IDENTIFIER_INVALID', { type: by.identifier.type });
    const pseudonym = { type: normalized.type, valueHash: identity.hash(normalized) };
    if ((await identity.suppressedOf([pseudonym])).length > 0) throw new CandorError('RIGHTS_SUBJECT_ERASED');
    return identity.linked({ profileIds: [], identifiers: [pseudonym] });
  }

  /** Runs every registered handler in one transaction, destroys the data keys, suppresses every identifier, appends the deletion ledger (DB + file), audits; returns the certificate. A second erasure of the same subject: RIGHTS_SUBJECT_ERASED. */
  async erase(subject: DataSubject, request: { requestId: string; reason?: string }, actor: Actor): Promise<ErasureCertificate> {
    if ((await this.#repo.erasedBy(subject.profileIds)) !== undefined) throw new CandorError('RIGHTS_SUBJECT_ERASED');
    if ((await this.#deps.identity.suppressedOf(subject.identifiers)).length > 0) throw new CandorError('RIGHTS_SUBJECT_ERASED');
    if (await this.#repo.erasure(request.requestId)) throw new CandorError('RIGHTS_ERASURE_REQUEST_USED', { requestId: request.requestId });
    const startedAt = new Date().toISOString();
    let progress: Progress;
    try {
      progress = await this.#deps.storage.raw.transaction((tx) => this.#eraseIn(tx, subject, { requestId: request.requestId, startedAt, entry: undefined, actor }));
    } catch (error) {
      if (isUniqueViolation(error)) throw new CandorError('RIGHTS_SUBJECT_ERASED', undefined, { cause: error });
      throw error;
    }
    return this.#finish(progress, actor, { reason: request.reason ?? null, replay: false });
  }

  /** The certificate of an erasure request (status `incomplete` while it is being finished); null when none. */
  async certificate(requestId: string): Promise<ErasureCertificate | null> {
    const row = await this.#repo.erasure(requestId);
    return row ? (JSON.parse(row.certificate) as ErasureCertificate) : null;
  }

  /**
   * The certificate of an erasure request, once steps 2–4 of an erasure still pending (its commit done, its keys,
   * ledger line or WAL truncation owed) have been run again; null when the request erased nothing. Throws as erase()
   * does when a step fails again.
   */
  async complete(requestId: string, actor: Actor): Promise<ErasureCertificate | null> {
    const row = await this.#repo.erasure(requestId);
    if (!row) return null;
    if (row.state !== 'keys_pending') return JSON.parse(row.certificate) as ErasureCertificate;
    return this.#resume(row, actor);
  }

  /**
   * PostgreSQL keeps the bytes of deleted rows in its data files until a table is rewritten (VACUUM only marks the
   * space reusable): this rewrites (VACUUM FULL, with ANALYZE) every table an erasure's certificate names, one at a
   * time, each locked while it is, so what erasures (and retention) deleted leaves the files and the planner
   * statistics, then the pg_statistic catalog where this role may (a superuser); a row that a transaction still running may
   * see is copied, so `heldBy` names what was open since before the last erasure ended (audited with outcome
   * `failure` then). Audited as `rights.erasure.compact`.
   * On SQLite there is nothing to do: secure_delete overwrote the rows as they were deleted.
   */
  async compact(actor: Actor): Promise<CompactReport> {
    const started = Date.now();
    if (this.#deps.storage.dialect === 'sqlite') return { dialect: 'sqlite', tables: [], heldBy: [], statisticsCatalog: null, ms: 0 };
    const heldBy = await this.#repo.removalHolders();
    const tables: { table: string; bytesBefore: number; bytesAfter: number }[] = [];
    for (const table of await this.#repo.erasedTables()) {
      const bytesBefore = await this.#repo.tableBytes(table);
      await this.#repo.rewriteTable(table);
      tables.push({ table, bytesBefore, bytesAfter: await this.#repo.tableBytes(table) });
    }
    // Last: the rewrites' own ANALYZE replaced statistics rows too.
    let statisticsCatalog: CompactReport['statisticsCatalog'] = null;
    if (tables.length > 0) {
      if (!(await this.#repo.mayRewriteStatistics())) statisticsCatalog = 'not_allowed';
      else statisticsCatalog = (await this.#repo.rewriteStatistics(STATISTICS_LOCK_WAIT_MS)) ? 'rewritten' : 'busy';
    }
    await this.#deps.audit.append({
      actor: actor.id,
      role: actor.role,
      action: 'rights.erasure.compact',
      purpose: PURPOSE,
      subject: null,
      resource: 'database',
      details: {
        tables: tables.map((t) => t.table),
        bytesBefore: tables.reduce((n, t) => n + t.bytesBefore, 0),
        bytesAfter: tables.reduce((n, t) => n + t.bytesAfter, 0),
        heldBy: heldBy.map((h) => h.kind),
        statisticsCatalog,
      },
      outcome: heldBy.length === 0 ? 'success' : 'failure',
    });
    return { dialect: 'postgres', tables, heldBy, statisticsCatalog, ms: Date.now() - started };
  }

  /** The database copy of the deletion ledger, oldest first. */
  ledger(): Promise<DeletionLedgerEntry[]> {
    return this.#repo.ledger();
  }

  /** Checks both copies of the ledger: each chain, and that one is a prefix of the other. */
  async verifyLedger(): Promise<{ ok: true; entries: number } | { ok: false; seq: number; problem: string }> {
    const file = this.#ledger.read();
    const db = await this.#repo.ledger();
    const verdict = verifyLedgerLines(db);
    if (!verdict.ok) return verdict;
    for (let i = 0; i < Math.min(file.length, db.length); i++) {
      if (file[i]?.hash !== db[i]?.hash) return { ok: false, seq: i + 1, problem: 'file and database differ' };
    }
    return { ok: true, entries: Math.max(file.length, db.length) };
  }

  /**
   * Replays ledger-file entries missing from the database (after a restore); openKernel calls it right after migrations.
   * Also finishes erasures interrupted after their commit and writes database entries missing from the file.
   * Returns how many erasures were replayed.
   */
  async replayMissing(): Promise<number> {
    const file = this.#ledger.read();
    const db = await this.#repo.ledger();
    const verdict = verifyLedgerLines(db);
    if (!verdict.ok) throw new CandorError('RIGHTS_LEDGER_TAMPERED', { seq: verdict.seq, problem: `database: ${verdict.problem}` });
    for (let i = 0; i < Math.min(file.length, db.length); i++) {
      if (file[i]?.hash !== db[i]?.hash) throw new CandorError('RIGHTS_LEDGER_TAMPERED', { seq: i + 1, problem: 'file and database differ' });
    }
    let replayed = 0;
    // A WAL another process keeps from being truncated leaves the erasure pending (retried later) without stopping the
    // start; once one was, the next ones try once instead of waiting again.
    let waitMs = this.#deps.checkpointWaitMs;
    const leavePending = (error: unknown) => {
      if (!isCandorError(error, 'STORAGE_CHECKPOINT_BUSY')) throw error;
      waitMs = 0;
    };
    for (const entry of file.slice(db.length)) {
      const found = await this.#deps.identity.linked({ profileIds: entry.profileIds, identifiers: entry.identifiers });
      const subject: DataSubject = {
        profileId: entry.profileIds[0] ?? found?.profileId ?? '',
        profileIds: [...new Set([...entry.profileIds, ...(found?.profileIds ?? [])])],
        identifiers: uniqueIdentifiers([...entry.identifiers, ...(found?.identifiers ?? [])]),
      };
      const progress = await this.#deps.storage.raw.transaction((tx) => this.#eraseIn(tx, subject, { requestId: entry.requestId, startedAt: new Date().toISOString(), entry, actor: SYSTEM_ACTOR }));
      replayed++;
      await this.#finish(progress, SYSTEM_ACTOR, { reason: null, replay: true, waitMs }).catch(leavePending);
    }
    await this.#syncLedgerFile();
    for (const row of await this.#repo.pending()) {
      await this.#resume(row, SYSTEM_ACTOR, waitMs).catch(leavePending);
    }
    return replayed;
  }

  /** Steps 2–4 again for an erasure left `keys_pending`, from what its stored certificate recorded. */
  #resume(row: ErasureRow, actor: Actor, waitMs?: number): Promise<ErasureCertificate> {
    const certificate = JSON.parse(row.certificate) as ErasureCertificate;
    const profileIds = JSON.parse(row.profile_ids) as string[];
    const subject: DataSubject = { profileId: profileIds[0] as string, profileIds, identifiers: JSON.parse(row.identifiers) as IdentifierPseudonym[] };
    return this.#finish({ row, subject, stores: [...certificate.stores], ledger: certificate.ledger }, actor, { reason: null, replay: false, resumed: true, waitMs });
  }

  /** Step 1: everything that commits together. `entry` is the ledger entry being replayed, if any. */
  async #eraseIn(tx: SqlExecutor, found: DataSubject, at: { requestId: string; startedAt: string; entry: DeletionLedgerEntry | undefined; actor: Actor }): Promise<Progress> {
    // First of all, on PostgreSQL: wait for the ingestion groups in flight and keep new ones out until this commits, so
    // that none stores or links anything for this person after it (they check the suppression list under the same
    // lock); on SQLite this transaction's write lock does that.
    await this.#deps.identity.lockForErasure(tx);
    if (this.#deps.storage.dialect === 'postgres') await tx.all('select pg_advisory_xact_lock($1)', [PG_LEDGER_LOCK]);
    const subject = await this.#subjectNow(tx, found);
    // Checked again under the lock: a concurrent erasure of the same subject may have committed meanwhile.
    if (!at.entry && (await this.#repo.erasedBy(subject.profileIds, tx)) !== undefined) throw new CandorError('RIGHTS_SUBJECT_ERASED');
    const stores: (EraseOutcome & { module: string })[] = [];
    for (const handler of this.#deps.handlers) {
      for (const outcome of await handler.erase(tx, subject)) stores.push({ ...outcome, module: handler.module });
    }
    const suppressed = await this.#deps.identity.suppressIn(tx, subject.identifiers, SUPPRESSION_REASON);
    stores.push({
      module: 'identity',
      store: 'identity_suppressed',
      status: 'confirmed',
      deleted: 0,
      detail: `${subject.identifiers.length} identifier pseudonyms on the suppression list (${suppressed} added): events carrying them are dropped`,
    });
    // What is still open on the person's behalf (the rights module: their other requests) closes with them.
    const deletion: SubjectDeletion = { reason: 'erasure', requestId: at.requestId, actor: at.actor, at: at.startedAt };
    const closedEntries: DeletionAuditEntry[] = [];
    for (const handler of this.#deps.handlers) {
      const closed = await handler.closeIn?.(tx, subject, deletion);
      if (!closed) continue;
      stores.push({ ...closed.outcome, module: handler.module });
      closedEntries.push(...closed.audit);
    }
    await this.#repo.markErased(tx, subject.profileIds, at.requestId);
    const entry = at.entry ?? nextLedgerEntry(await this.#repo.lastLedger(tx), { requestId: at.requestId, at: at.startedAt, profileIds: subject.profileIds, identifiers: subject.identifiers });
    await this.#repo.insertLedger(tx, entry);
    const pseudonym = this.#deps.keyring.pseudonym('subject', subject.profileId);
    const ledger = { seq: entry.seq, hash: entry.hash };
    const row: ErasureRow = {
      request_id: at.requestId,
      subject: pseudonym,
      profile_ids: JSON.stringify(subject.profileIds),
      identifiers: JSON.stringify(subject.identifiers),
      state: 'keys_pending',
      started_at: at.startedAt,
      completed_at: null,
      certificate: JSON.stringify(this.#certificate(at.requestId, pseudonym, at.startedAt, at.startedAt, stores, [], ledger, true)),
    };
    // A replayed request may already have its row (it was restored with the data it erased): keep that one.
    if (!at.entry || !(await this.#repo.erasure(at.requestId, tx))) await this.#repo.insertErasure(tx, row);
    // Last (on PostgreSQL the audit head is held from here to the commit): the entries of what closed commit with it.
    await this.#deps.audit.appendIn(tx, closedEntries);
    return { row, subject, stores, ledger };
  }

  /**
   * The subject as the graph holds it under the erasure's lock, with what was found before: a device linked to the
   * person, or a profile merged into them (or they into it), since `found` was read is theirs too. Read from the
   * profile the subject was found as (its merges followed), so that a member unmerged meanwhile is erased as found but
   * whoever it has joined since is not; from every profile and identifier found when that profile is gone.
   */
  async #subjectNow(tx: SqlExecutor, found: DataSubject): Promise<DataSubject> {
    const { identity } = this.#deps;
    const now =
      (await identity.linked({ profileIds: [found.profileId], identifiers: [] }, tx)) ??
      (await identity.linked({ profileIds: found.profileIds, identifiers: found.identifiers }, tx));
    return {
      profileId: found.profileId,
      profileIds: [...new Set([...found.profileIds, ...(now?.profileIds ?? [])])],
      identifiers: uniqueIdentifiers([...found.identifiers, ...(now?.identifiers ?? [])]),
    };
  }

  /**
   * Steps 2–4: after the commit. Idempotent: a resumed erasure runs it again, and its certificate counts what every
   * attempt deleted. A WAL that cannot be truncated (STORAGE_CHECKPOINT_BUSY) leaves the erasure `keys_pending` with a
   * certificate that says so, and is thrown.
   */
  async #finish(progress: Progress, actor: Actor, how: { reason: string | null; replay: boolean; resumed?: boolean; waitMs?: number | undefined }): Promise<ErasureCertificate> {
    const { storage, keyring, audit, handlers } = this.#deps;
    const { row, subject } = progress;
    for (const handler of handlers) await handler.afterErase?.(subject);
    let destroyed = 0;
    for (const profileId of subject.profileIds) {
      if (await keyring.destroySubjectKey(profileId, actor, PURPOSE)) destroyed++;
    }
    const deletion: SubjectDeletion = { reason: 'erasure', requestId: row.request_id, actor, at: row.started_at };
    for (const handler of handlers) destroyed += (await handler.destroyKeys?.(subject, deletion)) ?? 0;
    const afterCommit: (EraseOutcome & { module: string })[] = [
      { module: 'crypto', store: 'crypto_subject_keys', status: 'confirmed', deleted: destroyed, detail: 'data keys destroyed: their ciphertexts (the encrypted personal fields) in the database are unreadable. Copies made before this erasure (backup files, PostgreSQL dumps and WAL archives) still hold each data key wrapped with the master key version then active, and stay readable with the key file until that version is removed from it (`candor keys rotate`, then `candor keys prune` once those copies have expired); restoring such a backup replays this erasure. Plain non-personal fields stay readable in backup files taken before this erasure until those files are deleted' },
    ];
    for (const store of this.#deps.fileStores ?? []) {
      for (const outcome of await store.erase(subject, { requestId: row.request_id })) afterCommit.push({ ...outcome, module: store.module });
    }
    // An earlier attempt's lines of these steps (a resumed erasure) are replaced, adding what that attempt deleted.
    const earlier = new Map(progress.stores.map((s) => [lineKey(s), s]));
    const redone = new Set([...afterCommit.map(lineKey), lineKey({ module: 'storage', store: STORAGE_LINE[storage.dialect] })]);
    const stores = progress.stores.filter((s) => !redone.has(lineKey(s)));
    for (const line of afterCommit) stores.push({ ...line, deleted: line.deleted + (earlier.get(lineKey(line))?.deleted ?? 0) });
    await this.#syncLedgerFile();
    // The person's values leave the planner statistics of every table the certificate names (PostgreSQL's pg_stats):
    // before the checkpoint, which on SQLite also takes what a sqlite_stat4 table held of them out of the log.
    await storage.renewStatistics(stores.map((s) => s.store));
    try {
      const waitMs = how.waitMs ?? this.#deps.checkpointWaitMs;
      await storage.checkpoint(waitMs === undefined ? {} : { waitMs });
    } catch (error) {
      if (isCandorError(error, 'STORAGE_CHECKPOINT_BUSY')) {
        const { busy, log, checkpointed } = error.details as { busy: number; log: number; checkpointed: number };
        stores.push({
          module: 'storage',
          store: STORAGE_LINE.sqlite,
          status: 'not_supported',
          deleted: 0,
          detail: `the write-ahead log still holds the deleted content: another connection to the database holds a read transaction (busy ${busy}, log ${log}, checkpointed ${checkpointed}); the erasure stays pending and the truncation is tried again`,
        });
        await this.#repo.pendingCertificate(row.request_id, JSON.stringify(this.#certificate(row.request_id, row.subject, row.started_at, row.started_at, stores, [], progress.ledger, true)));
      }
      throw error;
    }
    stores.push({
      module: 'storage',
      store: STORAGE_LINE[storage.dialect],
      status: 'confirmed',
      deleted: 0,
      detail:
        storage.dialect === 'sqlite'
          ? 'secure_delete overwrote the deleted content; the write-ahead log was checkpointed and truncated'
          : POSTGRES_STORAGE_DETAIL,
    });
    const recipients: RecipientOutcome[] = [];
    for (const recipient of this.#deps.recipients ?? []) {
      try {
        recipients.push({ name: recipient.name, ...(await recipient.forward(subject, row.request_id)) });
      } catch {
        recipients.push({ name: recipient.name, status: 'not_supported', detail: 'forwarding failed; retry the request' });
      }
    }
    if (recipients.length === 0) recipients.push(NO_RECIPIENTS);
    const completedAt = new Date().toISOString();
    const certificate = this.#certificate(row.request_id, row.subject, row.started_at, completedAt, stores, recipients, progress.ledger, false);
    await audit.append({
      actor: actor.id,
      role: actor.role,
      action: how.replay ? 'rights.erasure.replay' : 'rights.erasure',
      purpose: PURPOSE,
      subject: row.subject,
      resource: `erasure:${row.request_id}`,
      details: {
        requestId: row.request_id,
        profiles: subject.profileIds.length,
        identifiers: subject.identifiers.length,
        keysDestroyed: destroyed,
        rowsDeleted: stores.reduce((n, s) => n + s.deleted, 0),
        ledgerSeq: progress.ledger.seq,
        status: certificate.status,
        ...(how.reason ? { reason: how.reason } : {}),
        ...(how.resumed ? { resumed: true } : {}),
      },
    });
    await this.#repo.finishErasure(row.request_id, completedAt, JSON.stringify(certificate));
    return certificate;
  }

  /**
   * Appends to the file every database ledger entry after its last one. Erasures finishing together take turns, and
   * each reads the file and the database only once it has its turn, so no entry is written twice.
   */
  async #syncLedgerFile(): Promise<void> {
    await this.#ledger.exclusive(async () => {
      await this.#ledger.appendMissing(await this.#repo.ledger());
    });
  }

  #certificate(
    requestId: string,
    subject: string,
    startedAt: string,
    completedAt: string,
    stores: readonly (EraseOutcome & { module: string })[],
    recipients: readonly RecipientOutcome[],
    ledger: { seq: number; hash: string },
    inProgress: boolean,
  ): ErasureCertificate {
    return {
      requestId,
      subject,
      startedAt,
      completedAt,
      status: inProgress ? 'incomplete' : certificateStatus(stores, recipients),
      stores: [...stores],
      recipients: [...recipients],
      ledger,
    };
  }
}

function uniqueIdentifiers(ids: readonly IdentifierPseudonym[]): IdentifierPseudonym[] {
  return [...new Map(ids.map((i) => [`${i.type}\u0000${i.valueHash}`, { type: i.type, valueHash: i.valueHash }])).values()];
}
