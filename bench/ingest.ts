// bench:ingest — ingestion throughput and the cost of privacy, each figure beside a baseline from the same run.
//
// The machine is shared and noisy, so the ratios are the figures to trust: Candor's full pipeline (tracking plan,
// consent gate, identity, pseudonyms, encryption, durable group commit) against a privacy-off server that only
// parses and stores the same batches with the same framework and storage, and against raw inserts of the rows.
// The server runs in its own process (one core); the load generator runs here (the other core), on loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { place } from './support/place.ts';
import { loadConfig } from '../src/config/index.ts';
import { openKernel, type Kernel } from '../src/kernel.ts';
import { openStorage } from '../src/storage/index.ts';
import { CLI_ACTOR } from '../src/shared/actor.ts';
import { sortableId } from '../src/shared/random.ts';
import { makeEvent, rng } from './support/events.ts';
import { load, type LoadResult } from './support/load.ts';
import { startFlags } from './support/start-flags.ts';

const ROOT = join(import.meta.dirname, '..');
const USERS = 2000;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONCURRENCY = 16;
/** The steady load at which latency is also measured (open loop): 5,000 events/s, the top of RudderStack's published figure. */
const STEADY_BATCHES_PER_S = 50;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => `${n.toFixed(1)} ms`;
const line = (text: string) => console.log(text);
const children: ChildProcess[] = [];
const serverCpu = { candor: 0, off: 0 };
/** CPU the load generator (this process) used during the same runs, in cores. */
const loadCpu = { candor: 0, off: 0 };
const ownCpu = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
};

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

function batchBody(random: () => number, writeKey?: string) {
  return () => {
    const batch = Array.from({ length: 100 }, () => makeEvent(random, USERS));
    return { body: JSON.stringify(writeKey ? { batch, writeKey } : { batch }), events: 100 };
  };
}

const allStored = (_status: number, body: string) => !body.includes('"invalid"') && !body.includes('"refused"');

async function candorRun(dialect: 'sqlite' | 'postgres', writerThread: 'on' | 'off' = 'on'): Promise<{ batch: LoadResult; single: LoadResult; steady: LoadResult | undefined }> {
  const where = await place(dialect, 'ingest');
  try {
    const config = loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'silent' } });
    const kernel = await openKernel(config);
    const writeKey = await prepare(kernel);
    await kernel.close();
    const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`, '--cpu-prof-name=candor.cpuprofile'] : [];
    const { child, url } = await startChild([...profile, ...startFlags(), 'bin/candor.js', 'serve', '--port', '0'], { CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'warn', CANDOR_SQLITE_SYNCHRONOUS: process.env.BENCH_SYNC ?? 'FULL', CANDOR_SQLITE_WRITER_THREAD: writerThread });
    const headers = { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` };
    const random = rng(7);
    await load({ url: `${url}/v1/batch`, headers, concurrency: CONCURRENCY, seconds: 1, makeBody: batchBody(random) });
    const cpuBefore = cpuSeconds(child.pid);
    const ownBefore = process.cpuUsage();
    const batch = await load({ url: `${url}/v1/batch`, headers, concurrency: CONCURRENCY, seconds: SECONDS, makeBody: batchBody(random), check: allStored });
    serverCpu.candor = (cpuSeconds(child.pid) - cpuBefore) / batch.seconds;
    loadCpu.candor = ownCpu(ownBefore) / batch.seconds;
    const steady = dialect === 'sqlite' && writerThread === 'on' ? await steadyRun(url, headers, random, allStored) : undefined;
    // Single events get a second of warm-up too (a code path of its own), on both servers.
    await load({ url: `${url}/v1/track`, headers, concurrency: CONCURRENCY, seconds: 1, makeBody: singleBody(random) });
    const single = await load({
      url: `${url}/v1/track`,
      headers,
      concurrency: CONCURRENCY,
      seconds: Math.max(3, SECONDS / 2),
      makeBody: singleBody(random),
      check: allStored,
    });
    await stopChild(child);
    return { batch, single, steady };
  } finally {
    await where.drop();
  }
}

/** Latency at a steady load (STEADY_BATCHES_PER_S batches of 100 a second, sent on schedule whatever the answers). */
function steadyRun(url: string, headers: Record<string, string>, random: () => number, check?: (status: number, body: string) => boolean): Promise<LoadResult> {
  return load({ url: `${url}/v1/batch`, headers, concurrency: CONCURRENCY * 4, seconds: SECONDS, rate: STEADY_BATCHES_PER_S, makeBody: batchBody(random), ...(check ? { check } : {}) });
}

/** Single-event requests, the same for both servers (a product view as a track call). */
function singleBody(random: () => number) {
  return () => ({ body: JSON.stringify({ ...makeEvent(random, USERS), type: undefined, event: 'Product Viewed', properties: { product_id: 'p-1', price: 10 } }), events: 1 });
}

