import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN } from '../../modules/catalog/index.ts';
import { useServer, type ServerHarness } from '../../../test/support/server.ts';
import type { Kernel } from '../../kernel.ts';

interface Trait {
  key: string;
  value: unknown;
  state: string;
  personal: boolean;
}
interface Change {
  value: unknown;
  valueState: string;
  previousValue: unknown;
  previousState: string | null;
}
interface StoredEvent {
  event: string | null;
  kind: string;
  data: { traits?: Record<string, unknown>; properties?: Record<string, unknown>; context?: Record<string, unknown> };
  personal: unknown;
}

/** Sending with a write key of source `web` (made before the suite's first send) and reading as a staff role. */
function ingestAndRead(ctx: { readonly kernel: Kernel }, harness: ServerHarness) {
  let writeKey: string | undefined;
  const send = async (url: string, payload: unknown) => {
    writeKey ??= (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    return harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  };
  const read = async <T>(role: string, url: string): Promise<{ body: string; json: T }> => {
    const response = await harness.server.app.inject({ url, headers: harness.auth(role) });
    assert.equal(response.statusCode, 200, response.body);
    return { body: response.body, json: response.json() as T };
  };
  return { send, read };
}

// A field the plan in force no longer declares is treated as personal: nothing says it is not.
describeEachDialect('admin reads mask what the plan in force no longer declares', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const { send, read } = ingestAndRead(ctx, harness);
  const userId = uniqueId('u');
  const orderId = uniqueId('o');
  // Values no other test sends, so that a body holding them shows a leak.
  const [firstCity, secondCity, country, coupon, productName, cartId, campaign, productId] = [
    'Wendravik',
    'Ossmerholt',
    'Quellandia',
    'UNDECLARED-77',
    'Sablequill',
    'cart-kv91x',
    'spring-zq48',
    'sku-pm73q',
  ];
  let profile = '';
  const traitsOf = (view: { traits: Trait[] }) => Object.fromEntries(view.traits.map((t) => [t.key, [t.value, t.state, t.personal]]));
  const changesOf = (history: { changes: Change[] }) => history.changes.map((c) => [c.value, c.valueState, c.previousValue, c.previousState]);

  before(async () => {
    const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
    assert.equal((await send('/v1/consent', { userId, mechanism: 'banner_save', purposes })).statusCode, 200);
    // Stored in clear under version 1 (the default plan): none of these fields is personal there.
    const messages = [
      { type: 'identify', userId, messageId: uniqueId('m'), timestamp: '2025-03-01T10:00:00.000Z', traits: { city: firstCity, country } },
      { type: 'identify', userId, messageId: uniqueId('m'), timestamp: '2025-03-02T10:00:00.000Z', traits: { city: secondCity } },
      {
        type: 'track',
        event: 'Order Completed',
        userId,
        messageId: uniqueId('m'),
        timestamp: '2025-03-03T10:00:00.000Z',
        properties: { order_id: orderId, total: 30, coupon, products: [{ name: productName, price: 30 }] },
        context: { locale: 'nb-NO', campaign: { name: campaign } },
      },
      { type: 'track', event: 'Product Added', userId, messageId: uniqueId('m'), timestamp: '2025-03-04T10:00:00.000Z', properties: { cart_id: cartId, price: 12 } },
      { type: 'track', event: 'Product Viewed', userId, messageId: uniqueId('m'), timestamp: '2025-03-05T10:00:00.000Z', properties: { product_id: productId, price: 12 } },
    ];
    const answer = await send('/v1/batch', { batch: messages });
    assert.equal(answer.statusCode, 200, answer.body);
    for (const item of (answer.json() as { results?: { status: string }[] }).results ?? []) assert.equal(item.status, 'stored');
    // Version 2 removes a trait, an event property, a field of the line items, the campaign object of the context and a
    // whole event; the country, the order's id, total and prices, the locale and product views stay declared, in clear.
    const plan = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    delete plan.traits.properties.city;
    const order = plan.events['Order Completed'].properties.properties;
    delete order.coupon;
    delete order.products.items.properties.name;
    delete plan.context.properties.campaign;
    delete plan.events['Product Added'];
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    profile = id as string;
  });
  it('masks a trait the plan no longer declares, in the profile and in every history entry, for marketers and analysts', async () => {
    for (const role of ['marketer', 'analyst']) {
      const view = await read<{ traits: Trait[] }>(role, `/v1/admin/profiles/${profile}`);
      assert.ok(!view.body.includes(firstCity) && !view.body.includes(secondCity), `${role} reads the city in clear`);
      // Masked as a trait the plan made personal reads: `personal` tells it is stored in clear.
      const traits = traitsOf(view.json);
      assert.deepEqual(traits.city, ['••••', 'masked', false]);
      assert.deepEqual(traits.country, [country, 'plain', false]);
      const history = await read<{ changes: Change[] }>(role, `/v1/admin/profiles/${profile}/history?key=city`);
      assert.ok(!history.body.includes(firstCity) && !history.body.includes(secondCity), `${role} reads a city of the history in clear`);
      assert.deepEqual(changesOf(history.json), [
        ['••••', 'masked', '••••', 'masked'],
        ['••••', 'masked', undefined, null],
      ]);
      assert.deepEqual(changesOf((await read<{ changes: Change[] }>(role, `/v1/admin/profiles/${profile}/history?key=country`)).json), [[country, 'plain', undefined, null]]);
    }
  });

  it('leaves fields the plan no longer declares out of the events, and reads the personal part masked', async () => {
    for (const role of ['marketer', 'analyst']) {
      const events = await read<StoredEvent[]>(role, `/v1/admin/subjects/${profile}/events`);
      for (const value of [firstCity, secondCity, coupon, productName, cartId, campaign]) assert.ok(!events.body.includes(value), `${role} reads an undeclared field of an event in clear`);
      const order = events.json.find((e) => e.event === 'Order Completed');
      // The line item keeps its declared price; the context its declared locale.
      assert.deepEqual(order?.data, { properties: { order_id: orderId, total: 30, products: [{ price: 30 }] }, context: { locale: 'nb-NO' } });
      assert.equal(order?.personal, 'masked');
      // An event the plan no longer declares: nothing of its properties is declared any more.
      const added = events.json.find((e) => e.event === 'Product Added');
      assert.equal(added?.data.properties, undefined);
      assert.equal(added?.personal, 'masked');
      const identifies = events.json.filter((e) => e.kind === 'identify');
      assert.deepEqual(
        identifies.map((e) => [e.data.traits, e.personal]),
        [
          [{}, 'masked'],
          [{ country }, 'masked'],
        ],
      );
      // Nothing undeclared in it: read as stored, nothing masked.
      const viewed = events.json.find((e) => e.event === 'Product Viewed');
      assert.deepEqual(viewed?.data.properties, { product_id: productId, price: 12 });
      assert.equal(viewed?.personal, null);
    }
  });

  it('still shows owners and privacy officers the values as stored, in clear', async () => {
    for (const role of ['owner', 'privacy_officer']) {
      const traits = traitsOf((await read<{ traits: Trait[] }>(role, `/v1/admin/profiles/${profile}`)).json);
      assert.deepEqual(traits.city, [secondCity, 'plain', false]);
      assert.deepEqual(traits.country, [country, 'plain', false]);
      assert.deepEqual(changesOf((await read<{ changes: Change[] }>(role, `/v1/admin/profiles/${profile}/history?key=city`)).json), [
        [secondCity, 'plain', firstCity, 'plain'],
        [firstCity, 'plain', undefined, null],
      ]);
      const events = (await read<StoredEvent[]>(role, `/v1/admin/subjects/${profile}/events`)).json;
      const order = events.find((e) => e.event === 'Order Completed');
      assert.deepEqual(order?.data, {
        properties: { order_id: orderId, total: 30, coupon, products: [{ name: productName, price: 30 }] },
        context: { locale: 'nb-NO', campaign: { name: campaign } },
      });
      assert.equal(order?.personal, null);
      assert.deepEqual(events.find((e) => e.event === 'Product Added')?.data.properties, { cart_id: cartId, price: 12 });
      assert.deepEqual(
        events.filter((e) => e.kind === 'identify').map((e) => e.data.traits),
        [{ city: secondCity }, { city: firstCity, country }],
      );
    }
  });

  it('discloses in the access archive what the plan no longer declares with the retention of the version that declared it, serving no purpose now', async () => {
    const subject = { profileId: profile, profileIds: [profile], identifiers: [] };
    const disclosed = async (module: string) => {
      const section = await ctx.kernel.subjectData.find((h) => h.module === module)?.export(subject);
      return new Map((section?.fields ?? []).map((f) => [f.field, [f.category, f.purposes, f.retention]]));
    };
    const traits = await disclosed('profiles');
    // Kept by the sweeper for version 1's period (P3Y), for no purpose of the plan in force.
    assert.deepEqual(traits.get('traits.city'), ['user.contact.address.city', [], 'P3Y']);
    assert.deepEqual(traits.get('traits.country'), ['user.contact.address.country', ['analytics.reporting', 'personalize.profiling'], 'P3Y']);
    const events = await disclosed('collect');
    const coupon = events.get('events[event=Order Completed].properties.coupon');
    assert.deepEqual([coupon?.[1], coupon?.[2]], [[], 'P7Y']);
    assert.equal(events.get('events[event=Order Completed].properties.total')?.[2], 'P7Y');
  });
});

