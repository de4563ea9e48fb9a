// bench:ingest — ingestion throughput, latency and the cost of privacy, each figure beside a baseline from the same run.
//
// The machine is shared and noisy, so the ratios are the figures to trust: Candor's full pipeline (tracking plan,
// consent gate, identity, pseudonyms, encryption, durable group commit) against a privacy-off server that only
// parses and stores the same batches with the same framework, storage, Node flags and events table, and against raw
// inserts of the privacy-off server's rows into that table. Every store's events table is collect_events as Candor's
// migrations make it (support/events-store.ts): the same B-trees and duplicate-detection triggers in all three.
// Two kinds of traffic: the fastest path (every event from one of 2,000 people known by both ids whose consent was
// recorded before the run) and mixed traffic (support/mixed.ts: new devices, first-time visitors with their consent
// calls, visitors without consent, GPC). Throughput comes from closed-loop runs (16 connections, each sending its next
// request once answered); the latency goal is judged at a steady rate sent on schedule (open loop), since a closed
// loop's latency is mostly its own queue. The servers run in their own processes (one core, and Candor's SQLite
// writer thread); the load generator runs here (the other core), on loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { place, type Place } from './support/place.ts';
import { loadConfig } from '../src/config/index.ts';
import { openKernel, type Kernel } from '../src/kernel.ts';
import { openStorage } from '../src/storage/index.ts';
import { CLI_ACTOR } from '../src/shared/actor.ts';
import { makeEvent, rng } from './support/events.ts';
import { createEventsStore, eventsInserter, plainRow, sqliteEventsSchema, type PlainRow } from './support/events-store.ts';
import { load, statusCounts, storedCount, type LoadResult, type Payload } from './support/load.ts';
import { MIXED_SHAPE, mixedTraffic } from './support/mixed.ts';
import { pipelineSteps } from './support/pipeline-steps.ts';
import { startFlags } from './support/start-flags.ts';

type Dialect = 'sqlite' | 'postgres';
const ROOT = join(import.meta.dirname, '..');
const USERS = 2000;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONCURRENCY = 16;
/** SQLite's synchronous setting, the same for every store (FULL: a commit is durable when answered). */
const SYNC = process.env.BENCH_SYNC === 'NORMAL' ? 'NORMAL' : 'FULL';
/**
 * The steady load at which the latency goal is judged (open loop): 50 batches of 100 a second, 5,000 events/s, the top of
 * RudderStack's published single-node figure (BENCH_STEADY_RATE: batches a second).
 */
const STEADY_BATCHES_PER_S = Number(process.env.BENCH_STEADY_RATE ?? 50);
const P99_GOAL_MS = 50;
/** Events per in-process ingest call when timing the pipeline's steps: one group commit of Candor's largest size (GROUP_EVENTS). */
const PIPELINE_GROUP = 800;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => `${n.toFixed(1)} ms`;
const pct = (n: number) => `${(n * 100).toFixed(0)}%`;
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
const rate = (r: LoadResult) => r.events / r.seconds;
const latency = (r: LoadResult | { p50: number; p99: number }) => `p50 ${ms(r.p50)}, p99 ${ms(r.p99)}`;
const line = (text: string) => console.log(text);
const children: ChildProcess[] = [];

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function startChild(args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const url = /listening on (http:\/\/[0-9.:]+)/.exec(out)?.[1];
      if (url) resolve({ child, url });
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Customers who said yes to analytics and profiling, and a write key. */
async function prepare(kernel: Kernel): Promise<string> {
  const items = Array.from({ length: USERS }, (_, i) => ({ identifiers: [{ type: 'user_id', value: `user-${i}` }, { type: 'anonymous_id', value: `anon-${i}` }], source: 'web', at: new Date().toISOString() }));
  const resolved = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, items));
  for (const r of resolved) {
    await kernel.consent.record(r.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  }
  return (await kernel.access.createWriteKey('web', 'bench', CLI_ACTOR)).secret;
}

/** Batches of 100 events of the fastest path. */
function batchBody(random: () => number) {
  return (): Payload => ({ body: JSON.stringify({ batch: Array.from({ length: 100 }, () => makeEvent(random, USERS)) }), events: 100 });
}

