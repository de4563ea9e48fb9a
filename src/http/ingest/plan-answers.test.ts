import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MAX_VIOLATIONS_LISTED } from '../../modules/catalog/index.ts';

describeEachDialect('Segment ingest: what the tracking plan answers and keeps', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, consent, profileOf } = useIngestServer(ctx);

  it(`lists the first ${MAX_VIOLATIONS_LISTED} violations of each message, and counts each message once per path and rule`, async () => {
    // 1,000 allergies of the wrong type, and too many of them: 1,001 violations per message.
    const survey = (messageId: string) => ({ type: 'track', userId: 'u-survey', messageId, event: 'Survey Answered', properties: { survey_id: 's', allergies: new Array(1_000).fill(1) } });
    const response = await send('/v1/batch', { batch: [survey('s-1'), survey('s-2')] });
    assert.equal(response.statusCode, 200, response.body);
    type Result = { status: string; code?: string; violations?: { path: string; rule: string }[]; violationsUnlisted?: number };
    const results = (response.json() as { results: Result[] }).results;
    for (const result of results) {
      assert.deepEqual([result.status, result.code], ['invalid', 'CATALOG_EVENT_INVALID']);
      assert.equal(result.violations?.length, MAX_VIOLATIONS_LISTED);
      assert.deepEqual(result.violations?.[0], { path: 'properties.allergies', rule: 'maxItems', message: 'must NOT have more than 20 items' });
      assert.deepEqual(result.violations?.[1], { path: 'properties.allergies[0]', rule: 'type', message: 'must be string' });
      assert.equal(result.violationsUnlisted, 1_001 - MAX_VIOLATIONS_LISTED);
    }
    const [row] = await ctx.kernel.catalog.stats({ source: 'web', event: 'Survey Answered' });
    assert.deepEqual(row?.refused.CATALOG_EVENT_INVALID, 2);
    assert.deepEqual(new Map(row?.violations.map((v) => [`${v.path} ${v.rule}`, v.count])), new Map([['properties.allergies maxItems', 2], ['properties.allergies[] type', 2]]));
  });

  it('trims an e-mail address sent with spaces around it, and stores and links the trimmed address', async () => {
    await consent('u-ada', { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given' });
    const response = await send('/v1/identify', { userId: 'u-ada', messageId: 'ada-1', traits: { email: ' Ada@Shop.io ' } });
    assert.equal(response.statusCode, 200, response.body);
    const result = (response.json() as { results: { status: string }[] }).results[0];
    assert.equal(result?.status, 'stored', response.body);
    const profile = await profileOf('user_id', 'u-ada');
    assert.ok(profile);
    assert.equal(await profileOf('email', 'ada@shop.io'), profile, 'the e-mail address was linked');
    const view = await ctx.kernel.profiles.get([profile], { decrypt: true });
    assert.equal(view.traits.find((t) => t.key === 'email')?.value, 'Ada@Shop.io');
  });
});