// A computed figure summed from order fields stored in clear before a version made them personal or removed them is
// masked as those fields are.
describeEachDialect('admin reads mask the order figures of computed traits as the order fields they come from', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const { send, read } = ingestAndRead(ctx, harness);
  const userId = uniqueId('u');
  let profile = '';
  const computedFor = async (role: string) => (await read<{ computed: Record<string, unknown> }>(role, `/v1/admin/profiles/${profile}`)).json.computed;

  before(async () => {
    assert.equal((await send('/v1/consent', { userId, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } })).statusCode, 200);
    const order = { type: 'track', event: 'Order Completed', userId, messageId: uniqueId('m'), timestamp: new Date(Date.now() - 86_400_000).toISOString(), properties: { order_id: uniqueId('o'), total: 4321.5, currency: 'NOK' } };
    assert.equal((await send('/v1/batch', { batch: [order] })).statusCode, 200);
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]);
    profile = id as string;
  });
  it('shows them while the plan declares the order fields not personal, and masks them once it does not', async () => {
    const shown = await computedFor('marketer');
    assert.deepEqual([shown.totalOrderValue, shown.averageOrderValue, shown.currency, shown.masked], [4321.5, 4321.5, 'NOK', undefined]);
    // Version 2: the order's total is declared personal, its currency no longer declared.
    const plan = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    const properties = plan.events['Order Completed'].properties.properties;
    properties.total['x-candor'].personal = true;
    delete properties.currency;
    await ctx.kernel.catalog.publish(plan, CLI_ACTOR);
    for (const role of ['marketer', 'analyst']) {
      const computed = await computedFor(role);
      assert.deepEqual([computed.totalOrderValue, computed.averageOrderValue, computed.currency, computed.orderCount], [null, null, null, 1], role);
      assert.deepEqual(computed.masked, ['totalOrderValue', 'averageOrderValue', 'currency']);
    }
    const owner = await computedFor('owner');
    assert.deepEqual([owner.totalOrderValue, owner.currency, owner.masked], [4321.5, 'NOK', undefined]);
    // A plan that drops `revenue` (values of it stored before may be in the sum) masks the value figures; declared again,
    // not personal, with `total` and `currency`, they show.
    const withoutRevenue = structuredClone(DEFAULT_PLAN) as any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
    delete withoutRevenue.events['Order Completed'].properties.properties.revenue;
    await ctx.kernel.catalog.publish(withoutRevenue, CLI_ACTOR);
    assert.deepEqual((await computedFor('marketer')).masked, ['totalOrderValue', 'averageOrderValue']);
    await ctx.kernel.catalog.publish(structuredClone(DEFAULT_PLAN), CLI_ACTOR);
    const again = await computedFor('marketer');
    assert.deepEqual([again.totalOrderValue, again.currency, again.masked], [4321.5, 'NOK', undefined]);
  });
});
