import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it, mock } from 'node:test';
import { sql, type RawBuilder } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// A rights request is something the person did: one received, verified or completed within the inactivity period
// keeps them. Deleted for inactivity before they type the mailed code, a person who asked for erasure had their
// request closed `denied` (`subject_erased`) with none of an erasure's work done (no suppression, reduced orders kept,
// nothing in the deletion ledger) and the code then opened nothing.
describeEachDialect('the inactivity rule and a rights request made within the period', (dialect) => {
  const ctx = useKernel(dialect);
  const db = () => ctx.kernel.storage.db;
  const count = async (query: RawBuilder<unknown>) => Number(((await query.execute(db())).rows[0] as { n?: number | string } | undefined)?.n ?? 0);

  /** A person whose identify and order arrived 30 months ago, with nothing since. */
  const inactivePerson = async (userId: string, email: string) => {
    const k = ctx.kernel;
    mock.timers.enable({ apis: ['Date'], now: months(new Date(), -30).getTime() });
    try {
      const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      const profileId = r?.profileId as string;
      await k.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
      const stored = await k.collect.ingest(
        [
          { raw: { type: 'identify', userId, messageId: `${userId}-identify`, traits: { email } }, bytes: 200 },
          { raw: { type: 'track', userId, messageId: `${userId}-order`, event: 'Order Completed', properties: { order_id: `${userId}-1`, total: 30, currency: 'EUR' } }, bytes: 200 },
        ],
        undefined,
        { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR },
      );
      assert.deepEqual(stored.map((s) => s.status), ['stored', 'stored'], JSON.stringify(stored));
      return profileId;
    } finally {
      mock.timers.reset();
    }
  };
  const inactivePeople = async (now?: Date) =>
    (await ctx.kernel.retention.sweep({ dryRun: true, ...(now ? { now } : {}) })).counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);

  it('keeps a person whose erasure request waits for its code, and the code then erases them', async () => {
    const k = ctx.kernel;
    const email = `erase.me.${dialect}@candor-example.dev`;
    const profileId = await inactivePerson('u-erase-me', email);
    assert.equal(await inactivePeople(), 1);

    const { requestId } = await k.rights.start({ type: 'erasure', email, client: '10.80.0.1' });
    await k.rights.settled();
    const outbox = join(ctx.env.dataDir, 'outbox');
    const code = readdirSync(outbox).map((f) => readFileSync(join(outbox, f), 'utf8')).filter((t) => t.includes(requestId)).map((t) => /Your code is (\d{6})/.exec(t)?.[1]).find(Boolean) as string;
    assert.ok(code);

    // The hourly sweep runs before the person types the code: they stay, and so does their open request.
    const report = await k.retention.sweep({});
    assert.equal(report.counts.find((c) => c.rule === 'profiles.inactive' && c.store === 'people')?.count, 0);
    assert.equal(await k.identity.canonical(profileId), profileId);
    const state = async () => (await sql<{ state: string; denial_reason: string | null }>`SELECT state, denial_reason FROM rights_requests WHERE id = ${requestId}`.execute(db())).rows[0];
    assert.deepEqual({ ...(await state()) }, { state: 'verifying', denial_reason: null });

    // The code they type runs the erasure, with all it does.
    await k.rights.verify(requestId, code);
    await k.rights.settled();
    assert.equal((await state())?.state, 'completed');
    assert.equal(await k.identity.canonical(profileId), null);
    assert.equal(await count(sql`SELECT count(*) AS n FROM collect_events WHERE message_id = 'u-erase-me-order'`), 0);
    assert.ok((await count(sql`SELECT count(*) AS n FROM identity_suppressed`)) > 0);
    assert.equal(await count(sql`SELECT count(*) AS n FROM rights_deletion_ledger WHERE request_id = ${requestId}`), 1);
  });

  it('counts when a request was received, verified or completed, not when it was denied', async () => {
    const k = ctx.kernel;
    const email = `asks.${dialect}@candor-example.dev`;
    const profileId = await inactivePerson('u-asks', email);
    const { requestId } = await k.rights.start({ type: 'access', email, client: '10.80.0.2' });
    await k.rights.settled();
    const longAgo = months(new Date(), -30).toISOString();
    const recently = months(new Date(), -1).toISOString();
    const requestAt = (times: { state: string; received: string; verified: string | null; completed: string | null }) =>
      sql`UPDATE rights_requests SET state = ${times.state}, received_at = ${times.received}, verified_at = ${times.verified}, completed_at = ${times.completed} WHERE id = ${requestId}`.execute(db());

    await requestAt({ state: 'in_progress', received: longAgo, verified: recently, completed: null });
    assert.equal(await inactivePeople(), 0, 'verified within the period');
    await requestAt({ state: 'completed', received: longAgo, verified: longAgo, completed: recently });
    assert.equal(await inactivePeople(), 0, 'completed within the period');
    await requestAt({ state: 'denied', received: longAgo, verified: longAgo, completed: recently });
    assert.equal(await inactivePeople(), 1, 'a denial is no answer the person asked for');
    await requestAt({ state: 'received', received: recently, verified: null, completed: null });
    assert.equal(await inactivePeople(), 0, 'received within the period');
    // Once the request is as old as the period, the person goes.
    assert.equal(await inactivePeople(months(new Date(), 24)), 1);
    assert.equal(await k.identity.canonical(profileId), profileId);
  });
});
