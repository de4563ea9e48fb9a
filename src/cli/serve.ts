import { describeConfig, type Config } from '../config/index.ts';
import { buildServer, type CandorServer } from '../http/server.ts';
import type { Stopping } from '../http/stopping.ts';
import { openKernel, type Kernel } from '../kernel.ts';
import { refreshConfiguration } from '../modules/catalog/index.ts';
import { claimDataDir, type SweepReport } from '../modules/retention/index.ts';
import { LIST_PLAN_WARNINGS, PlanWarningWatch, type PlanWarningSummary } from '../plan-warning-watch.ts';
import { SYSTEM_ACTOR } from '../shared/actor.ts';
import { CandorError } from '../shared/errors.ts';
import { repeat, type Repeating } from '../shared/repeat.ts';

/** Starts the server; on a first start outside production it also creates and prints the owner token once. */
export async function serve(config: Config, out: (line: string) => void): Promise<void> {
  const started = performance.now();
  // Listened for from the start: a stop asked for while the server starts (or just after it said it is ready) is a
  // clean stop once it has started, not the default end of the process. A second signal cuts the drain short (the
  // database is still closed and the stop recorded); a third one ends the process at once.
  let signals = 0;
  let requestStop = () => {};
  let requestForce = () => {};
  const stopRequested = new Promise<void>((resolve) => (requestStop = resolve));
  const forceRequested = new Promise<void>((resolve) => (requestForce = resolve));
  const stop = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const onSignal = () => {
    signals += 1;
    if (signals === 1) return requestStop();
    stop();
    requestForce();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let releaseDataDir: (() => void) | undefined;
  let kernel: Kernel | undefined;
  try {
    // One server per data directory (SERVE_DATA_DIR_IN_USE for a second); `candor restore` refuses while it is held.
    releaseDataDir = claimDataDir(config.dataDir);
    kernel = await openKernel(config);
    await run(config, kernel, out, started, stopRequested, forceRequested);
  } finally {
    // Also when the start fails (the port is taken, say): nothing is left listening for signals, holding the database's
    // connections or the data directory. Signals are listened for until the database is closed: a second one while it
    // closes does not cut the close off.
    try {
      await kernel?.close();
      releaseDataDir?.();
    } finally {
      stop();
    }
  }
}

/** The server on an open kernel, from listening until a stop is asked for and the requests in flight are drained. */
async function run(config: Config, kernel: Kernel, out: (line: string) => void, started: number, stopRequested: Promise<void>, forceRequested: Promise<void>): Promise<void> {
  const { app, stopping } = await buildServer(kernel);
  const housekeeping: NodeJS.Timeout[] = [];
  const schedules: { what: string; schedule: Repeating }[] = [];
  // Background work in progress, waited for at a stop before the database is closed; a scoring run is also told to
  // end early (between its reads, before it saves).
  const background = new Background();
  const stopScoring = new AbortController();
  let forcedConnections = 0;
  try {
    const address = await listen(app, config);
    const base = config.publicUrl || address.replace('://[::1]', '://localhost');
    await kernel.audit.append({ actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role, action: 'server.start', purpose: 'essential.service.operations', details: Object.fromEntries(describeConfig(config).map((line) => [line.key, line.value])) });
    // The first owner token is created only once the server listens, right before it is printed: a start that fails
    // or is killed before (the port is taken, say) leaves no token that nobody saw, and the next start creates it.
    let ownerSecret: string | undefined;
    // Checked and created in one transaction: of servers doing a first start on one database at once, one creates it.
    if (config.env !== 'production' && (await kernel.access.count()) === 0) {
      ownerSecret = (await kernel.access.createFirstOwnerToken('created on first start', SYSTEM_ACTOR))?.secret;
    }
    // What the consent gate can never keep of the plan in force (an older stored version after an upgrade, say): logged
    // now, and again whenever the plan, the notice or the purposes in force change and the set with them.
    const warningWatch = new PlanWarningWatch(kernel);
    const checkPlanWarnings = () => warningWatch.check().catch((err: unknown) => kernel.logger.warn({ err }, 'the tracking plan in force not checked for warnings'));
    const warned = await checkPlanWarnings();

    out(`Candor is listening on ${base} (ready in ${Math.round(performance.now() - started)} ms)`);
    out(`  data:       ${kernel.storage.location}`);
    out(`  master key: ${kernel.keyring.keyFilePath}${kernel.keyFileGenerated ? ' (generated now: back it up apart from the database; without it the data cannot be read)' : ''}`);
    // Printed by every start until one gets here: a start that generated the key file and failed before does not hide it.
    if (kernel.keyFileGenerated) {
      try {
        kernel.keyring.generatedNoticeShown();
      } catch (err) {
        kernel.logger.warn({ err }, 'the marker of the generated key file was not removed; the next start prints its notice again');
      }
    }
    if (ownerSecret) {
      out(`  owner API token (shown once, store it now): ${ownerSecret}`);
      out(`    try: curl -H "Authorization: Bearer ${ownerSecret}" ${base}/v1/admin/me`);
    }
    out(`  health:     ${base}/healthz   readiness: ${base}/readyz   metrics: ${base}/metrics`);
    out(`  API:        ${base}/openapi.json`);
    if (kernel.migrationsApplied.length > 0) out(`  migrations applied: ${kernel.migrationsApplied.join(', ')}`);
    if (warned && warned.warnings.length > 0) out(`  plan warnings: ${describeWarnings(warned)}; list them: ${LIST_PLAN_WARNINGS}`);

    // Housekeeping while the server runs: configuration changed by the CLI or another node (custom taxonomy entries,
    // consent purposes and notices, the tracking plan) is in force within a second, read only after another process
    // wrote, and the plan's warnings under it, or under a change made here, are logged; consents past their expiry get
    // their `expired` ledger entry (decisions treat them so anyway), and people whose GPC opt-out is in force the GPC
    // refusal of every purpose flagged sale/sharing or targeted advertising that the sweep at the flag's change missed
    // (a signal another server recorded with the flags of the second before).
    /** Runs `run` every `ms`, skipping a turn while the previous run is still going. */
    const oneAtATime = (what: string, ms: number, run: () => Promise<unknown>) => {
      let running = false;
      return setInterval(() => {
        if (running) return;
        running = true;
        background.track(what, run().finally(() => (running = false)));
      }, ms);
    };
    const consentHousekeeping = () =>
      background.track(
        'consent expiry and GPC opt-outs',
        kernel.consent
          .expireDue()
          .catch((err: unknown) => kernel.logger.warn({ err }, 'consent expiry failed'))
          .then(() => kernel.consent.applyGpcToFlaggedPurposes())
          .catch((err: unknown) => kernel.logger.warn({ err }, 'GPC opt-outs of flagged purposes not written')),
      );
    housekeeping.push(
      oneAtATime('configuration refresh', 1_000, () =>
        refreshConfiguration(kernel)
          .catch((err: unknown) => kernel.logger.warn({ err }, 'configuration refresh failed'))
          .then(checkPlanWarnings),
      ),
      // Plan counts of messages that stored nothing (others are written with the events they describe).
      setInterval(() => background.track('plan counts', kernel.catalog.flushStats().catch((err: unknown) => kernel.logger.warn({ err }, 'plan counts not written'))), 10_000),
      setInterval(consentHousekeeping, 3_600_000),
    );
    // The retention sweeper: deletes what expired, in batches, with the evidence in the audit log. It and scoring run
    // on `repeat`, which waits for a run to end before the next wait and takes intervals longer than a Node.js timer
    // holds (~24.8 days: a longer setInterval would fire every millisecond).
    const sweepFailed = (err: unknown) => kernel.logger.warn({ err }, 'retention sweep failed');
    // What it deleted stays deleted; the log's truncation is tried again by the next sweep.
    const swept = (report: SweepReport) => {
      if (report.walHeld) kernel.logger.warn('retention sweep: the write-ahead log still holds what inactive people\'s deletions left (another connection holds a read transaction); the truncation is tried again by the next sweep');
    };
    if (config.retentionSweepMinutes > 0) {
      const first = background.track('retention sweep', kernel.retention.sweep().then(swept).catch(sweepFailed));
      schedules.push({
        what: 'retention sweep',
        schedule: repeat(config.retentionSweepMinutes * 60_000, async () => {
          await first;
          swept(await kernel.retention.sweep());
        }, sweepFailed),
      });
    }
    // Scoring: models refitted and everyone who allows profiling rescored on a schedule; models whose statistics an
    // erasure decremented are refitted within minutes.
    if (config.scoringIntervalHours > 0) {
      const scoringFailed = (err: unknown) => {
        if (stopScoring.signal.aborted && err === stopScoring.signal.reason) kernel.logger.info('scoring run ended early by the stop; nothing of it was saved');
        else kernel.logger.warn({ err }, 'scoring run failed');
      };
      schedules.push({ what: 'scoring run', schedule: repeat(config.scoringIntervalHours * 3_600_000, () => kernel.scoring.run(SYSTEM_ACTOR, { signal: stopScoring.signal }), scoringFailed) });
    }
    // A merge or unmerge whose consent propagation failed (or another process left unapplied) is run again within about
    // two seconds, not only at the next merge or start; its person is gated as it will be meanwhile. Nothing pending:
    // nothing is read.
    housekeeping.push(
      oneAtATime('pending merges', 1_000, () =>
        kernel.identity
          .retryPending()
          .then(({ applied, failed }) => {
            if (applied > 0) kernel.logger.info({ applied }, 'merges and unmerges left unapplied applied');
            if (failed.length > 0) kernel.logger.warn({ err: failed[0]?.error, mergeIds: failed.slice(0, 20).map((f) => f.mergeId), failed: failed.length }, 'merge or unmerge listeners failed again; retried in a second');
          })
          .catch((err: unknown) => kernel.logger.warn({ err }, 'pending merges not retried')),
      ),
    );
    housekeeping.push(setInterval(() => background.track('model refit', kernel.scoring.refitStale().catch((err: unknown) => kernel.logger.warn({ err }, 'model refit failed'))), 300_000));
    // Scores whose clean-up after a consent change failed, or was left by another process that stopped: forgotten
    // within a minute (one read of an empty table when nothing is owed).
    housekeeping.push(
      oneAtATime('owed score clean-ups', 60_000, () =>
        kernel.scoring
          .reconcile()
          .then((removed) => {
            if (removed > 0) kernel.logger.info({ removed }, 'scores owed a clean-up after consent changes forgotten');
          })
          .catch((err: unknown) => kernel.logger.warn({ err }, 'scores owed a clean-up after consent changes not reconciled; retried in a minute')),
      ),
    );
    // PostgreSQL's planner statistics, where autovacuum has not refreshed them (it is off on some servers): at start,
    // then every 10 minutes; a table never analyzed is planned as empty and scanned whole on every look-up. (SQLite:
    // nothing to do.)
    const refreshStatistics = () =>
      background.track(
        'table statistics',
        kernel.storage
          .refreshStatistics()
          .then((tables) => {
            if (tables.length > 0) kernel.logger.info({ tables }, 'table statistics refreshed (ANALYZE), which autovacuum had not done');
          })
          .catch((err: unknown) => kernel.logger.warn({ err }, 'table statistics not refreshed')),
      );
    housekeeping.push(setInterval(refreshStatistics, 600_000));
    for (const timer of housekeeping) timer.unref();
    consentHousekeeping();
    void refreshStatistics();
    // Rights requests whose run a crash cut off run again, in the background once the server answers (after the
    // deletion ledger's replay at open: an erasure it finished is only completed). Only servers resume them: a CLI
    // command does not run someone's erasure or mail with the shell's settings.
    background.track(
      'interrupted rights requests',
      kernel.rights
        .resumeInterrupted()
        .then((runs) => {
          if (runs.resumed + runs.deferred > 0) kernel.logger.info(runs, 'interrupted rights requests resumed');
        })
        .catch((err: unknown) => kernel.logger.warn({ err }, 'interrupted rights requests not resumed; retried at the next start')),
    );

    await stopRequested;
    out('Candor is stopping');
  } finally {
    // Nothing new is started; what runs is waited for alongside the drain, within the same timeout, so that it ends
    // (or is abandoned, at the deadline or a second signal) before the database is closed.
    for (const timer of housekeeping) clearInterval(timer);
    stopScoring.abort();
    for (const { what, schedule } of schedules) {
      if (schedule.running) background.track(what, schedule.stop());
      else void schedule.stop();
    }
    const running = background.running();
    if (running.length > 0) kernel.logger.info({ running }, 'waiting for background work to finish');
    const settled = within(background.settled(), config.shutdownTimeoutMs, forceRequested);
    forcedConnections = await drain(app, stopping, config.shutdownTimeoutMs, forceRequested, kernel.logger);
    if (!(await settled)) kernel.logger.warn({ abandoned: background.running(), timeoutMs: config.shutdownTimeoutMs }, 'background work still running at the shutdown deadline is abandoned');
  }
  await kernel.audit.append({ actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role, action: 'server.stop', purpose: 'essential.service.operations', details: { connectionsClosedAtDeadline: forcedConnections } });
}

/** The start summary's account of the plan's warnings: how many, of which versions. */
function describeWarnings(summary: PlanWarningSummary): string {
  const counted = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const what = [summary.fields > 0 && counted(summary.fields, 'field'), summary.events > 0 && counted(summary.events, 'event')].filter(Boolean).join(' and ');
  return `${what} of plan version ${summary.planVersion} not kept for all of their purposes under notice version ${summary.noticeVersion}`;
}

/** Background runs in progress, by what they do; a run is forgotten once it settles. */
class Background {
  readonly #runs = new Set<{ what: string; settled: Promise<void> }>();

  /** Keeps `work` (which handles its own errors) until it settles, and answers it. */
  track<T>(what: string, work: Promise<T>): Promise<T> {
    const run = { what, settled: work.then(() => {}, () => {}) };
    this.#runs.add(run);
    void run.settled.then(() => this.#runs.delete(run));
    return work;
  }

  /** What is still running (a name once per run). */
  running(): string[] {
    return [...this.#runs].map((run) => run.what);
  }

  /** Resolves once every run tracked so far has settled. */
  async settled(): Promise<void> {
    await Promise.all([...this.#runs].map((run) => run.settled));
  }
}

/** Resolves with true when `work` settles, with false after `ms` milliseconds or at `force`, whichever comes first. */
async function within(work: Promise<unknown>, ms: number, force: Promise<void>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms))), force.then(() => false)]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops the HTTP server within `timeoutMs` (or at `forceRequested`, a second signal): no new connections; idle ones
 * closed at once; requests in flight answered with `Connection: close`, and requests arriving on open connections
 * SERVER_STOPPING. At the deadline the connections still open (a client that sent headers and no body, one that
 * trickles its body or does not read its answer) are closed, then route handlers still at work get as long again (or
 * until a second signal) to finish, so that their writes are committed before the database is closed. Returns how
 * many connections the deadline closed.
 */
async function drain(app: CandorServer['app'], stopping: Stopping, timeoutMs: number, forceRequested: Promise<void>, logger: Kernel['logger']): Promise<number> {
  const closed = app.close();
  const drained = await within(closed, timeoutMs, forceRequested);
  let forced = 0;
  if (!drained) {
    forced = await new Promise<number>((resolve) => app.server.getConnections((error, count) => resolve(error ? 0 : count)));
    logger.warn({ connections: forced, timeoutMs }, 'connections still open at the shutdown deadline are closed');
    app.server.closeAllConnections();
    await closed;
  }
  if (!(await within(stopping.settled(), timeoutMs, forceRequested))) logger.warn({ timeoutMs }, 'requests still being worked on at the shutdown deadline are abandoned');
  return forced;
}

/** The errors of listening that are the host's or port's setting, not Candor's fault: answered SERVE_LISTEN_FAILED. */
const LISTEN_SETTING_ERRORS: ReadonlySet<string> = new Set(['EADDRINUSE', 'EADDRNOTAVAIL', 'EACCES', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME']);

/** Starts listening on the configured host and port; a port taken or a host not of this machine is a coded error. */
async function listen(app: { listen(options: { port: number; host: string }): Promise<string> }, config: Config): Promise<string> {
  try {
    return await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && LISTEN_SETTING_ERRORS.has(code)) throw new CandorError('SERVE_LISTEN_FAILED', { reason: code, host: config.host, port: config.port }, { cause: error });
    throw error;
  }
}
