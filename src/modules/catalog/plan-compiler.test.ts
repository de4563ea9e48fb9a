import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CANDOR_DATA_USES, DATA_CATEGORIES, DATA_USES } from '../taxonomy/taxonomy.data.ts';
import type { FieldSchema, PlanDocument } from './catalog.schemas.ts';
import { isRetention } from './catalog.schemas.ts';
import { DEFAULT_PLAN } from './default-plan.ts';
import { compilePlan, compilePlanAsync, listDropped, MAX_DROPPED_LISTED, MAX_PLAN_FIELDS, MAX_VIOLATIONS_LISTED, type CompiledPlan, type TaxonomyLookup } from './plan-compiler.ts';

/** The built-in taxonomy, without storage. */
const taxonomy: TaxonomyLookup = {
  dataCategory: (key) => DATA_CATEGORIES.find((e) => e.key === key),
  dataUse: (key) => [...DATA_USES, ...CANDOR_DATA_USES].find((e) => e.key === key),
};

function compile(plan: unknown = DEFAULT_PLAN): CompiledPlan {
  const { compiled, problems } = compilePlan(plan, taxonomy);
  assert.deepEqual(problems, []);
  assert.ok(compiled);
  return compiled;
}

const clone = <T>(value: T): T => structuredClone(value);
const leaf = (type: string, category: string, purposes: string[], extra: Partial<FieldSchema> = {}): FieldSchema => ({
  type,
  ...extra,
  'x-candor': { category, purposes, retention: 'P1Y', personal: false, ...((extra['x-candor'] as object | undefined) ?? {}) },
});

describe('the default plan', () => {
  it('is valid against the built-in taxonomy and declares the shop events, traits and context', () => {
    const plan = compile();
    for (const name of ['Product Viewed', 'Product Added', 'Order Completed', 'Email Signed Up', 'Survey Answered']) assert.ok(plan.declares(name), name);
    const outline = plan.outline();
    const identify = outline.find((s) => s.section === 'identify');
    assert.deepEqual(identify?.fields.map((f) => f.path), ['email', 'first_name', 'last_name', 'phone', 'country', 'city', 'age_range', 'gender', 'birthday'].map((k) => `traits.${k}`));
    assert.ok(outline.some((s) => s.section === 'page') && outline.some((s) => s.section === 'screen') && outline.some((s) => s.section === 'group'));
    const context = outline.find((s) => s.section === 'context');
    assert.ok(context?.fields.some((f) => f.path === 'context.page.url'));
    assert.ok(!context?.fields.some((f) => f.path === 'context.ip'), 'ip is not kept by default');
  });

  it('carries a special-category example and a precise-location example, flagged from the taxonomy', () => {
    const fields = compile().outline().flatMap((s) => s.fields);
    const allergies = fields.find((f) => f.path === 'properties.allergies');
    assert.equal(allergies?.category, 'user.health_and_medical');
    assert.equal(allergies?.special, true);
    assert.equal(allergies?.personal, true);
    assert.ok(allergies?.purposes.includes('fairness_audit'));
    for (const path of ['context.location.latitude', 'context.location.longitude']) {
      const f = fields.find((x) => x.path === path);
      assert.equal(f?.preciseLocation, true, path);
      assert.equal(f?.special, false, path);
    }
    assert.equal(fields.filter((f) => f.special).length, 1);
  });
});

