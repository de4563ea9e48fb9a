import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

const DAY = 86_400_000;
/** `n` calendar months after `at`. */
const months = (at: Date, n: number) => {
  const out = new Date(at.getTime());
  out.setUTCMonth(out.getUTCMonth() + n);
  return out;
};

type EventRow = { id: string; profile_id: string; kind: string; event: string | null; data: string; data_enc: string | null; purposes: string };

async function ingest(kernel: Kernel, messages: Record<string, unknown>[]) {
  const results = await kernel.collect.ingest(
    messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })),
    undefined,
    { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR },
  );
  return results;
}

async function person(kernel: Kernel, userId: string): Promise<string> {
  const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  const profileId = r?.profileId as string;
  await kernel.consent.record(
    profileId,
    ['analytics.reporting', 'personalize.profiling', 'personalize.content.limited', 'fairness_audit', 'marketing.communications.email'].map((purpose) => ({ purpose, state: 'given' as const })),
    { mechanism: 'banner_accept' },
    CLI_ACTOR,
  );
  return profileId;
}

const events = (userId: string, at: Date, tag: string) => {
  const timestamp = at.toISOString();
  return [
    { type: 'track', userId, messageId: `${tag}-view`, timestamp, event: 'Product Viewed', properties: { product_id: 'p1', price: 10 }, context: { location: { city: 'Delft', latitude: 52.01, longitude: 4.36 } } },
    { type: 'track', userId, messageId: `${tag}-order`, timestamp, event: 'Order Completed', properties: { order_id: `o-${tag}`, total: 42.5, revenue: 40, tax: 7, currency: 'EUR', coupon: 'X', products: [{ product_id: 'p1', price: 10, quantity: 1 }] }, context: { location: { latitude: 52.01, longitude: 4.36 } } },
    { type: 'track', userId, messageId: `${tag}-survey`, timestamp, event: 'Survey Answered', properties: { survey_id: 's1', rating: 9, allergies: ['nuts'] }, context: { page: { url: `https://shop.example/survey/${tag}` } } },
    { type: 'identify', userId, messageId: `${tag}-identify`, timestamp, traits: { email: `${userId}@example.com`, first_name: 'Ada', city: 'Delft' } },
  ];
};

