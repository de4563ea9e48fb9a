// Where a server's CPU goes under load, per thread: `node bench/support/thread-cpu.ts [candor|off] [seconds] [batch|single|consent]`.
// Starts the server as bench:ingest does (Candor or the privacy-off baseline), sends batches of 100 events (or single
// track calls, or `consent`: a new visitor's banner choice per request) from 16 connections, and reads every
// thread's CPU time (user and kernel) from /proc before and after:
// CPU per event is steadier than throughput on a shared machine. Options: BENCH_CPU_PROFILE=dir writes a CPU profile of
// the server (from start-up); STRACE=file counts the server's system calls during the measured run (strace -c -f);
// BENCH_SYNC=NORMAL runs SQLite without a sync per commit; BENCH_DIALECT=postgres stores in PostgreSQL; NODE_FLAGS='--trace-gc …' adds Node/V8 flags to Candor's
// server (after those of `npm start`) and CHILD_OUT=file keeps what the server prints (such as the GC trace);
// BENCH_CONN=n measures with n connections instead of 16; BENCH_PREFILL=n stores n events (of the same 2,000 people, over
// the last 90 days, straight into collect_events) before the server starts, to measure against a grown store.
// STRACE_PAGES=file records the server's pwrite64 calls with their first four bytes (a WAL frame header's page number)
// and BENCH_KEEP=1 keeps the data directory: bench/support/wal-pages.ts then tells which table or index each page is.
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/index.ts';
import { openKernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { makeEvent, rng } from './events.ts';
import { load } from './load.ts';
import { place } from './place.ts';
import { startFlags } from './start-flags.ts';

const [which = 'candor', secondsArg = '6', shape = 'batch'] = process.argv.slice(2);
const seconds = Number(secondsArg);
const USERS = 2000;
const ROOT = join(import.meta.dirname, '..', '..');

function threads(pid: number): Map<string, { name: string; cpu: number; sys: number }> {
  const out = new Map<string, { name: string; cpu: number; sys: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { name, cpu: (Number(fields[11]) + Number(fields[12])) / 100, sys: Number(fields[12]) / 100 });
    } catch {
      // the thread ended
    }
  }
  return out;
}

