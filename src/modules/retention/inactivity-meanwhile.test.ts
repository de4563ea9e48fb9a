import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// The inactivity rule reads who is inactive before it deletes them; each person is judged again inside the
// transaction that deletes them, with ingestion kept out: an event stored meanwhile keeps the person, their keys and
// that event.
describeEachDialect('the inactivity rule judges a person again as it deletes them', (dialect) => {
  const ctx = useKernel(dialect);
  const start = new Date();

  const resolve = async (userId: string) => {
    const [r] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    return r?.profileId as string;
  };
  const ingest = (messages: Record<string, unknown>[], receivedAt: number) =>
    ctx.kernel.collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt, actor: CLI_ACTOR });

  /**
   * Runs `meanwhile` once, after the sweep has found the inactive people (its last read: their consent history; with
   * `of`, that of this profile) and before it deletes them.
   */
  async function sweepWhile(meanwhile: () => Promise<unknown>, now: Date, of?: string) {
    const consent = ctx.kernel.consent;
    const original = consent.history.bind(consent);
    let ran = false;
    (consent as { history: typeof consent.history }).history = async (...args) => {
      const answer = await original(...args);
      if (!ran && (of === undefined || args[0] === of) && (new Error().stack ?? '').includes('profiles.retention')) {
        ran = true;
        await meanwhile();
      }
      return answer;
    };
    try {
      return { report: await ctx.kernel.retention.sweep({ now, batchSize: 10 }), ran };
    } finally {
      (consent as { history: typeof consent.history }).history = original;
    }
  }

  it('keeps a person an event arrived for between the sweep finding them inactive and deleting them', async () => {
    const profileId = await resolve('u-returning');
    await ctx.kernel.consent.record(profileId, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const [first] = await ingest([{ type: 'identify', userId: 'u-returning', messageId: 'ret-1', traits: { email: 'returning@candor-shop.dev' } }], Date.now());
    assert.equal(first?.status, 'stored', JSON.stringify(first));
    // 25 months on, the person comes back just as the sweep has found them inactive.
    const now = months(start, 25);
    let back: { status: string } | undefined;
    const { report, ran } = await sweepWhile(async () => {
      [back] = await ingest([{ type: 'identify', userId: 'u-returning', messageId: 'ret-2', traits: { email: 'back@candor-shop.dev' } }], now.getTime());
    }, now);
    assert.ok(ran);
    assert.equal(back?.status, 'stored', JSON.stringify(back));
    const people = report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
    assert.equal(people, 0, JSON.stringify(report.counts));
    // The person, the new event and their key are still there: what was answered stored stays readable (the first
    // event, 25 months old, may have gone under its own retention rule).
    assert.equal(await ctx.kernel.identity.canonical(profileId), profileId);
    const events = await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 10 });
    assert.ok(events.some((e) => e.messageId === 'ret-2'), JSON.stringify(events));
    assert.ok(JSON.stringify(events).includes('back@candor-shop.dev'));
    const deletions = (await sql<{ n: number }>`SELECT count(*) AS n FROM audit_log WHERE action IN ('retention.subject.delete', 'crypto.data_key.destroy') AND subject = ${ctx.kernel.keyring.pseudonym('subject', profileId)}`.execute(ctx.kernel.storage.db)).rows[0];
    assert.equal(Number(deletions?.n), 0);
  });

  it('still deletes a person who stayed inactive, and their key once the deletion has committed', async () => {
    const profileId = await resolve('u-gone');
    await ctx.kernel.consent.record(profileId, ['analytics.reporting'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const [first] = await ingest([{ type: 'track', userId: 'u-gone', messageId: 'gone-1', event: 'Product Viewed', properties: { product_id: 'p' } }], Date.now());
    assert.equal(first?.status, 'stored', JSON.stringify(first));
    const { report } = await sweepWhile(async () => {}, months(start, 50));
    assert.ok(report.counts.some((c) => c.rule === 'profiles.inactive' && c.store === 'people' && c.count >= 1), JSON.stringify(report.counts));
    assert.equal(await ctx.kernel.identity.canonical(profileId), null);
    const keys = (await sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id = ${profileId}`.execute(ctx.kernel.storage.db)).rows[0];
    assert.equal(Number(keys?.n), 0);
    const actions = (await sql<{ action: string }>`SELECT action FROM audit_log WHERE subject = ${ctx.kernel.keyring.pseudonym('subject', profileId)} AND action IN ('retention.subject.delete', 'crypto.data_key.destroy') ORDER BY seq`.execute(ctx.kernel.storage.db)).rows.map((r) => r.action);
    // As at an erasure: the key outlives the deleting transaction (a rollback leaves the person readable).
    assert.deepEqual(actions, ['retention.subject.delete', 'crypto.data_key.destroy']);
  });

  it('keeps a person who gave consent between the sweep finding them inactive and deleting them', async () => {
    // An order stored for the service (no consent needed), then nothing for 30 months.
    const [order] = await ingest([{ type: 'track', userId: 'u-consenting', messageId: 'cons-1', event: 'Order Completed', properties: { order_id: 'C-1', total: 20, currency: 'EUR' } }], Date.now());
    assert.equal(order?.status, 'stored', JSON.stringify(order));
    const profileId = await resolve('u-consenting');
    const longAgo = months(new Date(), -30).toISOString();
    await sql`UPDATE profiles_computed SET last_seen_at = ${longAgo}, last_received_at = ${longAgo}, last_active_day = ${longAgo.slice(0, 10)} WHERE profile_id = ${profileId}`.execute(ctx.kernel.storage.db);
    const { report, ran } = await sweepWhile(async () => {
      await ctx.kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    }, new Date());
    assert.ok(ran);
    const people = report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
    assert.equal(people, 0, JSON.stringify(report.counts));
    // The consent answered is in force for the person, who is still there.
    assert.equal(await ctx.kernel.identity.canonical(profileId), profileId);
    await ctx.kernel.consent.load([profileId]);
    assert.equal(ctx.kernel.consent.decide(profileId, 'analytics.reporting').allowed, true);
  });

  it('keeps a person who restricted processing between the sweep finding them inactive and deleting them', async () => {
    const profileId = await resolve('u-restricting');
    const [first] = await ingest([{ type: 'track', userId: 'u-restricting', messageId: 'restr-1', event: 'Order Completed', properties: { order_id: 'R-1', total: 20, currency: 'EUR' } }], Date.now());
    assert.equal(first?.status, 'stored', JSON.stringify(first));
    const longAgo = months(new Date(), -30).toISOString();
    await sql`UPDATE profiles_computed SET last_seen_at = ${longAgo}, last_received_at = ${longAgo}, last_active_day = ${longAgo.slice(0, 10)} WHERE profile_id = ${profileId}`.execute(ctx.kernel.storage.db);
    const { report, ran } = await sweepWhile(() => ctx.kernel.consent.restrict([profileId], { requestId: 'req-meanwhile' }, CLI_ACTOR), new Date(), profileId);
    assert.ok(ran);
    const people = report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
    assert.equal(people, 0, JSON.stringify(report.counts));
    assert.equal(await ctx.kernel.identity.canonical(profileId), profileId);
  });
});
