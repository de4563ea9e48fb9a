import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN } from '../../modules/catalog/index.ts';

interface StoredEvent {
  id: string;
  kind: string;
  event: string | null;
  occurredAt: string;
  purposes: string[];
  data: Record<string, unknown>;
  personal: unknown;
  masked?: string[];
}

const track = (category: string, purposes: string[]) => ({ category, purposes, properties: { type: 'object', properties: { note: { type: 'string', 'x-candor': { category: 'user.behavior', purposes, retention: 'P1Y', personal: false } } } } });

// That a person had a prescription filled, or was at a precise place, is itself special-category data (or precise
// location): a reader who may not decrypt sees that something happened then, not what.
describeEachDialect('admin event reads mask an occurrence of a special category or precise location for marketers and analysts', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const userId = uniqueId('u');
  // Names no other test uses, so that a body holding them shows a leak.
  const [rx, visit, leaflet, chat, order] = ['Prescription Filled Zq', 'Store Visited Zq', 'Leaflet Read Zq', 'Pharmacy Chat Zq', 'Order Completed'];
  const times: Record<string, string> = { [rx]: '2025-04-01T10:00:00.000Z', [visit]: '2025-04-02T10:00:00.000Z', [leaflet]: '2025-04-03T10:00:00.000Z', [chat]: '2025-04-04T10:00:00.000Z', [order]: '2025-04-05T10:00:00.000Z' };
  let profile = '';
  const read = async (role: string) => {
    const response = await harness.server.app.inject({ url: `/v1/admin/subjects/${profile}/events`, headers: harness.auth(role) });
    assert.equal(response.statusCode, 200, response.body);
    return { body: response.body, events: response.json() as StoredEvent[] };
  };
  const at = (events: StoredEvent[], name: string) => events.find((e) => e.occurredAt === times[name]);

  before(async () => {
    const plan = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    plan.events[rx] = track('user.health_and_medical', ['fairness_audit']);
    plan.events[visit] = track('user.location.precise', ['fairness_audit']);
    // Not special in the version it is stored under; the version put in force later makes it so.
    plan.events[leaflet] = track('user.behavior.browsing_history', ['analytics.reporting']);
    // Special in the version it is stored under; the version put in force later no longer declares it.
    plan.events[chat] = track('user.health_and_medical', ['fairness_audit']);
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    const notice = ctx.kernel.consent.currentNotice();
    const purposes = notice.purposes.map((p) => (p.purpose === 'fairness_audit' ? { ...p, categories: [...p.categories, 'user.location.precise', 'user.behavior'] } : p));
    await ctx.kernel.consent.publishNotice({ text: `${notice.text} Fairness audits, with explicit consent, include visits.`, purposes }, CLI_ACTOR);

    const writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const send = (url: string, payload: unknown) =>
      harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
    const consent = await send('/v1/consent', { userId, mechanism: 'banner_save', purposes: { fairness_audit: 'given', 'analytics.reporting': 'given' } });
    assert.equal(consent.statusCode, 200, consent.body);
    const batch: Record<string, unknown>[] = [rx, visit, leaflet, chat].map((event) => ({ type: 'track', event, userId, messageId: uniqueId('m'), timestamp: times[event], properties: { note: 'n' } }));
    batch.push({ type: 'track', event: order, userId, messageId: uniqueId('m'), timestamp: times[order], properties: { order_id: uniqueId('o'), total: 3 } });
    const answer = await send('/v1/batch', { batch });
    assert.equal(answer.statusCode, 200, answer.body);
    for (const item of (answer.json() as { results: { status: string }[] }).results) assert.equal(item.status, 'stored');

    const next = structuredClone(plan);
    next.events[leaflet] = track('user.health_and_medical', ['fairness_audit']);
    delete next.events[chat];
    await ctx.kernel.catalog.publish(next, CLI_ACTOR);
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    profile = id as string;
  });

  it('shows marketers and analysts the time of such an event, masked: no name, purposes or data', async () => {
    for (const role of ['marketer', 'analyst']) {
      const { body, events } = await read(role);
      for (const name of [rx, visit, leaflet, chat]) {
        assert.ok(!body.includes(name), `${role} reads the name of ${name}`);
        const event = at(events, name);
        assert.ok(event, `${role} does not see that ${name} happened`);
        assert.deepEqual([event.kind, event.event, event.purposes, event.data, event.personal, event.masked], ['track', '••••', [], {}, 'masked', ['event', 'purposes', 'data']], `${role}: ${name}`);
      }
      // An occurrence of another category reads as before.
      const shown = at(events, order);
      assert.equal(shown?.event, order);
      assert.equal(shown?.masked, undefined);
      assert.ok((shown?.purposes.length ?? 0) > 0);
    }
  });

  it('still shows owners and privacy officers every event as stored', async () => {
    for (const role of ['owner', 'privacy_officer']) {
      const { events } = await read(role);
      for (const name of [rx, visit, leaflet, chat]) {
        const event = at(events, name);
        assert.deepEqual([event?.event, event?.data, event?.masked], [name, { properties: { note: 'n' } }, undefined], `${role}: ${name}`);
        assert.ok((event?.purposes.length ?? 0) > 0);
      }
    }
  });
});
