import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';

const REPORTING = 'analytics.reporting';
const PROFILING = 'personalize.profiling';

// RudderStack's browser SDK, with consent management on, puts the visitor's choices on every event as
// context.consentManagement: a denied id that names a purpose takes it away from that message; nothing is granted.
describeEachDialect('RudderStack consent management on a message', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, profileOf } = useIngestServer(ctx);
  type Result = { status: string; code?: string; purposes?: string[]; dropped?: string[]; detail?: string };
  const results = async (url: string, payload: unknown) => {
    const response = await send(url, payload);
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: Result[] }).results;
  };
  const consent = async (ids: Record<string, string>, purposes: Record<string, string>) => {
    const response = await send('/v1/consent', { mechanism: 'banner_save', ...ids, purposes });
    assert.equal(response.statusCode, 200, response.body);
  };
  /** The SDK's field, as it sends it with the custom provider. */
  const managed = (deniedConsentIds: unknown, allowedConsentIds: unknown = []) => ({ consentManagement: { deniedConsentIds, allowedConsentIds, provider: 'custom', resolutionStrategy: 'and' } });
  const viewed = (anonymousId: string, messageId: string, context?: Record<string, unknown>) => ({ type: 'track', anonymousId, messageId, event: 'Product Viewed', properties: { product_id: 'p1' }, ...(context ? { context } : {}) });

  it('takes a denied purpose away from that message only, ignores ids that name no purpose, and stores nothing of the field', async () => {
    await consent({ anonymousId: 'cm-1' }, { [REPORTING]: 'given', [PROFILING]: 'given' });
    const answered = await results('/v1/batch', {
      batch: [
        viewed('cm-1', 'cm-1a', { locale: 'de-DE', ...managed([PROFILING, 'C0004', 'marketing'], [REPORTING]) }),
        viewed('cm-1', 'cm-1b'),
        viewed('cm-1', 'cm-1c', managed([PROFILING, REPORTING])),
      ],
    });
    assert.deepEqual(
      answered.map((r) => [r.status, r.code, r.purposes?.join()]),
      [
        ['stored', undefined, REPORTING],
        ['stored', undefined, [REPORTING, PROFILING].join()],
        ['refused', 'COLLECT_NO_LAWFUL_BASIS', undefined],
      ],
      JSON.stringify(answered),
    );
    // A protocol field, like context.gpc: read, never listed as dropped, never stored.
    assert.ok(answered.every((r) => !r.dropped?.some((path) => path.startsWith('context.consentManagement'))), JSON.stringify(answered));
    const profile = await profileOf('anonymous_id', 'cm-1');
    assert.ok(profile);
    const events = await ctx.kernel.collect.events([profile], { decrypt: true, limit: 10 });
    assert.deepEqual(events.map((e) => e.messageId).sort(), ['cm-1a', 'cm-1b']);
    assert.ok(!JSON.stringify(events).includes('consentManagement'));
    const context = events.find((e) => e.messageId === 'cm-1a')?.data.context as Record<string, unknown> | undefined;
    assert.equal(context?.locale, 'de-DE', 'the rest of the context is kept');
  });

  it('applies a batch-level context with the field to every message that takes it, and on the single-message endpoints', async () => {
    await consent({ anonymousId: 'cm-2' }, { [REPORTING]: 'given', [PROFILING]: 'given' });
    const batch = await results('/v1/batch', { context: managed([REPORTING]), batch: [viewed('cm-2', 'cm-2a'), viewed('cm-2', 'cm-2b', { locale: 'en-GB' })] });
    assert.deepEqual(batch.map((r) => r.purposes), [[PROFILING], [PROFILING]], JSON.stringify(batch));
    const single = await results('/v1/track', viewed('cm-2', 'cm-2c', managed([REPORTING, PROFILING])));
    assert.deepEqual(single.map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS']]);
  });

  it('grants nothing through allowedConsentIds: without consent on record the message is refused', async () => {
    const answered = await results('/v1/track', viewed('cm-3', 'cm-3a', managed([], [REPORTING, PROFILING])));
    assert.deepEqual(answered.map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS']]);
    assert.equal(await profileOf('anonymous_id', 'cm-3'), null);
  });

  it('refuses a message whose denied ids cannot be read rather than ignore them, and takes one without any', async () => {
    await consent({ anonymousId: 'cm-4' }, { [REPORTING]: 'given' });
    const answered = await results('/v1/batch', {
      batch: [
        viewed('cm-4', 'cm-4a', managed(REPORTING)),
        viewed('cm-4', 'cm-4b', managed([REPORTING, 7])),
        viewed('cm-4', 'cm-4c', { consentManagement: true }),
        viewed('cm-4', 'cm-4d', { consentManagement: { provider: 'custom', allowedConsentIds: { reporting: true } } }),
      ],
    });
    assert.deepEqual(
      answered.map((r) => [r.status, r.code, r.detail]),
      [
        ['invalid', 'COLLECT_MESSAGE_INVALID', 'context.consentManagement.deniedConsentIds (an array of strings)'],
        ['invalid', 'COLLECT_MESSAGE_INVALID', 'context.consentManagement.deniedConsentIds (an array of strings)'],
        ['invalid', 'COLLECT_MESSAGE_INVALID', 'context.consentManagement (an object)'],
        ['stored', undefined, undefined],
      ],
    );
  });

  it('refuses before linking a message whose merged person would allow only a purpose it denies: nobody is merged', async () => {
    // The id's owner allows both purposes; the device that sends it next refuses reporting.
    await consent({ anonymousId: 'cm-owner' }, { [REPORTING]: 'given', [PROFILING]: 'given' });
    await consent({ anonymousId: 'cm-device' }, { [REPORTING]: 'refused', [PROFILING]: 'given' });
    const externalIds = [{ id: 'CM-9', type: 'crm', collection: 'users', encoding: 'none' }];
    const first = await results('/v1/track', viewed('cm-owner', 'cm-5a', { externalIds }));
    assert.deepEqual(first.map((r) => r.status), ['stored']);
    const owner = await profileOf('anonymous_id', 'cm-owner');
    const device = await profileOf('anonymous_id', 'cm-device');
    assert.ok(owner && device && owner !== device);
    // The gate sees the id's owner (reporting is left once profiling is denied); merged with the device, only profiling
    // would be, which the message denies.
    const second = await results('/v1/track', viewed('cm-device', 'cm-5b', { externalIds, ...managed([PROFILING]) }));
    assert.deepEqual(second.map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS']]);
    assert.equal(await profileOf('anonymous_id', 'cm-owner'), owner);
    assert.equal(await profileOf('anonymous_id', 'cm-device'), device, 'the device was not merged into the owner');
  });
});
