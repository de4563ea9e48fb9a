import { CommanderError, type Command } from 'commander';
import type { Kernel } from '../kernel.ts';
import { STATISTICS_LOCK_WAIT_MS, type CompactReport } from '../modules/rights/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';

/** What `candor compact` needs from the program that hosts it. */
export interface CompactCommandHelpers {
  out: (line: string) => void;
  withKernel: <T>(run: (kernel: Kernel) => Promise<T>) => Promise<T>;
}

const megabytes = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;

/** The lines `candor compact` prints. */
export function describeCompact(report: CompactReport): string[] {
  if (report.dialect === 'sqlite') {
    return ['nothing to do on SQLite: secure_delete overwrote deleted rows as they were deleted, and each erasure truncated the write-ahead log'];
  }
  if (report.tables.length === 0) return ['no erasure yet: no table to rewrite'];
  const before = report.tables.reduce((n, t) => n + t.bytesBefore, 0);
  const after = report.tables.reduce((n, t) => n + t.bytesAfter, 0);
  const lines = [
    report.heldBy.length === 0
      ? `rewrote ${report.tables.length} tables (VACUUM FULL) in ${report.ms} ms: ${megabytes(before)} -> ${megabytes(after)}; the bytes of deleted rows are gone from their data files (recorded in the audit log as rights.erasure.compact)`
      : `rewrote ${report.tables.length} tables (VACUUM FULL) in ${report.ms} ms: ${megabytes(before)} -> ${megabytes(after)}; NOT ALL deleted rows are gone: a row a transaction still running may see is copied into the new files`,
    ...report.tables.map((t) => `  ${t.table.padEnd(40)} ${megabytes(t.bytesBefore).padStart(10)} -> ${megabytes(t.bytesAfter)}`),
  ];
  const kept = 'the statistics rows replaced stay in its file until PostgreSQL vacuums it and new rows overwrite them';
  lines.push(
    report.statisticsCatalog === 'rewritten'
      ? 'their planner statistics were taken again from the rows left (ANALYZE), and pg_statistic rewritten: the statistics rows replaced are gone from its file'
      : report.statisticsCatalog === 'busy'
        ? `their planner statistics were taken again from the rows left (ANALYZE); pg_statistic was not rewritten: a session held it for more than ${STATISTICS_LOCK_WAIT_MS / 1000} s (a transaction that read pg_stats; run candor compact again): ${kept}`
        : `their planner statistics were taken again from the rows left (ANALYZE); pg_statistic was not rewritten (only a superuser may): ${kept}`,
  );
  if (report.heldBy.length > 0) {
    lines.push('open since before the last erasure ended (end them, then run candor compact again):');
    for (const h of report.heldBy) lines.push(`  ${h.kind.replace('_', ' ')} ${h.name}${h.database ? ` in database ${h.database}` : ''}${h.since ? ` since ${h.since}` : ''}`);
  }
  return lines;
}

/** Registers `candor compact`. */
export function registerCompactCommand(program: Command, { out, withKernel }: CompactCommandHelpers): void {
  program
    .command('compact')
    .description('PostgreSQL: rewrite the tables erasures delete from (VACUUM FULL, with ANALYZE), so the bytes of deleted rows leave the database files and their planner statistics, and pg_statistic where allowed (a superuser); each table is locked while it is rewritten; exit 3 when a transaction open since before the last erasure kept some')
    .action(async () => {
      const report = await withKernel((kernel) => kernel.erasure.compact(CLI_ACTOR));
      for (const line of describeCompact(report)) out(line);
      // Exit 3, as a broken audit log: a scheduled run must not pass for one that removed everything.
      if (report.heldBy.length > 0) throw new CommanderError(3, 'candor.compact_held', '');
    });
}