/** Single-event requests, the same for both servers (a product view as a track call). */
function singleBody(random: () => number) {
  return (): Payload => ({ body: JSON.stringify({ ...makeEvent(random, USERS), type: undefined, event: 'Product Viewed', properties: { product_id: 'p-1', price: 10 } }), events: 1 });
}

/** Only events answered `stored` count (not duplicate, suppressed, refused or invalid). */
const stored = (body: string) => storedCount(body);

interface MixedRun {
  result: LoadResult;
  /** Events answered per second (whatever their status), and how many of them had each status. */
  answered: number;
  statuses: Record<string, number>;
}

interface ServerRuns {
  batch: LoadResult;
  steady?: LoadResult | undefined;
  single: LoadResult;
  mixed?: MixedRun | undefined;
  /** Cores the server and this process (the load generator) used during the batch run. */
  cpu: { server: number; load: number };
  /** SQLite: the events table's B-trees and triggers as the server left them. */
  schema?: { names: string; sql: string } | undefined;
}

/**
 * One server's runs: batches of the fastest path (closed loop), then, with `full`, the same at a steady rate (open
 * loop), then single events, then, with `full`, mixed traffic. Candor's store is prepared first (people, consent,
 * a write key); both servers start with `npm start`'s Node flags and the same SQLite synchronous setting. With
 * `only`, one run alone (BENCH_ONLY): the fastest path's batches or the mixed traffic.
 */
async function serverRuns(server: 'candor' | 'off', dialect: Dialect, options: { writerThread?: 'on' | 'off'; full: boolean }): Promise<ServerRuns>;
async function serverRuns(server: 'candor' | 'off', dialect: Dialect, options: { only: 'batch' | 'mixed' }): Promise<{ batch?: LoadResult; mixed?: MixedRun }>;
async function serverRuns(server: 'candor' | 'off', dialect: Dialect, options: { writerThread?: 'on' | 'off'; full?: boolean; only?: 'batch' | 'mixed' }): Promise<ServerRuns | { batch?: LoadResult; mixed?: MixedRun }> {
  const where = await place(dialect, 'ingest');
  try {
    let headers: Record<string, string> = {};
    const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`, `--cpu-prof-name=${server === 'candor' ? 'candor' : 'privacy-off'}.cpuprofile`] : [];
    let started: { child: ChildProcess; url: string };
    if (server === 'candor') {
      const config = loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'silent' } });
      const kernel = await openKernel(config);
      const writeKey = await prepare(kernel);
      await kernel.close();
      headers = { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` };
      const env = { CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'warn', CANDOR_SQLITE_SYNCHRONOUS: SYNC, CANDOR_SQLITE_WRITER_THREAD: options.writerThread ?? 'on' };
      started = await startChild([...profile, ...startFlags(), 'bin/candor.js', 'serve', '--port', '0'], env);
    } else {
      started = await startChild([...profile, ...startFlags(), 'bench/support/privacy-off-server.ts', where.dataDir, where.databaseUrl, SYNC], {});
    }
    const { child, url } = started;
    const random = rng(7);
    const run = (path: string, makeBody: () => Payload, seconds: number, extra: { rate?: number; count?: (body: string, payload: Payload) => number } = {}) =>
      load({ url: `${url}${path}`, headers, concurrency: extra.rate === undefined ? CONCURRENCY : CONCURRENCY * 4, seconds, makeBody, count: extra.count ?? stored, ...(extra.rate === undefined ? {} : { rate: extra.rate }) });
    if (options.only === 'mixed') {
      const mixed = await mixedRun(run, random, server);
      await stopChild(child);
      return { mixed };
    }
    await run('/v1/batch', batchBody(random), 1);
    if (options.only === 'batch') {
      const batch = await run('/v1/batch', batchBody(random), SECONDS);
      await stopChild(child);
      return { batch };
    }
    const cpuBefore = cpuSeconds(child.pid);
    const ownBefore = process.cpuUsage();
    const batch = await run('/v1/batch', batchBody(random), SECONDS);
    const own = process.cpuUsage(ownBefore);
    const cpu = { server: (cpuSeconds(child.pid) - cpuBefore) / batch.seconds, load: (own.user + own.system) / 1e6 / batch.seconds };
    const steady = options.full ? await run('/v1/batch', batchBody(random), SECONDS, { rate: STEADY_BATCHES_PER_S }) : undefined;
    // Single events get a second of warm-up too (a code path of its own), on both servers.
    await run('/v1/track', singleBody(random), 1);
    const single = await run('/v1/track', singleBody(random), Math.max(3, SECONDS / 2));
    const mixed = options.full ? await mixedRun(run, random, server) : undefined;
    await stopChild(child);
    return { batch, steady, single, mixed, cpu, schema: dialect === 'sqlite' ? sqliteEventsSchema(where.dataDir) : undefined };
  } finally {
    await where.drop();
  }
}

