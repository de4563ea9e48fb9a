import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_NOTICE_PURPOSES } from '../consent/defaults.ts';
import { CsvImporter, type CsvImportOptions } from './index.ts';

describeEachDialect('an event serves a purpose only through its own purposes or a field kept for that very purpose', (dialect) => {
  const ctx = useKernel(dialect);
  const at = () => new Date().toISOString();

  before(async () => {
    // A narrower notice (not material): gender no longer described for the fairness audit, behaviour no longer for
    // reporting (still for e-mail marketing).
    const purposes = DEFAULT_NOTICE_PURPOSES.map((p) =>
      p.purpose === 'fairness_audit'
        ? { ...p, categories: ['user.demographic.age_range'] }
        : p.purpose === 'analytics.reporting'
          ? { ...p, categories: p.categories.filter((c) => c !== 'user.behavior') }
          : p,
    );
    await ctx.kernel.consent.publishNotice({ text: 'narrower notice', purposes }, CLI_ACTOR);
  });

  const profileOf = async (userId: string) => {
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'crm', at: at() }]);
    return profileId ?? null;
  };
  const run = async (text: string, options: Partial<CsvImportOptions> = {}) => {
    const summary = await new CsvImporter(ctx.kernel).run(Readable.from([text]), { kind: 'customers', basis: 'consent', purposes: ['fairness_audit'], source: 'crm', actor: CLI_ACTOR, ...options });
    return { stored: summary.stored, refused: summary.refused, refusedFields: summary.refusedFields, consents: summary.consents };
  };

  it('refuses a CSV row whose only purpose comes from a field the notice does not describe for it, making and linking nobody', async () => {
    const summary = await run('user_id,gender\nfa-1,female\n');
    assert.deepEqual(summary, { stored: 0, refused: 1, refusedFields: [], consents: 0 });
    assert.equal(await profileOf('fa-1'), null, 'a refused row makes and links nobody');
  });

  it('predicts that row refused in a dry run, as the import refuses it', async () => {
    const text = 'user_id,gender,age_range\nfa-2,female,\nfa-3,male,25-34\n';
    const dry = await run(text, { dryRun: true });
    const real = await run(text);
    assert.deepEqual(real, { stored: 1, refused: 1, refusedFields: [{ path: 'traits.gender', rows: 1 }], consents: 1 });
    assert.deepEqual({ ...dry, consents: 1 }, real);
    assert.equal(await profileOf('fa-2'), null);
    assert.ok(await profileOf('fa-3'), 'the row with a described field is stored for its person');
  });

  it('does not store an event for a purpose whose only field is kept for another purpose', async () => {
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-list' }], source: 'web', at: at() }]));
    const profileId = resolved?.profileId as string;
    await ctx.kernel.consent.record(profileId, ['analytics.reporting', 'marketing.communications.email'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    // The event declares e-mail marketing; list_id (behaviour) lists reporting too, but the notice describes it for
    // e-mail marketing only: kept for that, it is no basis for storing the event for reporting.
    const [result] = await sendMessages(ctx.kernel, [{ type: 'track', userId: 'u-list', messageId: 'list-1', event: 'Email Signed Up', properties: { list_id: 'weekly' } }]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.deepEqual(result?.purposes, ['marketing.communications.email']);
    assert.equal(result?.refusedFields, undefined);
    const [event] = (await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 10 })).filter((e) => e.messageId === 'list-1');
    assert.deepEqual(event?.purposes, ['marketing.communications.email']);
  });
});
