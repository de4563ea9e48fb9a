import { SYSTEM_ACTOR, type Actor } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import type { DataSubject, DeletionAuditEntry, EraseOutcome, IdentifierPseudonym, RetentionHandler, RetentionRule, SubjectDataHandler, SubjectDeletion, SweepContext, SweepCount } from '../../shared/subject-data.ts';
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Identity } from '../identity/index.ts';
import type { ErasureFileStore } from '../rights/index.ts';
import { RetentionRepo, type OwedDeletion } from './retention.repo.ts';

/** Retention is the storage-limitation duty of GDPR Art. 5(1)(e): evidence is recorded under that purpose. */
const PURPOSE = 'essential.legal_obligation';

export interface RetentionDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  identity: Identity;
  /** Every module's retention handler, in the kernel's order. */
  handlers: readonly RetentionHandler[];
  /** Every module's subject-data handler: deleting an inactive person goes through all of them, as an erasure does. */
  subjectData: readonly SubjectDataHandler[];
  /** Stores outside the database (files: the mail outbox), erased after a person's deletion commits, as at an erasure. */
  fileStores?: readonly ErasureFileStore[];
  /** Rows per batch (one transaction each). */
  batchSize: number;
}

export interface SweepRequest {
  /** The moment the sweep counts back from (tests and `--now` move it); the current time otherwise. */
  now?: Date;
  dryRun?: boolean;
  batchSize?: number;
  actor?: Actor;
}

/** What a sweep did: counts per rule, store and data category, and the total. */
export interface SweepReport {
  readonly at: string;
  readonly dryRun: boolean;
  readonly counts: readonly SweepCount[];
  /**
   * Rows deleted, reduced or rewritten (people are counted under the store `people`, not here). A dry run does not
   * count the rows of the inactive people it would delete, only the people: other rules of the same sweep may delete
   * some of those rows first, which only the real sweep can tell.
   */
  readonly total: number;
  /**
   * SQLite: the write-ahead log still holds what inactive people's deletions (this sweep's, or an earlier one's) left
   * there, because another connection held a read transaction (STORAGE_CHECKPOINT_BUSY); the truncation is owed, and
   * tried again by the next sweep and at the next start. False when it was truncated, nothing was owed, in a dry run
   * and on PostgreSQL.
   */
  readonly walHeld: boolean;
  readonly ms: number;
}

/** The effective rules with the module that declared them. */
export type EffectiveRule = RetentionRule;

/**
 * Retention: collects every module's retention rules and runs their sweeps, in batches, one at a time per process;
 * writes the deletion evidence (counts per rule, store and category; the policy; the time) to the audit log. It never
 * switches on module names: what expires and how is each handler's business.
 */
export class Retention {
  readonly #deps: RetentionDeps;
  readonly #repo: RetentionRepo;
  #running: Promise<SweepReport> | undefined;

  constructor(deps: RetentionDeps) {
    this.#deps = deps;
    this.#repo = new RetentionRepo(deps.storage);
  }

