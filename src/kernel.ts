import { join } from 'node:path';
import { applyIdentityRules, type Config } from './config/index.ts';
import { AccessControl, ACCESS_MIGRATIONS, SubjectSessions, SUBJECT_SESSION_MIGRATIONS } from './modules/access/index.ts';
import { AuditLog, AUDIT_MIGRATIONS } from './modules/audit/index.ts';
import { Catalog, CATALOG_MIGRATIONS, type WarningOptions } from './modules/catalog/index.ts';
import { Collector, COLLECT_MIGRATIONS, COLLECT_RETENTION_MIGRATIONS } from './modules/collect/index.ts';
import { Consent, CONSENT_MIGRATIONS } from './modules/consent/index.ts';
import { Keyring, CRYPTO_MIGRATIONS, readKeyFile } from './modules/crypto/index.ts';
import { DEFAULT_IDENTITY_RULES, Identity, IDENTITY_MIGRATIONS } from './modules/identity/index.ts';
import { Profiles, PROFILES_MIGRATIONS, PROFILES_RETENTION_MIGRATIONS } from './modules/profiles/index.ts';
import { applyPendingRestore, Retention, RETENTION_MIGRATIONS, whileHoldingDataDir, type RestoreCarried } from './modules/retention/index.ts';
import { Scoring, SCORING_MIGRATIONS } from './modules/scoring/index.ts';
import { ErasureEngine, LEDGER_FILE, RIGHTS_ERASURE_MIGRATIONS, SubjectExporter } from './modules/rights/index.ts';
import { DEFAULT_RATE_LIMITS, MailOutbox, Mailer, RightsRequests, RightsSubjectData, RIGHTS_REQUEST_MIGRATIONS } from './modules/rights/index.ts';
import { Taxonomy, TAXONOMY_MIGRATIONS } from './modules/taxonomy/index.ts';
import { SYSTEM_ACTOR } from './shared/actor.ts';
import { CandorError, isCandorError } from './shared/errors.ts';
import { createLogger, type Logger } from './shared/logger.ts';
import type { SubjectDataHandler } from './shared/subject-data.ts';
import { migrateToLatest, openStorage, pendingMigrations, type ModuleMigration, type Storage } from './storage/index.ts';

/** Every module's migrations, in the order Kysely applies them (their names in code-unit order). */
export const MIGRATIONS: readonly ModuleMigration[] = [
  ...CRYPTO_MIGRATIONS,
  ...AUDIT_MIGRATIONS,
  ...ACCESS_MIGRATIONS,
  ...SUBJECT_SESSION_MIGRATIONS,
  ...TAXONOMY_MIGRATIONS,
  ...CATALOG_MIGRATIONS,
  ...CONSENT_MIGRATIONS,
  ...IDENTITY_MIGRATIONS,
  ...PROFILES_MIGRATIONS,
  ...COLLECT_MIGRATIONS,
  ...RIGHTS_ERASURE_MIGRATIONS,
  ...RIGHTS_REQUEST_MIGRATIONS,
  ...RETENTION_MIGRATIONS,
  ...COLLECT_RETENTION_MIGRATIONS,
  ...PROFILES_RETENTION_MIGRATIONS,
  ...SCORING_MIGRATIONS,
].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

/**
 * Applies pending migrations. On SQLite they are applied holding the data directory's lock, as a server holds it: a
 * command of a newer release refuses (SERVE_DATA_DIR_IN_USE) to change the schema under a running server, which could
 * not use it any more; with nothing to apply, commands run beside a server. A failure is logged with its cause.
 */
async function migrate(storage: Storage, config: Config, logger: Logger): Promise<string[]> {
  try {
    // On PostgreSQL without its timeouts (migrateToLatest): an index built on a large table may run longer than a request may.
    if (storage.dialect === 'postgres') return await migrateToLatest(storage, MIGRATIONS);
    const pending = await pendingMigrations(storage, MIGRATIONS);
    if (pending.length === 0) return await migrateToLatest(storage, MIGRATIONS);
    return await whileHoldingDataDir(config.dataDir, { pendingMigrations: pending }, () => migrateToLatest(storage, MIGRATIONS));
  } catch (error) {
    if (isCandorError(error, 'STORAGE_MIGRATION_FAILED')) logger.error({ err: error.cause, ...error.details }, 'database migration failed; the database was left as it was');
    throw error;
  }
}

