import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// Identity calls with nothing but ids (no traits, no context) are gated on the purposes identity resolution serves,
// not on whichever context field a library happens to send.
describeEachDialect('identity calls without traits or context', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, result, consent, profileOf } = useIngestServer(ctx);

  it('stores a plain alias for a consented person and links the previous id to their profile', async () => {
    await consent('alias-u2', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const stored = await result('/v1/alias', { userId: 'alias-u2', previousId: 'alias-a2' });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    assert.deepEqual(stored?.purposes, ['analytics.reporting', 'personalize.profiling']);
    const profileId = await profileOf('user_id', 'alias-u2');
    assert.ok(profileId);
    assert.equal(await profileOf('anonymous_id', 'alias-a2'), profileId);
  });

  it('stores a plain alias for someone who consented to reporting alone, for reporting only', async () => {
    await consent('alias-u3', { 'analytics.reporting': 'given' });
    const stored = await result('/v1/alias', { userId: 'alias-u3', previousId: 'alias-a3' });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    assert.deepEqual(stored?.purposes, ['analytics.reporting']);
    assert.equal(await profileOf('anonymous_id', 'alias-a3'), await profileOf('user_id', 'alias-u3'));
  });

  it('stores a bare identify and a bare group for a consented person', async () => {
    await consent('ident-u4', { 'personalize.profiling': 'given' });
    const identify = await result('/v1/identify', { userId: 'ident-u4' });
    assert.equal(identify?.status, 'stored', JSON.stringify(identify));
    assert.deepEqual(identify?.purposes, ['personalize.profiling']);
    const group = await result('/v1/group', { userId: 'ident-u4', groupId: 'acme' });
    assert.equal(group?.status, 'stored', JSON.stringify(group));
  });

  it('refuses a plain alias and a bare identify for someone with no lawful basis, linking nothing', async () => {
    const alias = await result('/v1/alias', { userId: 'alias-u5', previousId: 'alias-a5' });
    assert.deepEqual([alias?.status, alias?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    const identify = await result('/v1/identify', { userId: 'alias-u5' });
    assert.deepEqual([identify?.status, identify?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    assert.equal(await profileOf('anonymous_id', 'alias-a5'), null);
    assert.equal(await profileOf('user_id', 'alias-u5'), null);
  });

  it('refuses a plain alias for a person whose only consent is to a purpose identity resolution does not serve', async () => {
    await consent('alias-u6', { 'marketing.communications.sms': 'given' });
    const alias = await result('/v1/alias', { userId: 'alias-u6', previousId: 'alias-a6' });
    assert.deepEqual([alias?.status, alias?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    assert.equal(await profileOf('anonymous_id', 'alias-a6'), null);
  });

  it('refuses a plain alias once the person has withdrawn consent', async () => {
    await consent('alias-u7', { 'analytics.reporting': 'given' });
    const withdrawn = await send('/v1/consent', { mechanism: 'privacy_center', userId: 'alias-u7', withdrawAll: true });
    assert.equal(withdrawn.statusCode, 200, withdrawn.body);
    const alias = await result('/v1/alias', { userId: 'alias-u7', previousId: 'alias-a7' });
    assert.deepEqual([alias?.status, alias?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    assert.equal(await profileOf('anonymous_id', 'alias-a7'), null);
  });
});
