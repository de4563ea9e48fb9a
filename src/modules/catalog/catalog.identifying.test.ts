import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_PLAN, planHash, type FieldSchema, type PlanDocument } from './index.ts';

const clear = (category: string): FieldSchema => ({ type: 'string', 'x-candor': { category, purposes: ['analytics.reporting'], retention: 'P1Y', personal: false } });

/** The default plan plus an event carrying an e-mail and a phone number, and `context.ip`, all declared not personal. */
function identifiersInClear(): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  plan.events['Contact Given'] = {
    purposes: ['analytics.reporting'],
    properties: { type: 'object', properties: { email: clear('user.contact.email'), phone: clear('user.contact.phone_number'), country: clear('user.contact.address.country') } },
  };
  const context = plan.context?.properties;
  assert.ok(context);
  context.ip = clear('user.device.ip_address');
  return plan;
}

describeEachDialect('catalog: direct identifiers are personal whatever the plan says', (dialect) => {
  const ctx = useKernel(dialect);

  it('refuses to publish a plan that declares an e-mail, a phone number or an IP address not personal', async () => {
    const { ok, problems } = await ctx.kernel.catalog.validatePlan(identifiersInClear());
    assert.equal(ok, false);
    assert.deepEqual(problems.map((p) => p.path).sort(), [
      '/context/properties/ip/x-candor/personal',
      '/events/Contact Given/properties/properties/email/x-candor/personal',
      '/events/Contact Given/properties/properties/phone/x-candor/personal',
    ]);
    await assert.rejects(ctx.kernel.catalog.publish(identifiersInClear(), CLI_ACTOR), (error) => isCandorError(error, 'CATALOG_PLAN_INVALID'));
    assert.equal(ctx.kernel.catalog.version(), 1);
  });

  it('stores them encrypted under a version published before the rule, and the country in clear', async () => {
    const plan = identifiersInClear();
    const row = { version: 2, name: plan.name, hash: planHash(plan), plan: JSON.stringify(plan), published_at: new Date().toISOString(), published_by: 'cli' };
    await ctx.kernel.storage.db.withTables<{ catalog_plans: typeof row }>().insertInto('catalog_plans').values(row).execute();
    assert.equal(await ctx.kernel.catalog.refresh(), 2, 'the stored version loads');

    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-contact' }], source: 'web', at: new Date().toISOString() }]));
    const profileId = resolved?.profileId as string;
    // The notice describes contact details for reporting, as that version of the plan declares them.
    const notice = ctx.kernel.consent.currentNotice();
    const purposes = notice.purposes.map((p) => (p.purpose === 'analytics.reporting' ? { ...p, categories: [...p.categories, 'user.contact'] } : p));
    await ctx.kernel.consent.publishNotice({ text: `${notice.text} We report on contact details.`, purposes }, CLI_ACTOR);
    await ctx.kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const message = { type: 'track', userId: 'u-contact', messageId: 'contact-1', event: 'Contact Given', properties: { email: 'ada@shop.example', phone: '+31612345678', country: 'NL' }, context: { ip: '192.0.2.77' } };
    const [result] = await sendMessages(ctx.kernel, [message]);
    assert.equal(result?.status, 'stored', JSON.stringify(result));

    // The messageId reads masked unless decrypted: the masked read is found by the event's id.
    const [read] = (await ctx.kernel.collect.events([profileId], { decrypt: true, limit: 10 })).filter((e) => e.messageId === 'contact-1');
    const raw = (await ctx.kernel.collect.events([profileId], { decrypt: false, limit: 10 })).find((e) => e.id === read?.id);
    assert.ok(raw, 'stored');
    const atRest = JSON.stringify(raw);
    for (const value of ['ada@shop.example', '+31612345678', '192.0.2.77']) assert.ok(!atRest.includes(value), `${value} is not stored in clear: ${atRest}`);
    assert.equal((raw.data as { properties?: Record<string, unknown> }).properties?.country, 'NL');
    const personal = JSON.parse(JSON.stringify(read?.personal)) as { properties?: Record<string, unknown>; context?: Record<string, unknown> };
    assert.deepEqual(personal, { properties: { email: 'ada@shop.example', phone: '+31612345678' }, context: { ip: '192.0.2.77' } });
  });
});