/** The privacy kernel, wired once and shared by the HTTP server, the CLI and jobs. */
export interface Kernel {
  readonly config: Config;
  readonly logger: Logger;
  readonly storage: Storage;
  readonly audit: AuditLog;
  readonly keyring: Keyring;
  readonly access: AccessControl;
  readonly subjectSessions: SubjectSessions;
  readonly taxonomy: Taxonomy;
  readonly catalog: Catalog;
  readonly consent: Consent;
  readonly identity: Identity;
  readonly profiles: Profiles;
  readonly collect: Collector;
  /** RFM segments, personas, lifetime value and churn: fitted and scored only for people who allow profiling. */
  readonly scoring: Scoring;
  /** Every module's subject-data handler, in a fixed order (rights and retention work from this list). */
  readonly subjectData: SubjectDataHandler[];
  readonly erasure: ErasureEngine;
  readonly exporter: SubjectExporter;
  /** Data-subject requests: intake, verification, clocks, execution, staff queue. */
  readonly rights: RightsRequests;
  /** Every module's retention rules and the sweeper. */
  readonly retention: Retention;
  /** Erasures replayed from the deletion ledger file by this start (after a restore). */
  readonly erasuresReplayed: number;
  /** What a restore carried over from the database it replaced, applied at this open (null: no restore pending). */
  readonly restoreCarried: RestoreCarried | null;
  /** Whether the master key file was generated (by this open or an earlier one) and no server printed its notice yet. */
  readonly keyFileGenerated: boolean;
  /** Migrations applied by this start. */
  readonly migrationsApplied: readonly string[];
  close(): Promise<void>;
}

/** What a tracking plan is checked against when it is validated or published (Catalog's warnings): consent's purposes and notice in force. */
export function planWarningOptions(kernel: Pick<Kernel, 'consent'>): WarningOptions {
  return { purposes: kernel.consent.purposes(), describes: (purpose, category) => kernel.consent.describes(purpose, category), aboutTheSystem: (category) => kernel.consent.aboutTheSystem(category) };
}

export interface KernelOptions {
  /** Apply pending migrations (the server and CLI do); otherwise refuse to run on an old schema. */
  migrate?: boolean;
  logger?: Logger;
}