describe('process()', () => {
  const plan = compile();
  const order = {
    properties: {
      order_id: 'o-1',
      total: 30,
      revenue: 25,
      currency: 'EUR',
      gift_message: 'Happy birthday, Ana',
      products: [
        { product_id: 'p1', price: 10, quantity: 2, engraving: 'ANA' },
        { product_id: 'p2', price: 5, quantity: 2 },
      ],
      shipping_address: { street: 'Main St 1', city: 'Lyon' },
    },
    context: { ip: '203.0.113.9', page: { url: 'https://shop.example/thanks', path: '/thanks', hash: '#x' }, library: { name: 'analytics.js', version: '5.0.0' }, traits: { email: 'ana@example.com' } },
  };

  it('keeps only declared fields, at any depth, and lists every dropped path once', () => {
    const result = plan.process('track', 'Order Completed', clone(order));
    assert.equal(result.ok, true);
    assert.ok(!('code' in result));
    assert.deepEqual(result.data, {
      properties: {
        order_id: 'o-1',
        total: 30,
        revenue: 25,
        currency: 'EUR',
        products: [
          { product_id: 'p1', price: 10, quantity: 2 },
          { product_id: 'p2', price: 5, quantity: 2 },
        ],
      },
      context: { page: { url: 'https://shop.example/thanks', path: '/thanks' }, library: { name: 'analytics.js', version: '5.0.0' } },
    });
    assert.deepEqual([...result.dropped].sort(), [
      'context.ip',
      'context.page.hash',
      'context.traits',
      'properties.gift_message',
      'properties.products[].engraving',
      'properties.shipping_address',
    ]);
  });

  it('minimizes a message with 20,000 undeclared keys without searching the dropped paths per key', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}`);
    const context = Object.fromEntries(keys.map((k) => [k, 1]));
    // Three line items with the same 5,000 undeclared keys: their paths recur, and are listed once.
    const item = Object.fromEntries(keys.slice(0, 5_000).map((k) => [k, 1]));
    const message = { properties: { ...clone(order.properties), products: [{ ...item, price: 1 }, { ...item }, { ...item }] }, context };
    // Every search through an array (includes, indexOf, find…) counts the elements it may look at.
    let looked = 0;
    const searches = ['includes', 'indexOf', 'lastIndexOf', 'find', 'findIndex', 'findLast', 'findLastIndex', 'some', 'every', 'filter'] as const;
    const originals = searches.map((name) => [name, Array.prototype[name]] as const);
    for (const [name, original] of originals) {
      Object.defineProperty(Array.prototype, name, {
        configurable: true,
        writable: true,
        value(this: unknown[], ...args: unknown[]) {
          looked += this.length;
          return (original as (...a: unknown[]) => unknown).apply(this, args);
        },
      });
    }
    let result;
    try {
      result = plan.process('track', 'Order Completed', message);
    } finally {
      for (const [name, original] of originals) Object.defineProperty(Array.prototype, name, { configurable: true, writable: true, value: original });
    }
    assert.equal(result.dropped.length, 20_000 + 5_000 + 2);
    assert.equal(new Set(result.dropped).size, result.dropped.length, 'each path once');
    assert.equal(result.dropped[0], 'properties.gift_message');
    assert.ok(result.dropped.includes('properties.products[].k4999') && result.dropped.includes('context.k19999'));
    // Linear: a handful of looks per key at most (a search of the paths so far per key would be some 300 million).
    assert.ok(looked < 10 * keys.length, `${looked} array elements searched`);
  });

  it(`lists the first ${MAX_DROPPED_LISTED} dropped paths of a result and the number of the others`, () => {
    const context = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, 1]));
    const full = plan.process('track', 'Order Completed', { properties: clone(order.properties), context });
    const listed = listDropped(full);
    assert.equal(full.dropped.length, 20_003);
    assert.deepEqual(listed.dropped, full.dropped.slice(0, MAX_DROPPED_LISTED));
    assert.equal(listed.droppedUnlisted, 20_003 - MAX_DROPPED_LISTED);
    assert.deepEqual(listed.data, full.data);
    const few = plan.process('track', 'Order Completed', clone(order));
    assert.equal(listDropped(few), few, 'a result with fewer paths as it is, without a count');
    assert.ok(!('droppedUnlisted' in few));
  });

  it(`lists the first ${MAX_VIOLATIONS_LISTED} violations of a result and the number of the others`, () => {
    // 15,000 allergies of the wrong type, and too many of them.
    const full = plan.process('track', 'Survey Answered', { properties: { survey_id: 's', allergies: new Array(15_000).fill(1) } });
    assert.equal(full.violations.length, 15_001, 'CompiledPlan.process has every one, for the statistics');
    const listed = listDropped(full);
    assert.equal(listed.code, 'CATALOG_EVENT_INVALID');
    assert.equal(listed.violations.length, MAX_VIOLATIONS_LISTED);
    assert.deepEqual(listed.violations, full.violations.slice(0, MAX_VIOLATIONS_LISTED));
    assert.equal(listed.violationsUnlisted, 15_001 - MAX_VIOLATIONS_LISTED);
    assert.ok(!('droppedUnlisted' in listed), 'nothing was dropped');
    const few = plan.process('track', 'Survey Answered', { properties: { survey_id: 's', allergies: [1, 2] } });
    assert.equal(listDropped(few), few, 'a result with fewer violations as it is, without a count');
    assert.ok(!('violationsUnlisted' in few));
  });

  it('trims the strings of a field declared format: email before validating and keeping them, and no other', () => {
    const identify = plan.process('identify', undefined, { traits: { email: ' Ada@Shop.io ', first_name: ' Ada ' } });
    assert.deepEqual(identify.violations, []);
    assert.deepEqual(identify.data.traits, { email: 'Ada@Shop.io', first_name: ' Ada ' });
    const signup = plan.process('track', 'Email Signed Up', { properties: { email: '\tada@shop.io\n' } });
    assert.equal(signup.ok, true);
    assert.equal(signup.data.properties?.email, 'ada@shop.io');
    assert.equal(plan.process('identify', undefined, { traits: { email: ' not an address ' } }).violations[0]?.rule, 'format');
    const list = compile({
      name: 'P',
      events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { to: { type: 'array', items: { type: 'string', format: 'email' }, 'x-candor': { category: 'user.contact.email', purposes: ['analytics.reporting'], retention: 'P1Y', personal: true } } } } } },
    });
    const result = list.process('track', 'E', { properties: { to: [' a@b.io', 'c@d.io '] } });
    assert.equal(result.ok, true);
    assert.deepEqual(result.data.properties, { to: ['a@b.io', 'c@d.io'] });
  });

  it('lists each kept leaf once with its annotation, array items by their [] path', () => {
    const result = plan.process('track', 'Order Completed', clone(order));
    const paths = result.fields.map((f) => f.path);
    assert.deepEqual(paths, [
      'properties.order_id',
      'properties.total',
      'properties.revenue',
      'properties.currency',
      'properties.products[].product_id',
      'properties.products[].price',
      'properties.products[].quantity',
      'context.page.url',
      'context.page.path',
      'context.library.name',
      'context.library.version',
    ]);
    const orderId = result.fields[0];
    assert.deepEqual({ ...orderId, purposes: [...(orderId?.purposes ?? [])] }, {
      path: 'properties.order_id',
      category: 'user.behavior.purchase_history',
      purposes: ['analytics.reporting', 'personalize.profiling', 'essential.service.operations'],
      retention: 'P7Y',
      personal: false,
      special: false,
      preciseLocation: false,
      protectedAttribute: false,
    });
    assert.equal(result.fields.find((f) => f.path === 'context.page.url')?.personal, true);
  });

  it('answers the union of the event purposes and the kept fields purposes', () => {
    const result = plan.process('track', 'Order Completed', clone(order));
    assert.deepEqual(result.eventPurposes, ['analytics.reporting', 'personalize.profiling']);
    assert.deepEqual(result.purposes, ['analytics.reporting', 'personalize.profiling', 'essential.service.operations']);
    const light = plan.process('track', 'Order Completed', { properties: { order_id: 'o-2' } });
    assert.ok(light.purposes.includes('essential.service.operations'));
    const viewed = plan.process('track', 'Product Viewed', { properties: { product_id: 'p1' } });
    assert.deepEqual(viewed.purposes, ['analytics.reporting', 'personalize.profiling']);
  });

  it('copies deeply and leaves the message untouched', () => {
    const message = clone(order);
    const result = plan.process('track', 'Order Completed', message);
    assert.deepEqual(message, order);
    (result.data.properties?.products as { price: number }[])[0]!.price = 99;
    assert.equal(message.properties.products[0]?.price, 10);
  });

  it('refuses an undeclared event name, and a track without a name, keeping nothing', () => {
    for (const name of ['Coupon Applied', undefined]) {
      const result = plan.process('track', name, { properties: { coupon: 'X' }, context: { ip: '1.2.3.4' } });
      assert.equal(result.ok, false);
      assert.equal(result.code, 'CATALOG_EVENT_UNDECLARED');
      assert.deepEqual(result.data, {});
      assert.deepEqual(result.fields, []);
      assert.deepEqual(result.purposes, []);
    }
  });

  it('refuses type violations with paths and rules but never the values', () => {
    const secret = 'ana.secret@example.com';
    const result = plan.process('track', 'Order Completed', {
      properties: { order_id: 42, revenue: -5, currency: 'euros', coupon: secret.length > 0 ? 7 : 0, products: [{ product_id: 'p1', price: 'free' }, 'not-an-object'] },
      context: { page: { url: { nested: secret } } },
    });
    assert.equal(result.ok, false);
    assert.equal(result.code, 'CATALOG_EVENT_INVALID');
    assert.deepEqual(
      result.violations.map((v) => `${v.path} ${v.rule}`),
      [
        'properties.order_id type',
        'properties.revenue minimum',
        'properties.coupon type',
        'properties.currency pattern',
        'properties.products[0].price type',
        'properties.products[1] type',
        'context.page.url type',
      ],
    );
    assert.ok(!JSON.stringify(result.violations).includes('ana') && !JSON.stringify(result.violations).includes('euros'));
    assert.ok(!JSON.stringify(result.data).includes(secret), 'a value of the wrong shape is not copied');
  });

  it('reports a missing required field with its path', () => {
    const result = plan.process('track', 'Order Completed', { properties: { total: 1 } });
    assert.equal(result.code, 'CATALOG_EVENT_INVALID');
    assert.deepEqual(result.violations.map((v) => [v.path, v.rule]), [['properties.order_id', 'required']]);
  });

  it('takes a field named after a member of every object as absent when the message lacks it', () => {
    const document = clone(DEFAULT_PLAN) as unknown as PlanDocument & { events: Record<string, { properties: { properties: Record<string, unknown>; required?: string[] } }> };
    const viewed = document.events['Product Viewed'] as { properties: { properties: Record<string, unknown>; required?: string[] } };
    const named = (entries: [string, FieldSchema][]) => Object.assign(viewed.properties.properties, Object.fromEntries(entries));
    named([['valueOf', leaf('number', 'user.behavior.browsing_history', ['analytics.reporting'])], ['hasOwnProperty', leaf('boolean', 'user.behavior.browsing_history', ['analytics.reporting'])]]);
    const compiled = compile(document);
    const without = compiled.process('track', 'Product Viewed', { properties: { product_id: 'p-1' } });
    assert.deepEqual([without.ok, without.violations], [true, []]);
    const withThem = compiled.process('track', 'Product Viewed', { properties: { product_id: 'p-1', valueOf: 3, hasOwnProperty: 'yes' } });
    assert.deepEqual(withThem.violations.map((v) => [v.path, v.rule]), [['properties.hasOwnProperty', 'type']]);
    viewed.properties.required = ['product_id', 'toString'];
    named([['toString', leaf('string', 'user.behavior.browsing_history', ['analytics.reporting'])]]);
    const missing = compile(document).process('track', 'Product Viewed', { properties: { product_id: 'p-1' } });
    assert.deepEqual(missing.violations.map((v) => [v.path, v.rule]), [['properties.toString', 'required']]);
  });

  it('refuses an enum of more than 1,000 values and uniqueItems on an array of objects, which compare every pair', () => {
    const document = clone(DEFAULT_PLAN) as unknown as { events: Record<string, { properties: { properties: Record<string, Record<string, unknown>> } }> };
    const viewed = (document.events['Product Viewed'] as { properties: { properties: Record<string, Record<string, unknown>> } }).properties.properties;
    (viewed.product_id as Record<string, unknown>).enum = Array.from({ length: 1_001 }, (_, i) => `p-${i}`);
    const order = (document.events['Order Completed'] as { properties: { properties: Record<string, Record<string, unknown>> } }).properties.properties;
    (order.products as Record<string, unknown>).uniqueItems = true;
    const { problems } = compilePlan(document, taxonomy);
    assert.ok(problems.some((p) => p.path === '/events/Product Viewed/properties/properties/product_id/enum'), JSON.stringify(problems));
    assert.ok(problems.some((p) => p.path === '/events/Order Completed/properties/properties/products/uniqueItems'), JSON.stringify(problems));
  });

  it('answers a flat key with dots or brackets bracket-quoted, never as a declared nested path', () => {
    const nested = compile({
      name: 'P',
      events: {
        E: {
          purposes: ['analytics.reporting'],
          properties: { type: 'object', properties: { customer: { type: 'object', properties: { email: leaf('string', 'user.contact.email', ['analytics.reporting'], { 'x-candor': { personal: true } } as Partial<FieldSchema>) } } } },
        },
      },
    });
    const result = nested.process('track', 'E', { properties: { 'customer.email': 'a@b.co', 'a[0]': 1, 'q"': 2, plain: 3, customer: { 'x.y': 4 } } });
    assert.deepEqual(result.dropped, ['properties["customer.email"]', 'properties["a[0]"]', 'properties["q\\""]', 'properties.plain', 'properties.customer["x.y"]']);
    assert.deepEqual(result.data.properties, { customer: {} });
  });

  it('refuses properties, traits or context that are not objects', () => {
    assert.deepEqual(plan.process('track', 'Product Viewed', { properties: 'p1' }).violations, [{ path: 'properties', rule: 'type', message: 'must be object' }]);
    assert.equal(plan.process('identify', undefined, { traits: [1, 2] }).code, 'CATALOG_EVENT_INVALID');
    assert.equal(plan.process('page', undefined, { context: 'x' }).violations[0]?.path, 'context');
    assert.equal(plan.process('page', undefined, { properties: null, context: null }).ok, true);
  });

  it('never lets __proto__ or constructor keys reach the copy', () => {
    const message = JSON.parse(
      '{"properties":{"product_id":"p1","__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}},"context":{"page":{"__proto__":{"url":"evil"},"path":"/p"}}}',
    ) as Record<string, unknown>;
    const result = plan.process('track', 'Product Viewed', message);
    assert.equal(result.ok, true);
    const properties = result.data.properties as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(properties), Object.prototype);
    assert.deepEqual(Object.keys(properties), ['product_id']);
    assert.equal((properties as { polluted?: unknown }).polluted, undefined);
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
    assert.deepEqual(result.data.context, { page: { path: '/p' } });
    assert.deepEqual([...result.dropped].sort(), ['context.page.__proto__', 'properties.__proto__', 'properties.constructor']);
  });

  it('does not copy inherited properties', () => {
    const properties = Object.create({ product_id: 'inherited' }) as Record<string, unknown>;
    properties.sku = 'S1';
    assert.deepEqual(plan.process('track', 'Product Viewed', { properties }).data.properties, { sku: 'S1' });
  });

  it('uses traits for identify, groupTraits for group, pages and screens for page and screen, and only context for alias', () => {
    const context = { ip: '1.2.3.4', locale: 'fr-FR' };
    const identify = plan.process('identify', undefined, { traits: { email: 'ana@example.com', first_name: 'Ana', password: 'x', name: 'Ana B' }, context });
    assert.equal(identify.ok, true);
    assert.deepEqual(identify.data, { traits: { email: 'ana@example.com', first_name: 'Ana' }, context: { locale: 'fr-FR' } });
    assert.deepEqual([...identify.dropped].sort(), ['context.ip', 'traits.name', 'traits.password']);
    assert.deepEqual(identify.eventPurposes, ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email']);
    assert.ok(identify.purposes.includes('essential.service.operations'));

    const group = plan.process('group', undefined, { traits: { name: 'Acme', employees: 40, email: 'ceo@acme.example' }, context });
    assert.deepEqual(group.data, { traits: { name: 'Acme', employees: 40 }, context: { locale: 'fr-FR' } });
    assert.deepEqual(group.dropped, ['traits.email', 'context.ip']);

    const page = plan.process('page', 'Home', { properties: { path: '/', search: '?email=a@b.c' }, context });
    assert.deepEqual(page.data, { properties: { path: '/' }, context: { locale: 'fr-FR' } });
    assert.ok(page.dropped.includes('properties.search'));
    const screen = plan.process('screen', 'Cart', { properties: { name: 'Cart', items: 3 }, context });
    assert.deepEqual(screen.data.properties, { name: 'Cart' });

    const alias = plan.process('alias', undefined, { properties: { a: 1 }, traits: { b: 2 }, context });
    assert.equal(alias.ok, true);
    assert.deepEqual(alias.data, { context: { locale: 'fr-FR' } });
  });

  it('drops and lists a section the call type does not take, whole, and the top-level keys outside the protocol', () => {
    const track = plan.process('track', 'Product Viewed', { properties: { product_id: 'p4' }, traits: { email: 'x@example.org' }, otherKeys: ['email', 'customer.email'] });
    assert.equal(track.ok, true);
    assert.deepEqual(track.data, { properties: { product_id: 'p4' }, context: {} });
    assert.deepEqual(track.dropped, ['traits', 'email', '["customer.email"]']);
    const identify = plan.process('identify', undefined, { traits: { email: 'ana@example.com' }, properties: { plan: 'pro' } });
    assert.deepEqual(identify.dropped, ['properties']);
    const alias = plan.process('alias', undefined, { properties: { a: 1 }, traits: { b: 2 } });
    assert.deepEqual(alias.dropped, ['properties', 'traits']);
    // An empty section drops nothing: RudderStack's browser SDK sends `properties: null` on every call type.
    for (const empty of [{}, null, undefined]) {
      assert.deepEqual(plan.process('identify', undefined, { traits: { email: 'ana@example.com' }, properties: empty }).dropped, []);
      assert.deepEqual(plan.process('track', 'Product Viewed', { properties: { product_id: 'p4' }, traits: empty, otherKeys: [] }).dropped, []);
    }
  });

  it('gives identify, group and alias the purposes of the plan\'s events as a whole, even with no traits or context', () => {
    const linking = ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email'];
    for (const kind of ['identify', 'group', 'alias'] as const) {
      const bare = plan.process(kind, undefined, {});
      assert.equal(bare.ok, true, kind);
      assert.deepEqual(bare.eventPurposes, linking, kind);
      assert.deepEqual(bare.purposes, linking, kind);
    }
    // Purposes that only single fields declare (operations on order_id, SMS on phone, fairness_audit) are not among them.
    const outline = plan.outline();
    assert.deepEqual(outline.find((s) => s.section === 'identify')?.purposes, linking);
    assert.deepEqual(outline.find((s) => s.section === 'group')?.purposes, linking);
  });

  it('derives the identity purposes from the events of each plan', () => {
    const body = { type: 'object', properties: {} };
    const custom = compile({ name: 'Custom', events: { Signed: { purposes: ['personalize.profiling'], properties: body } }, screens: { purposes: ['analytics.reporting'], properties: body } });
    assert.deepEqual(custom.process('alias', undefined, {}).purposes, ['personalize.profiling', 'analytics.reporting']);
    const none = compile({ name: 'Minimal', events: {} });
    assert.deepEqual(none.process('alias', undefined, {}).purposes, []);
    assert.deepEqual(none.process('identify', undefined, {}).eventPurposes, []);
  });

  it('flags precise location kept from the context', () => {
    const result = plan.process('page', undefined, { context: { location: { latitude: 48.85, longitude: 2.35, city: 'Paris', speed: 3 } } });
    assert.deepEqual(result.data.context, { location: { latitude: 48.85, longitude: 2.35, city: 'Paris' } });
    assert.deepEqual(result.fields.filter((f) => f.preciseLocation).map((f) => f.path), ['context.location.latitude', 'context.location.longitude']);
    assert.ok(result.purposes.includes('personalize.content.limited'));
  });

  it('copies arrays of scalars annotated as one field and refuses nested values in them', () => {
    const ok = plan.process('track', 'Survey Answered', { properties: { survey_id: 's1', allergies: ['peanuts', 'latex'] } });
    assert.equal(ok.ok, true);
    assert.deepEqual(ok.data.properties, { survey_id: 's1', allergies: ['peanuts', 'latex'] });
    assert.equal(ok.fields.find((f) => f.path === 'properties.allergies')?.special, true);
    const bad = plan.process('track', 'Survey Answered', { properties: { allergies: ['peanuts', { detail: 'secret' }] } });
    assert.equal(bad.ok, false);
    assert.deepEqual(bad.violations.map((v) => v.path), ['properties.allergies[1]']);
    assert.ok(!JSON.stringify(bad.data).includes('secret'));
  });

  it('refuses page and screen calls when the plan declares none', () => {
    const noPages = compile({ name: 'Minimal', events: {} });
    assert.equal(noPages.process('page', undefined, {}).code, 'CATALOG_EVENT_UNDECLARED');
    assert.equal(noPages.process('screen', undefined, {}).code, 'CATALOG_EVENT_UNDECLARED');
    const identify = noPages.process('identify', undefined, { traits: { email: 'a@b.c' }, context: { ip: '1.2.3.4' } });
    assert.equal(identify.ok, true);
    assert.deepEqual(identify.data, { traits: {}, context: {} });
    assert.deepEqual(identify.dropped, ['traits.email', 'context.ip']);
  });

  it('unions purposes correctly beyond 32 purposes in a plan', () => {
    const anyUse: TaxonomyLookup = { dataCategory: taxonomy.dataCategory, dataUse: (key) => ({ key, name: key, description: key, parentKey: null }) };
    const properties: Record<string, FieldSchema> = {};
    for (let i = 0; i < 40; i++) properties[`f${i}`] = leaf('number', 'user.behavior', [`custom_use_${i}`]);
    const { compiled } = compilePlan({ name: 'Wide', events: { Wide: { purposes: ['analytics.reporting'], properties: { type: 'object', properties } } } }, anyUse);
    assert.ok(compiled);
    const result = compiled.process('track', 'Wide', { properties: { f1: 1, f35: 2, f39: 3 } });
    assert.deepEqual(result.purposes, ['analytics.reporting', 'custom_use_1', 'custom_use_35', 'custom_use_39']);
  });
});

describe('plan validation', () => {
  const problemsOf = (plan: unknown) => compilePlan(plan, taxonomy).problems;

  it('reports every problem at once, each at its path', () => {
    const plan = {
      name: 'Broken',
      colour: 'blue',
      events: {
        'Thing Happened': {
          purposes: ['analytics.reporting', 'analytics.made_up'],
          properties: {
            type: 'object',
            required: ['missing'],
            properties: {
              a: leaf('string', 'user.no_such_category', ['analytics.reporting']),
              b: { type: 'string', 'x-candor': { category: 'user.contact.email', purposes: ['personalize.nope'], retention: '13 months', personal: true } },
              c: { type: 'string' },
              d: { type: 'object' },
              e: { type: 'number', minimun: 0, 'x-candor': { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P1Y', personal: false } },
              f: { type: 'object', properties: {}, 'x-candor': { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P1Y', personal: false } },
              g: leaf('string', 'user.health_and_medical', ['personalize.profiling'], { 'x-candor': { personal: true, special: false } } as Partial<FieldSchema>),
              h: leaf('number', 'user.location.precise', ['analytics.reporting'], { 'x-candor': { personal: false, preciseLocation: false } } as Partial<FieldSchema>),
              i: leaf('string', 'user.behavior', ['analytics.reporting'], { pattern: '([' }),
              j: leaf('string', 'user.behavior', ['analytics.reporting'], { format: 'emial' }),
              'k.l': leaf('string', 'user.behavior', ['analytics.reporting']),
              m: { 'x-candor': { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P1Y', personal: false } },
            },
          },
        },
        Other: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { n: leaf('string', 'user.behavior', ['analytics.reporting'], { format: 'emial' }) } } },
      },
      traits: { type: 'object', properties: { email: { type: 'string', 'x-candor': { category: 'user.contact.email', purposes: [], retention: 'P0D', personal: true } } } },
    };
    const problems = problemsOf(plan);
    const at = (path: string) => problems.filter((p) => p.path === path).map((p) => p.problem);
    const base = '/events/Thing Happened/properties';
    assert.ok(at('/colour').length === 1, 'unknown top-level key');
    assert.match(at('/events/Thing Happened/purposes/1')[0] ?? '', /not a data use/);
    assert.match(at(`${base}/required/0`)[0] ?? '', /not a declared property/);
    assert.match(at(`${base}/properties/a/x-candor/category`)[0] ?? '', /not a data category/);
    assert.match(at(`${base}/properties/b/x-candor/purposes/0`)[0] ?? '', /not a data use/);
    assert.match(at(`${base}/properties/b/x-candor/retention`)[0] ?? '', /ISO-8601 duration/);
    assert.match(at(`${base}/properties/c`)[0] ?? '', /x-candor/);
    assert.match(at(`${base}/properties/d`)[0] ?? '', /free-form object/);
    assert.ok(at(`${base}/properties/e/minimun`).length === 1, 'unknown keyword');
    assert.match(at(`${base}/properties/f/x-candor`)[0] ?? '', /not the object/);
    assert.match(at(`${base}/properties/g/x-candor/special`)[0] ?? '', /contradicts the taxonomy/);
    assert.match(at(`${base}/properties/g/x-candor/purposes/0`)[0] ?? '', /special-category field must not serve targeting/);
    assert.match(at(`${base}/properties/h/x-candor/preciseLocation`)[0] ?? '', /contradicts the taxonomy/);
    assert.match(at(`${base}/properties/h/x-candor/personal`)[0] ?? '', /must be true/);
    assert.match(at(`${base}/properties/i/pattern`)[0] ?? '', /not a valid regular expression/);
    assert.ok(at(`${base}/properties/k.l`).length === 1, 'dotted name');
    assert.match(at(`${base}/properties/m`)[0] ?? '', /type/);
    assert.match(at('/events/Other/properties')[0] ?? '', /does not compile/, 'Ajv compile errors of sections without other problems');
    assert.ok(at('/traits/properties/email/x-candor/purposes').length === 1, 'empty purposes');
    assert.match(at('/traits/properties/email/x-candor/retention')[0] ?? '', /longer than zero/);
  });

  it('reports Ajv compile errors such as an unknown format or a bad pattern', () => {
    const problems = problemsOf({ name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { j: leaf('string', 'user.behavior', ['analytics.reporting'], { format: 'emial' }) } } } } });
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.path, '/events/E/properties');
    assert.match(problems[0]?.problem ?? '', /unknown format "emial"/);
  });

  it('requires a name and events, and refuses what is not an object', () => {
    assert.deepEqual(problemsOf({}).map((p) => p.path).sort(), ['/events', '/name']);
    assert.ok(problemsOf('plan').length > 0);
    assert.ok(problemsOf(null).length > 0);
  });

  it('refuses forbidden names for events and fields', () => {
    const plan = JSON.parse('{"name":"P","events":{"__proto__":{"purposes":["analytics.reporting"],"properties":{"type":"object","properties":{}}}}}') as unknown;
    assert.deepEqual(problemsOf(plan).map((p) => p.path), ['/events/__proto__']);
    const field = JSON.parse('{"name":"P","events":{"E":{"purposes":["analytics.reporting"],"properties":{"type":"object","properties":{"constructor":{"type":"string"}}}}}}') as unknown;
    assert.deepEqual(problemsOf(field).map((p) => p.path), ['/events/E/properties/properties/constructor']);
  });

  it('accepts special and preciseLocation written out when they agree with the taxonomy', () => {
    const plan: PlanDocument = {
      name: 'P',
      events: {
        E: {
          purposes: ['analytics.reporting'],
          properties: {
            type: 'object',
            properties: {
              h: { type: 'string', 'x-candor': { category: 'user.health_and_medical', purposes: ['fairness_audit'], retention: 'P6M', personal: true, special: true, preciseLocation: false } },
              l: { type: 'number', 'x-candor': { category: 'user.location.precise', purposes: ['personalize.content.limited'], retention: 'P30D', personal: true, special: false, preciseLocation: true } },
            },
          },
        },
      },
    };
    assert.deepEqual(problemsOf(plan), []);
  });

  it('accepts protectedAttribute written out when it agrees with the taxonomy, and refuses it when it contradicts', () => {
    const field = (category: string, protectedAttribute: boolean): FieldSchema => ({ type: 'string', 'x-candor': { category, purposes: ['fairness_audit'], retention: 'P1Y', personal: true, protectedAttribute } });
    const plan = (properties: Record<string, FieldSchema>) => ({ name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties } } } });
    assert.deepEqual(problemsOf(plan({ g: field('user.demographic.gender', true), c: field('user.behavior', false) })), []);
    assert.deepEqual(problemsOf(plan({ g: field('user.demographic.gender', false), c: field('user.behavior', true) })), [
      { path: '/events/E/properties/properties/g/x-candor/protectedAttribute', problem: 'contradicts the taxonomy: category user.demographic.gender is a protected attribute' },
      { path: '/events/E/properties/properties/c/x-candor/protectedAttribute', problem: 'contradicts the taxonomy: category user.behavior is not a protected attribute' },
    ]);
    // A stored version (one published when a stricter flag was taken) loads, with the taxonomy's flag.
    const stored = compilePlan(plan({ c: field('user.behavior', true) }), taxonomy, { lenient: true });
    assert.deepEqual(stored.problems, []);
    assert.equal(stored.compiled?.outline()[0]?.fields[0]?.protectedAttribute, false);
  });

  it('reads special and precise location written on a category that is neither the strict way', () => {
    const plan = {
      name: 'P',
      events: {
        E: {
          purposes: ['analytics.reporting'],
          properties: {
            type: 'object',
            properties: {
              pulse: { type: 'number', 'x-candor': { category: 'user.sensor', purposes: ['analytics.reporting'], retention: 'P1Y', personal: true, special: true } },
              spot: { type: 'string', 'x-candor': { category: 'user.location.imprecise', purposes: ['analytics.reporting'], retention: 'P1Y', personal: true, preciseLocation: true } },
            },
          },
        },
      },
    };
    const fields = compile(plan).outline()[0]?.fields ?? [];
    assert.deepEqual(fields.map((f) => [f.path, f.special, f.preciseLocation, f.personal]), [
      ['properties.pulse', true, false, true],
      ['properties.spot', false, true, true],
    ]);
    const clear = clone(plan);
    (clear.events.E.properties.properties.pulse['x-candor'] as { personal: boolean }).personal = false;
    assert.deepEqual(problemsOf(clear), [{ path: '/events/E/properties/properties/pulse/x-candor/personal', problem: 'must be true: category user.sensor is a special category' }]);
  });

  it('refuses a category that also covers precise location or special categories below it, and reads a stored one the strict way', () => {
    const field = (category: string) => ({ type: 'number', 'x-candor': { category, purposes: ['analytics.reporting'], retention: 'P1Y', personal: false } });
    const plan = { name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { lat: field('user.location'), who: field('user.demographic'), ok: field('user.location.imprecise') } } } } };
    assert.deepEqual(problemsOf(plan).filter((p) => p.path.endsWith('/category')), [
      { path: '/events/E/properties/properties/lat/x-candor/category', problem: 'user.location also covers precise location: choose the narrower category the field holds' },
      { path: '/events/E/properties/properties/who/x-candor/category', problem: 'user.demographic also covers special categories: choose the narrower category the field holds' },
    ]);
    const { compiled } = compilePlan(plan, taxonomy, { lenient: true });
    const fields = compiled?.outline()[0]?.fields ?? [];
    assert.deepEqual(fields.map((f) => [f.path, f.special, f.preciseLocation, f.personal]), [
      ['properties.lat', false, true, true],
      ['properties.who', true, false, true],
      ['properties.ok', false, false, false],
    ]);
    // A stored version whose broad field serves personalization still loads (the gate then needs explicit consent).
    const personalized = { name: 'P', events: { E: { purposes: ['personalize.content'], properties: { type: 'object', properties: { household: { type: 'string', 'x-candor': { category: 'user.demographic', purposes: ['personalize.content'], retention: 'P1Y', personal: false } } } } } } };
    const stored = compilePlan(personalized, taxonomy, { lenient: true });
    assert.deepEqual(stored.problems, []);
    assert.equal(stored.compiled?.outline()[0]?.fields[0]?.special, true);
  });

  it('reads a category the same way when a custom special category is added below it', () => {
    const custom: TaxonomyLookup = {
      dataCategory: (key) => (key === 'user.behavior.pharmacy' ? { ...(taxonomy.dataCategory('user.behavior') as NonNullable<ReturnType<TaxonomyLookup['dataCategory']>>), key, parentKey: 'user.behavior', specialCategory: 'health' } : taxonomy.dataCategory(key)),
      dataUse: taxonomy.dataUse,
    };
    assert.deepEqual(compilePlan(DEFAULT_PLAN, custom).problems, []);
    assert.deepEqual(compilePlan(DEFAULT_PLAN, custom, { lenient: true }).problems, []);
  });

  it('refuses a plan name with a control character or an unpaired surrogate (a text column on PostgreSQL refuses NUL)', () => {
    for (const name of ['Shop\u0000plan', 'Shop\u0007bell', 'Shop\u009bplan', 'Shop \ud800 plan']) {
      assert.deepEqual(problemsOf({ ...clone(DEFAULT_PLAN), name }), [{ path: '/name', problem: 'must not contain control characters (such as NUL) or unpaired surrogates' }], JSON.stringify(name));
    }
    assert.deepEqual(problemsOf({ ...clone(DEFAULT_PLAN), name: 'Boutique été 🛍' }), []);
  });

  it('refuses a document nested deeper than MAX_DOCUMENT_DEPTH anywhere, values included, before the meta-schema runs', () => {
    const annotation = { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P1Y', personal: false };
    const withField = (x: unknown) => ({ ...clone(DEFAULT_PLAN), events: { Deep: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { x } } } } });
    const nest = (depth: number, wrap: (inner: unknown) => unknown, inner: unknown) => {
      let value = inner;
      for (let i = 0; i < depth; i++) value = wrap(value);
      return value;
    };
    const base = '/events/Deep/properties/properties/x';
    // items and properties 5,000 deep overflowed the stack of the meta-schema's validator; const and examples values
    // that deep passed and overflowed the canonical JSON of publish.
    const items = problemsOf(withField(nest(5_000, (s) => ({ type: 'array', items: s }), { type: 'string', 'x-candor': annotation })));
    assert.deepEqual(items.map((p) => p.problem), ['nests deeper than 64 levels (MAX_DOCUMENT_DEPTH); values of const, enum and examples count too']);
    assert.ok(items[0]?.path.startsWith(`${base}/items/items/`));
    const properties = problemsOf(withField(nest(3_000, (s) => ({ type: 'object', properties: { a: s } }), { type: 'string', 'x-candor': annotation })));
    assert.ok(properties.length === 1 && properties[0]?.path.startsWith(`${base}/properties/a/properties/a/`));
    for (const keyword of ['const', 'examples', 'enum']) {
      const value = nest(5_000, (v) => [v], 1);
      const problems = problemsOf(withField({ type: 'string', 'x-candor': annotation, [keyword]: keyword === 'const' ? value : [value] }));
      assert.equal(problems.length, 1, keyword);
      assert.ok(problems[0]?.path.startsWith(`${base}/${keyword}/0/0/`), problems[0]?.path);
    }
    // 64 levels in all: the const value of this field is the 7th.
    const constOf = (depth: number) => problemsOf(withField({ type: 'array', items: { type: 'integer' }, 'x-candor': annotation, const: nest(depth, (v) => [v], []) }));
    assert.deepEqual(constOf(57), []);
    assert.deepEqual(constOf(58).map((p) => p.path), [`${base}/const${'/0'.repeat(58)}`]);
  });

  it('refuses personal: false for a direct identifier, as it does for a special category', () => {
    const ids: Record<string, string> = {
      email: 'user.contact.email',
      phone: 'user.contact.phone_number',
      street: 'user.contact.address.street',
      first_name: 'user.name.first',
      passport: 'user.government_id.passport_number',
      username: 'user.account.username',
      password: 'user.authorization.password',
      iban: 'user.financial.bank_account',
      photo: 'user.content.self_image',
      birthday: 'user.demographic.date_of_birth',
      device: 'user.device.device_id',
      cookie: 'user.device.cookie_id',
      email_hash: 'user.unique_id.pseudonymous',
    };
    const traits = Object.fromEntries(Object.entries(ids).map(([name, category]) => [name, leaf('string', category, ['analytics.reporting'])]));
    const plan = {
      name: 'P',
      events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: {} } } },
      traits: { type: 'object', properties: traits },
      context: { type: 'object', properties: { ip: leaf('string', 'user.device.ip_address', ['analytics.reporting']) } },
    };
    const problems = problemsOf(plan);
    assert.deepEqual(
      problems.map((p) => p.path).sort(),
      [...Object.keys(ids).map((name) => `/traits/properties/${name}/x-candor/personal`), '/context/properties/ip/x-candor/personal'].sort(),
    );
    assert.match(problems.find((p) => p.path === '/context/properties/ip/x-candor/personal')?.problem ?? '', /must be true: category user\.device\.ip_address identifies a person/);
    // Written as personal, the same plan is valid.
    const personal = structuredClone(plan);
    for (const field of [...Object.values(personal.traits.properties), personal.context.properties.ip]) (field['x-candor'] as { personal: boolean }).personal = true;
    assert.deepEqual(problemsOf(personal), []);
  });

  it('leaves a category that names an area or a kind of id free to be stored in clear', () => {
    const clear = ['user.contact.address.city', 'user.contact.address.country', 'user.contact.address.state', 'user.contact.address.postal_code', 'user.contact.organization', 'user.unique_id', 'user.device', 'user.behavior.purchase_history', 'user.location.imprecise'];
    const properties = Object.fromEntries(clear.map((category, i) => [`f${i}`, leaf('string', category, ['analytics.reporting'])]));
    assert.deepEqual(problemsOf({ name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties } } } }), []);
  });

  it('extends the rule to a custom category under a direct identifier', () => {
    const custom: TaxonomyLookup = {
      dataCategory: (key) => (key === 'user.contact.email.work' ? { ...(taxonomy.dataCategory('user.contact.email') as NonNullable<ReturnType<TaxonomyLookup['dataCategory']>>), key, parentKey: 'user.contact.email' } : taxonomy.dataCategory(key)),
      dataUse: taxonomy.dataUse,
    };
    const plan = { name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { w: leaf('string', 'user.contact.email.work', ['analytics.reporting']) } } } } };
    assert.deepEqual(compilePlan(plan, custom).problems.map((p) => p.path), ['/events/E/properties/properties/w/x-candor/personal']);
  });

  it('loads a stored version that declared a direct identifier not personal with the field made personal', () => {
    const plan = {
      name: 'Old',
      events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { n: leaf('string', 'user.behavior', ['analytics.reporting']) } } } },
      traits: { type: 'object', properties: { email: leaf('string', 'user.contact.email', ['analytics.reporting']), country: leaf('string', 'user.contact.address.country', ['analytics.reporting']) } },
      context: { type: 'object', properties: { ip: leaf('string', 'user.device.ip_address', ['analytics.reporting']) } },
    };
    assert.equal(compilePlan(plan, taxonomy).compiled, undefined);
    const { compiled, problems } = compilePlan(plan, taxonomy, { lenient: true });
    assert.deepEqual(problems, []);
    const result = compiled?.process('identify', undefined, { traits: { email: 'a@b.co', country: 'FR' }, context: { ip: '10.0.0.1' } });
    const personal = Object.fromEntries((result?.fields ?? []).map((f) => [f.path, f.personal]));
    assert.deepEqual(personal, { 'traits.email': true, 'traits.country': false, 'context.ip': true });
  });

  it('refuses field and event names with a control character or an unpaired surrogate; a stored version leaves them out', () => {
    const plan = {
      name: 'Names',
      events: {
        E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { ok: leaf('string', 'user.behavior', ['analytics.reporting']), 'a\u0000b': leaf('string', 'user.behavior', ['analytics.reporting']), 'c\uD800': leaf('string', 'user.behavior', ['analytics.reporting']) } } },
        'Tab\tEvent': { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { n: leaf('string', 'user.behavior', ['analytics.reporting']) } } },
        'Emoji \uD83D\uDE00': { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { n: leaf('string', 'user.behavior', ['analytics.reporting']) } } },
      },
    };
    const refused = compilePlan(plan, taxonomy);
    assert.equal(refused.compiled, undefined);
    assert.deepEqual(
      refused.problems.filter((p) => /control characters/.test(p.problem)).map((p) => p.path),
      ['/events/E/properties/properties/a\u0000b', '/events/E/properties/properties/c\uD800', '/events/Tab\tEvent'],
    );
    // A stored version may hold control characters (an unpaired surrogate never compiled, so none was published).
    delete (plan.events.E.properties.properties as Record<string, unknown>)['c\uD800'];
    const { compiled, problems } = compilePlan(plan, taxonomy, { lenient: true });
    assert.deepEqual(problems, []);
    assert.ok(compiled && !compiled.declares('Tab\tEvent') && compiled.declares('Emoji \uD83D\uDE00'), 'a paired surrogate is a character like any other');
    const result = compiled.process('track', 'E', { properties: { ok: 'x', 'a\u0000b': 'y' } });
    assert.deepEqual(result.fields.map((f) => f.path), ['properties.ok']);
  });

  it('refuses a special-category field serving a custom data use below marketing or personalize', () => {
    const customUses: Record<string, string> = { promo_targeting: 'marketing.advertising', deep_promo: 'promo_targeting', my_reco: 'personalize.content', health_stats: 'analytics.reporting' };
    const custom: TaxonomyLookup = {
      dataCategory: taxonomy.dataCategory,
      dataUse: (key) => (customUses[key] ? { key, name: key, description: key, parentKey: customUses[key] } : taxonomy.dataUse(key)),
    };
    const health = (purposes: string[]) => ({
      name: 'P',
      events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { condition: leaf('string', 'user.health_and_medical', purposes, { 'x-candor': { personal: true } } as Partial<FieldSchema>) } } } },
    });
    const problems = compilePlan(health(['promo_targeting', 'deep_promo', 'my_reco', 'health_stats']), custom).problems;
    const base = '/events/E/properties/properties/condition/x-candor/purposes';
    assert.deepEqual(problems.map((p) => p.path), [`${base}/0`, `${base}/1`, `${base}/2`]);
    for (const p of problems) assert.match(p.problem, /must not serve targeting or personalization/);
    assert.deepEqual(compilePlan(health(['health_stats']), custom).problems, [], 'a custom use under analytics stays possible');
  });

  it('reports the annotation of a field whose type is missing or unusable with the rest', () => {
    const bad = { category: 'user.nope', purposes: ['analytics.nope'], retention: 'forever', personal: false };
    const plan = {
      name: 'P',
      events: {
        E: {
          purposes: ['analytics.reporting'],
          properties: { type: 'object', properties: { a: { 'x-candor': bad }, b: { type: 'date', 'x-candor': bad }, c: { type: 'array', items: { type: 'date' }, 'x-candor': bad } } },
        },
      },
    };
    const paths = problemsOf(plan).map((p) => p.path);
    for (const field of ['a', 'b', 'c']) {
      const at = `/events/E/properties/properties/${field}/x-candor`;
      assert.deepEqual(paths.filter((p) => p.startsWith(at)), [`${at}/category`, `${at}/purposes/0`, `${at}/retention`], field);
    }
  });

  it(`refuses a plan of more than ${MAX_PLAN_FIELDS} annotated fields before compiling it, and loads a stored one`, () => {
    const events: Record<string, unknown> = {};
    const fields = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`f${i}`, leaf('string', 'user.behavior', ['analytics.reporting'])]));
    for (let e = 0; e <= MAX_PLAN_FIELDS / 500; e++) events[`E${e}`] = { purposes: ['analytics.reporting'], properties: { type: 'object', properties: e === 0 ? { f: leaf('string', 'user.behavior', ['analytics.reporting']) } : fields } };
    assert.deepEqual(problemsOf({ name: 'Big', events }), [{ path: '/', problem: `declares ${MAX_PLAN_FIELDS + 1} annotated fields; a plan declares at most ${MAX_PLAN_FIELDS} (MAX_PLAN_FIELDS)` }]);
    delete events.E0;
    assert.deepEqual(problemsOf({ name: 'Big', events }), [], 'exactly the limit');
  });

  it('compiles in slices that let timers run, with the same outcome as compilePlan', async () => {
    const events: Record<string, unknown> = {};
    for (let e = 0; e < 300; e++) events[`E${e}`] = { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { a: leaf('string', 'user.behavior', ['analytics.reporting']), b: leaf('number', 'user.behavior', ['analytics.reporting']) } } };
    const plan = { name: 'Wide', events };
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const outcome = await compilePlanAsync(plan, taxonomy);
    clearInterval(timer);
    assert.deepEqual(outcome.problems, []);
    assert.ok(ticks > 0, 'the event loop had turns while the plan compiled');
    assert.deepEqual(outcome.compiled?.process('track', 'E7', { properties: { a: 'x', b: 'y' } }).violations, compile(plan).process('track', 'E7', { properties: { a: 'x', b: 'y' } }).violations);
    assert.deepEqual((await compilePlanAsync({ name: 'x' }, taxonomy)).problems, [{ path: '/events', problem: 'is required' }]);
  });

  it('treats a category unknown to this process as special when loading a stored plan', () => {
    const plan = { name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { x: leaf('string', 'user.custom_elsewhere', ['analytics.reporting']) } } } } };
    assert.equal(compilePlan(plan, taxonomy).compiled, undefined);
    const { compiled } = compilePlan(plan, taxonomy, { lenient: true });
    const field = compiled?.process('track', 'E', { properties: { x: 'v' } }).fields[0];
    assert.equal(field?.special, true);
    assert.equal(field?.protectedAttribute, true);
    assert.equal(field?.personal, true, 'and personal, stored encrypted');
  });
});

describe('retention', () => {
  it('accepts ISO-8601 durations longer than zero', () => {
    for (const ok of ['P13M', 'P2Y', 'P7Y', 'P30D', 'P1W', 'PT12H', 'P1Y6M', 'P1DT2H']) assert.equal(isRetention(ok), true, ok);
    for (const bad of ['', 'P', 'PT', 'P0D', 'P1DT', '13M', 'P1.5Y', 'P-1D', 'p1y', 'P1Y ', 'forever']) assert.equal(isRetention(bad), false, bad);
  });

  it('accepts at most 100 years, as far back on the calendar as P100Y reaches', () => {
    for (const ok of ['P100Y', 'P1200M', 'P99Y12M', 'P36524D']) assert.equal(isRetention(ok), true, ok);
    for (const bad of ['P101Y', 'P1201M', 'P36525D', 'P300000Y', `P${'9'.repeat(30)}Y`]) assert.equal(isRetention(bad), false, bad);
  });
});

describe('the category of an event\'s occurrence', () => {
  const body = { type: 'object', properties: {} };
  const noCategories = (plan: PlanDocument): PlanDocument => {
    const stripped = clone(plan);
    for (const event of [...Object.values(stripped.events), stripped.pages, stripped.screens]) if (event) delete event.category;
    return stripped;
  };

  it('is declared for every event of the default plan, and carried with the event\'s purposes', () => {
    const plan = compile();
    const categories = Object.fromEntries(plan.outline().filter((s) => s.occurrence).map((s) => [s.event ?? s.section, s.occurrence?.category]));
    assert.deepEqual(categories, {
      'Product Viewed': 'user.behavior.browsing_history',
      'Product Added': 'user.behavior.purchase_history',
      'Order Completed': 'user.behavior.purchase_history',
      'Email Signed Up': 'user.behavior',
      'Survey Answered': 'user.content.private',
      page: 'user.behavior.browsing_history',
      screen: 'user.behavior.browsing_history',
    });
    const order = plan.process('track', 'Order Completed', { properties: { order_id: 'o1' } });
    assert.deepEqual(order.occurrences, [{ category: 'user.behavior.purchase_history', purposes: ['analytics.reporting', 'personalize.profiling'], special: false, preciseLocation: false, declared: true }]);
    assert.equal(plan.process('track', 'Order Completed', { properties: { order_id: 'o2' } }).occurrences, order.occurrences, 'resolved once per compiled plan');
    assert.deepEqual(plan.process('track', 'Nope', {}).occurrences, []);
  });

  it('gives identify, group and alias the occurrences of the events they link, one per category', () => {
    const plan = compile();
    for (const kind of ['identify', 'group', 'alias'] as const) {
      assert.deepEqual(
        plan.process(kind, undefined, {}).occurrences.map((o) => [o.category, o.purposes]),
        [
          ['user.behavior.browsing_history', ['analytics.reporting', 'personalize.profiling']],
          ['user.behavior.purchase_history', ['analytics.reporting', 'personalize.profiling']],
          ['user.behavior', ['marketing.communications.email']],
          ['user.content.private', ['analytics.reporting']],
        ],
        kind,
      );
    }
    assert.equal(plan.outline().find((s) => s.section === 'identify')?.occurrence, undefined, 'shown with the events they link');
  });

  it('reads an event without a category as user.behavior, in a plan being published and in a stored version', () => {
    for (const lenient of [false, true]) {
      const { compiled, problems } = compilePlan(noCategories(DEFAULT_PLAN), taxonomy, { lenient });
      assert.deepEqual(problems, []);
      const page = compiled?.process('page', undefined, {});
      assert.deepEqual(page?.occurrences, [{ category: 'user.behavior', purposes: ['analytics.reporting', 'personalize.profiling'], special: false, preciseLocation: false, declared: false }]);
      assert.deepEqual(compiled?.process('alias', undefined, {}).occurrences.map((o) => [o.category, o.declared]), [['user.behavior', false]]);
    }
  });

  it('refuses a category the taxonomy does not know, one that covers special categories or precise location, and a special one serving targeting', () => {
    const plan = {
      name: 'Occurrences',
      events: {
        Unknown: { category: 'user.no_such_category', purposes: ['analytics.reporting'], properties: body },
        Broad: { category: 'user.location', purposes: ['analytics.reporting'], properties: body },
        Pharmacy: { category: 'user.health_and_medical', purposes: ['analytics.reporting', 'personalize.profiling'], properties: body },
        Empty: { category: '', purposes: ['analytics.reporting'], properties: body },
      },
    };
    assert.deepEqual(compilePlan(plan, taxonomy).problems, [
      { path: '/events/Empty/category', problem: 'must NOT have fewer than 1 characters' },
      { path: '/events/Unknown/category', problem: '"user.no_such_category" is not a data category of the taxonomy' },
      { path: '/events/Broad/category', problem: 'user.location also covers precise location: choose the narrower category the event\'s occurrence is' },
      { path: '/events/Pharmacy/purposes/1', problem: 'an event of a special category must not serve targeting or personalization (personalize.profiling)' },
      { path: '/events/Empty/category', problem: '"" is not a data category of the taxonomy' },
    ]);
  });

  it('loads a stored version with such a category, read the strict way', () => {
    const plan = {
      name: 'Stored',
      events: {
        Unknown: { category: 'user.custom_removed', purposes: ['analytics.reporting'], properties: body },
        Broad: { category: 'user.location', purposes: ['analytics.reporting'], properties: body },
        Pharmacy: { category: 'user.health_and_medical', purposes: ['personalize.profiling'], properties: body },
      },
    };
    const { compiled, problems } = compilePlan(plan, taxonomy, { lenient: true });
    assert.deepEqual(problems, []);
    const flags = (name: string) => {
      const [o] = compiled?.process('track', name, {}).occurrences ?? [];
      return { special: o?.special, preciseLocation: o?.preciseLocation };
    };
    assert.deepEqual(flags('Unknown'), { special: true, preciseLocation: false }, 'an unknown category is the most restrictive');
    assert.deepEqual(flags('Broad'), { special: false, preciseLocation: true });
    assert.deepEqual(flags('Pharmacy'), { special: true, preciseLocation: false });
  });
});