  /** Every rule in force, module by module. */
  async policies(): Promise<EffectiveRule[]> {
    const out: EffectiveRule[] = [];
    for (const handler of this.#deps.handlers) out.push(...(await handler.rules()));
    return out;
  }

  /**
   * Runs what is owed after the commit of inactive people's deletions that an earlier sweep left undone (it stopped
   * after a commit, a step failed, or another connection kept SQLite's write-ahead log from being truncated): the
   * steps of finishDeletion, then the truncation. The kernel runs it at every start; every real sweep runs the steps
   * first and the truncation last. Returns how many people's steps it finished and whether the log is still held (the
   * truncation stays owed); throws when a step fails again (still owed).
   */
  async finishOwed(): Promise<{ people: number; walHeld: boolean }> {
    const people = await finishOwedSteps(this.#deps, this.#repo);
    return { people, walHeld: await truncateOwed(this.#deps.storage, this.#repo) };
  }

  /** Runs every handler's sweep; a sweep already running in this process is refused with RETENTION_SWEEP_RUNNING. */
  sweep(request: SweepRequest = {}): Promise<SweepReport> {
    if (this.#running) return Promise.reject(new CandorError('RETENTION_SWEEP_RUNNING'));
    const run = this.#sweep(request).finally(() => {
      this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  async #sweep(request: SweepRequest): Promise<SweepReport> {
    const started = performance.now();
    const now = request.now ?? new Date();
    const dryRun = request.dryRun ?? false;
    const batchSize = request.batchSize ?? this.#deps.batchSize;
    const actor = request.actor ?? SYSTEM_ACTOR;
    const forgotten = { people: 0, tables: new Set<string>() };
    const context = this.#context(actor, forgotten, now);
    const entry = { actor: actor.id, role: actor.role, action: 'retention.sweep', purpose: PURPOSE, resource: 'retention' };
    // The handlers delete in many short transactions of their own, which the sweep's summary cannot join: a sweep is
    // audited before it deletes anything (none is made when that entry cannot be written), so one cut short after
    // some batches (a crash, a failing handler or a failing summary) still has its entry with the moment it deleted up
    // to. Each inactive person's deletion is audited in its own transaction (#forget).
    if (!dryRun) {
      await this.#deps.audit.append({ ...entry, details: { phase: 'started', at: now.toISOString(), batchSize } });
      await finishOwedSteps(this.#deps, this.#repo);
    }
    const counts: SweepCount[] = [];
    for (const handler of this.#deps.handlers) counts.push(...(await handler.sweep(now, { dryRun, batchSize, context })));
    const total = counts.filter((c) => c.store !== 'people').reduce((n, c) => n + c.count, 0);
    const report = { at: now.toISOString(), dryRun, counts, total, ms: Math.round(performance.now() - started) };
    if (!dryRun) {
      await this.#deps.audit.append({
        ...entry,
        details: {
          phase: 'finished',
          at: report.at,
          deleted: total,
          people: counts.filter((c) => c.store === 'people').reduce((n, c) => n + c.count, 0),
          batchSize,
          // One line per rule, store and category that changed something: `rule store category count`.
          counts: counts.filter((c) => c.count > 0).map((c) => `${c.rule} ${c.store} ${c.category} ${c.count}`),
        },
      });
    }
    // As after an erasure: what was deleted leaves the planner statistics of the tables it was deleted from
    // (PostgreSQL's pg_stats), and the deleted people's plain values SQLite's write-ahead log now, not at the next
    // routine checkpoint. After the evidence, so that a step that fails leaves the sweep recorded; a log another
    // connection keeps from being truncated does not fail the sweep, which reports what it deleted and leaves the
    // truncation owed.
    if (dryRun) return { ...report, walHeld: false };
    const tables = new Set([...forgotten.tables, ...counts.filter((c) => c.count > 0).map((c) => c.store.split('.')[0] ?? c.store)]);
    if (tables.size > 0) await this.#deps.storage.renewStatistics([...tables]);
    return { ...report, walHeld: await truncateOwed(this.#deps.storage, this.#repo) };
  }

  #context(actor: Actor, forgotten: { people: number; tables: Set<string> }, now: Date): SweepContext {
    const { identity } = this.#deps;
    return {
      subjects: async (profileIds) => {
        const out = new Map<string, DataSubject>();
        for (const id of new Set(profileIds)) {
          if ([...out.values()].some((s) => s.profileIds.includes(id))) continue;
          const subject = await identity.linked({ profileIds: [id], identifiers: [] });
          if (subject && !out.has(subject.profileId)) out.set(subject.profileId, subject);
        }
        return [...out.values()];
      },
      forget: async (subjects, reason, stillDue) => {
        const done = await this.#forget(subjects, reason, actor, now, forgotten.tables, stillDue);
        forgotten.people += done.people;
        return done;
      },
      mark: (rule) => this.#repo.mark(rule),
      setMark: (tx, rule, mark) => this.#repo.setMark(tx, rule, mark),
    };
  }

  /**
   * Deletes people through every subject-data handler, one transaction per person (a person's rows are bounded;
   * ingestion waits at most that long), in which the person is judged again (same profiles, `stillDue`). Identifiers
   * are not suppressed. Handlers erase for `inactivity`, at the sweep's `now`: what another rule keeps under a legal
   * obligation (orders) stays until that rule deletes it.
   * As an erasure does, the transaction then runs every handler's closeIn (what is still open on the person's behalf
   * closes, with its audit entries), and after the commit the steps of finishDeletion: caches, then the person's data
   * keys and the handlers' other keys, then the stores outside the database. The keys outlive the transaction, as at
   * an erasure: should it fail, the person stays whole and readable, and the next sweep finds them again; once it
   * committed, the steps are owed (retention_owed, recorded in it), so that a failure or a stop after the commit
   * leaves them to the next sweep or start (finishOwed) instead of undone for good. `touched` gathers the tables the
   * people were deleted from.
   */
  async #forget(
    subjects: readonly DataSubject[],
    reason: string,
    actor: Actor,
    now: Date,
    touched: Set<string>,
    stillDue?: (tx: SqlExecutor, subject: DataSubject) => Promise<boolean>,
  ): Promise<{ outcomes: EraseOutcome[]; people: number }> {
    const { storage, keyring, audit, subjectData, identity } = this.#deps;
    const totals = new Map<string, EraseOutcome>();
    let people = 0;
    for (const subject of subjects) {
      const deletion: SubjectDeletion = { reason: 'inactivity', requestId: null, actor, at: new Date().toISOString() };
      const done = await storage.raw.transaction(async (tx) => {
        // Ingestion groups in flight commit first and new ones wait until this one commits (PostgreSQL: the erasure
        // lock; SQLite's write lock does that), so the person is judged again on what is committed: an event stored
        // since the sweep looked (activity), or a merge or unmerge that changed who the person is, keeps them, and no
        // event is stored for them once they are gone (the pipeline answers it `suppressed`).
        await identity.lockForErasure(tx);
        const current = await identity.linked({ profileIds: [subject.profileId], identifiers: [] }, tx);
        if (current === null || !sameMembers(current, subject) || (stillDue !== undefined && !(await stillDue(tx, current)))) return null;
        const all: EraseOutcome[] = [];
        for (const handler of subjectData) all.push(...(await handler.erase(tx, subject, 'inactivity', now)));
        const closedEntries: DeletionAuditEntry[] = [];
        const closedCounts: Record<string, number> = {};
        for (const handler of subjectData) {
          const closed = await handler.closeIn?.(tx, subject, deletion);
          if (!closed) continue;
          closedEntries.push(...closed.audit);
          touched.add(closed.outcome.store);
          for (const [key, n] of Object.entries(closed.counts)) closedCounts[key] = (closedCounts[key] ?? 0) + n;
        }
        // The identifiers as they are now: the steps after the commit drop what caches hold of each.
        const owed: OwedDeletion = { profile_id: subject.profileId, profile_ids: JSON.stringify(subject.profileIds), identifiers: JSON.stringify(current.identifiers), at: deletion.at, actor: actor.id, role: actor.role, state: 'keys_pending' };
        await this.#repo.oweIn(tx, owed);
        // Audited in the deletion's own transaction, last (on PostgreSQL the audit head is held from here to the
        // commit): a person deleted always has the entry, and one whose entry cannot be written is not deleted.
        await audit.appendIn(tx, [
          ...closedEntries,
          {
            actor: actor.id,
            role: actor.role,
            action: 'retention.subject.delete',
            purpose: PURPOSE,
            subject: keyring.pseudonym('subject', subject.profileId),
            resource: 'retention:profiles.inactive',
            details: {
              reason,
              profiles: subject.profileIds.length,
              stores: all.map((o) => `${o.store} ${o.status} ${o.deleted}${o.kept ? ` kept ${o.kept.count}` : ''}`),
              ...closedCounts,
            },
          },
        ]);
        return { outcomes: all, owed };
      });
      if (done === null) continue;
      const { outcomes, owed } = done;
      // The tables the person was deleted from, their data keys' (crypto_subject_keys) and the owed row's with them:
      // their statistics are renewed.
      for (const o of outcomes) touched.add(o.store);
      touched.add('crypto_subject_keys');
      touched.add('retention_owed');
      people++;
      // What the stores outside the database deleted is counted with the rows.
      outcomes.push(...(await finishDeletion(this.#deps, this.#repo, owed)));
      for (const o of outcomes) {
        const prev = totals.get(o.store);
        totals.set(o.store, { store: o.store, status: o.status, deleted: (prev?.deleted ?? 0) + o.deleted, ...(o.kept ? { kept: { count: (prev?.kept?.count ?? 0) + o.kept.count, reason: o.kept.reason } } : {}) });
      }
    }
    return { outcomes: [...totals.values()], people };
  }
}

/**
 * The steps after an inactive person's deletion committed, in an erasure's order: the handlers let go of the person
 * (afterErase: in-memory caches, and the rate limit's counts under their addresses, found while the person's data key
 * still decrypts them), the person's data keys are destroyed (crypto-shredding what stays sealed with them), then the
 * handlers' other keys (destroyKeys: those of their erasure requests' addresses), and the stores outside the database
 * (the mail outbox) delete what they hold about the person; then only the truncation of SQLite's write-ahead log is
 * owed for the person (truncateOwed). Harmless to run again: a second run destroys and deletes nothing. Returns what
 * the stores outside the database deleted.
 */
async function finishDeletion(deps: RetentionDeps, repo: RetentionRepo, owed: OwedDeletion): Promise<EraseOutcome[]> {
  const subject: DataSubject = { profileId: owed.profile_id, profileIds: JSON.parse(owed.profile_ids) as string[], identifiers: JSON.parse(owed.identifiers) as IdentifierPseudonym[] };
  const actor: Actor = { id: owed.actor, role: owed.role };
  const deletion: SubjectDeletion = { reason: 'inactivity', requestId: null, actor, at: owed.at };
  for (const handler of deps.subjectData) await handler.afterErase?.(subject);
  for (const id of subject.profileIds) await deps.keyring.destroySubjectKey(id, actor, PURPOSE);
  for (const handler of deps.subjectData) await handler.destroyKeys?.(subject, deletion);
  const outcomes: EraseOutcome[] = [];
  for (const store of deps.fileStores ?? []) outcomes.push(...(await store.erase(subject, { requestId: null })));
  await repo.stepsDone(owed.profile_id);
  return outcomes;
}

/** Runs the steps of finishDeletion for every deletion that still owes them; returns how many. */
async function finishOwedSteps(deps: RetentionDeps, repo: RetentionRepo): Promise<number> {
  let finished = 0;
  for (const owed of await repo.owed('keys_pending')) {
    await finishDeletion(deps, repo, owed);
    finished++;
  }
  return finished;
}

/**
 * Truncates SQLite's write-ahead log (storage.checkpoint) when deletions whose steps ran owe it, then settles them;
 * returns true when another connection's read transaction kept it from being truncated (STORAGE_CHECKPOINT_BUSY):
 * they stay owed. Only the deletions read before the checkpoint are settled: one committed meanwhile (another process)
 * waits for its own.
 */
async function truncateOwed(storage: Storage, repo: RetentionRepo): Promise<boolean> {
  const owed = await repo.owed('truncation_pending');
  if (owed.length === 0) return false;
  try {
    await storage.checkpoint();
  } catch (error) {
    if (isCandorError(error, 'STORAGE_CHECKPOINT_BUSY')) return true;
    throw error;
  }
  await repo.settle(owed.map((o) => o.profile_id));
  return false;
}

/** Whether two readings of a person name the same profiles. */
function sameMembers(a: DataSubject, b: DataSubject): boolean {
  if (a.profileId !== b.profileId || a.profileIds.length !== b.profileIds.length) return false;
  const ids = new Set(a.profileIds);
  return b.profileIds.every((id) => ids.has(id));
}