type Run = (path: string, makeBody: () => Payload, seconds: number, extra?: { rate?: number; count?: (body: string, payload: Payload) => number }) => Promise<LoadResult>;

/** Mixed traffic (support/mixed.ts) after a second of warm-up: Candor's runs include first-time visitors' consent calls. */
async function mixedRun(run: Run, random: () => number, server: 'candor' | 'off'): Promise<MixedRun> {
  const traffic = mixedTraffic(random, USERS, server === 'candor');
  await run('/v1/batch', traffic.next, 1);
  const statuses: Record<string, number> = {};
  const result = await run('/v1/batch', traffic.next, SECONDS, {
    count: (body, payload) => {
      if (payload.kind !== 'batch') return 0;
      for (const [status, n] of Object.entries(statusCounts(body))) statuses[status] = (statuses[status] ?? 0) + n;
      return storedCount(body);
    },
  });
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0);
  return { result, answered: answered / result.seconds, statuses };
}

/** Transactions of raw inserts: the most a group commit of the privacy-off server writes with 16 batches of 100 in flight. */
const RAW_TRANSACTION_ROWS = 1600;

/**
 * Raw inserts of the privacy-off server's rows (support/events-store.ts: plainRow) into collect_events as Candor's
 * migrations make it, 100 rows a statement as both servers insert, RAW_TRANSACTION_ROWS a transaction, one
 * transaction after another on one connection: what the database alone takes to store these events. Each
 * transaction's rows are made before its clock starts.
 */
async function rawInserts(dialect: Dialect): Promise<{ rate: number; schema?: { names: string; sql: string } | undefined }> {
  const where: Place = await place(dialect, 'ingest-raw');
  try {
    const storage = await openStorage({ dataDir: where.dataDir, databaseUrl: where.databaseUrl, sqliteSynchronous: SYNC, sqliteWriterThread: 'off' });
    await createEventsStore(storage);
    const insert = eventsInserter(storage);
    const random = rng(3);
    let n = 0;
    let timed = 0;
    while (timed < 3000) {
      const receivedAt = new Date().toISOString();
      const rows: PlainRow[] = Array.from({ length: RAW_TRANSACTION_ROWS }, () => plainRow(makeEvent(random, USERS), receivedAt));
      const started = performance.now();
      await storage.raw.transaction((tx) => insert(tx, rows));
      timed += performance.now() - started;
      n += rows.length;
    }
    await storage.close();
    return { rate: n / (timed / 1000), schema: dialect === 'sqlite' ? sqliteEventsSchema(where.dataDir) : undefined };
  } finally {
    await where.drop();
  }
}

