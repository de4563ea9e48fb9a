import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { Catalog, type StatsRow } from '../../modules/catalog/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// The tracking plan's counts as staff read them, for events that went through real ingestion and its group commit.
describeEachDialect('tracking-plan counts of ingested events', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const keys: Record<string, string> = {};
  const send = (source: string, url: string, payload: unknown) =>
    harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${keys[source]}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const statuses = (response: { json: () => unknown }) => (response.json() as { results: { status: string; code?: string }[] }).results.map((r) => r.code ?? r.status);
  const read = async (query: string) => {
    const response = await harness.server.app.inject({ url: `/v1/admin/catalog/stats?${query}`, headers: harness.auth('analyst') });
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as StatsRow[];
  };
  /** What the database holds, without this process's counts in memory. */
  const stored = async (source: string, event: string) => {
    const reader = await Catalog.open({ storage: ctx.kernel.storage, audit: ctx.kernel.audit, taxonomy: ctx.kernel.taxonomy });
    return reader.stats({ source, event });
  };
  const viewed = (anonymousId: string, messageId: string, properties: Record<string, unknown>) => ({ type: 'track', anonymousId, messageId, event: 'Product Viewed', properties });

  before(async () => {
    for (const source of ['web', 'ios']) keys[source] = (await ctx.kernel.access.createWriteKey(source, null, CLI_ACTOR)).secret;
    for (const source of ['web', 'ios']) {
      const given = await send(source, '/v1/consent', { anonymousId: `anon-${source}`, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
      assert.equal(given.statusCode, 200, given.body);
    }
  });

  it('counts an undeclared field as dropped and a wrong type as a violation, per source and event, written with the events', async () => {
    const single = await send('web', '/v1/track', { anonymousId: 'anon-web', messageId: 'pc-1', event: 'Product Viewed', properties: { product_id: 'p1', gift_wrap: 'yes' } });
    assert.deepEqual(statuses(single), ['stored']);
    const batch = await send('web', '/v1/batch', {
      batch: [
        viewed('anon-web', 'pc-2', { product_id: 'p2', price: 'cheap' }),
        viewed('anon-web', 'pc-3', { product_id: 'p3', gift_wrap: 'no', price: 12 }),
        { type: 'track', anonymousId: 'anon-web', messageId: 'pc-4', event: 'Product Added', properties: { product_id: 'p3', gift_wrap: 'no' } },
      ],
    });
    assert.deepEqual(statuses(batch), ['CATALOG_EVENT_INVALID', 'stored', 'stored']);
    assert.deepEqual(statuses(await send('ios', '/v1/track', { anonymousId: 'anon-ios', messageId: 'pc-5', event: 'Product Viewed', properties: { product_id: 'p1', price: 'free' } })), ['CATALOG_EVENT_INVALID']);

    const expected: StatsRow = {
      source: 'web',
      kind: 'track',
      event: 'Product Viewed',
      accepted: 2,
      refused: { CATALOG_EVENT_UNDECLARED: 0, CATALOG_EVENT_INVALID: 1 },
      dropped: [{ path: 'properties.gift_wrap', count: 2 }],
      violations: [{ path: 'properties.price', rule: 'type', count: 1 }],
    };
    assert.deepEqual(await read('source=web&event=Product%20Viewed'), [expected]);
    assert.deepEqual(
      (await read('source=web')).map((r) => [r.event, r.accepted, r.dropped]),
      [['Product Added', 1, [{ path: 'properties.gift_wrap', count: 1 }]], ['Product Viewed', 2, [{ path: 'properties.gift_wrap', count: 2 }]]],
    );
    assert.deepEqual((await read('source=ios')).map((r) => [r.event, r.accepted, r.refused.CATALOG_EVENT_INVALID, r.violations]), [['Product Viewed', 0, 1, [{ path: 'properties.price', rule: 'type', count: 1 }]]]);
    // The web counts were taken into the groups' commits (the last one stored pc-3 and pc-4): the database has them all.
    assert.deepEqual(await stored('web', 'Product Viewed'), [expected]);
  });

  it('keeps the counts of a group whose commit failed, and writes them once with the next commit', async () => {
    const db = ctx.kernel.storage.db;
    // Only a test can make the commit of a group fail: a trigger refuses one message id.
    if (dialect === 'postgres') {
      await sql`CREATE FUNCTION refuse_test_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$`.execute(db);
      await sql`CREATE TRIGGER refuse_test_event BEFORE INSERT ON collect_events FOR EACH ROW WHEN (NEW.message_id LIKE 'fail-%') EXECUTE FUNCTION refuse_test_event()`.execute(db);
    } else {
      await sql`CREATE TRIGGER refuse_test_event BEFORE INSERT ON collect_events WHEN NEW.message_id LIKE 'fail-%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`.execute(db);
    }
    const before = (await stored('web', 'Product Added'))[0];
    try {
      const single = await send('web', '/v1/track', { anonymousId: 'anon-web', messageId: 'fail-1', event: 'Product Added', properties: { product_id: 'p9', engraving: 'A' } });
      assert.equal(single.statusCode, 500, single.body);
      // A batch large enough for SQLite's writer thread (the deferred group commit) fails the same way.
      const many = Array.from({ length: 70 }, (_, i) => ({ type: 'track', anonymousId: 'anon-web', messageId: i === 69 ? 'fail-2' : `many-${i}`, event: 'Product Added', properties: { product_id: `m${i}`, engraving: 'B' } }));
      const batch = await send('web', '/v1/batch', { batch: many });
      assert.equal(batch.statusCode, 500, batch.body);

      const afterFailure = (await read('source=web&event=Product%20Added'))[0];
      assert.equal(afterFailure?.accepted, (before?.accepted ?? 0) + 71, 'the failed groups are still counted');
      assert.deepEqual(afterFailure?.dropped.find((d) => d.path === 'properties.engraving'), { path: 'properties.engraving', count: 71 });
      assert.deepEqual(await stored('web', 'Product Added'), before ? [before] : [], 'nothing of the failed groups is stored');
    } finally {
      await sql`DROP TRIGGER refuse_test_event${sql.raw(dialect === 'postgres' ? ' ON collect_events' : '')}`.execute(db);
      if (dialect === 'postgres') await sql`DROP FUNCTION refuse_test_event()`.execute(db);
    }

    const next = await send('web', '/v1/track', { anonymousId: 'anon-web', messageId: 'after-1', event: 'Product Added', properties: { product_id: 'p10', engraving: 'C' } });
    assert.deepEqual(statuses(next), ['stored']);
    const afterCommit = await read('source=web&event=Product%20Added');
    assert.equal(afterCommit[0]?.accepted, (before?.accepted ?? 0) + 72);
    assert.deepEqual(afterCommit[0]?.dropped.find((d) => d.path === 'properties.engraving'), { path: 'properties.engraving', count: 72 });
    assert.deepEqual(await stored('web', 'Product Added'), afterCommit, 'written once, with the next commit');
  });
});
