import { CommanderError, type Command } from 'commander';
import type { Config } from '../config/index.ts';
import { MIGRATIONS, openKernel, type Kernel } from '../kernel.ts';
import { backupDatabase, restoreDatabase, RESTORE_PENDING_FILE, type BackupResult, type SweepReport } from '../modules/retention/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { isoTime } from '../shared/iso-time.ts';

/** What the retention and backup commands need from the program that hosts them. */
export interface RetentionCommandHelpers {
  out: (line: string) => void;
  withKernel: <T>(run: (kernel: Kernel) => Promise<T>) => Promise<T>;
  config: () => Config;
}

function parsePositive(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new CommanderError(2, 'candor.usage', `error: ${flag} takes a whole number above 0`);
    return n;
  };
}

/** `--now`: ISO 8601 as events take it (without a zone, UTC, whatever TZ says), from year 1 to 9999; else a usage error. */
function parseNow(value: string): Date {
  const at = isoTime(value.trim());
  if (Number.isNaN(at)) throw new CommanderError(2, 'candor.usage', 'error: --now takes an ISO 8601 date-time between 0001-01-01 and 9999-12-31 (UTC unless it names a zone)');
  return new Date(at);
}

/** The lines `candor retention sweep` prints: one per rule, store and category that had something, then a total. */
export function describeSweep(report: SweepReport): string[] {
  const verb = report.dryRun ? 'would delete or reduce' : 'deleted or reduced';
  const lines = report.counts.filter((c) => c.count > 0).map((c) => `  ${c.rule.padEnd(44)} ${c.store.padEnd(26)} ${c.category.padEnd(32)} ${c.count}`);
  const people = report.counts.filter((c) => c.store === 'people').reduce((n, c) => n + c.count, 0);
  // What the deletions of inactive people left in SQLite's write-ahead log, still there: said after what was deleted.
  const held = report.walHeld
    ? ['  the write-ahead log still holds what inactive people\'s deletions left: another connection to the database holds a read transaction; the truncation is tried again by the next sweep and at the next start']
    : [];
  if (lines.length === 0) return [`retention sweep at ${report.at}${report.dryRun ? ' (dry run)' : ''}: nothing has expired, nothing ${report.dryRun ? 'would be' : 'was'} deleted (${report.ms} ms)`, ...held];
  // A dry run counts the people the inactivity rule would delete, not their rows (which other rules of the same sweep
  // may take first): said in the line, so that its total is not read as the real sweep's.
  const whom = people === 0 ? '' : report.dryRun ? ` and ${people} inactive people (their rows not counted: a dry run counts only the people, the real sweep also counts their rows per store)` : `, ${people} inactive people`;
  return [
    `retention sweep at ${report.at}${report.dryRun ? ' (dry run, nothing changed)' : ''}: ${verb} ${report.total} rows${whom} (${report.ms} ms)`,
    `  ${'rule'.padEnd(44)} ${'store'.padEnd(26)} ${'category'.padEnd(32)} rows`,
    ...lines,
    ...held,
  ];
}

/** An audit head as `audit verify` prints it, with its time. */
function describeHead(head: BackupResult['auditHead']): string {
  return head ? `${head.seq}:${head.hash} (${head.at})` : 'an empty log';
}

