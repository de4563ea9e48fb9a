// The category of an event's occurrence (its name, its time, that the person did it): plan warnings where the notice
// does not describe it for the event's purposes, and stored versions that declare none.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages, uniqueId } from '../../../test/support/subjects.ts';
import { planWarningOptions } from '../../kernel.ts';
import { planWarningSummary } from '../../plan-warning-watch.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DATA_CATEGORIES, CANDOR_DATA_USES, DATA_USES } from '../taxonomy/taxonomy.data.ts';
import { DEFAULT_PLAN, planHash, planWarnings, type ConfiguredPurpose, type PlanDocument } from './index.ts';
import { compilePlan, type TaxonomyLookup } from './plan-compiler.ts';

const taxonomy: TaxonomyLookup = {
  dataCategory: (key) => DATA_CATEGORIES.find((e) => e.key === key),
  dataUse: (key) => [...DATA_USES, ...CANDOR_DATA_USES].find((e) => e.key === key),
};

/** The plan as a version stored before event categories: no event declares one. */
function withoutCategories(plan: PlanDocument): PlanDocument {
  const stripped = structuredClone(plan);
  for (const event of [...Object.values(stripped.events), stripped.pages, stripped.screens]) if (event) delete event.category;
  return stripped;
}

describe('planWarnings: an event whose occurrence the gate cannot keep for its purposes', () => {
  const purposes: ConfiguredPurpose[] = ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email', 'fairness_audit'].map((key) => ({ key, explicit: key === 'fairness_audit' }));
  const outline = (plan: unknown) => {
    const { compiled, problems } = compilePlan(plan, taxonomy);
    assert.deepEqual(problems, []);
    return compiled?.outline() ?? [];
  };
  /** A notice that describes `categories` for every purpose (and their children). */
  const notice = (categories: string[]) => (_purpose: string, category: string) => categories.some((c) => category === c || category.startsWith(`${c}.`));
  const body = { type: 'object', properties: {} };

  it('warns, with no path, where the notice does not describe the category for some or all of the event\'s purposes', () => {
    const plan = {
      name: 'Occurrences',
      events: {
        Viewed: { category: 'user.behavior.browsing_history', purposes: ['analytics.reporting', 'personalize.profiling'], properties: body },
        Bought: { category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], properties: body },
        Symptom: { category: 'user.health_and_medical', purposes: ['analytics.reporting'], properties: body },
        Audited: { category: 'user.health_and_medical', purposes: ['fairness_audit'], properties: body },
        Offered: { category: 'user.behavior', purposes: ['analytics.reporting'], properties: body },
      },
    };
    const describes = (purpose: string, category: string) =>
      category === 'user.health_and_medical' || (purpose === 'personalize.profiling' && category.startsWith('user.behavior'));
    assert.deepEqual(planWarnings(outline(plan), purposes, describes), [
      { section: 'track', event: 'Viewed', warning: 'occurrence not kept for analytics.reporting: the notice in force does not describe user.behavior.browsing_history for it' },
      { section: 'track', event: 'Bought', warning: 'occurrence never kept for the event\'s purposes: the notice in force does not describe user.behavior.purchase_history for its purposes (analytics.reporting)' },
      { section: 'track', event: 'Symptom', warning: 'occurrence never kept for the event\'s purposes: a special category needs explicit consent, and none of its purposes (analytics.reporting) asks for it' },
      { section: 'track', event: 'Offered', warning: 'occurrence never kept for the event\'s purposes: the notice in force does not describe user.behavior for its purposes (analytics.reporting)' },
    ]);
  });

  it('says when the category is the one read for an event that declares none', () => {
    const plan = { name: 'Bare', events: { Clicked: { purposes: ['analytics.reporting'], properties: body } } };
    assert.deepEqual(planWarnings(outline(plan), purposes, notice(['user.behavior.browsing_history'])), [
      { section: 'track', event: 'Clicked', warning: 'occurrence never kept for the event\'s purposes: the notice in force does not describe user.behavior for its purposes (analytics.reporting) (the event declares no category: read as user.behavior)' },
    ]);
    assert.deepEqual(planWarnings(outline(plan), purposes, notice(['user.behavior'])), []);
  });

  it('warns about page and screen views too', () => {
    const warnings = planWarnings(outline(DEFAULT_PLAN), purposes, notice(['user.behavior.purchase_history', 'user.content', 'user.contact', 'user.name', 'user.demographic', 'user.location', 'user.device', 'user.workplace', 'user.account', 'user.unique_id', 'user.health_and_medical']));
    assert.deepEqual(
      warnings.filter((w) => w.path === undefined).map((w) => w.event ?? w.section),
      ['Product Viewed', 'Email Signed Up', 'page', 'screen'],
    );
  });
});

