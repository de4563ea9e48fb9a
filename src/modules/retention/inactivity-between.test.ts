import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// An ingestion group written the two-transaction way (here: a message with the GPC signal, recorded between them)
// resolves its person in the first transaction and stores in the second. An inactivity deletion committed in between
// (it suppresses no identifier) leaves the message unstored: answered suppressed, nothing kept for the deleted profile.
describeEachDialect("the inactivity rule between an ingestion group's two transactions", (dialect) => {
  const ctx = useKernel(dialect);
  const start = new Date();

  it('stores no event for the person the sweep deleted after the group resolved them', async () => {
    const k = ctx.kernel;
    const ingest = (messages: Record<string, unknown>[], receivedAt: number, gpc: boolean) =>
      k.collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc, receivedAt, actor: CLI_ACTOR });
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-between' }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const [first] = await ingest([{ type: 'identify', userId: 'u-between', messageId: 'bt-1', traits: { email: 'between@candor-shop.dev' } }], Date.now(), false);
    assert.equal(first?.status, 'stored', JSON.stringify(first));

    const now = months(start, 25);
    const consent = k.consent;
    const original = consent.recordGpcEach.bind(consent);
    let deleted = -1;
    (consent as { recordGpcEach: typeof consent.recordGpcEach }).recordGpcEach = async (...args) => {
      const answer = await original(...args);
      if (deleted < 0) deleted = (await k.retention.sweep({ now, batchSize: 10 })).counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
      return answer;
    };
    let back;
    try {
      [back] = await ingest([{ type: 'track', userId: 'u-between', messageId: 'bt-2', event: 'Product Viewed', properties: { product_id: 'p-1' } }], Date.now(), true);
    } finally {
      (consent as { recordGpcEach: typeof consent.recordGpcEach }).recordGpcEach = original;
    }
    assert.equal(deleted, 1);
    assert.equal(await k.identity.canonical(profileId), null);
    assert.deepEqual([back?.status, back?.code], ['suppressed', 'COLLECT_SUBJECT_SUPPRESSED'], JSON.stringify(back));
    const events = (await sql<{ message_id: string }>`SELECT message_id FROM collect_events WHERE profile_id = ${profileId}`.execute(k.storage.db)).rows;
    assert.deepEqual(events, []);
    const computed = (await sql<{ n: number }>`SELECT count(*) AS n FROM profiles_computed WHERE profile_id = ${profileId}`.execute(k.storage.db)).rows[0];
    assert.equal(Number(computed?.n), 0);
  });
});
