import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { resolveItem, uniqueId } from '../../../test/support/subjects.ts';
import { sweepWhile } from '../../../test/support/sweep-meanwhile.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, planHash, type PlanDocument } from '../catalog/index.ts';

const DAY = 86_400_000;
const ago = (now: number, days: number) => new Date(now - days * DAY).toISOString();

/** The default plan with one more identify trait, `key`, kept `retention`. */
function planWithTrait(key: string, retention: string): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN) as unknown as { traits: { properties: Record<string, unknown> } };
  plan.traits.properties[key] = {
    type: 'string',
    maxLength: 50,
    'x-candor': { category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], retention, personal: true },
  };
  return plan as unknown as PlanDocument;
}

// A trait a newer plan version no longer declares keeps the retention of the latest stored version that declared it:
// before, it had no rule at all and was kept until the person was deleted.
describeEachDialect('traits no longer declared keep the retention of the latest version that declared them', (dialect) => {
  const ctx = useKernel(dialect);
  const profile = async () => {
    const { identity, storage } = ctx.kernel;
    const [resolved] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [resolveItem({ user_id: uniqueId('u') }, uniqueId('m'))]));
    return resolved?.profileId as string;
  };
  const setTrait = async (profileId: string, key: string, value: string, at: string) => {
    const { profiles, storage } = ctx.kernel;
    await profiles.prepare([profileId]);
    await storage.raw.transaction((tx) =>
      profiles.setTraitsBatch(tx, [{ profileId, traits: [{ key, value, category: 'user.behavior.purchase_history', personal: true }], source: 'web', messageId: uniqueId('m'), at }]),
    );
  };
  /** What is stored of a key: current values, history entries, and history entries that still hold a previous value. */
  const stored = async (key: string) => {
    const db = ctx.kernel.storage.db;
    const count = async (query: ReturnType<typeof sql<{ n: number | string }>>) => Number((await query.execute(db)).rows[0]?.n ?? 0);
    return {
      values: await count(sql<{ n: number }>`SELECT count(*) AS n FROM profiles_traits WHERE key = ${key}`),
      history: await count(sql<{ n: number }>`SELECT count(*) AS n FROM profiles_trait_history WHERE key = ${key}`),
      previous: await count(sql<{ n: number }>`SELECT count(*) AS n FROM profiles_trait_history WHERE key = ${key} AND previous_value IS NOT NULL`),
    };
  };
  const sweep = (now: number, dryRun = false) => ctx.kernel.retention.sweep({ now: new Date(now), batchSize: 1, dryRun });
  const counted = (report: Awaited<ReturnType<typeof sweep>>, rule: string) => report.counts.filter((c) => c.rule === rule).reduce((n, c) => n + c.count, 0);
  const publish = (plan: PlanDocument) => ctx.kernel.catalog.publish(plan, CLI_ACTOR);

  it('sweeps a trait declared P30D and then removed 30 days after it was last set, not before, with its history', async () => {
    const now = Date.now();
    await publish(planWithTrait('loyalty_tier', 'P30D'));
    const first = await profile();
    const second = await profile();
    await setTrait(first, 'loyalty_tier', 'gold', ago(now, 40));
    await setTrait(first, 'loyalty_tier', 'silver', ago(now, 10));
    await setTrait(second, 'loyalty_tier', 'bronze', ago(now, 10));
    const removed = await publish(structuredClone(DEFAULT_PLAN));
    // Publishing deletes nothing.
    assert.deepEqual(await stored('loyalty_tier'), { values: 2, history: 3, previous: 1 });

    // Today: the entry that set gold 40 days ago goes, and so does gold as the value silver replaced; the rest is 10 days old.
    const dry = await sweep(now, true);
    assert.equal(counted(dry, 'profiles.traits:loyalty_tier'), 2, JSON.stringify(dry.counts));
    assert.deepEqual(await stored('loyalty_tier'), { values: 2, history: 3, previous: 1 }, 'a dry run changes nothing');
    assert.equal(counted(await sweep(now), 'profiles.traits:loyalty_tier'), 2);
    assert.deepEqual(await stored('loyalty_tier'), { values: 2, history: 2, previous: 0 });

    // 29 days after the last change: kept.
    assert.equal(counted(await sweep(now + 19 * DAY), 'profiles.traits:loyalty_tier'), 0);
    assert.deepEqual(await stored('loyalty_tier'), { values: 2, history: 2, previous: 0 });
    const rule = (await ctx.kernel.retention.policies()).find((r) => r.id === 'profiles.traits:loyalty_tier');
    assert.equal(rule?.period, 'P30D');
    assert.match(rule?.description ?? '', new RegExp(`no longer declared by the plan in force \\(version ${removed.version}\\).*plan version ${removed.version - 1}`));

    // 31 days after: the values and their history are gone, and the trait is no longer listed.
    const report = await sweep(now + 21 * DAY);
    assert.equal(counted(report, 'profiles.traits:loyalty_tier'), 4, JSON.stringify(report.counts));
    assert.deepEqual(await stored('loyalty_tier'), { values: 0, history: 0, previous: 0 });
    assert.equal((await ctx.kernel.retention.policies()).find((r) => r.id === 'profiles.traits:loyalty_tier'), undefined);
    assert.equal(counted(await sweep(now + 21 * DAY), 'profiles.traits:loyalty_tier'), 0, 'a second sweep has nothing left');
    const evidence = [];
    for await (const entry of ctx.kernel.audit.scan()) if (entry.action === 'retention.sweep') evidence.push(JSON.stringify(entry.details));
    assert.ok(evidence.some((d) => d.includes('profiles.traits:loyalty_tier profiles_traits user.behavior.purchase_history 2')), evidence.join('\n'));
  });

  it('keeps a removed trait that is published again before its period ran out, by the period now in force', async () => {
    const now = Date.now();
    await publish(planWithTrait('member_level', 'P30D'));
    const id = await profile();
    await setTrait(id, 'member_level', 'one', ago(now, 20));
    await setTrait(id, 'member_level', 'two', ago(now, 10));
    // A mistaken publish drops the trait; a sweep within its period keeps everything.
    await publish(structuredClone(DEFAULT_PLAN));
    await sweep(now);
    assert.deepEqual(await stored('member_level'), { values: 1, history: 2, previous: 1 });
    // Undone by publishing the trait again, this time for 90 days: 40 days on (50 after it was set) it is still there.
    await publish(planWithTrait('member_level', 'P90D'));
    assert.equal(counted(await sweep(now + 40 * DAY), 'profiles.traits:member_level'), 0);
    assert.deepEqual(await stored('member_level'), { values: 1, history: 2, previous: 1 });
    // Removed again: the latest version that declared it (P90D) decides.
    await publish(structuredClone(DEFAULT_PLAN));
    assert.equal(counted(await sweep(now + 75 * DAY), 'profiles.traits:member_level'), 2, 'the entry set 95 days before goes, and the next loses the value it replaced');
    assert.deepEqual(await stored('member_level'), { values: 1, history: 1, previous: 0 });
    await sweep(now + 81 * DAY);
    assert.deepEqual(await stored('member_level'), { values: 0, history: 0, previous: 0 });
  });

  it('deletes at the next sweep the values of a trait no stored version ever declared, and leaves declared traits', async () => {
    const now = Date.now();
    const id = await profile();
    await setTrait(id, 'email', 'kept.address@quillmail.org', ago(now, 1));
    // Written outside the plan (no path of Candor's does): a value and its history entry, set a minute ago.
    const at = new Date(now - 60_000).toISOString();
    await sql`INSERT INTO profiles_traits (profile_id, key, value, encrypted, category, updated_at, source, message_id) VALUES (${id}, 'shoe_size', '"44"', 0, 'user', ${at}, 'web', NULL)`.execute(ctx.kernel.storage.db);
    await sql`INSERT INTO profiles_trait_history (id, profile_id, key, changed_at, value, encrypted, previous_value, previous_encrypted, previous_updated_at, category, source, message_id)
      VALUES (${uniqueId('h')}, ${id}, 'shoe_size', ${at}, '"44"', 0, NULL, NULL, NULL, 'user', 'web', NULL)`.execute(ctx.kernel.storage.db);
    const report = await sweep(now);
    assert.deepEqual(
      report.counts.filter((c) => c.rule === 'profiles.traits.undeclared').map((c) => [c.store, c.count]),
      [
        ['profiles_traits', 1],
        ['profiles_trait_history', 1],
      ],
    );
    assert.deepEqual(await stored('shoe_size'), { values: 0, history: 0, previous: 0 });
    assert.ok((await ctx.kernel.retention.policies()).some((r) => r.id === 'profiles.traits.undeclared'));
    assert.equal((await stored('email')).values, 1, 'a declared trait within its period stays');
    assert.ok(!report.counts.some((c) => c.rule.includes('shoe_size')), 'the key of an undeclared trait is not named in the evidence');
  });
});

