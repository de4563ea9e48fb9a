import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// Older Segment clients send an identify call's traits in context.traits only: they are then the call's traits, and
// the answer does not list context.traits as dropped when it was taken.
describeEachDialect('identify traits sent in context.traits', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, consent, profileOf } = useIngestServer(ctx);
  type Result = { status: string; dropped?: string[] };
  const resultOf = async (url: string, payload: unknown) => {
    const response = await send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: Result[] }).results[0];
  };

  it('takes them as the traits, links and stores them, and lists only their undeclared keys as dropped', async () => {
    await consent('ct-1', { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given' });
    const result = await resultOf('/v1/identify', { userId: 'ct-1', messageId: 'ct-1a', context: { locale: 'de-DE', traits: { email: 'ct-1@shop.dev', country: 'DE', shoe_size: 42 } } });
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.deepEqual(result?.dropped, ['traits.shoe_size'], JSON.stringify(result));
    const profile = await profileOf('user_id', 'ct-1');
    assert.ok(profile);
    assert.equal(await profileOf('email', 'ct-1@shop.dev'), profile, 'the e-mail address was linked');
    const view = await ctx.kernel.profiles.get([profile], { decrypt: true });
    assert.deepEqual(Object.fromEntries(view.traits.filter((t) => t.key !== 'shoe_size').map((t) => [t.key, t.value])), { email: 'ct-1@shop.dev', country: 'DE' });
  });

  it('still drops and lists context.traits when it is not taken: beside top-level traits, or on another call', async () => {
    await consent('ct-2', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const both = await resultOf('/v1/identify', { userId: 'ct-2', messageId: 'ct-2a', traits: { country: 'FR' }, context: { traits: { country: 'FR' } } });
    assert.deepEqual([both?.status, both?.dropped], ['stored', ['context.traits']], JSON.stringify(both));
    const track = await resultOf('/v1/track', { userId: 'ct-2', messageId: 'ct-2b', event: 'Product Viewed', properties: { product_id: 'p1' }, context: { traits: { country: 'FR' } } });
    assert.deepEqual([track?.status, track?.dropped], ['stored', ['context.traits']], JSON.stringify(track));
  });
});
