// bench:rights — on SQLite and PostgreSQL, each on a fresh data directory / database: export (access archive) and
// erasure of a subject with 10,000 stored events, each on its own subject; and the retention sweeper's throughput in
// rows deleted per second against a plain DELETE of the same number of rows of the same shape, in the same run.
// Events are realistic shop traffic (bench/support/events.ts) ingested through kernel.collect.ingest.
import { place } from './support/place.ts';
import { loadConfig } from '../src/config/index.ts';
import { openKernel, type Kernel } from '../src/kernel.ts';
import { CLI_ACTOR } from '../src/shared/actor.ts';
import { makeEvent, rng } from './support/events.ts';

const SUBJECT_EVENTS = 10_000;
const SWEEP_ROWS = Number(process.env.BENCH_SWEEP_ROWS ?? 100_000);
const BATCH = 250;
const line = (text: string) => console.log(text);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** People who said yes to analytics and profiling. */
async function consenting(kernel: Kernel, userIds: readonly string[]): Promise<string[]> {
  const items = userIds.map((u) => ({ identifiers: [{ type: 'user_id', value: u }, { type: 'anonymous_id', value: `anon-${u}` }], source: 'web', at: new Date().toISOString() }));
  const resolved = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, items));
  const ids = resolved.map((r) => r.profileId as string);
  for (const id of ids) await kernel.consent.record(id, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  return ids;
}

/** Ingests `n` realistic events spread over `users` (or all for one user), in batches; orders can be left out. */
async function ingest(kernel: Kernel, random: () => number, n: number, who: (i: number) => string, withOrders: boolean): Promise<void> {
  let sent = 0;
  while (sent < n) {
    const batch: { raw: unknown; bytes: number }[] = [];
    while (batch.length < BATCH && sent + batch.length < n) {
      const event = makeEvent(random, 1);
      if (!withOrders && event.event === 'Order Completed') continue;
      const user = who(sent + batch.length);
      const raw = { ...event, userId: user, anonymousId: `anon-${user}` };
      batch.push({ raw, bytes: JSON.stringify(raw).length });
    }
    const results = await kernel.collect.ingest(batch, undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    const bad = results.find((r) => r.status !== 'stored');
    if (bad) throw new Error(`ingest: ${bad.status} ${bad.code ?? ''}`);
    sent += batch.length;
  }
}

async function run(dialect: 'sqlite' | 'postgres'): Promise<void> {
  const where = await place(dialect, 'rights');
  const random = rng(42);
  try {
    const config = loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'silent', NODE_ENV: 'test' } });
    const kernel = await openKernel(config);
    try {
      const crowd = Array.from({ length: 200 }, (_, i) => `crowd-${i}`);
      await consenting(kernel, ['export-subject', 'erase-subject', ...crowd]);
      // Sweeper: SWEEP_ROWS raw events (no orders, which are reduced rather than deleted), all expired 14 months on.
      const later = new Date(Date.now());
      later.setUTCMonth(later.getUTCMonth() + 14);
      await ingest(kernel, random, SWEEP_ROWS, (i) => crowd[i % crowd.length] as string, false);
      let t = performance.now();
      const report = await kernel.retention.sweep({ now: later, actor: CLI_ACTOR });
      const sweepMs = performance.now() - t;
      const swept = report.counts.filter((c) => c.rule === 'collect.events.raw').reduce((n, c) => n + c.count, 0);
      if (swept !== SWEEP_ROWS) throw new Error(`the sweep deleted ${swept} raw events, expected ${SWEEP_ROWS}`);

      // Baseline: the same number of rows of the same shape, deleted with one plain DELETE.
      await ingest(kernel, random, SWEEP_ROWS, (i) => crowd[i % crowd.length] as string, false);
      const cutoff = new Date(Date.now() + 60_000).toISOString();
      t = performance.now();
      const deleted = await kernel.storage.raw.transaction((tx) => tx.run("DELETE FROM collect_events WHERE occurred_at < $1 AND (event IS NULL OR event <> 'Order Completed')".replace(/\$(\d)/g, dialect === 'sqlite' ? '?' : '$$$1'), [cutoff]));
      const plainMs = performance.now() - t;
      if (deleted !== SWEEP_ROWS) throw new Error(`the plain DELETE removed ${deleted} rows, expected ${SWEEP_ROWS}`);
      const sweepRate = swept / (sweepMs / 1000);
      const plainRate = deleted / (plainMs / 1000);
      line(
        `[${dialect}] retention sweep: ${fmt(sweepRate)} rows/s (${fmt(swept)} rows in ${fmt(sweepMs)} ms, batches of ${config.retentionBatchSize}) vs plain DELETE ${fmt(plainRate)} rows/s (${fmt(plainMs)} ms) = ${(sweepRate / plainRate).toFixed(2)}×  | goal ≥ 0.5× ${sweepRate >= 0.5 * plainRate ? 'PASS' : 'FAIL'}`,
      );

      await ingest(kernel, random, SUBJECT_EVENTS, () => 'export-subject', true);
      await ingest(kernel, random, SUBJECT_EVENTS, () => 'erase-subject', true);

      // Export first, on its own subject, then erasure of the other: each measured from lookup to result.
      t = performance.now();
      const toExport = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'export-subject' } });
      if (!toExport) throw new Error('export subject not found');
      const archive = await kernel.exporter.archive(toExport, { requestId: 'bench-export' }, CLI_ACTOR);
      const exportMs = performance.now() - t;
      t = performance.now();
      const toErase = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'erase-subject' } });
      if (!toErase) throw new Error('erase subject not found');
      const certificate = await kernel.erasure.erase(toErase, { requestId: 'bench-erase' }, CLI_ACTOR);
      const eraseMs = performance.now() - t;
      line(`[${dialect}] export of a subject with ${fmt(SUBJECT_EVENTS)} events: ${fmt(exportMs)} ms (${fmt(archive.length / 1024)} KB zip)  | goal < 2,000 ms ${exportMs < 2000 ? 'PASS' : 'FAIL'}`);
      line(`[${dialect}] erasure of a subject with ${fmt(SUBJECT_EVENTS)} events: ${fmt(eraseMs)} ms (certificate ${certificate.status})  | goal < 1,000 ms ${eraseMs < 1000 ? 'PASS' : 'FAIL'}`);
    } finally {
      await kernel.close();
    }
  } finally {
    await where.drop();
  }
}

line(`bench:rights — export and erasure of a subject with ${fmt(SUBJECT_EVENTS)} events; retention sweep of ${fmt(SWEEP_ROWS)} expired events vs one plain DELETE`);
for (const dialect of (process.env.BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[]) await run(dialect);
