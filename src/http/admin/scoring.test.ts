import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { loadShop } from '../../demo/load.ts';
import { DEFAULT_PLAN } from '../../modules/catalog/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('scoring over HTTP', (dialect) => {
  const ctx = useKernel(dialect);
  const http = useServer(ctx);
  const profileOf = async (userId: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'demo', at: new Date().toISOString() }]))[0] as string;

  before(async () => {
    const key = await ctx.kernel.access.createWriteKey('demo', null, CLI_ACTOR);
    const authorization = `Basic ${Buffer.from(`${key.secret}:`).toString('base64')}`;
    await loadShop(
      async (url, body, headers = {}) => {
        const r = await http.server.app.inject({ method: 'POST', url, headers: { authorization, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
        return { statusCode: r.statusCode, body: r.body };
      },
      { customers: 80, seed: 9, refuseProfiling: 0.25 },
    );
  });

  it('runs the job for analysts, not for marketers, and shows aggregates to staff', async () => {
    const denied = await http.server.app.inject({ method: 'POST', url: '/v1/admin/scoring/run', headers: http.auth('marketer') });
    assert.equal(denied.statusCode, 403);
    const run = await http.server.app.inject({ method: 'POST', url: '/v1/admin/scoring/run', headers: { ...http.auth('analyst'), 'content-type': 'application/json' }, payload: '{}' });
    assert.equal(run.statusCode, 200, run.body);
    const summary = run.json() as { people: number; profiled: number; notProfiled: Record<string, number> };
    assert.equal(summary.people, 80);
    assert.ok(summary.notProfiled.refused && summary.notProfiled.refused > 0);
    const overview = await http.server.app.inject({ method: 'GET', url: '/v1/admin/scoring/overview', headers: http.auth('marketer') });
    assert.equal(overview.statusCode, 200);
    const body = overview.json() as { segments: Record<string, number>; personas: { name: string }[] };
    assert.ok(Object.keys(body.segments).length > 0 && body.personas.length >= 2);
    const models = await http.server.app.inject({ method: 'GET', url: '/v1/admin/scoring/models', headers: http.auth('analyst') });
    assert.deepEqual((models.json() as { models: { kind: string }[] }).models.map((m) => m.kind).sort(), ['bgnbd', 'gamma_gamma', 'leads', 'personas', 'rfm']);
  });

  it("answers a person's scores with reasons to staff (audited) and to the person, or why they are not profiled", async () => {
    let scored = '';
    let unscored = '';
    for (let i = 1; i <= 80 && (!scored || !unscored); i++) {
      const id = await profileOf(`c9-${i}`);
      const r = await http.server.app.inject({ method: 'GET', url: `/v1/admin/profiles/${id}/scores`, headers: http.auth('marketer') });
      assert.equal(r.statusCode, 200, r.body);
      const s = r.json() as { profiled: boolean; computedAt: string | null; notProfiledReason: string | null; reasons: Record<string, string> };
      if (s.profiled && s.computedAt && !scored) {
        scored = id;
        assert.match(s.reasons.rfm ?? '', /^In segment /);
        assert.match(s.reasons.churn ?? '', /days? ago/);
      }
      if (!s.profiled && !unscored) {
        unscored = id;
        assert.equal(s.notProfiledReason, 'refused');
      }
    }
    assert.ok(scored && unscored);
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 100 });
    assert.ok(reads.some((e) => e.subject === ctx.kernel.keyring.pseudonym('subject', scored) && e.resource?.includes('/scores')), 'staff reads of scores are audited');
    const session = await ctx.kernel.subjectSessions.issue(scored, ctx.kernel.keyring.pseudonym('subject', scored), { ttlSeconds: 300, via: 'test' }, CLI_ACTOR);
    const mine = await http.server.app.inject({ method: 'GET', url: '/v1/me/scores', headers: { authorization: `Bearer ${session.token}` } });
    assert.equal(mine.statusCode, 200, mine.body);
    assert.equal((mine.json() as { profileId: string }).profileId, scored);
    assert.match((mine.json() as { reasons: Record<string, string> }).reasons.clv ?? '', /worth about/);
  });

  it('masks the money in scores and reasons for staff who may not read order totals, as the profile masks the totals', async () => {
    type Scores = { scores: { clv?: { value: number | null; spend: number | null; purchases: number } }; reasons: Record<string, string>; masked?: string[] };
    let id = '';
    for (let i = 1; i <= 80 && !id; i++) {
      const candidate = await profileOf(`c9-${i}`);
      const s = (await http.server.app.inject({ method: 'GET', url: `/v1/admin/profiles/${candidate}/scores`, headers: http.auth('owner') })).json() as Scores;
      if (s.scores.clv && s.reasons.rfm) id = candidate;
    }
    assert.ok(id, 'someone has a lifetime value');
    const read = async (role: string) => {
      const r = await http.server.app.inject({ method: 'GET', url: `/v1/admin/profiles/${id}/scores`, headers: http.auth(role) });
      assert.equal(r.statusCode, 200, r.body);
      return r.json() as Scores;
    };
    // The default plan declares the order total not personal: everyone reads the amounts, and only the reasons.
    const shown = await read('marketer');
    assert.match(shown.reasons.rfm ?? '', /spent in all/);
    assert.equal(typeof shown.scores.clv?.value, 'number');
    assert.equal(shown.masked, undefined);
    assert.deepEqual(Object.keys(shown.reasons).filter((k) => k.endsWith('WithoutAmounts')), []);
    // A version declaring the total personal: marketers and analysts read no amount, owners and the person every one.
    const plan = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    plan.events['Order Completed'].properties.properties.total['x-candor'].personal = true;
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    try {
      // A run of one model keeps the other models' reasons, and their variants without amounts with them.
      const rerun = await http.server.app.inject({ method: 'POST', url: '/v1/admin/scoring/run', headers: { ...http.auth('analyst'), 'content-type': 'application/json' }, payload: '{"models":["rfm"]}' });
      assert.equal(rerun.statusCode, 200, rerun.body);
      for (const role of ['marketer', 'analyst']) {
        const masked = await read(role);
        assert.deepEqual([masked.scores.clv?.value, masked.scores.clv?.spend, typeof masked.scores.clv?.purchases], [null, null, 'number'], role);
        assert.match(masked.reasons.rfm ?? '', /^In segment .*monetary \d of 5 \(the amount spent is masked\)\.$/);
        assert.match(masked.reasons.clv ?? '', /^Expected to order about [\d.]+ times in the next 12 months \(the amounts are masked\)\.$/);
        assert.ok(!/\d\.\d\d\b/.test(JSON.stringify(masked.reasons)), `no amount in ${JSON.stringify(masked.reasons)}`);
        assert.deepEqual(masked.masked, ['clv.value', 'clv.spend', 'reasons.rfm', 'reasons.clv']);
        assert.deepEqual(Object.keys(masked.reasons).filter((k) => k.endsWith('WithoutAmounts')), []);
      }
      const owner = await read('owner');
      assert.deepEqual([owner.reasons.rfm, owner.scores.clv?.value, owner.masked], [shown.reasons.rfm, shown.scores.clv?.value, undefined]);
      const session = await ctx.kernel.subjectSessions.issue(id, ctx.kernel.keyring.pseudonym('subject', id), { ttlSeconds: 300, via: 'test' }, CLI_ACTOR);
      const mine = (await http.server.app.inject({ method: 'GET', url: '/v1/me/scores', headers: { authorization: `Bearer ${session.token}` } })).json() as Scores;
      assert.deepEqual([mine.reasons.rfm, mine.reasons.clv, mine.masked], [shown.reasons.rfm, shown.reasons.clv, undefined]);
    } finally {
      await ctx.kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
    }
  });

  it('audits every selection by the four-fifths rule, only with fairness_audit data and only as aggregates', async () => {
    const denied = await http.server.app.inject({ method: 'GET', url: '/v1/admin/scoring/fairness?attribute=age_range', headers: http.auth('marketer') });
    assert.equal(denied.statusCode, 403);
    const wrong = await http.server.app.inject({ method: 'GET', url: '/v1/admin/scoring/fairness?attribute=country', headers: http.auth('analyst') });
    assert.equal(wrong.statusCode, 400);
    assert.equal((wrong.json() as { code: string }).code, 'SCORING_AUDIT_ATTRIBUTE_INVALID');
    const response = await http.server.app.inject({ method: 'GET', url: '/v1/admin/scoring/fairness?attribute=age_range', headers: http.auth('analyst') });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { people: number; withGroup: number; reports: { selection: string; groups: { group: string; members: number; ratio: number; flagged: boolean }[]; passes: boolean; unknown: number }[] };
    // Only people who gave explicit consent for fairness audits (about 40%) have a group.
    assert.ok(body.withGroup > 0 && body.withGroup < body.people, JSON.stringify({ people: body.people, withGroup: body.withGroup }));
    assert.ok(body.reports.some((r) => r.selection.startsWith('segment:')) && body.reports.some((r) => r.selection === 'churn:high'));
    for (const report of body.reports) {
      for (const g of report.groups) assert.ok(g.members >= 10 || g.group === 'other', 'no group under 10 is reported on its own');
      assert.equal(report.passes, report.groups.every((g) => !g.flagged));
    }
    assert.ok(!response.body.includes('prf_'), 'no profile ids, aggregates only');
  });
});
