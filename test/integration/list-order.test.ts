import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../support/databases.ts';
import { useKernel } from '../support/kernel.ts';
import type { Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { CollectRepo } from '../../src/modules/collect/collect.repo.ts';
import { ConsentRepo } from '../../src/modules/consent/consent.repo.ts';
import { DEFAULT_PURPOSES } from '../../src/modules/consent/defaults.ts';
import { ProfilesRepo } from '../../src/modules/profiles/profiles.repo.ts';

const DAY_MS = 86_400_000;

/** The order the lists promise for text: by code point, as the UTF-8 bytes compare (written out here, not imported). */
const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
const byKeys = (a: readonly string[], b: readonly string[]) => {
  for (let i = 0; i < a.length; i++) {
    const c = byBytes(a[i] as string, b[i] as string);
    if (c !== 0) return c;
  }
  return 0;
};
/** The values in order of first appearance. */
const distinct = (values: readonly string[]) => [...new Set(values)];

async function ingest(kernel: Kernel, messages: Record<string, unknown>[], receivedAt: number, source = 'web') {
  return kernel.collect.ingest(
    messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })),
    undefined,
    { source, gpc: false, receivedAt, actor: CLI_ACTOR },
  );
}

async function consentedUser(kernel: Kernel, userId: string): Promise<string> {
  const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  const profileId = resolved?.profileId as string;
  await kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
  return profileId;
}

