import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { SQLITE_FILE } from '../../storage/index.ts';

/** `n` calendar months after `at`. */
const months = (at: Date, n: number) => {
  const out = new Date(at.getTime());
  out.setUTCMonth(out.getUTCMonth() + n);
  return out;
};

type Report = { counts: readonly { rule: string; store: string; count: number }[] };
const count = (report: Report, rule: string, store?: string) => report.counts.filter((c) => c.rule === rule && (store === undefined || c.store === store)).reduce((n, c) => n + c.count, 0);

describeEachDialect('the inactivity rule', (dialect) => {
  const ctx = useKernel(dialect);
  const start = new Date();
  const longAgo = months(start, -30).toISOString();
  const city = `Quillfeatherton-${dialect}-${start.getTime()}`;
  let backdated = '';
  let buyer = '';

  const resolve = async (userId: string) => {
    const [r] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    return r?.profileId as string;
  };
  const consent = (profileId: string) =>
    ctx.kernel.consent.record(profileId, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
  const ingest = (messages: Record<string, unknown>[]) =>
    ctx.kernel.collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
  /** Activity of a profile that happened, and reached Candor, at `at`. */
  const receivedThen = (profileId: string, at: string) => ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, [{ profileId, at, receivedAt: at, kind: 'track' }]));
  const sweep = (now: Date) => ctx.kernel.retention.sweep({ now, batchSize: 2 });
  const event = async (messageId: string) =>
    (await sql<{ profile_id: string; data: string; data_enc: string | null; purposes: string }>`SELECT profile_id, data, data_enc, purposes FROM collect_events WHERE message_id = ${messageId}`.execute(ctx.kernel.storage.db)).rows[0];

  it('counts an event dated 30 months ago as activity when it arrives: the person stays', async () => {
    // An order is stored for the service without consent: nothing but the event keeps this person.
    const [stored] = await ingest([{ type: 'track', userId: 'u-imported', messageId: 'imported-1', timestamp: longAgo, event: 'Order Completed', properties: { order_id: 'H-1', total: 20, currency: 'EUR' } }]);
    assert.equal(stored?.status, 'stored');
    const imported = await resolve('u-imported');
    const report = await sweep(new Date());
    assert.equal(count(report, 'profiles.inactive', 'people'), 0);
    assert.equal(await ctx.kernel.identity.canonical(imported), imported);
    assert.ok(await event('imported-1'));
  });

  it('keeps a person who gave consent now and sent one event dated 30 months ago, and their consent', async () => {
    backdated = await resolve('u-backdated');
    await consent(backdated);
    const [stored] = await ingest([{ type: 'track', userId: 'u-backdated', messageId: 'backdated-1', timestamp: longAgo, event: 'Product Viewed', properties: { product_id: 'p1' } }]);
    assert.equal(stored?.status, 'stored');
    const report = await sweep(new Date());
    assert.equal(count(report, 'profiles.inactive', 'people'), 0);
    assert.equal(await ctx.kernel.identity.canonical(backdated), backdated);
    assert.equal((await ctx.kernel.consent.state(backdated))['analytics.reporting']?.state, 'given');
    // What the person's profile shows stays the event's own time.
    assert.equal((await ctx.kernel.profiles.get([backdated], { decrypt: false })).computed.lastSeenAt, longAgo);
    const [live] = await ingest([{ type: 'track', userId: 'u-backdated', messageId: 'backdated-2', event: 'Product Viewed', properties: { product_id: 'p1' } }]);
    assert.equal(live?.status, 'stored');
  });

  it('keeps a person whose last event arrived 30 months ago but who changed their consent since, and passes over them afterwards', async () => {
    const returning = await resolve('u-consent-only-since');
    await receivedThen(returning, longAgo);
    await consent(returning);
    const report = await sweep(new Date());
    assert.equal(count(report, 'profiles.inactive', 'people'), 0);
    assert.equal(await ctx.kernel.identity.canonical(returning), returning);
    // The consent change is recorded as the person's last activity: the next sweep does not look at them again.
    const [row] = (await sql<{ last_received_at: string; last_seen_at: string }>`SELECT last_received_at, last_seen_at FROM profiles_computed WHERE profile_id = ${returning}`.execute(ctx.kernel.storage.db)).rows;
    assert.ok(row && row.last_received_at > months(start, -1).toISOString(), JSON.stringify(row));
    assert.equal(row.last_seen_at, longAgo);
  });

  it('does not count a choice written again after a restore as activity: the inactive person still goes', async () => {
    const restored = await resolve('u-restored-withdrawal');
    await receivedThen(restored, longAgo);
    // What a restore writes again (Consent.reapplyAfterRestore): the person's earlier choice, mechanism import, source
    // restore:<file>.
    const states = { optOuts: [{ subject: ctx.kernel.consent.pseudonym(restored), purpose: 'analytics.reporting', state: 'withdrawn' as const, gpc: false, at: new Date().toISOString() }], restrictions: [] };
    const reapplied = await ctx.kernel.consent.reapplyAfterRestore(states, [[{ profileId: restored, members: [] }]], 'candor-2026-12-01.backup', CLI_ACTOR);
    assert.equal(reapplied.optOuts, 1);
    assert.equal((await ctx.kernel.consent.history(restored)).at(-1)?.source, 'restore:candor-2026-12-01.backup');
    const report = await sweep(new Date());
    assert.equal(count(report, 'profiles.inactive', 'people'), 1);
    assert.equal(await ctx.kernel.identity.canonical(restored), null);
  });

  it('deletes a person whose last activity reached Candor before the cutoff', async () => {
    const gone = await resolve('u-gone');
    await receivedThen(gone, longAgo);
    const report = await sweep(new Date());
    assert.equal(count(report, 'profiles.inactive', 'people'), 1);
    assert.equal(await ctx.kernel.identity.canonical(gone), null);
  });

  it('keeps an inactive person\'s reduced orders, without their personal part, until collect.events.orders deletes them', async () => {
    buyer = await resolve('u-buyer');
    await consent(buyer);
    const stored = await ingest([
      { type: 'identify', userId: 'u-buyer', messageId: 'buyer-identify', traits: { city } },
      { type: 'track', userId: 'u-buyer', messageId: 'buyer-order', event: 'Order Completed', properties: { order_id: 'A-1', total: 50, currency: 'EUR', coupon: 'X' } },
    ]);
    assert.ok(stored.every((r) => r.status === 'stored'), JSON.stringify(stored));
    // 14 months on the order is reduced; a personal order field, were the plan to declare one, stays sealed.
    const reduced = await sweep(months(start, 14));
    assert.equal(count(reduced, 'collect.events.orders.reduce'), 1);
    assert.equal(count(reduced, 'profiles.inactive', 'people'), 0);
    const sealed = await ctx.kernel.keyring.encrypt(buyer, JSON.stringify({ properties: { order_id: 'A-1' } }), 'collect.events.data');
    await sql`UPDATE collect_events SET data_enc = ${sealed} WHERE message_id = 'buyer-order'`.execute(ctx.kernel.storage.db);

    // 25 months on nobody here has been active for 24 months: every person goes, the buyer's reduced order stays.
    const report = await sweep(months(start, 25));
    assert.ok(count(report, 'profiles.inactive', 'people') >= 1);
    assert.equal(await ctx.kernel.identity.canonical(buyer), null);
    const order = await event('buyer-order');
    assert.ok(order, 'the reduced order is kept');
    assert.notEqual(order.profile_id, buyer, 'detached from the deleted person');
    assert.match(order.profile_id, /^gone_[0-9a-f]{32}$/, 'wholly random: nothing of the time it was detached');
    assert.deepEqual(JSON.parse(order.purposes), ['essential.legal_obligation']);
    assert.deepEqual(JSON.parse(order.data), { properties: { order_id: 'A-1', total: 50, currency: 'EUR' } });
    assert.equal(order.data_enc, null);
    assert.equal(await event('buyer-identify'), undefined);
    const traits = (await sql<{ n: number }>`SELECT count(*) AS n FROM profiles_traits WHERE profile_id = ${buyer}`.execute(ctx.kernel.storage.db)).rows[0];
    assert.equal(Number(traits?.n), 0);
    const deletions: string[][] = [];
    for await (const entry of ctx.kernel.audit.scan()) {
      if (entry.action !== 'retention.subject.delete') continue;
      const details = (typeof entry.details === 'string' ? JSON.parse(entry.details) : entry.details) as { stores: string[] };
      deletions.push(details.stores);
    }
    assert.ok(deletions.some((stores) => stores.some((s) => /^collect_events confirmed \d+ kept 1$/.test(s))), JSON.stringify(deletions));
  });

  it('leaves nothing of the people it deleted in SQLite\'s write-ahead log', { skip: dialect !== 'sqlite' && 'a SQLite file matter' }, async () => {
    // The buyer's city (a plain trait) was written to the log when it arrived; the sweep that deleted them moved the
    // log into the database file, whose freed pages secure_delete zeroes, and truncated it. What it wrote after (the
    // end of what it owed for the people, retention_owed) holds nothing of them.
    const main = readFileSync(join(ctx.env.dataDir, SQLITE_FILE));
    const walPath = join(ctx.env.dataDir, `${SQLITE_FILE}-wal`);
    const wal = existsSync(walPath) ? readFileSync(walPath) : Buffer.alloc(0);
    assert.ok(!wal.includes(Buffer.from(city, 'utf8')));
    assert.ok(!main.includes(Buffer.from(city, 'utf8')));
  });

  it('deletes the kept order when collect.events.orders says so', async () => {
    const late = await sweep(months(start, 12 * 7 + 1));
    // The buyer's order and the imported one, both kept when their people were deleted.
    assert.equal(count(late, 'collect.events.orders'), 2);
    assert.equal(await event('buyer-order'), undefined);
    assert.equal(await event('imported-1'), undefined);
  });
});
