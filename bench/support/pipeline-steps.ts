// Where Candor's pipeline spends its time, step by step, in process (no HTTP): groups of events are ingested one at a
// time (kernel.collect.ingest, as the server calls it; 800 events make one group commit of Candor's largest size, as
// under load) while the kernel's own methods are timed where the pipeline calls them. A step called inside another step counts for the outer one (the data keys profiles.prepare loads count
// for "keys and stored traits prepared"), but for the store transaction: the steps inside it (identity resolution,
// traits, computed traits) count for themselves and the transaction keeps the rest (the events' insert, the erasure
// check, counts, the commit). What no timed method covers (parsing, the consent gate's field split, the group commit,
// building the answers) is the pipeline's rest. The same groups stored the privacy-off server's way (rows made from
// the messages, inserted 100 a statement into the same collect_events, one transaction a group) give the in-process
// baseline. Run with the writer thread off, so that the store transaction is timed where it runs.
import type { Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { openStorage } from '../../src/storage/index.ts';
import { createEventsStore, eventsInserter, plainRow } from './events-store.ts';
import { place } from './place.ts';

export interface StepTimes {
  /** µs per event of each step, in the order the pipeline first calls them; the last is the pipeline's rest. */
  steps: { name: string; us: number }[];
  /** µs per event of the whole ingest call. */
  total: number;
  /** µs per event of the same kind of groups stored with no privacy step (in process). */
  privacyOff: number;
}

interface Frame {
  container: boolean;
  inner: number;
}

type Method = (...args: unknown[]) => unknown;

/**
 * Times Candor's pipeline on `kernel` (prepared: the people of `makeGroup`'s events known, their consent recorded) for
 * `seconds`, then the privacy-off storing of the same kind of groups. The kernel's methods stay wrapped: use the
 * kernel for nothing else afterwards.
 */
export async function pipelineSteps(kernel: Kernel, makeGroup: () => Record<string, unknown>[], seconds: number): Promise<StepTimes> {
  const spent = new Map<string, number>();
  const stack: Frame[] = [];
  const wrap = (target: object, method: string, step: string, container = false) => {
    const owner = target as Record<string, Method>;
    const original = owner[method] as Method;
    spent.set(step, 0);
    owner[method] = function (this: unknown, ...args: unknown[]) {
      const top = stack[stack.length - 1];
      if (top && !top.container) return original.apply(this, args);
      const frame: Frame = { container, inner: 0 };
      stack.push(frame);
      const started = performance.now();
      const done = () => {
        const elapsed = performance.now() - started;
        stack.splice(stack.lastIndexOf(frame), 1);
        spent.set(step, (spent.get(step) ?? 0) + elapsed - frame.inner);
        const parent = stack[stack.length - 1];
        if (parent) parent.inner += elapsed;
      };
      let result: unknown;
      try {
        result = original.apply(this, args);
      } catch (error) {
        done();
        throw error;
      }
      if (result instanceof Promise) return result.finally(done);
      done();
      return result;
    };
  };
  const { catalog, identity, consent, keyring, profiles, storage } = kernel;
  wrap(catalog, 'process', 'tracking plan: validate + minimize');
  wrap(identity, 'isSuppressedBatch', 'suppression check');
  wrap(identity, 'lookupBatch', 'identity lookup');
  wrap(consent, 'load', 'consent load');
  wrap(consent, 'allowedPurposes', 'consent decisions');
  wrap(consent, 'decide', 'consent decisions');
  wrap(keyring, 'encryptPrepared', 'encryption (one envelope per event)');
  wrap(keyring, 'prepare', 'data keys and stored traits prepared');
  wrap(profiles, 'prepare', 'data keys and stored traits prepared');
  wrap(storage.raw, 'transaction', 'store transaction: events insert, erasure check, counts, commit', true);
  wrap(identity, 'resolveBatch', 'identity resolution');
  wrap(identity, 'canonicalsIn', 'traits written (with the person read)');
  wrap(identity, 'membersIn', 'traits written (with the person read)');
  wrap(profiles, 'setTraitsBatch', 'traits written (with the person read)');
  wrap(profiles, 'recordActivityBatch', 'computed traits written');

  /** Groups made and handed to `work` one at a time, until `ms` of work was timed: the time taken and the events. */
  const timeGroups = async (ms: number, work: (group: Record<string, unknown>[]) => Promise<unknown>) => {
    let total = 0;
    let events = 0;
    while (total < ms) {
      const group = makeGroup();
      const started = performance.now();
      await work(group);
      total += performance.now() - started;
      events += group.length;
    }
    return { total, events };
  };
  const context = { source: 'web', gpc: false, actor: CLI_ACTOR };
  const run = (ms: number) => timeGroups(ms, (group) => kernel.collect.ingest(group.map((raw) => ({ raw, bytes: 1000 })), undefined, { ...context, receivedAt: Date.now() }));
  await run(500);
  for (const step of spent.keys()) spent.set(step, 0);
  const candor = await run(seconds * 1000);
  const perEvent = (ms: number) => (ms * 1000) / candor.events;
  const steps = [...spent].map(([name, ms]) => ({ name, us: perEvent(ms) }));
  const timed = steps.reduce((sum, s) => sum + s.us, 0);
  steps.push({ name: 'the rest (parsing, consent gate and field split, group commit, answers)', us: perEvent(candor.total) - timed });

  // The privacy-off server's work on the same kind of groups: rows made, inserted into the same collect_events.
  const where = await place('sqlite', 'steps-off');
  const plain = await openStorage({ dataDir: where.dataDir, databaseUrl: '', sqliteSynchronous: kernel.config.sqliteSynchronous });
  try {
    await createEventsStore(plain);
    const insert = eventsInserter(plain);
    const store = async (ms: number) => {
      const { total, events } = await timeGroups(ms, (group) => {
        const receivedAt = new Date().toISOString();
        const rows = group.map((m) => plainRow(m, receivedAt));
        return plain.raw.transaction((tx) => insert(tx, rows));
      });
      return (total * 1000) / events;
    };
    await store(300);
    return { steps, total: perEvent(candor.total), privacyOff: await store(Math.max(1000, (seconds * 1000) / 2)) };
  } finally {
    await plain.close();
    await where.drop();
  }
}