describe('planWarnings: a field about the system, kept only in an event stored for one of its purposes', () => {
  const purposes: ConfiguredPurpose[] = ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email', 'essential.fraud_detection'].map((key) => ({ key, explicit: false }));
  const aboutTheSystem = (category: string) => category === 'system' || category.startsWith('system.');
  const annotated = (category: string, fieldPurposes: string[]) => ({ type: 'string', 'x-candor': { category, purposes: fieldPurposes, retention: 'P1Y', personal: false } });
  const warningsOf = (plan: unknown, lenient = false) => {
    const { compiled, problems } = compilePlan(plan, taxonomy, { lenient });
    assert.deepEqual(problems, []);
    return planWarnings(compiled?.outline() ?? [], purposes, () => true, aboutTheSystem);
  };

  it('says a field is never stored when none of its purposes is its event\'s, or one of its event\'s fields about the person; for a context field, of any section', () => {
    const plan = {
      name: 'System fields',
      events: {
        Viewed: {
          category: 'user.behavior.browsing_history',
          purposes: ['analytics.reporting'],
          properties: {
            type: 'object',
            properties: {
              build: annotated('system.operations', ['marketing.communications.email']),
              version: annotated('system.operations', ['analytics.reporting']),
              topic: annotated('user.behavior.browsing_history', ['personalize.profiling']),
              region: annotated('system.operations', ['personalize.profiling', 'marketing.communications.email']),
            },
          },
        },
      },
      context: {
        type: 'object',
        properties: {
          library: { type: 'object', properties: { name: annotated('system.operations', ['essential.fraud_detection']), version: annotated('system.operations', ['personalize.profiling']) } },
        },
      },
    };
    assert.deepEqual(warningsOf(plan), [
      {
        section: 'track',
        event: 'Viewed',
        path: 'properties.build',
        warning: 'never stored: system.operations is about the system, kept only in an event stored for one of its purposes (marketing.communications.email), and the event is stored for none of them',
      },
      {
        section: 'context',
        path: 'context.library.name',
        warning: 'never stored: system.operations is about the system, kept only in an event stored for one of its purposes (essential.fraud_detection), and no event, page or screen of the plan is stored for any of them',
      },
    ]);
    // Without aboutTheSystem (a caller that does not pass it), no field is read as about the system.
    const { compiled } = compilePlan(plan, taxonomy);
    assert.deepEqual(planWarnings(compiled?.outline() ?? [], purposes, () => true), []);
  });

  it('lists a stored version\'s occurrence about the system, read as user.behavior', () => {
    const plan = { name: 'Stored', events: { Pinged: { category: 'system.operations', purposes: ['analytics.reporting'], properties: { type: 'object', properties: {} } } } };
    assert.deepEqual(compilePlan(plan, taxonomy).problems, [{ path: '/events/Pinged/category', problem: 'system.operations is about the system, and an occurrence is something the person did: choose a user.* category' }]);
    assert.deepEqual(warningsOf(plan, true), [{ section: 'track', event: 'Pinged', warning: 'occurrence category system.operations is about the system, not something the person did: read as user.behavior' }]);
    const { compiled } = compilePlan(plan, taxonomy, { lenient: true });
    assert.deepEqual(planWarnings(compiled?.outline() ?? [], purposes, (_p, category) => category !== 'user.behavior'), [
      {
        section: 'track',
        event: 'Pinged',
        warning: 'occurrence never kept for the event\'s purposes: the notice in force does not describe user.behavior for its purposes (analytics.reporting) (the event\'s category system.operations is about the system, not something the person did: read as user.behavior)',
      },
    ]);
  });
});

describeEachDialect('catalog: the category of an event\'s occurrence', (dialect) => {
  const ctx = useKernel(dialect);

  it('finds every event category of the default plan described by the default notice for the event\'s purposes', async () => {
    const checked = await ctx.kernel.catalog.validatePlan(DEFAULT_PLAN, planWarningOptions(ctx.kernel));
    assert.deepEqual(checked, { ok: true, problems: [], warnings: [] });
  });

  it('loads a stored version whose events declare no category, and keeps its events as user.behavior (described by notice 1)', async () => {
    const plan = withoutCategories(DEFAULT_PLAN);
    // One more event of a category this process does not know (a custom one removed since): read as special.
    plan.events['Custom Thing'] = { category: 'user.custom_gone', purposes: ['analytics.reporting'], properties: { type: 'object', properties: {} } };
    const row = { version: 2, name: plan.name, hash: planHash(plan), plan: JSON.stringify(plan), published_at: new Date().toISOString(), published_by: 'cli' };
    await ctx.kernel.storage.db.withTables<{ catalog_plans: typeof row }>().insertInto('catalog_plans').values(row).execute();
    assert.equal(await ctx.kernel.catalog.refresh(), 2, 'the stored version is in force');
    const outline = await ctx.kernel.catalog.outline();
    assert.deepEqual(outline.find((s) => s.section === 'page')?.occurrence, { category: 'user.behavior', purposes: ['analytics.reporting', 'personalize.profiling'], special: false, preciseLocation: false, declared: false });

    const userId = uniqueId('stored-plan');
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    await ctx.kernel.consent.record(resolved?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const [page, custom] = await sendMessages(ctx.kernel, [
      { type: 'page', userId, messageId: uniqueId('m') },
      { type: 'track', userId, messageId: uniqueId('m'), event: 'Custom Thing' },
    ]);
    assert.deepEqual({ status: page?.status, purposes: page?.purposes }, { status: 'stored', purposes: ['analytics.reporting'] });
    assert.equal(custom?.status, 'refused', 'an occurrence of an unknown category needs explicit consent');
    await ctx.kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
  });

  it('warns, when publishing and in `candor plan warnings`, about a context field about the system whose purposes no event is stored for', async () => {
    const { plan, version } = await ctx.kernel.catalog.plan();
    const doc = structuredClone(plan) as PlanDocument & { context: { properties: { library: { properties: { name: { 'x-candor': { purposes: string[] } } } } } } };
    doc.context.properties.library.properties.name['x-candor'].purposes = ['essential.fraud_detection'];
    const expected = {
      section: 'context',
      path: 'context.library.name',
      warning: 'never stored: system.operations is about the system, kept only in an event stored for one of its purposes (essential.fraud_detection), and no event, page or screen of the plan is stored for any of them',
    };
    const published = await ctx.kernel.catalog.publish(doc, CLI_ACTOR, { baseVersion: version, ...planWarningOptions(ctx.kernel) });
    assert.deepEqual(published.warnings, [expected]);
    assert.deepEqual((await planWarningSummary(ctx.kernel)).warnings, [expected]);
    await ctx.kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
  });
});