const dialect = process.env.BENCH_DIALECT === 'postgres' ? 'postgres' : 'sqlite';
const where = await place(dialect, 'threads');
try {
  let writeKey = '';
  if (which === 'candor') {
    const kernel = await openKernel(loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'silent' } }));
    const items = Array.from({ length: USERS }, (_, i) => ({ identifiers: [{ type: 'user_id', value: `user-${i}` }, { type: 'anonymous_id', value: `anon-${i}` }], source: 'web', at: new Date().toISOString() }));
    const resolved = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, items));
    for (const r of resolved) await kernel.consent.record(r.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    writeKey = (await kernel.access.createWriteKey('web', 'bench', CLI_ACTOR)).secret;
    if (process.env.BENCH_PREFILL) {
      // A store that has grown: synthetic events of the same people over the last 90 days, written straight to the table.
      const total = Number(process.env.BENCH_PREFILL);
      const profiles = resolved.map((r) => r.profileId as string);
      const row = '(?,?,?,?,?,?,?,?,?,?,?,?,?)';
      const text = `INSERT INTO collect_events (id, source, message_id, profile_id, kind, event, occurred_at, received_at, purposes, data, data_enc, plan_version, dedup_at) VALUES ${Array.from({ length: 100 }, () => row).join(',')}`;
      const start = Date.now() - 90 * 86_400_000;
      let n = 0;
      while (n < total) {
        await kernel.storage.raw.transaction(async (tx) => {
          for (let k = 0; k < 100 && n < total; k++) {
            const params: unknown[] = [];
            for (let j = 0; j < 100; j++, n++) {
              const at = new Date(start + (n / total) * 90 * 86_400_000).toISOString();
              params.push(`evt_${at.replace(/\D/g, '')}${randomBytes(6).toString('hex')}`, 'web', randomUUID(), profiles[Math.floor(Math.random() * profiles.length)], 'track', 'Product Viewed', at, at, '["analytics.reporting"]', '{"properties":{"product_id":"p-1","price":10}}', randomBytes(200).toString('base64'), 1, at);
            }
            await tx.run(text, params);
          }
        });
      }
    }
    await kernel.close();
  }
  const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`, `--cpu-prof-name=${which}.cpuprofile`] : [];
  const args = which === 'candor' ? [...profile, ...startFlags(), ...(process.env.NODE_FLAGS ? process.env.NODE_FLAGS.split(' ') : []), 'bin/candor.js', 'serve', '--port', '0'] : [...profile, ...startFlags(), 'bench/support/privacy-off-server.ts', where.dataDir, where.databaseUrl, process.env.BENCH_SYNC ?? 'FULL'];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', CANDOR_DATA_DIR: where.dataDir, CANDOR_DATABASE_URL: where.databaseUrl, CANDOR_LOG_LEVEL: 'warn', ...(process.env.BENCH_SYNC ? { CANDOR_SQLITE_SYNCHRONOUS: process.env.BENCH_SYNC } : {}) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (process.env.CHILD_OUT) appendFileSync(process.env.CHILD_OUT, chunk);
      out += chunk.toString();
      const found = /listening on (http:\/\/[0-9.:]+)/.exec(out)?.[1];
      if (found) resolve(found);
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  const headers: Record<string, string> = writeKey ? { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` } : {};
  const random = rng(7);
  const single = shape === 'single';
  // Consent: every request a new visitor's banner choice (a profile made for its anonymous id, then the choice recorded).
  let visitor = 0;
  const makeBody =
    shape === 'consent'
      ? () => ({ body: JSON.stringify({ anonymousId: `visitor-${process.pid}-${visitor++}`, purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' }, mechanism: 'banner_accept' }), events: 1 })
      : single
        ? () => ({ body: JSON.stringify({ ...makeEvent(random, USERS), type: undefined, event: 'Product Viewed', properties: { product_id: 'p-1', price: 10 } }), events: 1 })
        : () => ({ body: JSON.stringify({ batch: Array.from({ length: 100 }, () => makeEvent(random, USERS)) }), events: 100 });
  const path = shape === 'consent' ? '/v1/consent' : single ? '/v1/track' : '/v1/batch';
  // Batches first, as in bench:ingest: everyone has a data key and stored traits before the measured run.
  const batchBody = () => ({ body: JSON.stringify({ batch: Array.from({ length: 100 }, () => makeEvent(random, USERS)) }), events: 100 });
  await load({ url: `${url}/v1/batch`, headers, concurrency: 16, seconds: 2, makeBody: batchBody });
  await load({ url: `${url}${path}`, headers, concurrency: 16, seconds: 1, makeBody });
  const traceArgs = process.env.STRACE_PAGES ? ['-f', '-e', 'trace=pwrite64', '-s', '4', '-xx', '-o', process.env.STRACE_PAGES] : ['-c', '-f', '-o', process.env.STRACE ?? ''];
  const tracer = process.env.STRACE || process.env.STRACE_PAGES ? spawn('strace', [...traceArgs, '-p', String(child.pid)], { stdio: 'ignore' }) : undefined;
  const before = threads(child.pid as number);
  const result = await load({ url: `${url}${path}`, headers, concurrency: Number(process.env.BENCH_CONN ?? 16), seconds, makeBody });
  const after = threads(child.pid as number);
  if (tracer) {
    tracer.kill('SIGINT');
    await new Promise((resolve) => tracer.once('exit', resolve));
  }
  const rate = result.events / result.seconds;
  console.log(`${which}: ${Math.round(rate)} events/s, p50 ${result.p50.toFixed(0)} ms, p99 ${result.p99.toFixed(0)} ms, errors ${result.errors}`);
  const byName = new Map<string, { cpu: number; sys: number }>();
  for (const [tid, a] of after) {
    const name = a.name + (tid === String(child.pid) ? ' (main)' : '');
    const sum = byName.get(name) ?? { cpu: 0, sys: 0 };
    sum.cpu += a.cpu - (before.get(tid)?.cpu ?? 0);
    sum.sys += a.sys - (before.get(tid)?.sys ?? 0);
    byName.set(name, sum);
  }
  let total = 0;
  for (const [name, { cpu, sys }] of [...byName].sort((x, y) => y[1].cpu - x[1].cpu)) {
    total += cpu;
    if (cpu > 0) console.log(`  ${name.padEnd(24)} ${((cpu / result.seconds) * 100).toFixed(0).padStart(4)}% of a core, ${((cpu * 1e6) / result.events).toFixed(1)} µs/event (${((sys * 1e6) / result.events).toFixed(1)} of it in the kernel)`);
  }
  console.log(`  ${'all threads'.padEnd(24)} ${((total / result.seconds) * 100).toFixed(0).padStart(4)}% of a core, ${((total * 1e6) / result.events).toFixed(1)} µs/event`);
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
} finally {
  if (process.env.BENCH_KEEP) console.log(`kept: ${where.dataDir}`);
  else await where.drop();
}
