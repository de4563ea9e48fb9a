import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_PLAN } from './index.ts';

describeEachDialect('catalog: plans refused before they are stored', (dialect) => {
  const ctx = useKernel(dialect);

  const refusedWith = async (plan: unknown, expected: { path: string; problem: string }[]) => {
    assert.deepEqual(await ctx.kernel.catalog.validatePlan(plan), { ok: false, problems: expected });
    await assert.rejects(ctx.kernel.catalog.publish(plan, CLI_ACTOR), (error) => {
      assert.ok(isCandorError(error, 'CATALOG_PLAN_INVALID'), String(error));
      assert.deepEqual(error.details?.problems, expected);
      return true;
    });
    assert.equal(ctx.kernel.catalog.version(), 1);
    assert.equal((await ctx.kernel.catalog.versions()).length, 1, 'nothing stored');
  };

  it('refuses a value nested 5,000 deep (its canonical JSON would overflow the stack)', async () => {
    let value: unknown = 1;
    for (let i = 0; i < 5_000; i++) value = [value];
    const plan = structuredClone(DEFAULT_PLAN);
    plan.events['Deep'] = {
      purposes: ['analytics.reporting'],
      properties: { type: 'object', properties: { x: { type: 'string', const: value, 'x-candor': { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P30D', personal: false } } } },
    };
    // The field's const is the 7th level of the document: the 65th, the first one too deep, is 58 below it.
    await refusedWith(plan, [{ path: `/events/Deep/properties/properties/x/const${'/0'.repeat(58)}`, problem: 'nests deeper than 64 levels (MAX_DOCUMENT_DEPTH); values of const, enum and examples count too' }]);
  });

  it('refuses a plan name with a NUL character on both databases', async () => {
    await refusedWith({ ...structuredClone(DEFAULT_PLAN), name: 'Shop\u0000plan' }, [{ path: '/name', problem: 'must not contain control characters (such as NUL) or unpaired surrogates' }]);
  });
});
