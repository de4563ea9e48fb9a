import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { planWithEvent } from '../../../test/support/plans.ts';
import { useServer } from '../../../test/support/server.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../../modules/catalog/index.ts';

describeEachDialect('admin API: tracking plan', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const { auth } = harness;

  it('declares audience, roles and the operations purpose on every catalog route', () => {
    const routes = harness.server.routes.filter((r) => r.url.startsWith('/v1/admin/catalog'));
    assert.deepEqual(routes.map((r) => `${r.method} ${r.url}`).sort(), [
      'GET /v1/admin/catalog/plan',
      'GET /v1/admin/catalog/plan/versions',
      'GET /v1/admin/catalog/plan/versions/:version',
      'GET /v1/admin/catalog/stats',
      'POST /v1/admin/catalog/plan/validate',
      'PUT /v1/admin/catalog/plan',
    ]);
    for (const route of routes) {
      assert.equal(route.access?.audience, 'admin');
      assert.equal(route.access?.purpose, 'essential.service.operations');
    }
    assert.deepEqual(routes.find((r) => r.method === 'PUT')?.access?.roles, ['owner', 'privacy_officer', 'developer']);
    assert.deepEqual(routes.find((r) => r.url.endsWith('/validate'))?.access?.roles, ['owner', 'privacy_officer', 'developer'], 'checking costs what publishing costs');
  });

  it('shows the plan in force to every staff role, document intact', async () => {
    for (const role of ['owner', 'privacy_officer', 'marketer', 'analyst', 'developer']) {
      const response = await harness.server.app.inject({ url: '/v1/admin/catalog/plan', headers: auth(role) });
      assert.equal(response.statusCode, 200, role);
      const body = response.json() as { version: number; plan: PlanDocument; hash: string; publishedBy: string };
      assert.equal(body.version, 1);
      assert.deepEqual(body.plan, JSON.parse(JSON.stringify(DEFAULT_PLAN)));
      assert.match(body.hash, /^[0-9a-f]{64}$/);
    }
  });

  it('publishes with PUT for owners, privacy officers and developers, and refuses marketers', async () => {
    const denied = await harness.server.app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: auth('marketer'), payload: planWithEvent('Searched') });
    assert.equal(denied.statusCode, 403);
    const created = await harness.server.app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: auth('developer'), payload: planWithEvent('Searched') });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal((created.json() as { version: number }).version, 2);
    assert.equal(ctx.kernel.catalog.version(), 2);
    const same = await harness.server.app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: auth('owner'), payload: planWithEvent('Searched') });
    assert.equal(same.statusCode, 200);
    assert.deepEqual(same.json(), { version: 2, hash: (created.json() as { hash: string }).hash, unchanged: true, warnings: [] });
    const entry = (await ctx.kernel.audit.list({ action: 'catalog.plan.publish', limit: 10 })).at(-1);
    assert.equal(entry?.role, 'developer');
  });

  it('answers an invalid plan with 400 CATALOG_PLAN_INVALID listing every problem', async () => {
    const plan = planWithEvent('Broken') as unknown as { events: Record<string, { properties: { properties: Record<string, unknown> } }> };
    plan.events.Broken!.properties.properties.query = { type: 'string', 'x-candor': { category: 'user.nope', purposes: ['analytics.nope'], retention: 'forever', personal: false } };
    const response = await harness.server.app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: auth('privacy_officer'), payload: plan });
    assert.equal(response.statusCode, 400);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
    const body = response.json() as { code: string; details: { problems: { path: string }[] } };
    assert.equal(body.code, 'CATALOG_PLAN_INVALID');
    const base = '/events/Broken/properties/properties/query/x-candor';
    assert.deepEqual(body.details.problems.map((p) => p.path).sort(), [`${base}/category`, `${base}/purposes/0`, `${base}/retention`]);
    assert.equal(ctx.kernel.catalog.version(), 2);
    const bodyless = await harness.server.app.inject({ method: 'PUT', url: '/v1/admin/catalog/plan', headers: { ...auth('owner'), 'content-type': 'application/json' }, payload: '[]' });
    assert.equal(bodyless.statusCode, 400);
  });

  it('validates without publishing, for the roles that publish only', async () => {
    for (const role of ['analyst', 'marketer']) {
      const denied = await harness.server.app.inject({ method: 'POST', url: '/v1/admin/catalog/plan/validate', headers: auth(role), payload: planWithEvent('Another') });
      assert.equal(denied.statusCode, 403, role);
    }
    const ok = await harness.server.app.inject({ method: 'POST', url: '/v1/admin/catalog/plan/validate', headers: auth('developer'), payload: planWithEvent('Another') });
    assert.deepEqual(ok.json(), { ok: true, problems: [], warnings: [] });
    const bad = await harness.server.app.inject({ method: 'POST', url: '/v1/admin/catalog/plan/validate', headers: auth('privacy_officer'), payload: { name: 'x' } });
    assert.equal(bad.statusCode, 200);
    assert.deepEqual(bad.json(), { ok: false, problems: [{ path: '/events', problem: 'is required' }] });
    assert.equal(ctx.kernel.catalog.version(), 2);
  });

  it('lists versions and reads one, 404 for an unknown one', async () => {
    const versions = (await harness.server.app.inject({ url: '/v1/admin/catalog/plan/versions', headers: auth('analyst') })).json() as { version: number }[];
    assert.deepEqual(versions.map((v) => v.version), [1, 2]);
    const first = (await harness.server.app.inject({ url: '/v1/admin/catalog/plan/versions/1', headers: auth('analyst') })).json() as { plan: PlanDocument };
    assert.equal(first.plan.events.Searched, undefined);
    const missing = await harness.server.app.inject({ url: '/v1/admin/catalog/plan/versions/7', headers: auth('analyst') });
    assert.equal(missing.statusCode, 404);
    assert.equal((missing.json() as { code: string }).code, 'CATALOG_PLAN_VERSION_NOT_FOUND');
  });

  it('shows counts per source and event, filtered', async () => {
    ctx.kernel.catalog.process('track', 'Searched', { properties: { query: 'shoes', page: 2 } }, 'web');
    ctx.kernel.catalog.process('track', 'Searched', { properties: { query: 3 } }, 'web');
    ctx.kernel.catalog.process('track', 'Searched', { properties: { query: 'hats' } }, 'ios');
    const response = await harness.server.app.inject({ url: '/v1/admin/catalog/stats?source=web&event=Searched', headers: auth('marketer') });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), [
      {
        source: 'web',
        kind: 'track',
        event: 'Searched',
        accepted: 1,
        refused: { CATALOG_EVENT_UNDECLARED: 0, CATALOG_EVENT_INVALID: 1 },
        dropped: [{ path: 'properties.page', count: 1 }],
        violations: [{ path: 'properties.query', rule: 'type', count: 1 }],
      },
    ]);
    const all = (await harness.server.app.inject({ url: '/v1/admin/catalog/stats', headers: auth('marketer') })).json() as unknown[];
    assert.equal(all.length, 2);
  });
});