describeEachDialect('traits no version is known to declare, while a stored version cannot be read', (dialect) => {
  const ctx = useKernel(dialect);

  it('are left alone: what that version declared is unknown', async () => {
    // Version 1 (the default plan, no longer in force) made unreadable; a fresh process reads every version again.
    await ctx.kernel.catalog.publish(structuredClone({ ...DEFAULT_PLAN, name: 'Shop, second version' }), CLI_ACTOR);
    await sql`UPDATE catalog_plans SET plan = ${'{"events": 7'} WHERE version = 1`.execute(ctx.kernel.storage.db);
    const other = await openKernel(ctx.env.config);
    try {
      const at = new Date().toISOString();
      await sql`INSERT INTO profiles_traits (profile_id, key, value, encrypted, category, updated_at, source, message_id) VALUES ('prf_unknown', 'shoe_size', '"44"', 0, 'user', ${at}, 'web', NULL)`.execute(other.storage.db);
      const report = await other.retention.sweep({ now: new Date(), batchSize: 10 });
      assert.equal(report.counts.filter((c) => c.rule === 'profiles.traits.undeclared').reduce((n, c) => n + c.count, 0), 0, JSON.stringify(report.counts));
      const [left] = (await sql<{ n: number | string }>`SELECT count(*) AS n FROM profiles_traits WHERE key = 'shoe_size'`.execute(other.storage.db)).rows;
      assert.equal(Number(left?.n), 1);
      const plan = await other.catalog.declarations();
      assert.deepEqual(plan.unreadable, [1]);
    } finally {
      await other.close();
    }
  });
});

