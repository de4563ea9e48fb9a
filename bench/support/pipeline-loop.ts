// In-process ingestion loop (no HTTP): the Candor pipeline fed pre-parsed batches from `concurrency` callers, for
// profiling where its time goes. `node bench/support/pipeline-loop.ts [seconds]`; add --cpu-prof to profile, or
// `--import ./bench/support/alloc-probe.ts` for where its memory is allocated. BATCH=n: events per call (default 100);
// MIXED=1: mixed traffic.
import type { AllocationHooks } from './alloc-probe.ts';
import { loadConfig } from '../../src/config/index.ts';
import { openKernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { makeEvent, rng } from './events.ts';
import { mixedTraffic } from './mixed.ts';
import { place } from './place.ts';

const USERS = 2000;
const seconds = Number(process.argv[2] ?? 5);
const where = await place('sqlite', 'loop');
const config = loadConfig({ environment: { CANDOR_DATA_DIR: where.dataDir, CANDOR_LOG_LEVEL: 'silent', CANDOR_SQLITE_SYNCHRONOUS: process.env.BENCH_SYNC ?? 'FULL' } });
const kernel = await openKernel(config);
const items = Array.from({ length: USERS }, (_, i) => ({ identifiers: [{ type: 'user_id', value: `user-${i}` }, { type: 'anonymous_id', value: `anon-${i}` }], source: 'web', at: new Date().toISOString() }));
const resolved = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, items));
for (const r of resolved) await kernel.consent.record(r.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
await kernel.keyring.prepare(resolved.map((r) => r.profileId as string));
const random = rng(7);
const bodies = Array.from({ length: 200 }, () => JSON.stringify(Array.from({ length: Number(process.env.BATCH ?? 100) }, () => makeEvent(random, USERS))));
const context = { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR };
let events = 0;
let n = 0;
// MIXED=1: bench:ingest's mixed traffic (support/mixed.ts) without its consent calls, made as it goes (new devices and
// visitors every batch); every event answered counts, refused ones included.
const mixed = process.env.MIXED === '1' ? mixedTraffic(random, USERS, false) : undefined;
const run = async (until: number) => {
  while (performance.now() < until) {
    const batch = mixed ? (JSON.parse(mixed.next().body) as { batch: Record<string, unknown>[] }).batch : (JSON.parse(bodies[n++ % bodies.length] as string) as Record<string, unknown>[]);
    if (!mixed) for (const m of batch) m.messageId = `${n}-${m.messageId as string}`;
    const results = await kernel.collect.ingest(batch.map((raw) => ({ raw, bytes: 1000 })), undefined, { ...context, receivedAt: Date.now() });
    events += mixed ? results.length : results.filter((r) => r.status === 'stored').length;
  }
};
await run(performance.now() + 1000);
const allocation = (globalThis as { allocationHooks?: AllocationHooks }).allocationHooks;
await allocation?.start();
events = 0;
const started = performance.now();
const cpu = process.cpuUsage();
const elu = performance.eventLoopUtilization();
await Promise.all(Array.from({ length: 16 }, () => run(started + seconds * 1000)));
const elapsed = (performance.now() - started) / 1000;
const used = process.cpuUsage(cpu);
// The main thread's busy time per event (its event loop's active time): less noisy than throughput on a shared machine.
const mainBusy = performance.eventLoopUtilization(elu).active;
console.log(`${Math.round(events / elapsed)} events/s, ${((1e6 * elapsed) / events).toFixed(1)} µs/event wall, main thread busy ${((1000 * mainBusy) / events).toFixed(1)} µs/event, cpu ${(((used.user + used.system) / 1e6 / elapsed) * 100).toFixed(0)}%`);
await allocation?.stop(events);
await kernel.close();
await where.drop();
