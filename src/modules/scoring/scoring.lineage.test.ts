import assert from 'node:assert/strict';
import { after, before, it, mock } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { loadShop, type Send } from '../../demo/load.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { compress, fitBgNbd, MODEL_KINDS, Scoring, type ScoringData } from './index.ts';

// Derived data follows its sources through merges, unmerges, partial runs, withdrawals during a run (by another
// process) and per-person profiling purposes: the scores go at once and the count-based statistics stay exact.
describeEachDialect('scoring lineage: merges, unmerges, partial runs, concurrent withdrawals, purposes', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let send: Send;
  const DAY_MS = 86_400_000;
  const now = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS / 2);
  const ago = (days: number) => new Date(now.getTime() - days * DAY_MS).toISOString();
  const given = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
  const refused = { 'analytics.reporting': 'given', 'personalize.profiling': 'refused' };

  const profileOf = async (ids: Record<string, string>) => {
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: Object.entries(ids).map(([type, value]) => ({ type, value })), source: 'demo', at: new Date().toISOString() }]);
    assert.ok(id, `profile of ${JSON.stringify(ids)}`);
    return id;
  };
  const stored = async (url: string, body: unknown) => {
    const response = await send(url, body);
    assert.equal(response.statusCode, 200, response.body);
    const results = (JSON.parse(response.body) as { results?: { status: string }[] }).results;
    if (results) assert.ok(results.every((r) => r.status === 'stored'), response.body);
  };
  /** A customer (by an anonymous id or a user id) with consent and orders `days` ago. */
  const customer = async (id: { anonymousId: string } | { userId: string }, purposes: Record<string, string>, days: readonly number[]) => {
    const ids = id;
    await stored('/v1/consent', { ...ids, mechanism: 'banner_save', purposes });
    if (days.length > 0) await stored('/v1/batch', {
      batch: days.map((d, i) => {
        const orderId = uniqueId('order');
        return { type: 'track', ...ids, event: 'Order Completed', messageId: `${orderId}-${i}`, timestamp: ago(d), properties: { order_id: orderId, total: 20 + 10 * i, currency: 'EUR' } };
      }),
    });
    return profileOf('userId' in id ? { user_id: id.userId } : { anonymous_id: id.anonymousId });
  };
  const bgTotal = async () => (await ctx.kernel.scoring.statistics('bgnbd')).reduce((s, r) => s + r.count, 0);
  const scored = async () => ctx.kernel.scoring.memberships();
  /** The kernel's scoring job on the kernel's data, with some of its reads replaced (to act while a run is under way). */
  const job = (data: Partial<ScoringData> = {}) => {
    const k = ctx.kernel;
    return new Scoring({
      storage: k.storage,
      audit: k.audit,
      consent: k.consent,
      data: {
        people: () => k.identity.groups(),
        membership: (ids) => k.identity.membership(ids),
        orders: (ids, purpose) => k.collect.ordersFor(ids, purpose),
        activity: (ids, purpose) => k.collect.activityFor(ids, purpose),
        isProtected: () => false,
        isAuditAttribute: () => false,
        auditGroups: async () => new Map(),
        ...data,
      },
    });
  };
  const settle = async (done: () => Promise<boolean>) => {
    // Up to 10 s: background work on a loaded machine (it returns as soon as the work is done).
    for (let i = 0; i < 500 && !(await done()); i++) await new Promise((r) => setTimeout(r, 20));
  };
  /** The current BG/NBD model is its fit on its own statistics, and counts its customers. */
  const assertExact = async () => {
    await settle(async () => !(await ctx.kernel.scoring.models()).some((m) => m.stale));
    const stats = await ctx.kernel.scoring.statistics('bgnbd');
    const model = (await ctx.kernel.scoring.models()).find((m) => m.kind === 'bgnbd');
    assert.equal(model?.stale, false);
    const rows = stats.flatMap(({ key, count }) => {
      const [x, tx, T] = key.split('|').map(Number) as [number, number, number];
      return Array.from({ length: count }, () => ({ x, tx, T }));
    });
    assert.equal(model?.customers, rows.length);
    // Equal to the fit on the statistics (a fresh run's fit read its summaries in another order: equal to rounding).
    const expected = fitBgNbd(compress(rows)).params;
    for (const [name, value] of Object.entries(expected)) assert.ok(Math.abs((model?.params as Record<string, number>)[name] as number - value) <= 1e-5 * Math.abs(value), `${name}: ${JSON.stringify(model?.params)} vs ${JSON.stringify(expected)}`);
    // Every stored BG/NBD score is counted once, and nothing else.
    assert.equal([...(await scored()).values()].filter((s) => s.pAlive !== undefined).length, rows.length);
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    const key = await ctx.kernel.access.createWriteKey('demo', null, CLI_ACTOR);
    const authorization = `Basic ${Buffer.from(`${key.secret}:`).toString('base64')}`;
    send = async (url, body, headers = {}) => {
      const response = await server.app.inject({ method: 'POST', url, headers: { authorization, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
      return { statusCode: response.statusCode, body: response.body };
    };
    await loadShop(send, { customers: 300, seed: 3, refuseProfiling: 0.2 }, { now });
  });
  after(async () => {
    await server.app.close();
  });

  it('a merge into a person who refused profiling removes the merged-away profile from scores and statistics at once', async () => {
    const device = uniqueId('anon');
    const user = uniqueId('user');
    const s = await customer({ anonymousId: device }, given, [300, 200, 100, 30]);
    const r = await customer({ userId: user }, refused, []);
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.ok((await scored()).has(s), 'the anonymous profile is scored');
    const total = await bgTotal();
    const segments = Object.values((await ctx.kernel.scoring.overview()).segments).reduce((a, b) => a + b, 0);

    await stored('/v1/identify', { userId: user, anonymousId: device, messageId: uniqueId('link'), traits: { country: 'DE' } });
    // Merges are reconciled in the background (they happen during ingestion).
    await settle(async () => !(await scored()).has(s));
    assert.equal(await ctx.kernel.identity.canonical(s), r);
    assert.equal((await ctx.kernel.scoring.scoresOf(r, [s])).profiled, false);
    assert.equal((await scored()).has(s), false, 'the merged-away profile has no scores');
    assert.equal(await bgTotal(), total - 1);
    assert.equal(Object.values((await ctx.kernel.scoring.overview()).segments).reduce((a, b) => a + b, 0), segments - 1);
    await assertExact();
  });

  it('a merge of two profiled profiles keeps one score row for the person: the survivor’s, until the next run', async () => {
    const device = uniqueId('anon');
    const user = uniqueId('user');
    const s = await customer({ anonymousId: device }, given, [250, 120, 40]);
    const r = await customer({ userId: user }, given, [310, 90, 10]);
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.ok((await scored()).has(s) && (await scored()).has(r));
    const total = await bgTotal();
    await stored('/v1/identify', { userId: user, anonymousId: device, messageId: uniqueId('link'), traits: { country: 'DE' } });
    // Merges are reconciled in the background (they happen during ingestion).
    await settle(async () => !(await scored()).has(s));
    assert.equal(await ctx.kernel.identity.canonical(s), r);
    assert.equal((await scored()).has(s), false);
    assert.ok((await scored()).has(r));
    assert.equal(await bgTotal(), total - 1);
    await assertExact();
    // The next run scores the person once, from both profiles' orders.
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.equal((await ctx.kernel.scoring.scoresOf(r, [s])).scores.rfm?.frequency !== undefined, true);
    assert.equal((await scored()).has(s), false);
  });

  it('an unmerge removes both profiles’ scores and statistics at once, so no one sees the other’s orders', async () => {
    const device = uniqueId('anon');
    const user = uniqueId('user');
    const d = await customer({ anonymousId: device }, given, [280, 140, 60, 20]);
    const u = await customer({ userId: user }, given, [330, 150]);
    await stored('/v1/identify', { userId: user, anonymousId: device, messageId: uniqueId('link'), traits: { country: 'DE' } });
    assert.equal(await ctx.kernel.identity.canonical(d), u);
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    const before = await ctx.kernel.scoring.scoresOf(u, [d]);
    assert.match(before.reasons.rfm ?? '', /6 orders/, 'scored on both profiles’ orders');
    const total = await bgTotal();
    const [merge] = await ctx.kernel.identity.merges(u);
    await ctx.kernel.identity.unmerge(u, merge?.mergeId as string, CLI_ACTOR);
    assert.equal(await ctx.kernel.identity.canonical(d), d);
    const after = await ctx.kernel.scoring.scoresOf(u);
    assert.equal(after.profiled, true);
    assert.equal(after.computedAt, null, 'no scores computed with the other person’s orders');
    assert.deepEqual(after.reasons, {});
    assert.equal((await ctx.kernel.scoring.scoresOf(d)).computedAt, null);
    assert.equal(await bgTotal(), total - 1);
    await assertExact();
  });

  /** The kernel's job, whose first read of orders (after it read who is profiled, with whom) runs `meanwhile` first. */
  const runWith = async (meanwhile: () => Promise<void>) => {
    let done = false;
    await job({
      orders: async (ids, purpose) => {
        if (!done) {
          done = true;
          await meanwhile();
        }
        return ctx.kernel.collect.ordersFor(ids, purpose);
      },
    }).run(CLI_ACTOR, { now });
    assert.ok(done);
  };

  it('a merge that commits while a run reads is applied to what the run saves: one row for the person', async () => {
    const device = uniqueId('anon');
    const user = uniqueId('user');
    const s = await customer({ anonymousId: device }, given, [260, 130, 45]);
    const r = await customer({ userId: user }, given, [300, 80, 12]);
    // The merge's own clean-up runs to its end before the run saves (it finds nothing of theirs to forget yet).
    const original = ctx.kernel.scoring.merged.bind(ctx.kernel.scoring);
    const cleanUps: Promise<number>[] = [];
    const merged = mock.method(ctx.kernel.scoring, 'merged', (from: string, into: string) => {
      const cleanUp = original(from, into);
      cleanUps.push(cleanUp);
      return cleanUp;
    });
    try {
      await runWith(async () => {
        await stored('/v1/identify', { userId: user, anonymousId: device, messageId: uniqueId('link'), traits: { country: 'DE' } });
        assert.equal(await ctx.kernel.identity.canonical(s), r);
        assert.equal(cleanUps.length, 1);
        await Promise.all(cleanUps);
      });
    } finally {
      merged.mock.restore();
    }
    assert.equal((await scored()).has(s), false, 'no row for the merged-away profile');
    assert.ok((await scored()).has(r), 'the survivor keeps its row (both allow profiling)');
    await assertExact();
  });

  it('an unmerge that commits while a run reads is applied to what the run saves: no row computed from both', async () => {
    const device = uniqueId('anon');
    const user = uniqueId('user');
    const d = await customer({ anonymousId: device }, given, [270, 150, 70, 25]);
    const u = await customer({ userId: user }, given, [320, 160]);
    await stored('/v1/identify', { userId: user, anonymousId: device, messageId: uniqueId('link'), traits: { country: 'DE' } });
    assert.equal(await ctx.kernel.identity.canonical(d), u);
    await runWith(async () => {
      const [merge] = await ctx.kernel.identity.merges(u);
      // Its clean-up (awaited by unmerge) finds no row of theirs yet.
      await ctx.kernel.identity.unmerge(u, merge?.mergeId as string, CLI_ACTOR);
      assert.equal(await ctx.kernel.identity.canonical(d), d);
    });
    assert.equal((await ctx.kernel.scoring.scoresOf(u)).computedAt, null, 'no scores computed with the other person’s orders');
    assert.equal((await ctx.kernel.scoring.scoresOf(d)).computedAt, null);
    await assertExact();
  });

  it('a partial run keeps the lineage of still-current models: a later withdrawal still decrements them', async () => {
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    const bgnbd = (await ctx.kernel.scoring.models()).find((m) => m.kind === 'bgnbd')?.id;
    const people = [...(await scored())].filter(([, s]) => s.pAlive !== undefined).map(([id]) => id);
    const [kept, lapsed] = people;
    assert.ok(kept && lapsed);
    // Someone whose withdrawal's listener did not run (a crash): the partial run finds their row and forgets it.
    const forget = mock.method(ctx.kernel.scoring, 'forgetUnlawful', async () => 0);
    await ctx.kernel.consent.record(lapsed, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    forget.mock.restore();
    assert.ok((await scored()).has(lapsed));
    const total = await bgTotal();

    const run = await ctx.kernel.scoring.run(CLI_ACTOR, { now, models: ['rfm'] });
    assert.deepEqual(run.models.map((m) => m.kind), ['rfm']);
    assert.equal((await ctx.kernel.scoring.models()).find((m) => m.kind === 'bgnbd')?.id, bgnbd, 'BG/NBD not refitted');
    assert.equal((await scored()).has(lapsed), false);
    assert.equal(await bgTotal(), total - 1, 'the row of someone no longer profiled is forgotten, statistics included');
    const after = await ctx.kernel.scoring.scoresOf(kept);
    assert.equal(after.models.bgnbd?.id, bgnbd, 'the BG/NBD lineage is kept');
    assert.equal(after.models.rfm?.id, run.models[0]?.id);
    assert.ok(after.scores.pAlive !== undefined && after.reasons.churn);

    await ctx.kernel.consent.record(kept, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    await settle(async () => (await bgTotal()) === total - 2);
    assert.equal(await bgTotal(), total - 2, 'a withdrawal after a partial run still decrements BG/NBD');
    await assertExact();
  });

  it('a withdrawal by another process while a run is in progress is not undone by the run', async () => {
    const other = await openKernel(ctx.env.config);
    try {
      const candidates = [...(await scored())].filter(([, s]) => s.pAlive !== undefined).map(([id]) => id);
      let withdrawer = '';
      for (const id of candidates) if (!withdrawer && (await ctx.kernel.scoring.scoresOf(id)).profiled) withdrawer = id;
      let withdrawn = false;
      const k = ctx.kernel;
      // The same job, whose first read of orders (after it decided who is profiled) waits for the withdrawal.
      const scoring = job({
        orders: async (ids, purpose) => {
          if (!withdrawn) {
            withdrawn = true;
            await other.consent.record(withdrawer, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
            // The other process forgets the old scores; this one hears of the change (data_version, commit notices).
            await settle(async () => !(await scored()).has(withdrawer));
            await settle(async () => {
              await k.consent.load([withdrawer]);
              return k.consent.allowedPurposes(withdrawer, ['personalize.profiling']).length === 0;
            });
          }
          return k.collect.ordersFor(ids, purpose);
        },
      });
      const run = await scoring.run(CLI_ACTOR, { now });
      assert.ok(withdrawn);
      assert.equal((await scored()).has(withdrawer), false, 'no fresh scores for someone who withdrew');
      assert.equal((await ctx.kernel.scoring.scoresOf(withdrawer)).profiled, false);
      const model = (await ctx.kernel.scoring.models()).find((m) => m.kind === 'bgnbd');
      assert.equal(model?.id, run.models.find((m) => m.kind === 'bgnbd')?.id);
      await assertExact();
    } finally {
      await other.close();
    }
  });

  it('scores from data read for a purpose the person allows, and keeps them only while that purpose holds', async () => {
    const { consent } = ctx.kernel;
    await consent.setPurpose({ key: 'marketing.advertising.profiling', basis: 'consent', saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: 'Profiling to choose the ads we show you.' }, CLI_ACTOR);
    const notice = consent.currentNotice();
    await consent.publishNotice({ text: `${notice.text}\n\nAds profiling.`, purposes: [...notice.purposes, { purpose: 'marketing.advertising.profiling', categories: ['user.behavior'] }] }, CLI_ACTOR);
    // Orders are stored for personalize.profiling (the plan's purposes), never for marketing.advertising.profiling.
    const user = uniqueId('user');
    const q = await customer({ userId: user }, { ...given, 'marketing.advertising.profiling': 'given' }, [320, 210, 90, 15]);
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.ok((await scored()).has(q), 'scored from data stored for personalize.profiling');
    const total = await bgTotal();

    await consent.record(q, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    await settle(async () => !(await scored()).has(q));
    assert.equal((await scored()).has(q), false, 'the purpose the data was read for is gone: so are the scores');
    assert.equal(await bgTotal(), total - 1);
    assert.equal((await ctx.kernel.scoring.scoresOf(q)).profiled, true, 'still profiled for advertising');

    // The next run reads their data for the purpose they allow: nothing is stored for it, so nothing is scored.
    await ctx.kernel.scoring.run(CLI_ACTOR, { now });
    assert.equal((await scored()).has(q), false);
    assert.deepEqual((await ctx.kernel.scoring.scoresOf(q)).scores, {});
    await assertExact();
  });

  it('two runs that overlap (two servers) both save: versions are numbered at save time and the later save is current', async () => {
    const k = ctx.kernel;
    const before = new Map((await k.scoring.models()).map((m) => [m.kind, m.version]));
    let arrived = 0;
    let release!: () => void;
    const together = new Promise<void>((resolve) => (release = resolve));
    /** Another server's job: it waits, after fitting every model but the lead model, until the other has too. */
    const server = () => {
      let waited = false;
      return job({
        activity: async (ids, purpose) => {
          if (!waited) {
            waited = true;
            if (++arrived === 2) release();
            await together;
          }
          return k.collect.activityFor(ids, purpose);
        },
      });
    };
    // A run that fails before the wait lets the other go on (the test then fails instead of hanging).
    const run = () => server().run(CLI_ACTOR, { now }).catch((error: unknown) => {
      release();
      throw error;
    });
    const runs = await Promise.all([run(), run()]);
    const fitted = runs.map((run) => run.models.filter((m) => !m.skipped));
    assert.deepEqual(fitted.map((models) => models.map((m) => m.kind)), [MODEL_KINDS, MODEL_KINDS]);
    for (const kind of MODEL_KINDS) {
      const versions = fitted.map((models) => models.find((m) => m.kind === kind)?.version ?? 0).sort((x, y) => x - y);
      const was = before.get(kind) ?? 0;
      assert.deepEqual(versions, [was + 1, was + 2], kind);
      for (const models of fitted) for (const m of models) assert.equal(m.id, `${m.kind}-${m.version}`);
    }
    // The run that saved last has the higher versions, and all of its models are current.
    const later = fitted.find((models) => models.every((m) => m.version === (before.get(m.kind) ?? 0) + 2));
    assert.ok(later, JSON.stringify(fitted));
    assert.deepEqual((await k.scoring.models()).map((m) => m.id).sort(), later.map((m) => m.id).sort());
    const someone = [...(await scored())].find(([, s]) => s.clv !== undefined && s.lead !== undefined)?.[0];
    assert.ok(someone);
    const lineage = (await k.scoring.scoresOf(someone)).models;
    for (const m of later) assert.deepEqual(lineage[m.kind], { id: m.id, version: m.version }, m.kind);
    await assertExact();
  });
});
