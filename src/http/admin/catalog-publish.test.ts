import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { planWithEvent } from '../../../test/support/plans.ts';
import { useServer } from '../../../test/support/server.ts';
import { openKernel } from '../../kernel.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../../modules/catalog/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer } from '../server.ts';

describeEachDialect('admin API: publishing the tracking plan on a base version', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const { auth } = harness;

  it('tags the plan with its version and publishes with If-Match only while that version is the latest', async () => {
    const app = harness.server.app;
    const shown = await app.inject({ url: '/v1/admin/catalog/plan', headers: auth('analyst') });
    assert.equal(shown.headers.etag, '"1"');
    const put = (plan: PlanDocument, ifMatch?: string) =>
      app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: { ...auth('developer'), ...(ifMatch === undefined ? {} : { 'if-match': ifMatch }) }, payload: plan });

    const created = await put(planWithEvent('Tagged A'), '"1"');
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.headers.etag, '"2"');
    const stale = await put(planWithEvent('Tagged B'), '"1"');
    assert.equal(stale.statusCode, 409, stale.body);
    assert.match(String(stale.headers['content-type']), /^application\/problem\+json/);
    const problem = stale.json() as { code: string; details: unknown };
    assert.equal(problem.code, 'CATALOG_PLAN_CONFLICT');
    assert.deepEqual(problem.details, { baseVersion: 1, latestVersion: 2 });
    assert.equal(ctx.kernel.catalog.version(), 2);
    assert.equal((await ctx.kernel.catalog.versions()).length, 2, 'nothing stored');

    const again = await put(planWithEvent('Tagged A'), '"1"');
    assert.equal(again.statusCode, 200, 'the document of the latest version changes nothing, whatever its base');
    assert.equal(again.headers.etag, '"2"');
    assert.equal((await put(planWithEvent('Tagged B'), '"2"')).statusCode, 201);
    assert.equal((await put(planWithEvent('Tagged C'), '*')).statusCode, 201, '* names no base');
    assert.equal((await put(planWithEvent('Tagged D'))).statusCode, 201, 'without If-Match, as before');
    for (const bad of ['W/"5"', '5', '"0"', '"1", "2"']) {
      const refused = await put(planWithEvent('Tagged E'), bad);
      assert.equal(refused.statusCode, 400, bad);
      assert.equal((refused.json() as { code: string }).code, 'REQUEST_VALIDATION_FAILED');
    }
    assert.equal(ctx.kernel.catalog.version(), 5);
  });

  it('keeps one of twelve concurrent publishes from one base across two servers, and answers the others 409', async () => {
    const otherKernel = await openKernel(ctx.env.config);
    const other = await buildServer(otherKernel);
    try {
      const apps = [harness.server.app, other.app];
      const base = (await apps[1]!.inject({ url: '/v1/admin/catalog/plan', headers: auth('owner') })).headers.etag as string;
      assert.equal(base, `"${ctx.kernel.catalog.version()}"`, 'the other server tags the latest version');
      const answers = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          apps[i % 2]!.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: { ...auth('owner'), 'if-match': base }, payload: planWithEvent(`Edit ${i}`) }),
        ),
      );
      assert.deepEqual(answers.map((a) => a.statusCode).sort(), [201, ...Array<number>(11).fill(409)]);
      const winner = answers.find((a) => a.statusCode === 201)?.json() as { version: number };
      // Published on one server, tagged by the other at once: its ETag is always a base a publish can be made on.
      const next = await apps[0]!.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: { ...auth('owner'), 'if-match': `"${winner.version}"` }, payload: planWithEvent('Edit next') });
      assert.equal(next.statusCode, 201, next.body);
      const shown = await apps[1]!.inject({ url: '/v1/admin/catalog/plan', headers: auth('owner') });
      assert.equal(shown.headers.etag, `"${winner.version + 1}"`);
      assert.equal((shown.json() as { version: number }).version, winner.version + 1);
    } finally {
      await other.app.close();
      await otherKernel.close();
    }
  });
  it('lists the fields the consent gate can never store with the purposes configured now, and publishes anyway', async () => {
    const app = harness.server.app;
    const plan = planWithEvent('Symptoms Logged');
    const symptoms = plan.events['Symptoms Logged'] as { properties: { properties: Record<string, unknown> } };
    symptoms.properties.properties.symptom = { type: 'string', 'x-candor': { category: 'user.health_and_medical', purposes: ['analytics.reporting'], retention: 'P6M', personal: true } };
    symptoms.properties.properties.clip = { type: 'string', 'x-candor': { category: 'user.behavior', purposes: ['analytics.reporting.ad_performance'], retention: 'P6M', personal: false } };
    const expected = [
      { section: 'track', event: 'Symptoms Logged', path: 'properties.symptom', warning: 'never stored: a special category needs explicit consent, and none of its purposes (analytics.reporting) asks for it' },
      { section: 'track', event: 'Symptoms Logged', path: 'properties.clip', warning: 'never stored: none of its purposes (analytics.reporting.ad_performance) is configured' },
    ];
    const checked = await app.inject({ method: 'POST', url: '/v1/admin/catalog/plan/validate', headers: auth('developer'), payload: plan });
    assert.equal(checked.statusCode, 200, checked.body);
    assert.deepEqual(checked.json(), { ok: true, problems: [], warnings: expected });
    const published = await app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: auth('developer'), payload: plan });
    assert.equal(published.statusCode, 201, published.body);
    assert.deepEqual(published.json().warnings, expected);
    const defaults = await app.inject({ method: 'POST', url: '/v1/admin/catalog/plan/validate', headers: auth('developer'), payload: DEFAULT_PLAN });
    assert.deepEqual(defaults.json().warnings, [], 'the default plan stores every field with the default purposes and notice');
    // Once a purpose of the field asks for explicit consent (and the other is configured), what is left is the notice:
    // it describes neither category for those purposes.
    await ctx.kernel.consent.setPurpose({ ...ctx.kernel.consent.purpose('analytics.reporting')!, explicit: true }, CLI_ACTOR);
    await ctx.kernel.consent.setPurpose({ ...ctx.kernel.consent.purpose('analytics.reporting')!, key: 'analytics.reporting.ad_performance', explicit: false }, CLI_ACTOR);
    const again = await app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: auth('developer'), payload: plan });
    assert.equal(again.statusCode, 200, again.body);
    const answer = again.json() as { warnings: { event?: string }[] };
    assert.deepEqual({ ...answer, warnings: answer.warnings.filter((w) => w.event === 'Symptoms Logged') }, {
      version: published.json().version,
      hash: published.json().hash,
      unchanged: true,
      warnings: [
        { section: 'track', event: 'Symptoms Logged', path: 'properties.symptom', warning: 'never stored: the notice in force does not describe user.health_and_medical for its purposes (analytics.reporting)' },
        { section: 'track', event: 'Symptoms Logged', path: 'properties.clip', warning: 'never stored: the notice in force does not describe user.behavior for its purposes (analytics.reporting.ad_performance)' },
      ],
    });
  });
});