describeEachDialect('traits of a stored version read in part (a name with a control character, published before the check)', (dialect) => {
  const ctx = useKernel(dialect);

  it('are not deleted as undeclared, and the version counts as read: other traits no version declared still go', async () => {
    const key = 'nick\tname';
    const plan = structuredClone(DEFAULT_PLAN) as unknown as { name: string; traits: { properties: Record<string, unknown> } };
    plan.name = 'Shop, published by an older release';
    plan.traits.properties[key] = { type: 'string', 'x-candor': { category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], retention: 'P5Y', personal: false } };
    const db = ctx.kernel.storage.db;
    // What an older release stored on publish (the document as given) and on ingestion (the key: the path after `traits.`).
    await sql`INSERT INTO catalog_plans (version, name, hash, plan, published_at, published_by) VALUES (2, ${plan.name}, ${planHash(plan)}, ${JSON.stringify(plan)}, ${new Date().toISOString()}, 'cli')`.execute(db);
    const at = new Date(Date.now() - DAY).toISOString();
    await sql`INSERT INTO profiles_traits (profile_id, key, value, encrypted, category, updated_at, source, message_id) VALUES ('prf_partly', ${key}, '"Bo"', 0, 'user.behavior.purchase_history', ${at}, 'web', 'm1')`.execute(db);
    const other = await openKernel(ctx.env.config);
    try {
      assert.equal(other.catalog.version(), 2);
      assert.deepEqual((await other.catalog.declarations()).unreadable, []);
      await sql`INSERT INTO profiles_traits (profile_id, key, value, encrypted, category, updated_at, source, message_id) VALUES ('prf_partly', 'by_hand', '"x"', 0, 'user', ${at}, 'web', 'm2')`.execute(db);
      await other.retention.sweep({ now: new Date(), batchSize: 10 });
      const count = async (k: string) => Number((await sql<{ n: number | string }>`SELECT count(*) AS n FROM profiles_traits WHERE key = ${k}`.execute(db)).rows[0]?.n);
      assert.equal(await count(key), 1);
      assert.equal(await count('by_hand'), 0);
      // No rule keeps it for a period: the access archive says it is kept until erasure.
      const section = await other.subjectData.find((h) => h.module === 'profiles')?.export({ profileId: 'prf_partly', profileIds: ['prf_partly'], identifiers: [] });
      assert.equal(section?.fields.find((f) => f.field === `traits.${key}`)?.retention, null);
    } finally {
      await other.close();
    }
  });
});

