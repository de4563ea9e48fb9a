import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer, type MessageResult } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// A message whose identifiers nobody held when its request arrived, but which an earlier message of the same batch
// links, is judged after that message's resolution, with the consent of the person it then names: the batch gives
// what the same messages sent one request after the other give.
describeEachDialect('a message that an earlier message of its batch links to a person', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, consent, profileOf } = useIngestServer(ctx);
  const both = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
  const crm = (id: string) => ({ externalIds: [{ id, type: 'crm', collection: 'users', encoding: 'none' }] });
  const viewed = (messageId: string, ids: Record<string, unknown>) => ({ type: 'track', messageId, ...ids, event: 'Product Viewed', properties: { product_id: 'p1' } });
  const batch = async (messages: unknown[]) => {
    const response = await send('/v1/batch', { batch: messages });
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: MessageResult[] }).results;
  };
  const outcomes = (results: readonly MessageResult[]) => results.map((r) => r.code ?? r.status);
  const storedFor = async (profileId: string | null) => (profileId === null ? [] : (await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 100 })).map((e) => e.messageId).sort());

  it('stores it with the consent of the person an external id of the batch names (as two requests would)', async () => {
    await consent('lb-u1', both);
    const results = await batch([
      { type: 'identify', messageId: 'lb-1', userId: 'lb-u1', traits: { country: 'DE' }, context: crm('lb-crm1') },
      viewed('lb-2', { anonymousId: 'unknown', context: crm('lb-crm1') }),
    ]);
    assert.deepEqual(outcomes(results), ['stored', 'stored'], JSON.stringify(results));
    assert.deepEqual(results[1]?.purposes, ['analytics.reporting', 'personalize.profiling']);
    const person = await profileOf('user_id', 'lb-u1');
    assert.equal(await profileOf('custom:crm', 'lb-crm1'), person);
    assert.deepEqual(await storedFor(person), ['lb-1', 'lb-2']);
  });

  it('stores a message the first gate allowed only in part with every purpose the linked person allows', async () => {
    await consent('lb-u5', both);
    // Alone, the device's order is someone unknown's: stored for the service only. After the identify that links the
    // device to a person who consented, as a later request it is stored for that person's purposes too.
    const order = { type: 'track', messageId: 'lb-14', anonymousId: 'lb-dev5', event: 'Order Completed', properties: { order_id: 'o14', revenue: 12, currency: 'EUR' } };
    const results = await batch([{ type: 'identify', messageId: 'lb-13', userId: 'lb-u5', anonymousId: 'lb-dev5' }, order]);
    assert.deepEqual(outcomes(results), ['stored', 'stored'], JSON.stringify(results));
    assert.deepEqual(results[1]?.purposes, ['analytics.reporting', 'personalize.profiling', 'essential.service.operations']);
    assert.deepEqual(await storedFor(await profileOf('user_id', 'lb-u5')), ['lb-13', 'lb-14']);
  });

  it('stores it when the earlier message brings the anonymous id, and follows a chain of such messages', async () => {
    await consent('lb-u2', both);
    const results = await batch([
      { type: 'identify', messageId: 'lb-3', userId: 'lb-u2', anonymousId: 'lb-dev2' },
      viewed('lb-4', { anonymousId: 'lb-dev2', context: crm('lb-crm2') }),
      viewed('lb-5', { anonymousId: 'unknown', context: crm('lb-crm2') }),
    ]);
    assert.deepEqual(outcomes(results), ['stored', 'stored', 'stored'], JSON.stringify(results));
    const person = await profileOf('user_id', 'lb-u2');
    assert.equal(await profileOf('anonymous_id', 'lb-dev2'), person);
    assert.equal(await profileOf('custom:crm', 'lb-crm2'), person);
    assert.deepEqual(await storedFor(person), ['lb-3', 'lb-4', 'lb-5']);
  });

  it('keeps it refused, linking nothing, when the person the earlier message names refused consent', async () => {
    await consent('lb-u3', { 'analytics.reporting': 'refused', 'personalize.profiling': 'refused' });
    const results = await batch([
      // Stored for the service (first_name), so the device is linked to the person.
      { type: 'identify', messageId: 'lb-6', userId: 'lb-u3', anonymousId: 'lb-dev3', traits: { first_name: 'Ada' } },
      viewed('lb-7', { anonymousId: 'lb-dev3', context: crm('lb-crm3') }),
    ]);
    assert.deepEqual(outcomes(results), ['stored', 'COLLECT_NO_LAWFUL_BASIS'], JSON.stringify(results));
    const person = await profileOf('user_id', 'lb-u3');
    assert.equal(await profileOf('anonymous_id', 'lb-dev3'), person);
    assert.equal(await profileOf('custom:crm', 'lb-crm3'), null);
    assert.deepEqual(await storedFor(person), ['lb-6']);
  });

  it('stores an order whose only usable identifier the batch links, instead of answering the identity missing', async () => {
    await consent('lb-u4', both);
    const order = { type: 'track', messageId: 'lb-9', userId: 'unknown', event: 'Order Completed', properties: { order_id: 'o9', revenue: 39, currency: 'EUR' }, context: crm('lb-crm4') };
    const results = await batch([{ type: 'identify', messageId: 'lb-8', userId: 'lb-u4', context: crm('lb-crm4') }, order]);
    assert.deepEqual(outcomes(results), ['stored', 'stored'], JSON.stringify(results));
    assert.deepEqual(results[1]?.purposes, ['analytics.reporting', 'personalize.profiling', 'essential.service.operations']);
    const person = await profileOf('user_id', 'lb-u4');
    assert.deepEqual(await storedFor(person), ['lb-8', 'lb-9']);
    assert.deepEqual((await ctx.kernel.collect.ordersFor([person as string], 'analytics.reporting')).map((o) => o.total), [39]);
  });

  it('judges it the same in a large batch and beside other requests of the same commit', async () => {
    await consent('lb-u5', both);
    const views = Array.from({ length: 70 }, (_, i) => viewed(`lb-v${i}`, { userId: 'lb-u5' }));
    const others = Array.from({ length: 4 }, (_, i) => send('/v1/track', viewed(`lb-o${i}`, { userId: 'lb-u5' })));
    const [results] = await Promise.all([batch([{ type: 'identify', messageId: 'lb-10', userId: 'lb-u5', context: crm('lb-crm5') }, ...views, viewed('lb-11', { anonymousId: 'unknown', context: crm('lb-crm5') })]), ...others]);
    assert.ok(results?.every((r) => r.status === 'stored'), JSON.stringify(results?.filter((r) => r.status !== 'stored')));
    assert.ok((await storedFor(await profileOf('user_id', 'lb-u5'))).includes('lb-11'));
  });

  it('leaves a message that no earlier message of its batch links refused, as before', async () => {
    await consent('lb-u6', both);
    const results = await batch([{ type: 'identify', messageId: 'lb-12', userId: 'lb-u6', context: crm('lb-crm6') }, viewed('lb-13', { anonymousId: 'unknown', context: crm('lb-crm7') })]);
    assert.deepEqual(outcomes(results), ['stored', 'COLLECT_NO_LAWFUL_BASIS'], JSON.stringify(results));
    assert.equal(await profileOf('custom:crm', 'lb-crm7'), null);
  });
});