/** Registers `candor retention policies|sweep`, `candor backup FILE` and `candor restore FILE`. */
export function registerRetentionCommands(program: Command, { out, withKernel, config }: RetentionCommandHelpers): void {
  const retention = program.command('retention').description('retention policies and the sweeper that enforces them');

  retention
    .command('policies')
    .description('list the retention rules in force: configured policies and the tracking plan')
    .option('--json', 'as JSON')
    .action(async (options: { json?: boolean }) => {
      await withKernel(async (kernel) => {
        const rules = await kernel.retention.policies();
        if (options.json) {
          out(JSON.stringify(rules, null, 2));
          return;
        }
        for (const r of rules) out(`${r.id.padEnd(44)} ${r.action.padEnd(13)} after ${r.period.padEnd(5)} (${r.source})  ${r.description}`);
      });
    });

  retention
    .command('sweep')
    .description('delete what has expired now, in batches, and record the evidence in the audit log')
    .option('--dry-run', 'show what would be deleted without changing anything')
    .option('--batch-size <n>', 'rows per transaction', parsePositive('--batch-size'))
    .option('--now <date-time>', 'count periods back from this moment instead of now (testing policies): ISO 8601, UTC unless it names a zone', parseNow)
    .action(async (options: { dryRun?: boolean; batchSize?: number; now?: Date }) => {
      await withKernel(async (kernel) => {
        const report = await kernel.retention.sweep({ dryRun: options.dryRun ?? false, actor: CLI_ACTOR, ...(options.batchSize ? { batchSize: options.batchSize } : {}), ...(options.now ? { now: options.now } : {}) });
        for (const line of describeSweep(report)) out(line);
      });
    });

  program
    .command('backup <file>')
    .description('write a consistent copy of the database (SQLite online backup, or pg_dump -Fc); the server may be running')
    .action(async (file: string) => {
      // SIGINT or SIGTERM stops pg_dump and removes the partial copy (BACKUP_INTERRUPTED, exit 130 or 143) instead of
      // ending the process at once, which left both behind; a second signal ends it at once.
      const interrupt = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        stopListening();
        interrupt.abort(signal);
      };
      const stopListening = () => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let result: BackupResult;
      try {
        result = await backupDatabase(config(), file, CLI_ACTOR, { signal: interrupt.signal });
      } finally {
        stopListening();
      }
      out(`backup written to ${result.file} (${result.dialect}, ${result.bytes} bytes, sha256 ${result.sha256})`);
      out(`  audit head in the backup: ${describeHead(result.auditHead)} (recorded in the audit log as retention.backup)`);
      out('  the master key file is not in it: keep a copy of the key apart from the backup, or the backup cannot be read');
    });

  program
    .command('restore <file>')
    .description('replace the database with a backup (checked first; the server must be stopped), then replay erasures made since')
    .action(async (file: string) => {
      const settings = config();
      const { dialect, discarded, restored, backupTakenAt } = await restoreDatabase(settings, file, CLI_ACTOR, MIGRATIONS);
      out(`restored ${dialect} database from ${file} (backup taken ${backupTakenAt})`);
      // The audit log went back with the rest: what it held after the backup is gone, and this says how far it reached.
      out(`  audit log rolled back from ${typeof discarded === 'string' ? `(${discarded})` : describeHead(discarded)} to ${describeHead(restored)}; recorded as retention.restore`);
      out('  entries written after the backup are no longer in the database: check the discarded head against an audit export kept earlier (docs/security.md)');
      // Opening the kernel applies pending migrations, replays the deletion ledger and applies what the restore carried
      // over from the replaced database (revocations, consent opt-outs and restrictions) before anything else runs.
      const kernel = await openKernel(settings);
      let byHand = false;
      try {
        out(`  erasures replayed from the deletion ledger: ${kernel.erasuresReplayed}`);
        if (kernel.migrationsApplied.length > 0) out(`  migrations applied: ${kernel.migrationsApplied.join(', ')}`);
        const carried = kernel.restoreCarried;
        if (carried) {
          // A credential revoked after the backup was taken must not work again (a leaked key revoked since).
          out(`  credentials revoked again (revoked in the replaced database, active in the backup): ${carried.revoked.length}${carried.revoked.length > 0 ? ` (${carried.revoked.join(', ')})` : ''}`);
          // A privacy-center session ended after the backup (a sign-out, an unmerge) must not work again: all end.
          out(`  privacy-center sessions ended (issued before the backup; customers sign in again): ${carried.sessionsEnded}`);
          for (const id of carried.keptLastOwner) out(`  owner token ${id} was revoked in the replaced database but is the restored database's last active owner token: create another owner token (keys create --role owner), then revoke it`);
          // A withdrawal, GPC opt-out, restriction or objection recorded after the backup must not let processing resume.
          const done = carried.consent;
          out(`  refusals and withdrawals written again (in force in the replaced database, not in the backup): ${done.optOuts}`);
          out(`  GPC opt-outs written again: ${done.gpcOptOuts}`);
          out(`  restrictions of processing put in force again: ${done.restrictions}`);
          out(`  objections to direct marketing put in force again: ${done.objections}`);
          if (done.keptLater > 0) out(`  consent states left as restored (the backup holds a later entry, or a later lifting): ${done.keptLater}`);
          if (done.purposeNotConfigured > 0) out(`  refusals and withdrawals of purposes the restored configuration lacks or does not base on consent or legitimate interests: ${done.purposeNotConfigured} (set such a purpose again, then record them again by hand)`);
          if (done.notInRestored > 0) out(`  people with restrictive consent states the restored database does not know (profiles created after the backup, or erased): ${done.notInRestored}`);
          if (done.failed.length > 0) out(`  people whose consent states could not be written again: ${done.failed.map((f) => `${f.people} (${f.code})`).join(', ')}: tried again at the next start (${RESTORE_PENDING_FILE} stays)`);
          if (carried.unknown.includes('credentials')) out(`  credentials revoked since the backup: not known (the replaced database could not be read): revoke again any revoked after ${backupTakenAt}`);
          if (carried.unknown.includes('consent')) out(`  consent withdrawals, opt-outs, restrictions and objections since the backup: not known (the replaced database could not be read): record again any recorded after ${backupTakenAt}`);
          byHand = carried.keptLastOwner.length > 0 || done.purposeNotConfigured > 0 || done.failed.length > 0 || carried.unknown.length > 0;
        }
      } finally {
        await kernel.close();
      }
      // Restored, with something left to do by hand (listed above): exit 3, as `compact` does when work is left.
      if (byHand) throw new CommanderError(3, 'candor.restore.by_hand', '');
    });
}