describeEachDialect('an undeclared trait declared by a version published while a sweep runs', (dialect) => {
  const ctx = useKernel(dialect);

  it('keeps the values written under that version: each batch is deleted only while no version was stored since', async () => {
    const { catalog, identity, profiles, storage } = ctx.kernel;
    const db = storage.db;
    const old = new Date(Date.now() - 10 * DAY).toISOString();
    await sql`INSERT INTO profiles_traits (profile_id, key, value, encrypted, category, updated_at, source, message_id) VALUES ('prf_legacy', 'shoe_size', '"44"', 0, 'user', ${old}, 'web', NULL)`.execute(db);
    const [resolved] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [resolveItem({ user_id: uniqueId('u') }, uniqueId('m'))]));
    const profileId = resolved?.profileId as string;
    // Meanwhile, on another server: the trait is declared, and an identify sets it.
    const meanwhile = async () => {
      await catalog.publish(planWithTrait('shoe_size', 'P1Y'), CLI_ACTOR);
      await profiles.prepare([profileId]);
      await storage.raw.transaction((tx) =>
        profiles.setTraitsBatch(tx, [{ profileId, traits: [{ key: 'shoe_size', value: '42', category: 'user.behavior.purchase_history', personal: false }], source: 'web', messageId: uniqueId('m'), at: new Date().toISOString() }]),
      );
    };
    assert.ok(await sweepWhile(catalog, 'profiles.retention', meanwhile, () => ctx.kernel.retention.sweep({ now: new Date(), batchSize: 10 })));
    const rows = (await sql<{ profile_id: string }>`SELECT profile_id FROM profiles_traits WHERE key = 'shoe_size'`.execute(db)).rows.map((r) => r.profile_id);
    assert.ok(rows.includes(profileId), JSON.stringify(rows));
  });
});

describeEachDialect('a trait no longer declared whose latest declaring version cannot be read', (dialect) => {
  const ctx = useKernel(dialect);
  const plan = (retention?: string): PlanDocument => {
    const doc = (retention ? planWithTrait('tier', retention) : structuredClone(DEFAULT_PLAN)) as unknown as { name: string };
    doc.name = `Shop ${retention ?? 'without tier'}`;
    return doc as unknown as PlanDocument;
  };

  it('is left alone, not swept by an older version\'s shorter period', async () => {
    const { catalog } = ctx.kernel;
    await catalog.publish(plan('P30D'), CLI_ACTOR);
    const long = await catalog.publish(plan('P1Y'), CLI_ACTOR);
    await catalog.publish(plan(), CLI_ACTOR);
    const db = ctx.kernel.storage.db;
    await sql`UPDATE catalog_plans SET plan = ${'{"events": 7'} WHERE version = ${long.version}`.execute(db);
    const at = new Date(Date.now() - 40 * DAY).toISOString();
    await sql`INSERT INTO profiles_traits (profile_id, key, value, encrypted, category, updated_at, source, message_id) VALUES ('prf_tier', 'tier', '"gold"', 0, 'user.behavior.purchase_history', ${at}, 'web', 'm1')`.execute(db);
    const other = await openKernel(ctx.env.config);
    try {
      await other.retention.sweep({ now: new Date(), batchSize: 10 });
      const [left] = (await sql<{ n: number | string }>`SELECT count(*) AS n FROM profiles_traits WHERE key = 'tier'`.execute(db)).rows;
      assert.equal(Number(left?.n), 1);
    } finally {
      await other.close();
    }
  });
});

describeEachDialect('a trait whose period a version published while a sweep runs makes longer', (dialect) => {
  const ctx = useKernel(dialect);

  it('keeps the values the new period keeps: each batch is deleted only while no version was stored since', async () => {
    const { catalog, identity, profiles, storage } = ctx.kernel;
    await catalog.publish(planWithTrait('club_rank', 'P30D'), CLI_ACTOR);
    const now = Date.now();
    const people: string[] = [];
    for (let i = 0; i < 3; i++) {
      const [resolved] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [resolveItem({ user_id: uniqueId('u') }, uniqueId('m'))]));
      const profileId = resolved?.profileId as string;
      people.push(profileId);
      await profiles.prepare([profileId]);
      await storage.raw.transaction((tx) =>
        profiles.setTraitsBatch(tx, [{ profileId, traits: [{ key: 'club_rank', value: `rank-${i}`, category: 'user.behavior.purchase_history', personal: true }], source: 'web', messageId: uniqueId('m'), at: ago(now, 40 + i) }]),
      );
    }
    // Meanwhile, on another server: the trait is kept 90 days from now on.
    const meanwhile = () => catalog.publish(planWithTrait('club_rank', 'P90D'), CLI_ACTOR);
    assert.ok(await sweepWhile(catalog, 'profiles.retention', meanwhile, () => ctx.kernel.retention.sweep({ now: new Date(now), batchSize: 1 })));
    const rows = (await sql<{ n: number | string }>`SELECT count(*) AS n FROM profiles_traits WHERE key = 'club_rank'`.execute(storage.db)).rows;
    assert.equal(Number(rows[0]?.n), 3, 'values 40 to 42 days old stay under a 90-day period');
    // The next sweep reads the period in force: nothing of them goes yet.
    await ctx.kernel.retention.sweep({ now: new Date(now), batchSize: 1 });
    assert.equal(Number((await sql<{ n: number | string }>`SELECT count(*) AS n FROM profiles_traits WHERE key = 'club_rank'`.execute(storage.db)).rows[0]?.n), 3);
  });
});
