// An event's occurrence is something the person did: data about the system, which no notice needs to describe, is no
// occurrence's category. Publishing refuses one; a stored version with one is loaded with it read as user.behavior, so
// the gate (and a CSV import, its prediction and its dry run) keeps such an event only where the notice describes that.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages, uniqueId } from '../../../test/support/subjects.ts';
import { planWarningOptions } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_PLAN, planHash, type PlanDocument } from '../catalog/index.ts';
import { CsvImporter } from './index.ts';

const TARGETED = 'marketing.advertising.third_party.targeted';

describeEachDialect('collect: an event whose occurrence is about the system', (dialect) => {
  const ctx = useKernel(dialect);
  const at = () => new Date().toISOString();
  const consenting = async (purposes: string[]) => {
    const userId = uniqueId('sys-occ');
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: at() }]));
    const profileId = resolved?.profileId as string;
    await ctx.kernel.consent.record(profileId, purposes.map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    return { userId, profileId };
  };
  /** The default plan with Order Completed and one more event, Sys Ping (no properties), both of `category`, for targeting. */
  const planOf = (category: string): PlanDocument => {
    const plan = structuredClone(DEFAULT_PLAN);
    const order = plan.events['Order Completed'];
    assert.ok(order);
    order.category = category;
    order.purposes = [TARGETED];
    plan.events['Sys Ping'] = { category, purposes: [TARGETED], properties: { type: 'object', properties: {} } };
    return plan;
  };

  it('refuses to publish an event, page or screen whose category is about the system, a custom one under system included', async () => {
    await ctx.kernel.taxonomy.addCustom('data-categories', { key: 'acme_build', name: 'Build', description: 'The build of the app that sent it.', parentKey: 'system' }, CLI_ACTOR);
    const plan = planOf('system.operations');
    plan.pages = { ...structuredClone(DEFAULT_PLAN.pages), category: 'acme_build' } as PlanDocument['pages'];
    const { version } = await ctx.kernel.catalog.plan();
    await assert.rejects(ctx.kernel.catalog.publish(plan, CLI_ACTOR, { baseVersion: version, ...planWarningOptions(ctx.kernel) }), (error) => {
      assert.ok(isCandorError(error, 'CATALOG_PLAN_INVALID'));
      const problems = (error.details as { problems: { path: string; problem: string }[] }).problems;
      assert.deepEqual(problems.map((p) => p.path).sort(), ['/events/Order Completed/category', '/events/Sys Ping/category', '/pages/category']);
      assert.match(problems[0]?.problem ?? '', /is about the system, and an occurrence is something the person did: choose a user\.\* category/);
      return true;
    });
    assert.equal((await ctx.kernel.catalog.plan()).version, version, 'nothing published');
  });

  it('loads a stored version with one read as user.behavior: its events and links are kept only where the notice describes that, for the gate and a CSV import alike', async () => {
    // A version published before such categories were refused.
    const plan = planOf('system.operations');
    const version = (await ctx.kernel.catalog.plan()).version + 1;
    const row = { version, name: plan.name, hash: planHash(plan), plan: JSON.stringify(plan), published_at: at(), published_by: 'cli' };
    await ctx.kernel.storage.db.withTables<{ catalog_plans: typeof row }>().insertInto('catalog_plans').values(row).execute();
    assert.equal(await ctx.kernel.catalog.refresh(), version, 'the stored version is in force');
    const ping = (await ctx.kernel.catalog.outline()).find((s) => s.event === 'Sys Ping');
    assert.deepEqual(ping?.occurrence, { category: 'user.behavior', purposes: [TARGETED], special: false, preciseLocation: false, declared: true, aboutTheSystem: 'system.operations' });
    const { problems } = await ctx.kernel.catalog.validatePlan(plan, planWarningOptions(ctx.kernel));
    assert.ok(problems.some((p) => p.path === '/events/Sys Ping/category'), 'published again, it is refused');

    const { userId, profileId } = await consenting([TARGETED]);
    const results = await sendMessages(ctx.kernel, [
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Sys Ping' },
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Order Completed', properties: { order_id: 'o-sys' } },
      { type: 'alias', userId, previousId: uniqueId('anon'), messageId: uniqueId('m') },
    ]);
    assert.deepEqual(
      results.map((r) => ({ status: r.status, ...(r.code ? { code: r.code } : {}), ...(r.purposes ? { purposes: r.purposes } : {}) })),
      [
        { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
        // order_id serves operations (a contract): the order is kept for that, never for targeting.
        { status: 'stored', purposes: ['essential.service.operations'] },
        { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
      ],
    );
    const stored = await ctx.kernel.collect.events([profileId], { decrypt: false, limit: 10 });
    assert.deepEqual(stored.map((e) => [e.event, e.purposes]), [['Order Completed', ['essential.service.operations']]]);

    const importPings = async (dryRun: boolean) => {
      const summary = await new CsvImporter(ctx.kernel).run(Readable.from(['user_id,event\nsys-occ-csv,Sys Ping\n']), { kind: 'events', basis: 'consent', purposes: [TARGETED], source: 'files', actor: CLI_ACTOR, dryRun });
      return { stored: summary.stored, refused: summary.refused };
    };
    const dry = await importPings(true);
    assert.deepEqual(await importPings(false), { stored: 0, refused: 1 });
    assert.deepEqual(dry, { stored: 0, refused: 1 });
    await ctx.kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
  });

  it('never counts an occurrence as described through data about the system (Consent.describes of an occurrence)', () => {
    // The notice in force lists only browsing history and device ids for targeting.
    assert.equal(ctx.kernel.consent.describes(TARGETED, 'system.operations'), true, 'a field about the system needs no description');
    assert.equal(ctx.kernel.consent.describes(TARGETED, 'system.operations', 'occurrence'), false);
    assert.equal(ctx.kernel.consent.describes(TARGETED, 'user.behavior.browsing_history', 'occurrence'), true);
    assert.equal(ctx.kernel.consent.describes('essential.service.operations', 'system.operations', 'occurrence'), true, 'a purpose resting on a contract needs none');
  });
});
