import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages, uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type FieldSchema, type PlanDocument } from '../catalog/index.ts';

const note = (personal = false) => ({ category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], retention: 'P1Y', personal });

/** The default plan with `Bundle Ordered`: line items whose options are an array of objects, and scalar tags. */
function bundlePlan(): PlanDocument {
  const lines: FieldSchema = {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        sku: { type: 'string', 'x-candor': note() },
        engraving: { type: 'string', 'x-candor': note(true) },
        options: { type: 'array', items: { type: 'object', properties: { name: { type: 'string', 'x-candor': note() } } } },
      },
    },
  };
  const plan = structuredClone(DEFAULT_PLAN);
  plan.events['Bundle Ordered'] = {
    purposes: ['analytics.reporting'],
    properties: { type: 'object', properties: { bundle_id: { type: 'string', 'x-candor': note() }, lines, tags: { type: 'array', items: { type: 'string' }, 'x-candor': note() } } },
  };
  return plan;
}

describeEachDialect('collect: empty arrays the plan declares are stored', (dialect) => {
  const ctx = useKernel(dialect);

  const consenting = async () => {
    const userId = uniqueId('u-empty');
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = resolved?.profileId as string;
    await ctx.kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    return { userId, profileId };
  };
  const stored = async (profileId: string, messageId: string) => {
    const event = (await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 100 })).find((e) => e.messageId === messageId);
    assert.ok(event, `event ${messageId} stored`);
    return JSON.parse(JSON.stringify({ data: event.data, personal: event.personal })) as { data: { properties?: Record<string, unknown> }; personal: { properties?: Record<string, unknown> } | null };
  };

  it('keeps an order with no line items as products: []', async () => {
    const { userId, profileId } = await consenting();
    const [result] = await sendMessages(ctx.kernel, [{ type: 'track', userId, messageId: 'order-empty', event: 'Order Completed', properties: { order_id: 'o1', products: [] } }]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.equal(result?.dropped, undefined);
    const event = await stored(profileId, 'order-empty');
    assert.deepEqual(event.data.properties, { order_id: 'o1', products: [] });
  });

  it('keeps empty arrays of objects at any depth, beside personal fields of the same items', async () => {
    await ctx.kernel.catalog.publish(bundlePlan(), CLI_ACTOR);
    const { userId, profileId } = await consenting();
    const [result] = await sendMessages(ctx.kernel, [
      { type: 'track', userId, messageId: 'bundle-1', event: 'Bundle Ordered', properties: { bundle_id: 'b1', tags: [], lines: [{ sku: 's1', engraving: 'For Ada', options: [] }, { sku: 's2', options: [{ name: 'gift wrap' }] }] } },
      { type: 'track', userId, messageId: 'bundle-2', event: 'Bundle Ordered', properties: { bundle_id: 'b2', lines: [] } },
    ]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    const first = await stored(profileId, 'bundle-1');
    assert.deepEqual(first.data.properties, { bundle_id: 'b1', tags: [], lines: [{ sku: 's1', options: [] }, { sku: 's2', options: [{ name: 'gift wrap' }] }] });
    assert.deepEqual(first.personal?.properties, { lines: [{ engraving: 'For Ada' }, null] });
    const second = await stored(profileId, 'bundle-2');
    assert.deepEqual(second.data.properties, { bundle_id: 'b2', lines: [] });
  });
});