async function privacyOffRun(dialect: 'sqlite' | 'postgres'): Promise<{ batch: LoadResult; single: LoadResult; steady: LoadResult | undefined }> {
  const where = await place(dialect, 'ingest');
  try {
    const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`, '--cpu-prof-name=privacy-off.cpuprofile'] : [];
    const { child, url } = await startChild([...profile, 'bench/support/privacy-off-server.ts', where.dataDir, where.databaseUrl], {});
    const random = rng(7);
    await load({ url: `${url}/v1/batch`, headers: {}, concurrency: CONCURRENCY, seconds: 1, makeBody: batchBody(random) });
    const cpuBefore = cpuSeconds(child.pid);
    const ownBefore = process.cpuUsage();
    const result = await load({ url: `${url}/v1/batch`, headers: {}, concurrency: CONCURRENCY, seconds: SECONDS, makeBody: batchBody(random) });
    serverCpu.off = (cpuSeconds(child.pid) - cpuBefore) / result.seconds;
    loadCpu.off = ownCpu(ownBefore) / result.seconds;
    const steady = dialect === 'sqlite' ? await steadyRun(url, {}, random) : undefined;
    await load({ url: `${url}/v1/track`, headers: {}, concurrency: CONCURRENCY, seconds: 1, makeBody: singleBody(random) });
    const single = await load({ url: `${url}/v1/track`, headers: {}, concurrency: CONCURRENCY, seconds: Math.max(3, SECONDS / 2), makeBody: singleBody(random) });
    await stopChild(child);
    return { batch: result, single, steady };
  } finally {
    await where.drop();
  }
}

/**
 * Raw inserts of rows shaped like stored events, with the keys of `collect_events` (time-sortable id, duplicate key
 * by source, sender's time and messageId, per-person and time indexes), in transactions of 1,600 rows (what one
 * group commit writes): SQLite's floor for storing Candor's events on this machine.
 */
async function rawInserts(): Promise<number> {
  const where = await place('sqlite', 'ingest');
  try {
    const storage = await openStorage({ dataDir: where.dataDir, databaseUrl: '', sqliteSynchronous: 'FULL' });
    await sql`CREATE TABLE raw_events (id TEXT PRIMARY KEY, source TEXT, message_id TEXT, profile_id TEXT, kind TEXT, event TEXT, occurred_at TEXT, received_at TEXT, purposes TEXT, data TEXT, data_enc TEXT, dedup_at TEXT, UNIQUE (source, dedup_at, message_id))`.execute(storage.db);
    await sql`CREATE INDEX raw_events_profile ON raw_events (profile_id, occurred_at)`.execute(storage.db);
    await sql`CREATE INDEX raw_events_occurred ON raw_events (occurred_at, id)`.execute(storage.db);
    const random = rng(3);
    const sample = Array.from({ length: 1600 }, () => makeEvent(random, USERS));
    const text = 'INSERT INTO raw_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
    let n = 0;
    const started = performance.now();
    while (performance.now() - started < 3000) {
      await storage.raw.transaction(async (tx) => {
        for (const event of sample) {
          n++;
          const at = new Date().toISOString();
          await tx.run(text, [sortableId('evt_'), 'web', randomUUID(), `prf_${String(event.userId)}`, 'track', 'Product Viewed', at, at, '["analytics.reporting"]', JSON.stringify(event), null, at]);
        }
      });
    }
    const rate = n / ((performance.now() - started) / 1000);
    await storage.close();
    return rate;
  } finally {
    await where.drop();
  }
}

/** Time per event of each privacy step, in process. */
async function stepCosts(): Promise<{ name: string; us: number }[]> {
  const where = await place('sqlite', 'ingest');
  const config = loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_LOG_LEVEL: 'silent', CANDOR_SQLITE_SYNCHRONOUS: 'NORMAL' } });
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
    steps.push({ name: 'consent decisions per second', us: 1e6 / decisions.us });
    return steps;
  } finally {
    await kernel.close();
    await where.drop();
  }
}

try {
  line(`bench:ingest — batches of 100 realistic events, ${CONCURRENCY} connections, ${SECONDS} s per run, server in its own process`);
  const offRuns = await privacyOffRun('sqlite');
  const off = offRuns.batch;
  const on = await candorRun('sqlite');
  if (process.env.BENCH_CPU_PROFILE) process.exit(0);
  const cpuOn = { server: serverCpu.candor, load: loadCpu.candor };
  const onMainThread = await candorRun('sqlite', 'off');
  serverCpu.candor = cpuOn.server;
  loadCpu.candor = cpuOn.load;
  const raw = await rawInserts();
  const ratio = on.batch.events / on.batch.seconds / (off.events / off.seconds);
  const rate = (r: LoadResult) => r.events / r.seconds;
  line(`[sqlite] privacy on (Candor): ${fmt(rate(on.batch))} events/s, p50 ${ms(on.batch.p50)}, p99 ${ms(on.batch.p99)}, errors ${on.batch.errors}  | goal ≥ 50,000 events/s ${rate(on.batch) >= 50_000 ? 'PASS' : 'FAIL'}, p99 ≤ 50 ms ${on.batch.p99 <= 50 ? 'PASS' : 'FAIL'}`);
  line(`[sqlite] privacy off (parse + store, same keys): ${fmt(rate(off))} events/s, p50 ${ms(off.p50)}, p99 ${ms(off.p99)}  | privacy-on / privacy-off ${ratio.toFixed(2)} (goal ≥ 0.70 ${ratio >= 0.7 ? 'PASS' : 'FAIL'})`);
  if (on.steady && offRuns.steady) {
    const steady = (r: LoadResult) => `${fmt(rate(r))} events/s, p50 ${ms(r.p50)}, p99 ${ms(r.p99)}, errors ${r.errors}`;
    line(`[sqlite] at a steady ${fmt(STEADY_BATCHES_PER_S * 100)} events/s (${STEADY_BATCHES_PER_S} batches of 100 a second on schedule, latency from each one's scheduled time): Candor ${steady(on.steady)}; privacy off ${steady(offRuns.steady)}  | for information: the p99 goal is stated at ≥ 50,000 events/s, above`);
  }
  line(`[sqlite] privacy on, writer thread off (every commit on the main thread, as the privacy-off server): ${fmt(rate(onMainThread.batch))} events/s, ratio ${(rate(onMainThread.batch) / rate(off)).toFixed(2)}; single events ${fmt(rate(onMainThread.single))} requests/s`);
  const pct = (n: number) => `${(n * 100).toFixed(0)}%`;
  line(`[sqlite] CPU during the runs (of 2 cores = 200%): Candor server ${pct(serverCpu.candor)} + load generator ${pct(loadCpu.candor)}; privacy-off server ${pct(serverCpu.off)} + load generator ${pct(loadCpu.off)}`);
  line(`[sqlite] raw inserts of the same rows with collect_events' keys (transactions of 1,600): ${fmt(raw)} rows/s`);
  line(`[sqlite] single-event requests: ${fmt(rate(on.single))} requests/s, p50 ${ms(on.single.p50)}, p99 ${ms(on.single.p99)}  | goal ≥ 5,000/s ${rate(on.single) >= 5000 ? 'PASS' : 'FAIL'}; privacy off ${fmt(rate(offRuns.single))} requests/s, ratio ${(rate(on.single) / rate(offRuns.single)).toFixed(2)}`);
  const steps = await stepCosts();
  const perEvent = 1e6 / rate(on.batch);
  const offPerEvent = 1e6 / rate(off);
  for (const step of steps) {
    if (step.name === 'consent decisions per second') line(`consent decisions in process (cache): ${fmt(step.us)}/s  | goal ≥ 1,000,000/s ${step.us >= 1_000_000 ? 'PASS' : 'FAIL'}`);
    else line(`cost of privacy, ${step.name}: ${step.us.toFixed(2)} µs/event`);
  }
  line(`cost of privacy, whole pipeline over HTTP: ${perEvent.toFixed(1)} µs/event vs ${offPerEvent.toFixed(1)} µs/event privacy off (+${(perEvent - offPerEvent).toFixed(1)} µs)`);
  if (process.env.BENCH_SKIP_PG !== '1') {
    try {
      const pgOffRuns = await privacyOffRun('postgres');
      const pgOff = pgOffRuns.batch;
      const pgOn = await candorRun('postgres');
      line(`[postgres] privacy on (Candor): ${fmt(rate(pgOn.batch))} events/s, p50 ${ms(pgOn.batch.p50)}, p99 ${ms(pgOn.batch.p99)}  | privacy off: ${fmt(rate(pgOff))} events/s, ratio ${(rate(pgOn.batch) / rate(pgOff)).toFixed(2)}`);
      line(`[postgres] CPU of the Node servers during the runs (PostgreSQL's own processes not counted): Candor ${pct(serverCpu.candor)}, privacy off ${pct(serverCpu.off)}`);
      line(`[postgres] single-event requests: ${fmt(rate(pgOn.single))} requests/s, p99 ${ms(pgOn.single.p99)}  | privacy off ${fmt(rate(pgOffRuns.single))} requests/s`);
    } catch (error) {
      line(`[postgres] skipped: ${(error as Error).message}`);
    }
  }
  line('for scale: the published single-node figure for RudderStack is about 1,700–3,000 events/s');
} finally {
  for (const child of children) await stopChild(child);
}
