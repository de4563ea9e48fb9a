import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { Catalog } from '../catalog/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// A statement error on one request's row fails that request only, not the others sharing its group commit.
describeEachDialect('group commit isolation', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  let key = '';
  const send = (url: string, payload: unknown) =>
    harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const statuses = (response: { json: () => unknown }) => (response.json() as { results: { status: string; code?: string }[] }).results.map((r) => r.code ?? r.status);
  const added = (anonymousId: string, messageId: string) => ({ type: 'track', anonymousId, messageId, event: 'Product Added', properties: { product_id: 'p1' } });
  const db = () => ctx.kernel.storage.db;
  const rows = async (like: string) => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE message_id LIKE ${like}`.execute(db())).rows[0]?.n);
  const refused = async () => Number((await sql<{ n: number }>`SELECT coalesce(sum(count), 0) AS n FROM collect_refusals WHERE source = 'web' AND event = 'Product Added' AND purpose = 'analytics.reporting'`.execute(db())).rows[0]?.n);
  const accepted = async () => {
    const reader = await Catalog.open({ storage: ctx.kernel.storage, audit: ctx.kernel.audit, taxonomy: ctx.kernel.taxonomy });
    return (await reader.stats({ source: 'web', event: 'Product Added' }))[0]?.accepted ?? 0;
  };

  before(async () => {
    key = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    for (const anonymousId of ['anon-good', 'anon-bad', 'anon-many']) {
      const given = await send('/v1/consent', { anonymousId, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
      assert.equal(given.statusCode, 200, given.body);
    }
  });

  it('stores the events of concurrent requests when one request of their group fails, and counts everything once', async () => {
    // Only a test can make one row fail: a trigger refuses one message id. On PostgreSQL it also holds up the commit of
    // a 'slow-' message, so that the requests sent meanwhile surely make up the next group together.
    if (dialect === 'postgres') {
      await sql`CREATE FUNCTION refuse_test_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.message_id LIKE 'slow-%' THEN PERFORM pg_sleep(0.4); RETURN NEW; END IF; RAISE EXCEPTION 'refused by the test'; END $$`.execute(db());
      await sql`CREATE TRIGGER refuse_test_event BEFORE INSERT ON collect_events FOR EACH ROW WHEN (NEW.message_id LIKE 'fail-%' OR NEW.message_id LIKE 'slow-%') EXECUTE FUNCTION refuse_test_event()`.execute(db());
    } else {
      await sql`CREATE TRIGGER refuse_test_event BEFORE INSERT ON collect_events WHEN NEW.message_id LIKE 'fail-%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`.execute(db());
    }
    const acceptedBefore = await accepted();
    const refusedBefore = await refused();
    try {
      const slow = dialect === 'postgres' ? send('/v1/track', added('anon-good', 'slow-1')) : undefined;
      if (slow) await sleep(50);
      // Sent together, so that they share a group commit; the batch is large enough for SQLite's writer thread.
      const [good, bad, many, nobody] = await Promise.all([
        send('/v1/track', added('anon-good', 'good-1')),
        send('/v1/track', added('anon-bad', 'fail-1')),
        send('/v1/batch', { batch: Array.from({ length: 70 }, (_, i) => added('anon-many', `many-${i}`)) }),
        send('/v1/track', added('anon-nobody', 'nobody-1')),
      ]);
      assert.equal(bad.statusCode, 500, bad.body);
      assert.deepEqual(statuses(good), ['stored']);
      assert.deepEqual(new Set(statuses(many)), new Set(['stored']));
      assert.deepEqual(statuses(nobody), ['COLLECT_NO_LAWFUL_BASIS']);
      if (slow) assert.deepEqual(statuses(await slow), ['stored']);
    } finally {
      await sql`DROP TRIGGER refuse_test_event${sql.raw(dialect === 'postgres' ? ' ON collect_events' : '')}`.execute(db());
      if (dialect === 'postgres') await sql`DROP FUNCTION refuse_test_event()`.execute(db());
    }
    assert.equal(await rows('good-%'), 1);
    assert.equal(await rows('many-%'), 70);
    assert.equal(await rows('fail-%'), 0);

    // The failed request's plan count is written with the next commit; every count exactly once (the plan accepted
    // every message sent, the consent gate refused one).
    assert.deepEqual(statuses(await send('/v1/track', added('anon-good', 'good-2'))), ['stored']);
    assert.equal(await accepted(), acceptedBefore + 74 + (dialect === 'postgres' ? 1 : 0));
    assert.equal(await refused(), refusedBefore + 1);
  });
});
