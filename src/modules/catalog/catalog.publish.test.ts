import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { planWithEvent } from '../../../test/support/plans.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import type { AuditLog } from '../audit/index.ts';
import { Catalog } from './index.ts';

describeEachDialect('catalog: publishing', (dialect) => {
  const ctx = useKernel(dialect);

  it('publishes on a base version only while it is the latest; a stale base is refused and stores nothing', async () => {
    const catalog = ctx.kernel.catalog;
    const base = catalog.version();
    const first = await catalog.publish(planWithEvent('Base A'), CLI_ACTOR, { baseVersion: base });
    assert.equal(first.version, base + 1);
    await assert.rejects(catalog.publish(planWithEvent('Base B'), CLI_ACTOR, { baseVersion: base }), (error) => {
      assert.ok(isCandorError(error, 'CATALOG_PLAN_CONFLICT'), String(error));
      assert.deepEqual(error.details, { baseVersion: base, latestVersion: base + 1 });
      return true;
    });
    assert.equal((await catalog.versions()).length, base + 1, 'nothing stored');
    assert.equal(catalog.version(), base + 1);
    assert.ok((await catalog.plan()).plan.events['Base A'], 'the change published meanwhile is still in force');
    // The document of the latest version changes nothing, whatever base it was edited from (a retried publish).
    assert.deepEqual(await catalog.publish(planWithEvent('Base A'), CLI_ACTOR, { baseVersion: base }), { ...first, unchanged: true });
    assert.equal((await catalog.publish(planWithEvent('Base B'), CLI_ACTOR, { baseVersion: base + 1 })).version, base + 2);
  });

  it('keeps one of twelve concurrent publishes from the same base, across two processes, and refuses the others', async () => {
    const other = await openKernel(ctx.env.config);
    try {
      const base = ctx.kernel.catalog.version();
      const answers = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? ctx.kernel : other).catalog.publish(planWithEvent(`Concurrent ${i}`), CLI_ACTOR, { baseVersion: base })),
      );
      const published = answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
      const refused = answers.flatMap((a) => (a.status === 'rejected' ? [a.reason as unknown] : []));
      assert.equal(published.length, 1, 'one publish kept');
      assert.equal(published[0]?.version, base + 1);
      assert.equal(refused.length, 11);
      for (const error of refused) assert.ok(isCandorError(error, 'CATALOG_PLAN_CONFLICT'), String(error));
      assert.equal((await ctx.kernel.catalog.versions()).length, base + 1);

      // Without a base every publish is stored, one after the other, each audited once.
      const unbased = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? ctx.kernel : other).catalog.publish(planWithEvent(`Unbased ${i}`), CLI_ACTOR)));
      assert.deepEqual(unbased.map((r) => r.version).sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => base + 2 + i));
      const audited = (await ctx.kernel.audit.list({ action: 'catalog.plan.publish', limit: 100 })).map((e) => e.resource);
      assert.deepEqual(audited, Array.from({ length: base + 13 }, (_, i) => `catalog:plan:${i + 1}`));
    } finally {
      await other.close();
    }
  });

  it('stores nothing when the audit entry of a publish cannot be written', async () => {
    const failing = (): never => {
      throw new CandorError('AUDIT_APPEND_FAILED');
    };
    const audit = Object.create(ctx.kernel.audit, { append: { value: failing }, appendIn: { value: failing } }) as AuditLog;
    const catalog = await Catalog.open({ storage: ctx.kernel.storage, audit, taxonomy: ctx.kernel.taxonomy });
    const before = await catalog.versions();
    await assert.rejects(catalog.publish(planWithEvent('Unaudited'), CLI_ACTOR), (error) => isCandorError(error, 'AUDIT_APPEND_FAILED'));
    assert.deepEqual(await catalog.versions(), before, 'no version without its audit entry');
    assert.equal(catalog.version(), before.at(-1)?.version);
    assert.equal(await ctx.kernel.catalog.refresh(), before.at(-1)?.version);
    // Published again once the audit log works, it is a new version, and audited.
    const { version } = await ctx.kernel.catalog.publish(planWithEvent('Unaudited'), CLI_ACTOR);
    assert.equal((await ctx.kernel.audit.list({ action: 'catalog.plan.publish', limit: 100 })).at(-1)?.resource, `catalog:plan:${version}`);
  });
});
