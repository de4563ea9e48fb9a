// Which table or index the pages written to SQLite's write-ahead log belong to:
// `node bench/support/wal-pages.ts STRACE_FILE DATA_DIR [events]`, after
// `STRACE_PAGES=STRACE_FILE BENCH_KEEP=1 node bench/support/thread-cpu.ts …` (see there). Reads each WAL frame header's
// page number from the trace, finds its B-tree with SQLite's dbstat table, and prints frames per B-tree (per event when
// the number of events stored during the trace is given).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

const [traceFile, dataDir, eventsArg] = process.argv.slice(2);
if (!traceFile || !dataDir) throw new Error('usage: wal-pages.ts STRACE_FILE DATA_DIR [events]');
const db = new DatabaseSync(join(dataDir, 'candor.db'), { readOnly: true });
const owner = new Map<number, string>();
for (const row of db.prepare('SELECT name, pageno FROM dbstat').all() as { name: string; pageno: number }[]) owner.set(row.pageno, row.name);
const counts = new Map<string, number>();
let frames = 0;
for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
  const m = /pwrite64\(\d+, "((?:\\x[0-9a-f]{2}){4})"\.\.\., 24, /.exec(line);
  if (!m) continue;
  const page = Number.parseInt((m[1] as string).replaceAll('\\x', ''), 16);
  const name = owner.get(page) ?? '(free or new)';
  counts.set(name, (counts.get(name) ?? 0) + 1);
  frames++;
}
const events = Number(eventsArg ?? 0);
console.log(`frames: ${frames}${events ? `, ${(frames / events).toFixed(2)} per event` : ''}`);
for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1])) {
  console.log(`${String(n).padStart(8)} ${events ? (n / events).toFixed(3).padStart(7) : ''}  ${name}`);
}
