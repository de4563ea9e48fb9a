import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN } from '../../modules/catalog/index.ts';
import { buildServer, type CandorServer } from '../server.ts';

interface Trait {
  key: string;
  value: unknown;
  state: string;
  personal: boolean;
}
interface Change {
  key: string;
  value: unknown;
  valueState: string;
  previousValue: unknown;
  previousState: string | null;
}
interface StoredEvent {
  event: string | null;
  kind: string;
  data: { traits?: Record<string, unknown>; properties?: { order_id?: string; coupon?: string; total?: number; products?: Record<string, unknown>[] } };
  personal: unknown;
}

// Values stored in clear before a newer plan made their field personal are masked like encrypted ones.
describeEachDialect('admin reads mask what the plan in force declares personal', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const tokens: Record<string, string> = {};
  const userId = uniqueId('u');
  const orderId = uniqueId('o');
  // Values no other test sends, so that a body holding them shows a leak.
  const [firstCity, secondCity, coupon, productName] = ['Zyxwarthen', 'Qorvelund', 'QX-COUPON-77', 'Vantablade'];
  let profile = '';
  const send = (url: string, payload: unknown) =>
    server.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' },
      payload: JSON.stringify(payload),
    });
  const read = async <T>(role: string, url: string): Promise<{ body: string; json: T }> => {
    const response = await server.app.inject({ url, headers: { authorization: `Bearer ${tokens[role]}` } });
    assert.equal(response.statusCode, 200, response.body);
    return { body: response.body, json: response.json() as T };
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    for (const role of ['owner', 'privacy_officer', 'marketer', 'analyst']) tokens[role] = (await ctx.kernel.access.createToken(role, null, CLI_ACTOR)).secret;
    const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
    assert.equal((await send('/v1/consent', { userId, mechanism: 'banner_save', purposes })).statusCode, 200);
    const messages = [
      { type: 'identify', userId, messageId: uniqueId('m'), timestamp: '2025-03-01T10:00:00.000Z', traits: { city: firstCity } },
      { type: 'identify', userId, messageId: uniqueId('m'), timestamp: '2025-03-02T10:00:00.000Z', traits: { city: secondCity } },
      {
        type: 'track',
        event: 'Order Completed',
        userId,
        messageId: uniqueId('m'),
        timestamp: '2025-03-03T10:00:00.000Z',
        properties: { order_id: orderId, total: 30, coupon, products: [{ name: productName, price: 30 }] },
      },
    ];
    const answer = await send('/v1/batch', { batch: messages });
    assert.equal(answer.statusCode, 200, answer.body);
    // The newer plan makes a trait, an event property and a field of an event's line items personal.
    const plan = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    plan.traits.properties.city['x-candor'].personal = true;
    const order = plan.events['Order Completed'].properties.properties;
    order.coupon['x-candor'].personal = true;
    order.products.items.properties.name['x-candor'].personal = true;
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    profile = id as string;
  });
  after(async () => {
    await server.app.close();
  });

  it('masks a trait stored in clear, in the profile and in every history entry, for marketers and analysts', async () => {
    for (const role of ['marketer', 'analyst']) {
      const view = await read<{ traits: Trait[] }>(role, `/v1/admin/profiles/${profile}`);
      assert.ok(!view.body.includes(secondCity), `${role} reads the city in clear`);
      // Still stored in clear: `personal` tells how it is stored, the state that it is masked.
      assert.deepEqual(
        view.json.traits.filter((t) => t.key === 'city').map((t) => [t.value, t.state, t.personal]),
        [['••••', 'masked', false]],
      );
      const history = await read<{ changes: Change[] }>(role, `/v1/admin/profiles/${profile}/history?key=city`);
      assert.ok(!history.body.includes(firstCity) && !history.body.includes(secondCity), `${role} reads a city of the history in clear`);
      assert.deepEqual(
        history.json.changes.map((c) => [c.value, c.valueState, c.previousValue, c.previousState]),
        [
          ['••••', 'masked', '••••', 'masked'],
          ['••••', 'masked', undefined, null],
        ],
      );
    }
  });

  it('leaves fields stored in clear that the plan now declares personal out of the events, and reads the personal part masked', async () => {
    for (const role of ['marketer', 'analyst']) {
      const events = await read<StoredEvent[]>(role, `/v1/admin/subjects/${profile}/events`);
      for (const value of [firstCity, secondCity, coupon, productName]) assert.ok(!events.body.includes(value), `${role} reads a personal field of an event in clear`);
      const order = events.json.find((e) => e.event === 'Order Completed');
      assert.deepEqual(order?.data.properties, { order_id: orderId, total: 30, products: [{ price: 30 }] });
      assert.equal(order?.personal, 'masked');
      const identifies = events.json.filter((e) => e.kind === 'identify');
      assert.equal(identifies.length, 2);
      for (const identify of identifies) {
        assert.equal(identify.data.traits?.city, undefined);
        assert.equal(identify.personal, 'masked');
      }
    }
  });

  it('still shows owners and privacy officers the values as stored, in clear', async () => {
    for (const role of ['owner', 'privacy_officer']) {
      const view = await read<{ traits: Trait[] }>(role, `/v1/admin/profiles/${profile}`);
      assert.deepEqual(
        view.json.traits.filter((t) => t.key === 'city').map((t) => [t.value, t.state]),
        [[secondCity, 'plain']],
      );
      const history = await read<{ changes: Change[] }>(role, `/v1/admin/profiles/${profile}/history?key=city`);
      assert.deepEqual(
        history.json.changes.map((c) => [c.value, c.valueState, c.previousValue, c.previousState]),
        [
          [secondCity, 'plain', firstCity, 'plain'],
          [firstCity, 'plain', undefined, null],
        ],
      );
      const events = await read<StoredEvent[]>(role, `/v1/admin/subjects/${profile}/events`);
      const order = events.json.find((e) => e.event === 'Order Completed');
      assert.deepEqual(order?.data.properties, { order_id: orderId, total: 30, coupon, products: [{ name: productName, price: 30 }] });
      assert.equal(order?.personal, null);
    }
  });
});
