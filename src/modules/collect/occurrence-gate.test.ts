// An event's occurrence (its name, its time, that the person did it) is stored for a consent-based purpose of its
// event only where the notice in force describes the event's category for that purpose, as a field is.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages, uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';
import { DEFAULT_NOTICE_PURPOSES } from '../consent/defaults.ts';
import { CsvImporter, type CsvImportOptions } from './index.ts';

describeEachDialect('collect: an event is kept for a purpose only where the notice describes its occurrence', (dialect) => {
  const ctx = useKernel(dialect);
  const at = () => new Date().toISOString();

  before(async () => {
    // Narrower (not material, so consents keep counting): reporting describes only cookie ids, profiling only browsing
    // history.
    const purposes = DEFAULT_NOTICE_PURPOSES.map((p) =>
      p.purpose === 'analytics.reporting' ? { ...p, categories: ['user.device.cookie_id'] } : p.purpose === 'personalize.profiling' ? { ...p, categories: ['user.behavior.browsing_history'] } : p,
    );
    await ctx.kernel.consent.publishNotice({ text: 'narrower notice', purposes }, CLI_ACTOR);
  });

  const profileOf = async (userId: string) => {
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: at() }]);
    return profileId ?? null;
  };
  const consenting = async (purposes: string[]) => {
    const userId = uniqueId('occ');
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: at() }]));
    const profileId = resolved?.profileId as string;
    await ctx.kernel.consent.record(profileId, purposes.map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    return { userId, profileId };
  };
  const outcome = (r: { status: string; code?: string | undefined; purposes?: readonly string[] | undefined } | undefined) => ({ status: r?.status, ...(r?.code ? { code: r.code } : {}), ...(r?.purposes ? { purposes: r.purposes } : {}) });

  it('does not store an event for a consented purpose whose notice does not describe its occurrence: refused when it serves nothing else', async () => {
    const { userId, profileId } = await consenting(['analytics.reporting']);
    // As every client library sends it: its name and version are data about the system, kept for reporting, and they
    // tell nothing about what the notice describes of the person.
    const context = { library: { name: 'analytics-node', version: '2.1.0' } };
    const results = await sendMessages(ctx.kernel, [
      { type: 'page', userId, messageId: uniqueId('m'), name: 'Home', context },
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Product Viewed', properties: { product_id: 'p1' }, context },
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Order Completed', properties: { order_id: 'o1', total: 12, coupon: 'X' }, context },
      { type: 'alias', userId, previousId: uniqueId('anon'), messageId: uniqueId('m'), context },
    ]);
    assert.deepEqual(results.map(outcome), [
      { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
      { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
      // order_id and total serve operations (a contract: no notice check); the purchase itself is not reporting's.
      { status: 'stored', purposes: ['essential.service.operations'] },
      // Identify, group and alias link the events: no event of the plan can be kept for reporting, so no link either.
      { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
    ]);
    const stored = await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 10 });
    assert.deepEqual(stored.map((e) => [e.event, e.purposes]), [['Order Completed', ['essential.service.operations']]]);
    // The library's name is declared for reporting only: not kept in an event stored for operations.
    assert.equal((stored[0]?.data as { context?: unknown }).context, undefined);
  });

  it('treats a custom category under system as about the system: it stores no event for a purpose', async () => {
    await ctx.kernel.taxonomy.addCustom('data-categories', { key: 'acme_build', name: 'Build', description: 'The build of the app that sent it.', parentKey: 'system' }, CLI_ACTOR);
    const plan = structuredClone(DEFAULT_PLAN) as unknown as { context: { properties: { app: { properties: { build: { 'x-candor': { category: string } } } } } } };
    plan.context.properties.app.properties.build['x-candor'].category = 'acme_build';
    await ctx.kernel.catalog.publish(plan as unknown as PlanDocument, CLI_ACTOR);
    const { userId } = await consenting(['analytics.reporting']);
    // Email Signed Up's occurrence serves e-mail marketing only; its app version and build are about the system.
    const results = await sendMessages(ctx.kernel, [
      { type: 'track', event: 'Email Signed Up', userId, messageId: uniqueId('m'), context: { app: { version: '1.2' } } },
      { type: 'track', event: 'Email Signed Up', userId, messageId: uniqueId('m'), context: { app: { build: '7' } } },
    ]);
    assert.deepEqual(results.map(outcome), [
      { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
      { status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS' },
    ]);
  });

  it('stores an event for a consented purpose whose notice describes its occurrence, with no field kept for it', async () => {
    const { userId, profileId } = await consenting(['analytics.reporting', 'personalize.profiling']);
    const results = await sendMessages(ctx.kernel, [
      { type: 'page', userId, messageId: uniqueId('m') },
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Product Viewed' },
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Order Completed', properties: { order_id: 'o2' } },
      { type: 'alias', userId, previousId: uniqueId('anon'), messageId: uniqueId('m') },
      { type: 'identify', userId, messageId: uniqueId('m') },
    ]);
    assert.deepEqual(results.map(outcome), [
      { status: 'stored', purposes: ['personalize.profiling'] },
      { status: 'stored', purposes: ['personalize.profiling'] },
      { status: 'stored', purposes: ['essential.service.operations'] },
      { status: 'stored', purposes: ['personalize.profiling'] },
      { status: 'stored', purposes: ['personalize.profiling'] },
    ]);
    assert.equal((await ctx.kernel.collect.events([profileId], { decrypt: false, limit: 10 })).length, 5);
  });

  const importEvents = async (text: string, options: Partial<CsvImportOptions>) => {
    const summary = await new CsvImporter(ctx.kernel).run(Readable.from([text]), { kind: 'events', basis: 'consent', purposes: ['analytics.reporting'], source: 'files', actor: CLI_ACTOR, ...options });
    return { stored: summary.stored, refused: summary.refused };
  };

  it('agrees in a CSV import, its prediction and its dry run: a row whose occurrence is not described is refused, making nobody', async () => {
    const text = 'user_id,event\nocc-csv-1,Product Viewed\nocc-csv-2,Product Added\n';
    const dry = await importEvents(text, { dryRun: true });
    const real = await importEvents(text, {});
    assert.deepEqual(real, { stored: 0, refused: 2 });
    assert.deepEqual(dry, real);
    assert.equal(await profileOf('occ-csv-1'), null, 'a refused row makes and links nobody');
    // For profiling, whose notice describes browsing history: the product view is stored, the cart addition
    // (purchase history) is not.
    const profiling = 'user_id,event\nocc-csv-3,Product Viewed\nocc-csv-4,Product Added\n';
    const dryProfiling = await importEvents(profiling, { dryRun: true, purposes: ['personalize.profiling'] });
    const realProfiling = await importEvents(profiling, { purposes: ['personalize.profiling'] });
    assert.deepEqual(realProfiling, { stored: 1, refused: 1 });
    assert.deepEqual(dryProfiling, realProfiling);
    assert.ok(await profileOf('occ-csv-3'));
    assert.equal(await profileOf('occ-csv-4'), null);
  });
});
