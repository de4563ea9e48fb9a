import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { loadShop, type Send } from '../../demo/load.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { compress, fitBgNbd } from './index.ts';

describeEachDialect('scoring: consent-bound, explained, and following erasure and withdrawal', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let send: Send;
  // A fixed time of day (yesterday noon, UTC) for the shop's history and for the scoring runs, so the data and the
  // 90-day windows the models see are the same in every run whatever the hour.
  const DAY_MS = 86_400_000;
  const now = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS / 2);
  const profileOf = async (userId: string) => {
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'demo', at: new Date().toISOString() }]);
    assert.ok(id, `profile of ${userId}`);
    return id;
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    const key = await ctx.kernel.access.createWriteKey('demo', null, CLI_ACTOR);
    const authorization = `Basic ${Buffer.from(`${key.secret}:`).toString('base64')}`;
    send = async (url, body, headers = {}) => {
      const response = await server.app.inject({ method: 'POST', url, headers: { authorization, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
      return { statusCode: response.statusCode, body: response.body };
    };
    const loaded = await loadShop(send, { customers: 300, seed: 3, refuseProfiling: 0.2 }, { now });
    assert.ok(loaded.refusedProfiling > 5, 'some refuse profiling');
  });
  after(async () => {
    await server.app.close();
  });

  it('scores only people whose lawful basis covers profiling, and says why the others are not profiled', async () => {
    const run = await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.equal(run.people, 300);
    assert.ok(run.profiled < 300 && run.profiled > 200, JSON.stringify(run));
    assert.equal(Object.values(run.notProfiled).reduce((a, b) => a + b, 0), 300 - run.profiled);
    assert.deepEqual(run.models.filter((m) => m.skipped).map((m) => m.kind), []);
    for (const customer of ['c3-1', 'c3-2', 'c3-3', 'c3-4', 'c3-5', 'c3-6', 'c3-7', 'c3-8']) {
      const scores = await ctx.kernel.scoring.scoresOf(await profileOf(customer));
      if (!scores.profiled) {
        assert.ok(scores.notProfiledReason, 'a reason is given');
        assert.deepEqual(scores.scores, {});
        continue;
      }
      assert.ok(scores.scores.rfm && scores.reasons.rfm?.startsWith(`In segment ${scores.scores.rfm.segment}:`));
      assert.ok(scores.scores.pAlive !== undefined && scores.scores.pAlive >= 0 && scores.scores.pAlive <= 1);
      assert.match(scores.reasons.churn ?? '', /orders?, the last \d+ days? ago/);
      assert.match(scores.reasons.clv ?? '', /worth about \d+\.\d\d today/);
      assert.match(scores.reasons.persona ?? '', /^Persona .+ buyers/);
      assert.match(scores.reasons.lead ?? '', /^\d+% likely to order in the next 90 days; (raised|lowered) by: /);
      assert.ok(scores.scores.lead && scores.scores.lead.probability > 0 && scores.scores.lead.probability < 1);
      assert.equal(scores.models.bgnbd?.id, run.models.find((m) => m.kind === 'bgnbd')?.id);
    }
    const leads = (await ctx.kernel.scoring.models()).find((m) => m.kind === 'leads');
    const details = leads?.details as { auc: number; brier: number; baseRateBrier: number; reliability: unknown[] };
    assert.ok(details.auc > 0.5 && details.brier < details.baseRateBrier, JSON.stringify(details));
    assert.ok(details.reliability.length > 0);
    const overview = await ctx.kernel.scoring.overview();
    assert.equal(Object.values(overview.segments).reduce((a, b) => a + b, 0), run.buyers);
    assert.ok(overview.personas.length >= 2 && overview.personas.every((p) => p.description.length > 20));
  });

  it('removes a withdrawn person from scores and model statistics, and refits exactly without them', async () => {
    const before = await ctx.kernel.scoring.statistics('bgnbd');
    const total = before.reduce((s, r) => s + r.count, 0);
    let profileId = '';
    for (let i = 1; i <= 120 && !profileId; i++) {
      const id = await profileOf(`c3-${i}`);
      if ((await ctx.kernel.scoring.scoresOf(id)).computedAt) profileId = id;
    }
    await ctx.kernel.consent.record(profileId, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    // The consent change itself removes them (a listener); running the reconciliation again finds nothing left.
    for (let i = 0; i < 50 && (await ctx.kernel.scoring.statistics('bgnbd')).reduce((s, r) => s + r.count, 0) === total; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await ctx.kernel.scoring.forgetUnlawful([profileId]), 0);
    for (let i = 0; i < 50 && (await ctx.kernel.scoring.models()).some((m) => m.stale); i++) await new Promise((r) => setTimeout(r, 20));
    const afterStats = await ctx.kernel.scoring.statistics('bgnbd');
    assert.equal(afterStats.reduce((s, r) => s + r.count, 0), total - 1);
    const scores = await ctx.kernel.scoring.scoresOf(profileId);
    assert.equal(scores.profiled, false);
    assert.equal(scores.notProfiledReason, 'withdrawn');
    // The refitted parameters are the fit on the remaining statistics.
    const model = (await ctx.kernel.scoring.models()).find((m) => m.kind === 'bgnbd');
    assert.equal(model?.stale, false);
    const rows = afterStats.flatMap(({ key, count }) => {
      const [x, tx, T] = key.split('|').map(Number) as [number, number, number];
      return Array.from({ length: count }, () => ({ x, tx, T }));
    });
    assert.deepEqual(model?.params, fitBgNbd(compress(rows)).params);
    assert.equal(model?.customers, total - 1);
  });

  it('erasure removes the person from scores and decrements the statistics in the same transaction', async () => {
    let profileId = '';
    let userId = '';
    for (let i = 120; i >= 1 && !profileId; i--) {
      const id = await profileOf(`c3-${i}`);
      if ((await ctx.kernel.scoring.scoresOf(id)).computedAt) {
        profileId = id;
        userId = `c3-${i}`;
      }
    }
    const total = (await ctx.kernel.scoring.statistics('bgnbd')).reduce((s, r) => s + r.count, 0);
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: userId } });
    assert.ok(subject);
    const certificate = await ctx.kernel.erasure.erase(subject, { requestId: 'req-scoring-erasure' }, CLI_ACTOR);
    const scoringStores = certificate.stores.filter((s) => s.module === 'scoring');
    assert.deepEqual(scoringStores.map((s) => [s.store, s.status, s.deleted > 0]), [['scoring_scores', 'confirmed', true], ['scoring_stats', 'confirmed', true]]);
    assert.equal((await ctx.kernel.scoring.statistics('bgnbd')).reduce((s, r) => s + r.count, 0), total - 1);
    const stale = (await ctx.kernel.scoring.models()).filter((m) => m.stale).map((m) => m.id);
    assert.ok(stale.some((id) => id.startsWith('bgnbd-')), 'the model is marked for refitting');
    assert.deepEqual(await ctx.kernel.scoring.refitStale(), stale);
    assert.deepEqual((await ctx.kernel.scoring.models()).filter((m) => m.stale), []);
  });

  it('a restricted person is not profiled on the read path, whatever is stored', async () => {
    let profileId = '';
    for (let i = 1; i <= 120 && !profileId; i++) {
      const id = await profileOf(`c3-${i}`).catch(() => '');
      if (id && (await ctx.kernel.scoring.scoresOf(id)).computedAt) profileId = id;
    }
    await ctx.kernel.consent.restrict([profileId], {}, CLI_ACTOR);
    const scores = await ctx.kernel.scoring.scoresOf(profileId);
    assert.equal(scores.profiled, false);
    assert.equal(scores.notProfiledReason, 'restricted');
    const run = await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.ok((run.notProfiled.restricted ?? 0) >= 1);
  });
});