// On PostgreSQL the database is created with an ICU en-US collation (linguistic, as on most production installs),
// so an ORDER BY on text that leaves the collation to the database answers in another order than on SQLite.
describeEachDialect('lists answer in one order on both databases, whatever the database collation', (dialect) => {
  const ctx = useKernel(dialect, { icuLocale: 'en-US' });

  it("lists a person's events of one instant by time received, then id, newest first, and a limit takes the newest", async () => {
    const profileId = await consentedUser(ctx.kernel, 'order-events');
    const track = (messageId: string) => ({ type: 'track', userId: 'order-events', messageId, timestamp: '2025-01-01T00:00:00.000Z', event: 'Product Viewed', properties: { product_id: messageId } });
    const now = Date.now();
    assert.deepEqual((await ingest(ctx.kernel, [track('t1'), track('t2')], now)).map((r) => r.status), ['stored', 'stored']);
    // Stored last, received (by the sender's clock of the request) a minute earlier.
    assert.deepEqual((await ingest(ctx.kernel, [track('t3')], now - 60_000)).map((r) => r.status), ['stored']);
    const listed = async (limit: number) => (await ctx.kernel.collect.events([profileId], { decrypt: true, limit })).map((e) => e.messageId);
    assert.deepEqual(await listed(10), ['t2', 't1', 't3']);
    assert.deepEqual(await listed(2), ['t2', 't1']);
    assert.deepEqual(await listed(1), ['t2']);
  });

  it('lists refusal counts newest day first, then by source, event and purpose by code point, stored or still in memory', async () => {
    const refused = [
      { type: 'track', anonymousId: 'order-nobody', event: 'Product Viewed', properties: { product_id: 'p1' } },
      { type: 'page', anonymousId: 'order-nobody', name: 'Home' },
      { type: 'alias', userId: 'order-x', previousId: 'order-y' },
    ];
    const today = Date.now();
    for (const source of ['web', 'POS']) {
      assert.ok((await ingest(ctx.kernel, refused, today - DAY_MS, source)).every((r) => r.status === 'refused'));
    }
    await ctx.kernel.collect.flush();
    for (const source of ['web', 'ios', 'POS']) await ingest(ctx.kernel, refused, today, source);
    const days = [new Date(today).toISOString().slice(0, 10), new Date(today - DAY_MS).toISOString().slice(0, 10)];

    const check = async (when: string, read = () => ctx.kernel.collect.refusals()) => {
      const rows = (await read()).map((r) => [r.day, r.source, r.event, r.purpose]);
      assert.deepEqual(distinct(rows.map((r) => r[0] as string)), days, `${when}: newest day first`);
      const sorted = [...rows].sort((a, b) => byBytes(b[0] as string, a[0] as string) || byKeys(a.slice(1), b.slice(1)));
      assert.deepEqual(rows, sorted, `${when}: in order`);
      const ofToday = rows.filter((r) => r[0] === days[0]);
      assert.deepEqual(distinct(ofToday.map((r) => r[1] as string)), ['POS', 'ios', 'web'], `${when}: sources by code point`);
      assert.deepEqual(distinct(ofToday.filter((r) => r[1] === 'web').map((r) => r[2] as string)), ['Product Viewed', 'alias', 'page'], `${when}: events by code point`);
    };
    await check("today's counts in memory, yesterday's stored");
    await ctx.kernel.collect.flush();
    await check('all stored');
    // As read from the database (which rows a read's 1,000 are): the same order.
    await check('stored rows as read', () => new CollectRepo(ctx.kernel.storage).refusals({}));
  });

  it('reads stored plan statistics by their key: ties in a list and the paths past 100 that count under *other*', async () => {
    const db = ctx.kernel.storage.db.withTables<{ catalog_stats: { source: string; kind: string; event: string; metric: string; item: string; rule: string; count: number; updated_at: string } }>();
    const stat = (metric: string, item: string, rule: string) => ({ source: 'order-src', kind: 'track', event: 'Order Probe', metric, item, rule, count: 1, updated_at: new Date().toISOString() });
    // Stored in another order than their keys' (as concurrent writers can leave a row with more than 100 paths).
    await db.insertInto('catalog_stats').values([stat('violation', 'properties.size', 'type'), stat('violation', 'properties.size', 'minimum')]).execute();
    const dropped = Array.from({ length: 100 }, (_, i) => `properties.k${String(i).padStart(3, '0')}`);
    for (const path of [...dropped, 'properties.Zeta']) await db.insertInto('catalog_stats').values(stat('dropped', path, '')).execute();

    for (const filter of [{}, { source: 'order-src' }, { event: 'Order Probe' }]) {
      const row = (await ctx.kernel.catalog.stats(filter)).find((r) => r.source === 'order-src');
      const paths = new Set(row?.dropped.map((d) => d.path));
      assert.equal(paths.size, 101, JSON.stringify(filter));
      assert.ok(paths.has('properties.Zeta') && paths.has('*other*') && !paths.has('properties.k099'), `${JSON.stringify(filter)}: the last key by code point counts under *other*`);
      assert.deepEqual(row?.violations.map((v) => v.rule), ['minimum', 'type'], JSON.stringify(filter));
    }
  });

  it('reads purposes by key by code point', async () => {
    const keys = ['order_probe.a_b', 'order_probe.ab', 'order_probe.a1', 'order_probe.a.b'];
    const template = DEFAULT_PURPOSES.find((p) => p.key === 'analytics.reporting');
    assert.ok(template);
    for (const key of keys) {
      await ctx.kernel.taxonomy.addCustom('data-uses', { key, name: key, description: 'Ordering probe.', parentKey: 'analytics.reporting' }, CLI_ACTOR);
      await ctx.kernel.consent.setPurpose({ ...template, key }, CLI_ACTOR);
    }
    const stored = (await new ConsentRepo(ctx.kernel.storage).purposes()).map((p) => p.key).filter((k) => k.startsWith('order_probe.'));
    assert.deepEqual(stored, ['order_probe.a.b', 'order_probe.a1', 'order_probe.a_b', 'order_probe.ab']);
  });

  it("reads a person's traits by key by code point", async () => {
    const db = ctx.kernel.storage.db.withTables<{ profiles_traits: { profile_id: string; key: string; value: string; encrypted: number; category: string; updated_at: string; source: string; message_id: string | null } }>();
    const profileId = 'prf_orderingtraitsprobe';
    for (const key of ['zip', 'first_name', 'Zip', 'firstName', 'first.name']) {
      await db.insertInto('profiles_traits').values({ profile_id: profileId, key, value: '"x"', encrypted: 0, category: 'user.unique_id', updated_at: new Date().toISOString(), source: 'web', message_id: null }).execute();
    }
    const keys = (await new ProfilesRepo(ctx.kernel.storage).traitsOf([profileId])).map((t) => t.key);
    assert.deepEqual(keys, ['Zip', 'first.name', 'firstName', 'first_name', 'zip']);
  });

  it("lists a person's identifiers first seen at one time by type, then pseudonym, by code point", async () => {
    const at = '2025-01-01T00:00:00.000Z';
    const items = Array.from({ length: 6 }, (_, i) => ({ identifiers: [{ type: 'user_id', value: 'order-ids' }, { type: 'anonymous_id', value: `order-device-${i}` }], source: 'web', at }));
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, items));
    const listed = await ctx.kernel.identity.identifiersOf(resolved?.profileId as string);
    assert.deepEqual(distinct(listed.map((i) => i.type)), ['anonymous_id', 'user_id']);
    const hashes = listed.filter((i) => i.type === 'anonymous_id').map((i) => i.valueHash);
    assert.equal(hashes.length, 6);
    assert.deepEqual(hashes, [...hashes].sort(byBytes));
  });
});
