// A field's period made longer by a version published while a sweep runs: the sweep removes nothing the new period
// keeps (each batch is written only while no plan version was stored since the sweep read its rules).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sweepWhile } from '../../../test/support/sweep-meanwhile.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';

const DAY = 86_400_000;

describeEachDialect('a field whose period a version published while a sweep runs makes longer', (dialect) => {
  const ctx = useKernel(dialect);

  it('keeps it in every event the new period keeps, and leaves the rule to the next sweep', async () => {
    const { catalog, collect, consent, identity, storage } = ctx.kernel;
    const [resolved] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-survey' }], source: 'web', at: new Date().toISOString() }]));
    const profileId = resolved?.profileId as string;
    await consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'fairness_audit', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const start = new Date();
    const messages = [0, 1, 2].map((i) => ({ type: 'track', userId: 'u-survey', messageId: `survey-${i}`, timestamp: new Date(start.getTime() - i * 1000).toISOString(), event: 'Survey Answered', properties: { survey_id: 's1', rating: 9, allergies: ['nuts'] } }));
    const results = await collect.ingest(messages.map((raw) => ({ raw, bytes: JSON.stringify(raw).length })), undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.ok(results.every((r) => r.status === 'stored'), JSON.stringify(results));
    const longer = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    const annotation = longer.events['Survey Answered'].properties.properties.allergies['x-candor'];
    assert.equal(annotation.retention, 'P6M');
    annotation.retention = 'P2Y';

    const at = new Date(start.getTime() + 200 * DAY);
    let report: Awaited<ReturnType<typeof ctx.kernel.retention.sweep>> | undefined;
    // Meanwhile, on another server: allergies are kept two years from now on. The sweep reads the rules twice (the
    // list of rules, then the field rules it runs): after the second.
    const meanwhile = () => catalog.publish(longer as PlanDocument, CLI_ACTOR);
    assert.ok(await sweepWhile(catalog, 'collect.retention', meanwhile, async () => (report = await ctx.kernel.retention.sweep({ now: at, batchSize: 1 })), 2));
    assert.ok(report);
    assert.equal(report.counts.filter((c) => c.rule === 'collect.events.fields:track:Survey Answered:P6M').reduce((n, c) => n + c.count, 0), 0);
    const kept = async () => {
      const stored = await collect.events([profileId], { decrypt: true, limit: 10 });
      return stored.map((e) => (e.personal as { properties?: { allergies?: unknown } } | null)?.properties?.allergies);
    };
    assert.deepEqual(await kept(), [['nuts'], ['nuts'], ['nuts']]);
    // The next sweep reads the new period: allergies 200 days old stay under two years.
    await ctx.kernel.retention.sweep({ now: at, batchSize: 1 });
    assert.deepEqual(await kept(), [['nuts'], ['nuts'], ['nuts']]);
  });
});