/** Time per event of each privacy step alone, in process; then where the whole pipeline's time goes (pipelineSteps). */
async function stepCosts() {
  const where = await place('sqlite', 'ingest-steps');
  // The writer thread off, so that the store transaction is timed where it runs; NORMAL: no fsync, which both servers pay.
  const config = loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_LOG_LEVEL: 'silent', CANDOR_SQLITE_SYNCHRONOUS: 'NORMAL', CANDOR_SQLITE_WRITER_THREAD: 'off' } });
  const kernel = await openKernel(config);
  try {
    await prepare(kernel);
    const random = rng(11);
    const events = Array.from({ length: 5000 }, () => makeEvent(random, USERS));
    const time = async (name: string, fn: (e: Record<string, unknown>, i: number) => unknown, batch = false) => {
      const started = performance.now();
      let count = 0;
      while (performance.now() - started < 1000) {
        if (batch) {
          await fn(events[count % events.length] as Record<string, unknown>, count);
          count += 100;
        } else {
          for (let i = 0; i < 1000; i++) fn(events[(count + i) % events.length] as Record<string, unknown>, count + i);
          count += 1000;
        }
      }
      return { name, us: ((performance.now() - started) * 1000) / count };
    };
    const kind = (e: Record<string, unknown>) => e.type as 'page';
    const profileIds = await kernel.identity.lookupBatch(kernel.storage.raw, Array.from({ length: USERS }, (_, i) => ({ identifiers: [{ type: 'user_id', value: `user-${i}` }], source: 'web', at: '' })));
    await kernel.consent.load(profileIds.filter((p): p is string => p !== null));
    await kernel.keyring.prepare(profileIds.filter((p): p is string => p !== null));
    const items = events.slice(0, 100).map((e) => ({ identifiers: [{ type: 'user_id', value: String(e.userId) }, { type: 'anonymous_id', value: String(e.anonymousId) }], source: 'web', at: '' }));
    const steps = [
      await time('validate + minimize (tracking plan)', (e) => kernel.catalog.process(kind(e), (e.event ?? e.name) as string | undefined, e, 'web')),
      await time('consent decision (3 purposes, cache)', (_e, i) => kernel.consent.allowedPurposes(profileIds[i % USERS] as string, ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email'])),
      await time('pseudonyms (user id + anonymous id)', (e) => {
        kernel.identity.hash({ type: 'user_id', value: String(e.userId) });
        kernel.identity.hash({ type: 'anonymous_id', value: String(e.anonymousId) });
      }),
      await time('encryption (one envelope per event)', (e, i) => kernel.keyring.encryptPrepared(profileIds[i % USERS] as string, JSON.stringify(e.context), 'collect.events.data')),
      await time('identity lookup (batch of 100, per event)', () => kernel.identity.lookupBatch(kernel.storage.raw, items), true),
      await time('suppression check (batch of 100, per event)', () => kernel.identity.isSuppressedBatch(kernel.storage.raw, items), true),
    ];
    const decisions = await time('decide', (_e, i) => kernel.consent.decide(profileIds[i % USERS] as string, 'analytics.reporting'));
    const pipeline = await pipelineSteps(kernel, () => Array.from({ length: PIPELINE_GROUP }, () => makeEvent(random, USERS)), 2);
    return { steps, decisionsPerSecond: 1e6 / decisions.us, pipeline };
  } finally {
    await kernel.close();
    await where.drop();
  }
}

/** The lines of one database's server runs. */
function report(dialect: Dialect, on: ServerRuns, off: ServerRuns, raw: number): void {
  const tag = `[${dialect}]`;
  // The goals are judged on SQLite, the default store; PostgreSQL's figures are for information.
  const judge = (text: string) => (dialect === 'sqlite' ? `  | ${text}` : '');
  const ratio = rate(on.batch) / rate(off.batch);
  line(`${tag} fastest path (every event from one of ${fmt(USERS)} people known by both ids, consent given and loaded before the run), privacy on (Candor): ${fmt(rate(on.batch))} events/s stored, errors ${on.batch.errors}${judge(`goal ≥ 50,000 events/s ${verdict(rate(on.batch) >= 50_000)}`)}`);
  line(`${tag} fastest path, privacy off (parse + store into the same collect_events, same Node flags): ${fmt(rate(off.batch))} events/s  | privacy-on / privacy-off ${ratio.toFixed(2)}${dialect === 'sqlite' ? ` (goal ≥ 0.70 ${verdict(ratio >= 0.7)})` : ''}`);
  if (on.steady && off.steady) {
    const steady = on.steady;
    line(
      `${tag} latency at a steady ${fmt(STEADY_BATCHES_PER_S * 100)} events/s (${STEADY_BATCHES_PER_S} batches of 100 a second on schedule, open loop, latency from each one's scheduled time; fastest path): Candor ${latency(steady)}, ${fmt(rate(steady))} events/s stored, errors ${steady.errors}; privacy off ${latency(off.steady)}, errors ${off.steady.errors}${judge(`goal p99 ≤ ${P99_GOAL_MS} ms ${verdict(steady.p99 <= P99_GOAL_MS && steady.errors === 0)}`)}`,
    );
  }
  line(`${tag} closed-loop latency of the fastest-path runs above, for information (16 batches always in flight, so mostly queueing): Candor ${latency(on.batch)}; privacy off ${latency(off.batch)}`);
  if (on.mixed && off.mixed) {
    const m = on.mixed;
    const answered = Object.values(m.statuses).reduce((a, b) => a + b, 0) || 1;
    const share = (status: string) => pct((m.statuses[status] ?? 0) / answered);
    const other = Object.entries(m.statuses).filter(([s]) => s !== 'stored' && s !== 'refused').map(([s, n]) => `${s} ${fmt(n)}`).join(', ') || 'none';
    const batches = m.result.kinds.batch ?? { requests: 0, errors: 0, p50: 0, p99: 0 };
    line(`${tag} mixed traffic (${MIXED_SHAPE}), privacy on (Candor), closed loop: ${fmt(m.answered)} events/s answered, ${fmt(rate(m.result))} stored (${share('stored')} stored, ${share('refused')} refused, others: ${other}), errors ${m.result.errors}; batches ${latency(batches)} (closed loop, for information)`);
    const consent = m.result.kinds.consent;
    if (consent) line(`${tag} mixed traffic, Candor's consent calls of first-time visitors: ${fmt(consent.requests / m.result.seconds)} requests/s (${(consent.requests / Math.max(1, batches.requests)).toFixed(1)} per batch), ${latency(consent)} (closed loop, for information), errors ${consent.errors}`);
    const mixedRatio = m.answered / off.mixed.answered;
    line(`${tag} mixed traffic, privacy off (the same batches, no consent calls, every event stored): ${fmt(off.mixed.answered)} events/s answered  | privacy-on / privacy-off, events answered ${mixedRatio.toFixed(2)}${dialect === 'sqlite' ? ` (goal ≥ 0.70 ${verdict(mixedRatio >= 0.7)})` : ''}`);
  }
  line(`${tag} raw inserts of the privacy-off server's rows into the same collect_events (rows made before the clock, 100 a statement, transactions of ${fmt(RAW_TRANSACTION_ROWS)} one after another): ${fmt(raw)} rows/s  | privacy off reaches ${pct(rate(off.batch) / raw)} of it, Candor ${pct(rate(on.batch) / raw)}`);
  line(`${tag} single-event requests: ${fmt(rate(on.single))} requests/s, ${latency(on.single)} (closed loop)${judge(`goal ≥ 5,000/s ${verdict(rate(on.single) >= 5000)}`)}; privacy off ${fmt(rate(off.single))} requests/s, ${latency(off.single)}, ratio ${(rate(on.single) / rate(off.single)).toFixed(2)}`);
  const cpuNote = dialect === 'postgres' ? " (PostgreSQL's own processes not counted)" : '';
  line(`${tag} CPU during the fastest-path runs (of 2 cores = 200%)${cpuNote}: Candor server ${pct(on.cpu.server)} + load generator ${pct(on.cpu.load)}; privacy-off server ${pct(off.cpu.server)} + load generator ${pct(off.cpu.load)}`);
}

const only = process.env.BENCH_ONLY;
if (only === 'mixed' || only === 'batch') {
  // One run alone on SQLite, the privacy-off server first: a quick comparison while working on that path.
  try {
    const off = await serverRuns('off', 'sqlite', { only });
    const on = await serverRuns('candor', 'sqlite', { only });
    if (on.batch && off.batch) {
      line(`[sqlite] fastest path, ${SECONDS} s, closed loop: Candor ${fmt(rate(on.batch))} events/s stored, ${latency(on.batch)}, errors ${on.batch.errors}; privacy off ${fmt(rate(off.batch))}, ${latency(off.batch)}  | ratio ${(rate(on.batch) / rate(off.batch)).toFixed(2)}`);
    }
    if (on.mixed && off.mixed) {
      line(`[sqlite] mixed traffic (${MIXED_SHAPE}), ${SECONDS} s, closed loop: Candor ${fmt(on.mixed.answered)} events/s answered, ${fmt(rate(on.mixed.result))} stored, errors ${on.mixed.result.errors}; privacy off ${fmt(off.mixed.answered)} answered  | ratio ${(on.mixed.answered / off.mixed.answered).toFixed(2)}`);
      const consent = on.mixed.result.kinds.consent;
      if (consent) line(`[sqlite] mixed traffic, Candor's consent calls: ${fmt(consent.requests / on.mixed.result.seconds)} requests/s, ${latency(consent)}`);
    }
  } finally {
    for (const child of children) await stopChild(child);
  }
  process.exit(0);
}

try {
  line(`bench:ingest — batches of 100 realistic events over HTTP (loopback), ${CONCURRENCY} connections, ${SECONDS} s per run, each server in its own process with npm start's Node flags (${startFlags().join(' ')}), SQLite synchronous ${SYNC}`);
  const off = await serverRuns('off', 'sqlite', { full: true });
  const on = await serverRuns('candor', 'sqlite', { full: true });
  if (process.env.BENCH_CPU_PROFILE) process.exit(0);
  const onMainThread = await serverRuns('candor', 'sqlite', { writerThread: 'off', full: false });
  const raw = await rawInserts('sqlite');
  const same = on.schema?.sql === off.schema?.sql && on.schema?.sql === raw.schema?.sql;
  line(`[sqlite] events table of all three stores (Candor's, privacy off's, raw inserts'): ${on.schema?.names ?? '?'}  | the same in all three: ${same ? 'yes' : `NO — privacy off: ${off.schema?.names ?? '?'}; raw: ${raw.schema?.names ?? '?'}`}`);
  report('sqlite', on, off, raw.rate);
  line(`[sqlite] privacy on, writer thread off (every commit on the main thread, as the privacy-off server), for information: ${fmt(rate(onMainThread.batch))} events/s, ratio ${(rate(onMainThread.batch) / rate(off.batch)).toFixed(2)}; single events ${fmt(rate(onMainThread.single))} requests/s`);
  const { steps, decisionsPerSecond, pipeline } = await stepCosts();
  for (const step of steps) line(`cost of privacy, ${step.name}, alone: ${step.us.toFixed(2)} µs/event`);
  line(`consent decisions in process (cache): ${fmt(decisionsPerSecond)}/s  | goal ≥ 1,000,000/s ${verdict(decisionsPerSecond >= 1_000_000)}`);
  for (const step of pipeline.steps) line(`pipeline step in process, ${step.name}: ${step.us.toFixed(2)} µs/event`);
  const inProcess = pipeline.total - pipeline.privacyOff;
  line(`pipeline in process (fastest path, groups of ${PIPELINE_GROUP} events one at a time, writer thread off, synchronous NORMAL): Candor ${pipeline.total.toFixed(1)} µs/event (the steps above) vs privacy off ${pipeline.privacyOff.toFixed(1)} µs/event (rows made and inserted into the same collect_events): +${inProcess.toFixed(1)} µs`);
  const perEvent = 1e6 / rate(on.batch);
  const offPerEvent = 1e6 / rate(off.batch);
  const mainThreadPerEvent = 1e6 / rate(onMainThread.batch);
  const overMainThread = mainThreadPerEvent - offPerEvent;
  line(`cost of privacy, whole pipeline over HTTP (fastest path, wall time per event): ${perEvent.toFixed(1)} µs/event vs ${offPerEvent.toFixed(1)} µs/event privacy off (+${(perEvent - offPerEvent).toFixed(1)} µs); writer thread off (all on the main thread, as in process) ${mainThreadPerEvent.toFixed(1)} µs/event (+${overMainThread.toFixed(1)} µs)`);
  line(`cost of privacy not explained by the in-process pipeline (writer thread off over HTTP +${overMainThread.toFixed(1)} µs, less the in-process +${inProcess.toFixed(1)} µs: Candor's HTTP parsing and answers, the commits' fsyncs (synchronous NORMAL in process), other group sizes, contention): ${(overMainThread - inProcess).toFixed(1)} µs/event (${pct((overMainThread - inProcess) / overMainThread)} of the difference)`);
  if (process.env.BENCH_SKIP_PG !== '1') {
    try {
      const pgOff = await serverRuns('off', 'postgres', { full: true });
      const pgOn = await serverRuns('candor', 'postgres', { full: true });
      const pgRaw = await rawInserts('postgres');
      report('postgres', pgOn, pgOff, pgRaw.rate);
    } catch (error) {
      line(`[postgres] skipped: ${(error as Error).message}`);
    }
  }
  line('for scale: the published single-node figure for RudderStack is about 1,700–3,000 events/s');
} finally {
  for (const child of children) await stopChild(child);
}
