// A request is answered once its own group is committed, not once the next group is: a group written on the main
// thread (PostgreSQL, and SQLite's small groups) hands nothing over, so the group before it is answered at once.
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

describeEachDialect('collect: answering a committed group', (dialect) => {
  const ctx = useKernel(dialect);
  const ingest = useIngestServer(ctx);
  before(async () => {
    for (const userId of ['u-first', 'u-slow']) await ingest.consent(userId, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
  });

  it('answers a single event when its group commits, while a slow group after it is still being written', async () => {
    // The second group's write takes 1.5 s (inside its transaction, after the first group committed).
    const { identity, profiles } = ctx.kernel;
    const resolveBatch = identity.resolveBatch.bind(identity);
    const prepare = profiles.prepare.bind(profiles);
    const firstProfile = await ingest.profileOf('user_id', 'u-first');
    let firstWritten: () => void = () => undefined;
    const firstBeingWritten = new Promise<void>((resolve) => (firstWritten = resolve));
    // The first group's write begins by loading its person's traits, before its transaction: the second request is sent
    // then, and given time to pass its checks, so that it is queued while the first group is written (on SQLite its
    // reads would otherwise wait for the first group's transaction, and it would reach the queue only once that group
    // had been answered).
    profiles.prepare = async (ids) => {
      if ([...ids].includes(firstProfile as string)) {
        firstWritten();
        // Time for the second request's checks, before this group's transaction holds the connection.
        await sleep(300);
      }
      return prepare(ids);
    };
    identity.resolveBatch = async (tx, items) => {
      if (items.some((item) => item.identifiers.some((id) => id.value === 'u-slow'))) await sleep(1500);
      return resolveBatch(tx, items);
    };
    try {
      const event = (userId: string, messageId: string) => ({ userId, messageId, event: 'Product Viewed', properties: { product_id: 'p1' } });
      const started = performance.now();
      const first = ingest.send('/v1/identify', { userId: 'u-first', messageId: 'answer-first', traits: { country: 'NL' } }).then((r) => ({ r, ms: performance.now() - started }));
      const slow = (async () => {
        // Sent while the first group is being written, so that it forms the next group.
        await firstBeingWritten;
        return ingest.send('/v1/track', event('u-slow', 'answer-slow')).then((r) => ({ r, ms: performance.now() - started }));
      })();
      const [a, b] = await Promise.all([first, slow]);
      assert.equal(a.r.statusCode, 200, a.r.body);
      assert.equal(b.r.statusCode, 200, b.r.body);
      assert.ok(b.ms >= 1500, `the slow group took ${Math.round(b.ms)} ms`);
      assert.ok(a.ms < 1000, `the first event was answered after ${Math.round(a.ms)} ms, with the slow group after it`);
    } finally {
      identity.resolveBatch = resolveBatch;
      profiles.prepare = prepare;
    }
  });
});
