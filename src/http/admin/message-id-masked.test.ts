import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

interface Shown {
  messageId: string | null;
}

// A messageId is text the sender chose ("welcome-ada.lovelace@shop.io"): a reader who may not decrypt reads it masked.
describeEachDialect('admin reads mask messageIds for marketers and analysts', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const [userId, anonymousId] = [uniqueId('u'), uniqueId('a')];
  // Ids no other test sends, so that a body holding one shows a leak.
  const tag = uniqueId('zq');
  const ids = { visit: `visit-${tag}@mail.example`, order: `order-${tag}@mail.example`, welcome: `welcome-${tag}@mail.example` };
  let profile = '';
  const read = async <T>(role: string, url: string) => {
    const response = await harness.server.app.inject({ url, headers: harness.auth(role) });
    assert.equal(response.statusCode, 200, response.body);
    return { body: response.body, json: response.json() as T };
  };
  type ProfileView = { traits: (Shown & { key: string })[]; merges: Shown[] };
  const all = async (role: string) => {
    const view = await read<ProfileView>(role, `/v1/admin/profiles/${profile}`);
    const history = await read<{ changes: Shown[] }>(role, `/v1/admin/profiles/${profile}/history`);
    const events = await read<Shown[]>(role, `/v1/admin/subjects/${profile}/events`);
    return { bodies: [view.body, history.body, events.body], view: view.json, history: history.json.changes, events: events.json };
  };

  before(async () => {
    const writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const send = async (url: string, payload: unknown) => {
      const answer = await harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
      assert.equal(answer.statusCode, 200, answer.body);
      return answer;
    };
    const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
    // Two profiles, one per identifier, merged by the identify that carries both.
    await send('/v1/consent', { anonymousId, mechanism: 'banner_save', purposes });
    await send('/v1/track', { anonymousId, messageId: ids.visit, event: 'Product Viewed', properties: { product_id: 'p1', price: 3 } });
    await send('/v1/consent', { userId, mechanism: 'banner_save', purposes });
    await send('/v1/track', { userId, messageId: ids.order, event: 'Order Completed', properties: { order_id: uniqueId('o'), total: 3 } });
    await send('/v1/identify', { userId, anonymousId, messageId: ids.welcome, traits: { email: `${tag}@mail.example`, country: 'DE' } });
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    profile = id as string;
  });

  it('masks the messageId of traits, trait history, merge provenance and events', async () => {
    for (const role of ['marketer', 'analyst']) {
      const read = await all(role);
      for (const body of read.bodies) for (const id of Object.values(ids)) assert.ok(!body.includes(id), `${role} reads the messageId ${id}`);
      assert.ok(read.view.traits.length >= 2 && read.view.traits.every((t) => t.messageId === '••••'), `${role}: traits`);
      assert.ok(read.view.merges.length >= 1 && read.view.merges.every((m) => m.messageId === '••••'), `${role}: merges`);
      assert.ok(read.history.length >= 2 && read.history.every((c) => c.messageId === '••••'), `${role}: history`);
      assert.ok(read.events.length === 3 && read.events.every((e) => e.messageId === '••••'), `${role}: events`);
    }
  });

  it('still shows owners and privacy officers the messageIds as sent', async () => {
    for (const role of ['owner', 'privacy_officer']) {
      const read = await all(role);
      assert.deepEqual(new Set(read.view.traits.map((t) => t.messageId)), new Set([ids.welcome]));
      assert.deepEqual(new Set(read.view.merges.map((m) => m.messageId)), new Set([ids.welcome]));
      assert.deepEqual(new Set(read.history.map((c) => c.messageId)), new Set([ids.welcome]));
      assert.deepEqual(new Set(read.events.map((e) => e.messageId)), new Set(Object.values(ids)));
    }
  });
});