describeEachDialect('retention sweeper', (dialect) => {
  const ctx = useKernel(dialect);
  const start = new Date();
  let oldProfile = '';
  let newProfile = '';
  const rows = async () => (await sql<EventRow>`SELECT id, profile_id, kind, event, data, data_enc, purposes FROM collect_events ORDER BY id`.execute(ctx.kernel.storage.db)).rows;
  const personal = async (row: EventRow | undefined) => (row?.data_enc ? (JSON.parse(await ctx.kernel.keyring.decrypt(row.data_enc, 'collect.events.data')) as Record<string, unknown>) : null);
  const byMessage = async (messageId: string) => (await sql<EventRow>`SELECT id, profile_id, kind, event, data, data_enc, purposes FROM collect_events WHERE message_id = ${messageId}`.execute(ctx.kernel.storage.db)).rows[0];
  const sweep = (now: Date, dryRun = false) => ctx.kernel.retention.sweep({ now, dryRun, batchSize: 2 });
  const count = (report: { counts: readonly { rule: string; store: string; count: number }[] }, rule: string, store?: string) =>
    report.counts.filter((c) => c.rule === rule && (store === undefined || c.store === store)).reduce((n, c) => n + c.count, 0);

  before(async () => {
    oldProfile = await person(ctx.kernel, 'u-old');
    newProfile = await person(ctx.kernel, 'u-new');
    const stored = [...(await ingest(ctx.kernel, events('u-old', new Date(start.getTime() - DAY), 'old'))), ...(await ingest(ctx.kernel, events('u-new', start, 'new')))];
    assert.ok(stored.every((r) => r.status === 'stored'), JSON.stringify(stored));
  });

  it('lists the configured policies and the tracking plan rules', async () => {
    const rules = await ctx.kernel.retention.policies();
    const ids = rules.map((r) => r.id);
    for (const id of ['collect.events.raw', 'collect.events.orders.reduce', 'collect.events.orders', 'profiles.inactive', 'access.subject_sessions']) assert.ok(ids.includes(id), id);
    const location = rules.find((r) => r.id === 'collect.events.fields:context:P30D');
    assert.deepEqual(location?.fields, ['context.location.latitude', 'context.location.longitude']);
    assert.equal(rules.find((r) => r.id === 'collect.events.raw')?.period, 'P13M');
    assert.equal(rules.find((r) => r.id === 'profiles.inactive')?.period, 'P24M');
    assert.equal(rules.find((r) => r.id === 'collect.events.orders')?.period, 'P7Y');
    assert.ok(ids.includes('profiles.traits:email'));
  });

  it('changes nothing now: nothing has expired', async () => {
    const before = await rows();
    const report = await sweep(start);
    assert.equal(report.total, 0);
    assert.deepEqual(await rows(), before);
  });

  it('a dry run counts what would go and changes nothing', async () => {
    const before = await rows();
    const report = await sweep(months(start, 14), true);
    assert.equal(report.dryRun, true);
    assert.equal(count(report, 'collect.events.raw'), 6);
    assert.equal(count(report, 'collect.events.orders.reduce'), 2);
    assert.deepEqual(await rows(), before);
  });

  it('removes precise location from stored events after 30 days, re-encrypting the personal part, once', async () => {
    const at = new Date(start.getTime() + 31 * DAY);
    const view = await byMessage('old-view');
    assert.equal((await personal(view))?.context !== undefined, true);
    const report = await sweep(at);
    assert.equal(count(report, 'collect.events.fields:context:P30D'), 4);
    for (const id of ['old-view', 'old-order', 'new-view', 'new-order']) {
      const row = await byMessage(id);
      const secret = await personal(row);
      const location = ((secret?.context ?? {}) as { location?: Record<string, unknown> }).location ?? {};
      assert.equal(location.latitude, undefined, id);
      assert.equal(location.longitude, undefined, id);
    }
    const plain = JSON.parse((await byMessage('old-view'))?.data ?? '{}') as { context?: { location?: { city?: string } }; properties?: Record<string, unknown> };
    assert.equal(plain.context?.location?.city, 'Delft');
    assert.equal(plain.properties?.product_id, 'p1');
    const again = await sweep(at);
    assert.equal(again.total, 0);
  });

  it('removes allergies after 6 months and the survey answers after a year', async () => {
    const report = await sweep(months(start, 7));
    assert.equal(count(report, 'collect.events.fields:track:Survey Answered:P6M'), 2);
    assert.deepEqual(await personal(await byMessage('old-survey')), { context: { page: { url: 'https://shop.example/survey/old' } } }, 'allergies gone, the address kept');
    const yearly = await sweep(new Date(months(start, 12).getTime() + 2 * DAY));
    assert.equal(count(yearly, 'collect.events.fields:track:Survey Answered:P1Y'), 2);
    assert.deepEqual(JSON.parse((await byMessage('new-survey'))?.data ?? ''), {});
    // A rule about plain fields leaves the sealed part alone: the page's address (personal, 13 months) is still there.
    assert.deepEqual(await personal(await byMessage('new-survey')), { context: { page: { url: 'https://shop.example/survey/new' } } });
  });

  it('after 13 months deletes raw events and reduces orders to what the legal obligation needs; a second run deletes nothing', async () => {
    const at = months(start, 14);
    const report = await sweep(at);
    assert.equal(count(report, 'collect.events.raw'), 6);
    assert.equal(count(report, 'collect.events.orders.reduce'), 2);
    const left = await rows();
    assert.deepEqual(left.map((r) => r.event), ['Order Completed', 'Order Completed']);
    for (const row of left) {
      assert.deepEqual(Object.keys((JSON.parse(row.data) as { properties: object }).properties).sort(), ['currency', 'order_id', 'total']);
      assert.equal(row.data_enc, null);
      assert.deepEqual(JSON.parse(row.purposes), ['essential.legal_obligation']);
    }
    const again = await sweep(at);
    assert.equal(again.total, 0);
    const audit = [];
    for await (const entry of ctx.kernel.audit.scan()) if (entry.action === 'retention.sweep') audit.push(entry);
    const details = audit.map((e) => (typeof e.details === 'string' ? JSON.parse(e.details) : e.details) as { deleted?: number; counts?: string[] });
    const evidence = details.find((d) => d.deleted === report.total);
    assert.ok(evidence, 'the sweep is in the audit log');
    assert.ok(evidence.counts?.some((line) => line.startsWith('collect.events.raw collect_events user.behavior 6')));
  });

  it('deletes a person inactive for 24 months with their data and key, without suppressing their identifiers', async () => {
    // Both gave consent and sent their events at the start (u-old's dated a day earlier, which does not count); u-new
    // came back 20 months later: only u-old has been inactive for 24 months a day after the 24 months.
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, [{ profileId: newProfile, at: months(start, 20).toISOString(), receivedAt: months(start, 20).toISOString(), kind: 'track' }]));
    const at = new Date(months(start, 24).getTime() + DAY);
    const dry = await sweep(at, true);
    assert.equal(count(dry, 'profiles.inactive', 'people'), 1);
    const report = await sweep(at);
    assert.equal(count(report, 'profiles.inactive', 'people'), 1);
    const profiles = (await sql<{ id: string }>`SELECT id FROM identity_profiles`.execute(ctx.kernel.storage.db)).rows.map((r) => r.id);
    assert.ok(!profiles.includes(oldProfile));
    assert.ok(profiles.includes(newProfile));
    const keys = (await sql<{ subject_id: string }>`SELECT subject_id FROM crypto_subject_keys`.execute(ctx.kernel.storage.db)).rows.map((r) => r.subject_id);
    assert.ok(!keys.includes(oldProfile));
    assert.ok(keys.includes(newProfile));
    const traits = (await sql<{ n: number }>`SELECT count(*) AS n FROM profiles_traits WHERE profile_id = ${oldProfile}`.execute(ctx.kernel.storage.db)).rows[0];
    assert.equal(Number(traits?.n), 0);
    const suppressed = await ctx.kernel.identity.isSuppressedBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'u-old' }], source: 'web', at: new Date().toISOString() }]);
    assert.deepEqual(suppressed, [false]);
    // A returning customer starts fresh: a new profile, no consent yet, so nothing is stored for analytics.
    const [back] = await ingest(ctx.kernel, [{ type: 'track', userId: 'u-old', messageId: 'back-1', event: 'Product Viewed', properties: { product_id: 'p2' } }]);
    assert.notEqual(back?.status, 'suppressed');
    const again = await sweep(at);
    assert.equal(count(again, 'profiles.inactive', 'people'), 0);
  });

  it('deletes old orders after 7 years', async () => {
    const report = await sweep(months(start, 12 * 7 + 1));
    assert.ok(count(report, 'collect.events.orders') >= 1);
    const left = await rows();
    assert.ok(left.every((r) => r.event !== 'Order Completed'));
  });
});
