import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { identifiersOf, parseMessage, type ParsedMessage } from './segment.ts';

const parsed = (raw: Record<string, unknown>): ParsedMessage => {
  const outcome = parseMessage(raw, 'track', Date.now(), 100);
  assert.ok(outcome.ok);
  return outcome.message;
};

describe('identifiersOf: context.externalIds', () => {
  const message = parsed({ userId: 'u1', event: 'Product Viewed' });

  it('maps each entry to custom:<type> with its id, the type lower-cased', () => {
    const ids = identifiersOf(message, undefined, { externalIds: [{ id: 'crm-42', type: 'CRM_Id', collection: 'users' }, { id: 7, type: 'shop.v2' }] });
    assert.deepEqual(ids, [
      { type: 'user_id', value: 'u1' },
      { type: 'custom:crm_id', value: 'crm-42' },
      { type: 'custom:shop.v2', value: '7' },
    ]);
  });

  it('leaves out entries with a type that is no custom identifier name or an id that is no usable string or number', () => {
    const externalIds = [
      { id: 'a', type: 'crm id' },
      { id: 'b', type: '_crm' },
      { id: 'c', type: 'x'.repeat(65) },
      { id: 'd' },
      { id: '', type: 'crm_id' },
      { id: '  ', type: 'crm_id' },
      { id: true, type: 'crm_id' },
      { id: { nested: 1 }, type: 'crm_id' },
      { id: Number.NaN, type: 'crm_id' },
      { id: 'bad\u0000id', type: 'crm_id' },
      null,
      'crm-1',
      { id: 'ok', type: 'crm_id' },
      { id: 'ok', type: 'CRM_ID' },
    ];
    assert.deepEqual(identifiersOf(message, undefined, { externalIds }), [
      { type: 'user_id', value: 'u1' },
      { type: 'custom:crm_id', value: 'ok' },
    ]);
    assert.deepEqual(identifiersOf(message, undefined, { externalIds: { id: 'x', type: 'crm_id' } }), [{ type: 'user_id', value: 'u1' }]);
  });
});

// External ids link a person only as far as the plan declares context.externalIds and the consent gate kept it.
describeEachDialect('external ids (context.externalIds)', (dialect) => {
  const ctx = useKernel(dialect);
  const { result, consent, profileOf } = useIngestServer(ctx);
  const viewed = (ids: Record<string, string>, externalIds: unknown[]) => ({ ...ids, event: 'Product Viewed', properties: { product_id: 'p1' }, context: { externalIds } });

  it('links an external id of a consented person to their profile, and a later event with only that id resolves to it', async () => {
    await consent('ext-u1', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const first = await result('/v1/track', viewed({ userId: 'ext-u1' }, [{ id: 'crm-42', type: 'crm_id', collection: 'users' }]));
    assert.equal(first?.status, 'stored', JSON.stringify(first));
    const profileId = await profileOf('user_id', 'ext-u1');
    assert.ok(profileId);
    assert.equal(await profileOf('custom:crm_id', 'crm-42'), profileId);

    const later = await result('/v1/track', viewed({ anonymousId: 'ext-a1-new' }, [{ id: 'crm-42', type: 'crm_id' }]));
    assert.equal(later?.status, 'stored', JSON.stringify(later));
    assert.equal(await profileOf('anonymous_id', 'ext-a1-new'), profileId);
  });

  it('links nothing for someone without consent', async () => {
    const refused = await result('/v1/track', viewed({ userId: 'ext-u2' }, [{ id: 'crm-43', type: 'crm_id' }]));
    assert.deepEqual([refused?.status, refused?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    assert.equal(await profileOf('custom:crm_id', 'crm-43'), null);
    assert.equal(await profileOf('user_id', 'ext-u2'), null);
  });

  it('links nothing when the event is stored but the gate left the external ids out for this person', async () => {
    // Consent to email marketing keeps the sign-up, not the ids (declared for reporting and profiling).
    await consent('ext-u3', { 'marketing.communications.email': 'given' });
    const stored = await result('/v1/track', { userId: 'ext-u3', event: 'Email Signed Up', properties: { list_id: 'news' }, context: { externalIds: [{ id: 'crm-44', type: 'crm_id' }] } });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    assert.ok(stored?.refusedFields?.some((f) => f.startsWith('context.externalIds')), JSON.stringify(stored));
    assert.ok(await profileOf('user_id', 'ext-u3'));
    assert.equal(await profileOf('custom:crm_id', 'crm-44'), null);
  });

  it('ignores an entry with a malformed type and still stores the message', async () => {
    await consent('ext-u4', { 'analytics.reporting': 'given', 'personalize.profiling': 'given' });
    const stored = await result('/v1/track', viewed({ userId: 'ext-u4' }, [{ id: 'crm-45', type: 'CRM ID!' }, { id: 'crm-46', type: 'crm_id' }]));
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    const profileId = await profileOf('user_id', 'ext-u4');
    assert.ok(profileId);
    assert.equal(await profileOf('custom:crm_id', 'crm-46'), profileId);
    assert.equal(await profileOf('custom:crm_id', 'crm-45'), null);
  });
});
