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

  it('looks entries up by key, a custom one as soon as it is added, and tells a custom category under system as about the system though asked before', async () => {
    const { taxonomy, consent } = ctx.kernel;
    assert.equal(taxonomy.dataCategory('system.build_number'), undefined);
    assert.equal(consent.aboutTheSystem('system.build_number'), false, 'unknown: its own root');
    assert.equal(consent.aboutTheSystem('user.contact.email'), false);
    assert.equal(consent.aboutTheSystem('system.operations'), true);
    await taxonomy.addCustom('data-categories', { key: 'system.build_number', parentKey: 'system', name: 'Build number', description: 'The build of the app that sent an event.' }, CLI_ACTOR);
    await taxonomy.addCustom('data-categories', { key: 'user.behavior.wish_list', parentKey: 'user.behavior', name: 'Wish list', description: 'What someone saved for later.' }, CLI_ACTOR);
    assert.equal(taxonomy.dataCategory('system.build_number')?.parentKey, 'system');
    assert.equal(taxonomy.dataCategory('user.behavior.wish_list')?.name, 'Wish list');
    assert.equal(taxonomy.dataUse('user.behavior.wish_list'), undefined, 'a category is not a use');
    assert.equal(consent.aboutTheSystem('system.build_number'), true);
    assert.equal(consent.aboutTheSystem('user.behavior.wish_list'), false);
    // The first of a key in list order, as before: the built-in entry.
    assert.equal(taxonomy.dataCategory('user.contact.email'), (taxonomy.list('data-categories') as { key: string }[]).find((e) => e.key === 'user.contact.email'));
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
