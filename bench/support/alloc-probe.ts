// Where a loop's memory is allocated: `node --import ./bench/support/alloc-probe.ts bench/support/pipeline-loop.ts 5`
// samples every allocation of the measured run (after the warm-up, including objects collected since: V8's sampling
// heap profiler with includeObjectsCollectedBy{Major,Minor}GC) and writes ALLOC_PROFILE (default
// /tmp/alloc.heapprofile), which Chrome DevTools' Memory tab opens. Allocation per event is steadier than time on a
// shared machine, as it does not depend on the load.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

const session = new Session();
session.connect();
await session.post('HeapProfiler.enable');

/** The hooks pipeline-loop.ts calls around its measured run when this module is loaded first. */
export interface AllocationHooks {
  start(): Promise<void>;
  /** Writes the profile and prints the bytes allocated per event (an estimate from the samples). */
  stop(events: number): Promise<void>;
}

const hooks: AllocationHooks = {
  async start() {
    // Options of newer V8 than @types/node describes.
    await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as { samplingInterval: number });
  },
  async stop(events) {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    const file = process.env.ALLOC_PROFILE ?? '/tmp/alloc.heapprofile';
    writeFileSync(file, JSON.stringify(profile));
    type Node = { selfSize: number; children: Node[] };
    const total = (node: Node): number => node.children.reduce((sum, child) => sum + total(child), node.selfSize);
    console.log(`allocated ${Math.round(total(profile.head as Node) / Math.max(1, events)).toLocaleString('en-US')} bytes/event (sampled estimate); profile in ${file}`);
  },
};
(globalThis as { allocationHooks?: AllocationHooks }).allocationHooks = hooks;
