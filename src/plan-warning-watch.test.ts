// A running server's log names the fields and events of the plan in force the consent gate cannot keep for all of their
// purposes (an older stored version after an upgrade, a notice that describes less): once per change, not per refresh.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createEnvironment, describeEachDialect } from '../test/support/databases.ts';
import { captureLog } from '../test/support/log-capture.ts';
import { planWithEvent } from '../test/support/plans.ts';
import { openKernel, type Kernel } from './kernel.ts';
import { LIST_PLAN_WARNINGS, PlanWarningWatch } from './plan-warning-watch.ts';
import { CLI_ACTOR } from './shared/actor.ts';
import { createLogger } from './shared/logger.ts';

const WARNED = 'the consent gate cannot keep for all of their purposes';
/** An event shared with partners that declares no category: read as user.behavior, which notice 1 describes for third_party_sharing only as purchase history. */
const SHARED = 'Shared With Partner';

describeEachDialect('PlanWarningWatch: the warnings of the plan in force in the log', (dialect) => {
  it('logs one warning with the counts, versions and events at start, none for an identical refresh, none when a change clears them, one again when they come back', { timeout: 60_000 }, async (t) => {
    const env = await createEnvironment(dialect);
    t.after(() => env.cleanup());
    // The store as an upgrade finds it: a plan in force with an event that declares no category.
    const before = await openKernel(env.config);
    try {
      assert.equal((await before.catalog.publish(planWithEvent(SHARED, ['third_party_sharing']), CLI_ACTOR)).version, 2);
    } finally {
      await before.close();
    }

    const { lines, stream } = captureLog();
    const kernel = await openKernel(env.config, { logger: createLogger('warn', stream) });
    const other = await openKernel(env.config);
    t.after(async () => {
      await other.close();
      await kernel.close();
    });
    const watch = new PlanWarningWatch(kernel);
    const warned = () => lines.filter((line) => line.includes(WARNED)).map((line) => JSON.parse(line) as Record<string, unknown>);

    const atStart = await watch.check();
    assert.deepEqual({ ...atStart, warnings: atStart.warnings.map((w) => w.event) }, { planVersion: 2, noticeVersion: 1, warnings: [SHARED], fields: 0, events: 1 });
    assert.equal(warned().length, 1, lines.join(''));
    const [first] = warned();
    assert.equal(first?.level, 40);
    assert.equal(first?.msg, `the tracking plan in force has 1 field or event ${WARNED} under the notice in force`);
    assert.deepEqual({ ...first, level: undefined, time: undefined, msg: undefined }, {
      level: undefined,
      time: undefined,
      msg: undefined,
      planVersion: 2,
      noticeVersion: 1,
      fields: 0,
      events: 1,
      first: [
        {
          section: 'track',
          event: SHARED,
          warning: 'occurrence never kept for the event\'s purposes: the notice in force does not describe user.behavior for its purposes (third_party_sharing) (the event declares no category: read as user.behavior)',
        },
      ],
      list: LIST_PLAN_WARNINGS,
    });

    // The server's refresh every second, with nothing changed: nothing logged again.
    await refresh(kernel);
    await watch.check();
    await watch.check();
    assert.equal(warned().length, 1);

    // Another process publishes the plan with the event's category, which notice 1 describes for third_party_sharing.
    await other.catalog.publish(planWithEvent(SHARED, ['third_party_sharing'], 'user.behavior.purchase_history'), CLI_ACTOR);
    const cleared = await until(kernel, watch, (s) => s.planVersion === 3);
    assert.deepEqual(cleared.warnings, []);
    await refresh(kernel);
    await watch.check();
    assert.equal(warned().length, 1, 'a change that clears the warnings logs nothing');

    // Another process publishes a notice that describes less for third_party_sharing: the event's occurrence is refused.
    const notice = other.consent.currentNotice();
    const narrower = notice.purposes.map((p) => (p.purpose === 'third_party_sharing' ? { ...p, categories: ['user.contact.email', 'user.name'] } : p));
    assert.equal((await other.consent.publishNotice({ text: notice.text, purposes: narrower }, CLI_ACTOR)).version, 2);
    const narrowed = await until(kernel, watch, (s) => s.noticeVersion === 2);
    assert.deepEqual(narrowed.warnings.map((w) => [w.event, w.path]), [[SHARED, undefined]]);
    assert.equal(warned().length, 2);
    assert.deepEqual([warned()[1]?.planVersion, warned()[1]?.noticeVersion], [3, 2]);

    // A publish in this process that adds a field the narrower notice leaves out: one warning, with both counted.
    const withField = planWithEvent(SHARED, ['third_party_sharing'], 'user.behavior.purchase_history');
    const shared = withField.events[SHARED];
    assert.ok(shared?.properties?.properties);
    shared.properties.properties.partner_ref = { type: 'string', 'x-candor': { category: 'user.unique_id', purposes: ['third_party_sharing'], retention: 'P13M', personal: false } };
    assert.equal((await kernel.catalog.publish(withField, CLI_ACTOR)).version, 4);
    const published = await watch.check();
    assert.deepEqual([published.fields, published.events], [1, 1]);
    await watch.check();
    assert.equal(warned().length, 3);
    assert.deepEqual(warned()[2]?.first, published.warnings.map((w) => ({ section: w.section, event: w.event, ...(w.path === undefined ? {} : { path: w.path }), warning: w.warning })));
    assert.match(String(warned()[2]?.msg), /has 2 fields or events/);
  });
});

/** What the server does every second: configuration another process changed is read again. */
async function refresh(kernel: Kernel): Promise<void> {
  await kernel.taxonomy.refreshIfChanged();
  await kernel.consent.refreshConfigurationIfChanged();
  await kernel.catalog.refreshIfChanged();
}

/** Refreshes and checks until `done` (PostgreSQL's commit notice arrives a moment after the commit). */
async function until(kernel: Kernel, watch: PlanWarningWatch, done: (summary: Awaited<ReturnType<PlanWarningWatch['check']>>) => boolean) {
  const deadline = Date.now() + 5000;
  for (;;) {
    await refresh(kernel);
    const summary = await watch.check();
    if (done(summary) || Date.now() > deadline) return summary;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
