import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';
import { MIGRATIONS, openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { migrateToLatest, openStorage } from '../../storage/index.ts';

const at = '2026-10-01T08:00:00.000Z';
const receivedLater = '2026-10-01T08:00:02.500Z';
const noTimeAt = '2026-10-01T09:00:00.000Z';

/** Events as the release before 0090 stored them: one whose sender gave a timestamp, two whose senders gave none. */
async function seedOldEvents(db: Kysely<object>): Promise<void> {
  await sql`INSERT INTO collect_events (id, source, message_id, profile_id, kind, event, occurred_at, received_at, purposes, data, data_enc, plan_version) VALUES
    ('evt_old', 'web', 'old-1', 'prf_old', 'track', 'Product Viewed', ${at}, ${receivedLater}, '["analytics.reporting"]', '{}', NULL, 1),
    ('evt_untimed', 'web', 'old-2', 'prf_old', 'track', 'Product Viewed', ${noTimeAt}, ${noTimeAt}, '["analytics.reporting"]', '{}', NULL, 1),
    ('evt_crm', 'crm', 'crm-row-2', 'prf_old', 'identify', NULL, ${noTimeAt}, ${noTimeAt}, '["analytics.reporting"]', '{}', NULL, 1)`.execute(db);
}

/** Sends messages of source `source` for `anon-old` (who allows analytics) and answers their statuses. */
async function send(kernel: Kernel, source: string, messages: Record<string, unknown>[]): Promise<string[]> {
  const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-old' }], source: 'web', at }]));
  await kernel.consent.record(resolved?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  const results = await kernel.collect.ingest(messages.map((raw) => ({ raw: { anonymousId: 'anon-old', ...raw }, bytes: 200 })), undefined, { source, gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
  return results.map((r) => r.status);
}

const keys = async (kernel: Kernel) =>
  (await sql<{ id: string; dedup_at: string }>`SELECT id, dedup_at FROM collect_events ORDER BY id`.execute(kernel.storage.db)).rows.map((r) => [r.id, r.dedup_at]);

const track = (messageId: string, extra: Record<string, unknown> = {}) => ({ type: 'track', event: 'Product Viewed', messageId, properties: { product_id: 'p1' }, ...extra });

describeEachDialect('stored events keep being recognised after the duplicate key changed (migration 0090)', (dialect) => {
  // A database as the release before the change left it.
  const ctx = useUpgradedKernel(dialect, '0090', seedOldEvents);

  it('keys a stored event by its sender\'s time, and one whose sender gave none by \'\' as the parser does', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0090_collect_events_dedup_by_time'));
    assert.deepEqual(await keys(ctx.kernel), [
      ['evt_crm', ''],
      ['evt_old', at],
      ['evt_untimed', ''],
    ]);
  });

  it('answers retries of messages stored before the change as duplicates, with or without a timestamp', async () => {
    assert.deepEqual(await send(ctx.kernel, 'web', [track('old-1', { timestamp: at }), track('old-2')]), ['duplicate', 'duplicate']);
    assert.deepEqual(await send(ctx.kernel, 'crm', [{ type: 'identify', messageId: 'crm-row-2', traits: {} }]), ['duplicate']);
    assert.deepEqual(await send(ctx.kernel, 'web', [track('old-1', { timestamp: '2026-10-02T08:00:00.000Z' })]), ['stored']);
    assert.equal(Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events`.execute(ctx.kernel.storage.db)).rows[0]?.n), 4);
  });
});

describeEachDialect('a database that ran 0090 as first released gets the keys of its untimed events repaired (0103)', (dialect) => {
  // An event received after 0090 ran (set once it has: its time comes from storage_migrations).
  let after0090 = '';
  let env: TestEnvironment;
  let kernel: Kernel;
  before(async () => {
    env = await createEnvironment(dialect);
    const storage = await openStorage({ dataDir: env.dataDir, databaseUrl: env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      await migrateToLatest(storage, MIGRATIONS.filter((m) => m.name < '0090'));
      await seedOldEvents(storage.db);
      await migrateToLatest(storage, MIGRATIONS.filter((m) => m.name < '0091'));
      // What 0090 as first released left: every stored event keyed by its time.
      await sql`UPDATE collect_events SET dedup_at = occurred_at`.execute(storage.db);
      const ran = (await sql<{ timestamp: string }>`SELECT "timestamp" FROM storage_migrations WHERE name = '0090_collect_events_dedup_by_time'`.execute(storage.db)).rows[0]?.timestamp as string;
      after0090 = new Date(Date.parse(ran) + 1000).toISOString();
      await sql`INSERT INTO collect_events (id, source, message_id, profile_id, kind, event, occurred_at, received_at, purposes, data, data_enc, plan_version, dedup_at) VALUES
        ('evt_retry_crm', 'crm', 'crm-row-2', 'prf_old', 'identify', NULL, ${after0090}, ${after0090}, '["analytics.reporting"]', '{}', NULL, 1, ''),
        ('evt_new_timed', 'web', 'new-1', 'prf_old', 'track', 'Product Viewed', ${after0090}, ${after0090}, '["analytics.reporting"]', '{}', NULL, 1, ${after0090})`.execute(storage.db);
      await migrateToLatest(storage, MIGRATIONS.filter((m) => m.name < '0103'));
    } finally {
      await storage.close();
    }
    kernel = await openKernel(env.config);
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
  });

  it('keys events received before 0090 with no sender time by \'\', except where a retry stored since holds that key', async () => {
    assert.ok(kernel.migrationsApplied.includes('0103_collect_events_dedup_repair'));
    assert.deepEqual(await keys(kernel), [
      // Its retry after the upgrade was stored as a second copy under '': the older one keeps its time.
      ['evt_crm', noTimeAt],
      // A sender's timestamp that equals the time of receipt, after 0090: the parser's key, left alone.
      ['evt_new_timed', after0090],
      ['evt_old', at],
      ['evt_retry_crm', ''],
      ['evt_untimed', ''],
    ]);
  });

  it('then answers a retry of an untimed message stored before the upgrade as a duplicate', async () => {
    assert.deepEqual(await send(kernel, 'web', [track('old-2'), track('old-1', { timestamp: at })]), ['duplicate', 'duplicate']);
    assert.deepEqual(await send(kernel, 'crm', [{ type: 'identify', messageId: 'crm-row-2', traits: {} }]), ['duplicate']);
  });
});
