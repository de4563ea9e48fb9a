import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// A message that identity resolution moves to another person than the consent gate saw (a new profile, a merge) is
// gated again before resolution commits: if that person would refuse it, it links and merges nothing.
describeEachDialect('messages refused after resolution link nothing', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, result, profileOf } = useIngestServer(ctx);
  const banner = { mechanism: 'banner_save', noticeVersion: 1, jurisdiction: 'DE', source: 'https://shop.example/' };
  const consent = async (ids: Record<string, string>, purposes: Record<string, string>) => {
    const response = await send('/v1/consent', { ...banner, ...ids, purposes });
    assert.equal(response.statusCode, 200, response.body);
  };

  it('creates no profile for a new user id that a shared device sends without any consent of its own', async () => {
    await consent({ anonymousId: 'rl-dev1', userId: 'rl-u1' }, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const identify = await result('/v1/identify', { anonymousId: 'rl-dev1', userId: 'rl-u3', messageId: 'rl-s1' });
    assert.deepEqual([identify?.status, identify?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS'], JSON.stringify(identify));
    assert.equal(await profileOf('user_id', 'rl-u3'), null);
  });

  it('merges nobody for a message the merged person would refuse', async () => {
    await consent({ userId: 'rl-mu', anonymousId: 'rl-mu-dev' }, { 'analytics.reporting': 'refused', 'personalize.profiling': 'refused' });
    await consent({ anonymousId: 'rl-me-dev' }, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const externalIds = [{ id: 'K-77', type: 'crm', collection: 'users', encoding: 'none' }];
    const first = await result('/v1/track', { anonymousId: 'rl-me-dev', messageId: 'rl-me1', event: 'Product Viewed', properties: { product_id: 'p' }, context: { externalIds } });
    assert.equal(first?.status, 'stored', JSON.stringify(first));
    const consenting = await profileOf('anonymous_id', 'rl-me-dev');
    const refusing = await profileOf('anonymous_id', 'rl-mu-dev');
    assert.ok(consenting && refusing && consenting !== refusing);
    const second = await result('/v1/track', { anonymousId: 'rl-mu-dev', messageId: 'rl-me2', event: 'Product Viewed', properties: { product_id: 'p' }, context: { externalIds } });
    assert.deepEqual([second?.status, second?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS'], JSON.stringify(second));
    // Both people are still apart, and the consenting one's events are still stored.
    assert.equal(await profileOf('anonymous_id', 'rl-me-dev'), consenting);
    assert.equal(await profileOf('anonymous_id', 'rl-mu-dev'), refusing);
    const merges = await ctx.kernel.storage.db
      .withTables<{ identity_merges: { from_profile: string; into_profile: string } }>()
      .selectFrom('identity_merges')
      .select(['from_profile', 'into_profile'])
      .where((eb) => eb.or([eb('from_profile', 'in', [consenting, refusing]), eb('into_profile', 'in', [consenting, refusing])]))
      .execute();
    assert.deepEqual(merges, []);
    const third = await result('/v1/track', { anonymousId: 'rl-me-dev', messageId: 'rl-me3', event: 'Product Viewed', properties: { product_id: 'p' } });
    assert.equal(third?.status, 'stored', JSON.stringify(third));
  });

  it('still merges when the merged person allows the message, and stores it', async () => {
    await consent({ userId: 'rl-ok', anonymousId: 'rl-ok-dev' }, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    await consent({ anonymousId: 'rl-ok-dev2' }, { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const stored = await result('/v1/identify', { anonymousId: 'rl-ok-dev2', userId: 'rl-ok', messageId: 'rl-ok1' });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    assert.equal(await profileOf('anonymous_id', 'rl-ok-dev2'), await profileOf('user_id', 'rl-ok'));
  });
});