/** Opens storage, applies migrations, loads the keyring and wires every module. */
export async function openKernel(config: Config, options: KernelOptions = {}): Promise<Kernel> {
  const logger = options.logger ?? createLogger(config.logLevel);
  // In production the key file is never generated: a missing or unreadable one is refused before the database is
  // created or migrated (it was refused only after, leaving a new database behind).
  if (config.env === 'production') readKeyFile(config.keyFile);
  const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, sqliteSynchronous: config.sqliteSynchronous, sqliteWriterThread: config.sqliteWriterThread, postgresTimeoutMs: config.postgresTimeoutMs, logger });
  try {
    let migrationsApplied: string[] = [];
    if (options.migrate ?? true) {
      migrationsApplied = await migrate(storage, config, logger);
    } else {
      const pending = await pendingMigrations(storage, MIGRATIONS);
      if (pending.length > 0) throw new CandorError('STORAGE_NOT_MIGRATED', { pending });
    }
    const audit = new AuditLog(storage);
    const { keyring, generated } = await Keyring.open(storage, audit, {
      keyFile: config.keyFile,
      allowGenerate: config.env !== 'production',
      logger,
    });
    const access = new AccessControl(storage, audit);
    const subjectSessions = new SubjectSessions(storage, audit);
    const taxonomy = await Taxonomy.open(storage, audit);
    const catalog = await Catalog.open({ storage, audit, taxonomy });
    const consent = await Consent.open({
      storage,
      audit,
      keyring,
      taxonomy,
      expiryMonths: config.consentExpiryMonths,
      controllerName: config.controllerName,
      policyUrl: config.privacyPolicyUrl || undefined,
      controllerContact: config.controllerContact || undefined,
    });
    const identity = await Identity.open({ storage, audit, keyring, rules: applyIdentityRules(DEFAULT_IDENTITY_RULES, config.identityRules) });
    // A rectification keeps erasures and inactivity deletions out of its transaction, and writes nothing for a person
    // one of them deleted.
    const profiles = await Profiles.open({ storage, audit, keyring, fields: catalog, retired: catalog, deletedIn: (tx, ids) => identity.deletedIn(tx, ids) });
    // When two profiles turn out to be one person, the most restrictive consent of the two applies to both. Run
    // again at start for a merge whose listeners did not all finish (mergeSubjects changes nothing the second time).
    identity.onMerge(async (merge) => {
      await consent.mergeSubjects(merge.from, merge.into, SYSTEM_ACTOR);
    });
    // An opt-out written for a profile merged away (meanwhile, or long before) is carried over to the person it is now.
    consent.followMergesWith((profileId) => identity.canonical(profileId));
    // Until a merge's or unmerge's propagation above has run (it failed, or is running; this process's or another's),
    // decisions for the person take the other side's opt-outs as it will write them: fail closed, never the survivor's
    // consent alone.
    consent.gatePendingMerges(identity.pendingMerges());
    // A merged person's trait history ends with the value the view shows, from the merge's own transaction on.
    identity.onMergedIn((tx, persons) => profiles.merged(tx, persons));
    // A wrong merge split back out: every privacy-center session of either side ends (sessions are cheap to issue
    // again). Each reaches only its own side's person already; this also ends those issued for the merged person's
    // canonical profile (by releases that tied a session to it), which a device of the other side may hold.
    identity.onUnmerge(async (unmerge) => {
      const [from, into] = await Promise.all([identity.members(unmerge.from), identity.members(unmerge.into)]);
      await subjectSessions.revokeAll([unmerge.from, unmerge.into, ...from, ...into]);
    });
    // A wrong merge split back out: the refusals, withdrawals, GPC opt-outs and restrictions recorded on the person
    // while merged (on the surviving profile, whichever device made them) bind the split-out profile too.
    // Only what each recorded while one person with the split-out side: not a survivor's own choices of before.
    identity.onUnmerge(async (unmerge) => {
      for (const { profile, since } of unmerge.joined ?? [{ profile: unmerge.into, since: unmerge.at ?? '' }]) {
        await consent.mergeSubjects(profile, unmerge.from, SYSTEM_ACTOR, { since });
      }
    });
    const collect = new Collector({ storage, keyring, catalog, consent, identity, profiles, uses: taxonomy, logger });
    const scoring = new Scoring({
      storage,
      audit,
      consent,
      data: {
        people: () => identity.groups(),
        membership: (ids) => identity.membership(ids),
        orders: (ids, purpose) => collect.ordersFor(ids, purpose),
        activity: (ids, purpose) => collect.activityFor(ids, purpose),
        // A category the taxonomy does not know is treated as protected: never a feature by accident.
        isProtected: (category) => {
          const entry = taxonomy.dataCategory(category);
          return entry === undefined || entry.protectedAttribute === true || entry.specialCategory != null;
        },
        // Declared for the audit, and described for it by the notice (see Consent.describes).
        isAuditAttribute: (attribute) => {
          const field = catalog.plannedField('identify', null, `traits.${attribute}`);
          return field !== undefined && field.purposes.includes('fairness_audit') && consent.describes('fairness_audit', field.category);
        },
        auditGroups: (owner, attribute) => profiles.traitValues(owner, attribute),
      },
    });
    // After the consent listeners above: a merge decides on the merged person's consent. Merges happen while events
    // are ingested, so their scores are reconciled in the background, as after a consent change (a scoring run's save
    // may hold the scoring lock; per-person reads already answer for the merged person's consent meanwhile). A clean-up
    // that fails is logged, not retried with the merge: the next full run forgets the merged-away profile's row, since
    // it scores canonical profiles only (Scoring.saveRun forgets rows it does not write again); a merge or unmerge that
    // commits while a run reads and saves is applied by that run after its save (Scoring #followMembership). An unmerge
    // removes both profiles' scores and statistics at once (each was computed with the other's data; both are scored
    // at the next run).
    identity.onMerge(async (merge) => {
      void scoring.merged(merge.from, merge.into).catch((err: unknown) => logger.warn({ err }, 'scores not reconciled after a merge'));
    });
    identity.onUnmerge(async (unmerge) => {
      await scoring.unmerged(unmerge.from, unmerge.into);
    });
    // Derived data follows its sources: a withdrawal, refusal or restriction removes the person from scores and
    // model statistics at once (the models are refitted from the decremented statistics). The clean-up is owed from
    // the change's commit on (recorded in its transaction, for people with stored scores) and runs right after it, in
    // the background (a scoring run's save may hold the scoring lock); one that fails or is cut off by a stop is done
    // at the next start and by the server's periodic reconcile, and close() waits for those still running.
    consent.onChangeIn((tx, ids) => scoring.owedIn(tx, ids));
    const reconciling = new Set<Promise<unknown>>();
    consent.onChange((ids) => {
      const work = scoring.reconcile(ids).catch((err: unknown) => logger.warn({ err }, 'scores not reconciled after a consent change; retried at the next reconcile'));
      reconciling.add(work);
      void work.finally(() => reconciling.delete(work));
    });
    // The person's rights requests (kept at erasure) and the rate limit's start counts (deleted after the window).
    const rightsData = new RightsSubjectData({ storage, keyring, rateWindowMs: DEFAULT_RATE_LIMITS.windowMs });
    // Fixed order: what the subject is (identity) first, then what is known about them, then their keys' metadata.
    // The periods of stored events: the sweep's, and the deletion of an inactive person's (which keeps their orders).
    const eventRetention = { rawEvents: config.retentionRawEvents, orders: config.retentionOrders, orderFields: config.retentionOrderFields };
    const subjectData: SubjectDataHandler[] = [
      identity.subjectData(catalog),
      profiles.subjectData(catalog, catalog),
      collect.subjectData(eventRetention),
      scoring.subjectData(),
      consent.subjectData(),
      subjectSessions.subjectData(),
      rightsData,
      keyring.subjectData(),
    ];
    const mailer = new Mailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, outboxDir: join(config.dataDir, 'outbox') });
    // The outbox names subjects' addresses in clear: erasures delete their messages, the sweeper every old one.
    const outbox = new MailOutbox({ mailer, identity, storage });
    const erasure = new ErasureEngine({ storage, audit, keyring, identity, handlers: subjectData, ledgerPath: join(config.dataDir, LEDGER_FILE), fileStores: [outbox], logger });
    const exporter = new SubjectExporter({ audit, keyring, handlers: subjectData, controllerName: config.controllerName });
    // A restored backup may predate erasures: they are replayed before the kernel serves anything.
    const erasuresReplayed = await erasure.replayMissing();
    // A merge committed without its consent propagation (a listener failed, the process stopped) gets it now, before
    // the kernel serves anything; erasures first, so an erased person's merges are gone rather than replayed.
    const pendingMerges = await identity.applyPendingMerges();
    if (pendingMerges.applied > 0) logger.info({ applied: pendingMerges.applied }, 'merges left unapplied by an earlier run applied');
    if (pendingMerges.failed.length > 0) {
      logger.warn({ err: pendingMerges.failed[0]?.error, mergeIds: pendingMerges.failed.slice(0, 20).map((f) => f.mergeId), failed: pendingMerges.failed.length }, 'merge listeners failed again; retried at the next start');
    }
    // Likewise an unmerge whose consent split did not run.
    const pendingUnmerges = await identity.applyPendingUnmerges();
    if (pendingUnmerges.applied > 0) logger.info({ applied: pendingUnmerges.applied }, 'unmerges left unapplied by an earlier run applied');
    if (pendingUnmerges.failed.length > 0) {
      logger.warn({ err: pendingUnmerges.failed[0]?.error, mergeIds: pendingUnmerges.failed.slice(0, 20).map((f) => f.mergeId), failed: pendingUnmerges.failed.length }, 'unmerge listeners failed again; retried at the next start');
    }
    // After a restore: what it carried over from the replaced database (revocations, withdrawals, opt-outs,
    // restrictions) is applied now, before the kernel serves anything; after the erasures and merges, so that each
    // state lands on the person's profile as the graph stands.
    const restoreCarried = await applyPendingRestore({ dataDir: config.dataDir, access, subjectSessions, consent, people: () => identity.groups(), actor: SYSTEM_ACTOR });
    if (restoreCarried) logger.info({ revoked: restoreCarried.revoked.length, sessionsEnded: restoreCarried.sessionsEnded, keptLastOwner: restoreCarried.keptLastOwner.length, people: restoreCarried.consent.people, failed: restoreCarried.consent.failed, unknown: restoreCarried.unknown }, 'what the last restore carried over from the replaced database applied');
    // Scores whose clean-up after a consent change an earlier run left owed (it stopped, or the clean-up failed), and
    // those of the consent states a restore just wrote again: forgotten before the kernel serves anything.
    try {
      const removed = await scoring.reconcile();
      if (removed > 0) logger.info({ removed }, 'scores owed a clean-up after consent changes forgotten');
    } catch (err) {
      logger.warn({ err }, 'scores owed a clean-up after consent changes not reconciled; retried by the server and at the next start');
    }
    const rights = new RightsRequests({
      storage,
      audit,
      keyring,
      identity,
      consent,
      profiles,
      catalog,
      subjectSessions,
      erasure,
      exporter,
      logger,
      mailer,
      defaultJurisdiction: config.rightsJurisdiction,
      publicUrl: config.publicUrl || `http://${config.host}:${config.port}`,
    });
    const retention = new Retention({
      storage,
      audit,
      keyring,
      identity,
      subjectData,
      fileStores: [outbox],
      batchSize: config.retentionBatchSize,
      handlers: [
        collect.retention(eventRetention),
        profiles.retention(
          {
            storage,
            traitDeclarations: async () => {
              const plan = await catalog.declarations();
              return {
                version: plan.version,
                inForce: plan.inForce.find((s) => s.section === 'identify')?.fields ?? [],
                retired: plan.retired.find((s) => s.section === 'identify')?.fields ?? [],
                complete: plan.unreadable.length === 0,
                latest: plan.latest,
              };
            },
            latestPlanVersionIn: (tx) => catalog.latestVersionIn(tx),
            consentHistory: (id) => consent.history(id),
            consentHistoryIn: (tx, id) => consent.historyIn(tx, id),
            rightsActivityIn: (executor, ids) => rightsData.lastActivityIn(executor, ids),
            restrictedIn: (executor, ids) => consent.restrictedIn(executor, ids),
          },
          { inactiveProfiles: config.retentionInactiveProfiles },
        ),
        subjectSessions.retention(),
        outbox,
        rightsData,
      ],
    });
    // Inactive people deleted by an earlier run whose steps after the commit (caches, keys, outbox mails) did not all
    // run (it stopped, or a step failed), or whose values another connection kept in SQLite's write-ahead log: done
    // now, and by every sweep.
    try {
      const owed = await retention.finishOwed();
      if (owed.people > 0) logger.info({ people: owed.people }, 'steps owed after inactive people\'s deletions run');
      if (owed.walHeld) logger.warn('the write-ahead log still holds what inactive people\'s deletions left: another connection holds a read transaction; the truncation is tried again by the next sweep and at the next start');
    } catch (err) {
      logger.warn({ err }, 'steps owed after inactive people\'s deletions failed again; retried by the next sweep and at the next start');
    }
    return {
      config,
      logger,
      storage,
      audit,
      keyring,
      access,
      subjectSessions,
      taxonomy,
      catalog,
      consent,
      identity,
      profiles,
      collect,
      scoring,
      subjectData,
      erasure,
      exporter,
      rights,
      retention,
      erasuresReplayed,
      restoreCarried,
      keyFileGenerated: generated,
      migrationsApplied,
      close: async () => {
        // Clean-ups after consent changes still running finish first (a failed one stays owed).
        while (reconciling.size > 0) await Promise.all(reconciling);
        // Counts of the tracking plan not flushed yet; losing them must not keep storage open.
        await catalog.flushStats().catch((err: unknown) => logger.warn({ err }, 'catalog stats not flushed'));
        await collect.flush().catch((err: unknown) => logger.warn({ err }, 'refusal counts not flushed'));
        await rights.close();
        await storage.close();
      },
    };
  } catch (error) {
    await storage.close();
    throw error;
  }
}
