import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

describeEachDialect('taxonomy service', (dialect) => {
  const ctx = useKernel(dialect);

  it('lists the fideslang uses plus the purposes Candor needs of its own', () => {
    assert.ok(ctx.kernel.taxonomy.dataUse('marketing.communications.email'));
    assert.equal(ctx.kernel.taxonomy.dataUse('personalize.profiling')?.parentKey, 'personalize');
    assert.ok(ctx.kernel.taxonomy.dataUse('fairness_audit'));
  });

  it('keeps custom entries across restarts and refuses duplicates of built-in keys', async () => {
    await ctx.kernel.taxonomy.addCustom('data-subjects', { key: 'member', name: 'Loyalty member', description: 'Enrolled in the loyalty programme.' }, CLI_ACTOR);
    await assert.rejects(ctx.kernel.taxonomy.addCustom('data-uses', { key: 'personalize.profiling', name: 'x', description: 'y' }, CLI_ACTOR), (e) => isCandorError(e, 'TAXONOMY_KEY_EXISTS'));
    await assert.rejects(ctx.kernel.taxonomy.addCustom('legal-bases', { key: 'x', name: 'x', description: 'y' }, CLI_ACTOR), (e) => isCandorError(e, 'TAXONOMY_KIND_UNKNOWN'));
    const { Taxonomy } = await import('./index.ts');
    const reopened = await Taxonomy.open(ctx.kernel.storage, ctx.kernel.audit);
    assert.ok((reopened.list('data-subjects') as { key: string }[]).some((e) => e.key === 'member'));
  });

  it('sees an entry another process added with refreshIfChanged', async () => {
    const other = await openKernel(ctx.env.config);
    try {
      await ctx.kernel.taxonomy.refreshIfChanged();
      await other.taxonomy.addCustom('data-categories', { key: 'user.behavior.loyalty_tier', name: 'Loyalty tier', description: 'The tier of the loyalty programme someone is in.' }, CLI_ACTOR);
    } finally {
      await other.close();
    }
    const deadline = Date.now() + 3000;
    while (!ctx.kernel.taxonomy.dataCategory('user.behavior.loyalty_tier') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      await ctx.kernel.taxonomy.refreshIfChanged();
    }
    assert.equal(ctx.kernel.taxonomy.dataCategory('user.behavior.loyalty_tier')?.name, 'Loyalty tier');
  });

  it('adds no custom entry whose audit entry cannot be written, here or in the database', async () => {
    const entry = { key: 'user.behavior.store_visits', name: 'Store visits', description: 'How often someone visits a shop.' };
    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.taxonomy.addCustom('data-categories', entry, CLI_ACTOR));
    assert.equal(ctx.kernel.taxonomy.dataCategory(entry.key), undefined);
    const { Taxonomy } = await import('./index.ts');
    assert.equal((await Taxonomy.open(ctx.kernel.storage, ctx.kernel.audit)).dataCategory(entry.key), undefined, 'nothing stored');
    await ctx.kernel.taxonomy.addCustom('data-categories', entry, CLI_ACTOR);
    assert.equal(ctx.kernel.taxonomy.dataCategory(entry.key)?.name, 'Store visits');
    assert.equal((ctx.kernel.taxonomy.list('data-categories') as { key: string }[]).filter((e) => e.key === entry.key).length, 1);
    const audited = await ctx.kernel.audit.list({ action: 'config.taxonomy.add', limit: 1000 });
    assert.equal(audited.filter((e) => e.resource === `taxonomy:data-categories:${entry.key}`).length, 1);
  });
});
