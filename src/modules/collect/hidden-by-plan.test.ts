import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_PLAN } from '../catalog/index.ts';
import { PlanFieldIndex } from '../catalog/plan-fields.ts';
import { compilePlan } from '../catalog/plan-compiler.ts';
import { CANDOR_DATA_USES, DATA_CATEGORIES, DATA_USES } from '../taxonomy/taxonomy.data.ts';
import { deleteFields, hiddenByPlan, occurrenceHidden } from './collect.subject-data.ts';

const taxonomy = {
  dataCategory: (key: string) => DATA_CATEGORIES.find((e) => e.key === key),
  dataUse: (key: string) => [...DATA_USES, ...CANDOR_DATA_USES].find((e) => e.key === key),
};

/** The default plan with `edit` applied, indexed as Catalog.fieldsInForce() answers it. */
function fields(edit: (plan: any) => void = () => {}): PlanFieldIndex { // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
  const plan = structuredClone(DEFAULT_PLAN);
  edit(plan);
  const { compiled, problems } = compilePlan(plan, taxonomy);
  assert.deepEqual(problems, []);
  assert.ok(compiled);
  return new PlanFieldIndex(2, compiled.outline());
}

/** What a reader who may not decrypt sees of an event's clear data, and whether anything was left out. */
function masked(plan: PlanFieldIndex, kind: string, event: string | null, data: Record<string, unknown>): [Record<string, unknown>, boolean] {
  const copy = structuredClone(data);
  return [copy, deleteFields(copy, '', hiddenByPlan(plan, kind, event))];
}

// Stored clear data is judged by the plan in force: declared and not personal stays, anything else goes.
describe('hiddenByPlan', () => {
  const order = 'Order Completed';

  it('keeps what the plan declares not personal, line items and empty arrays of objects included', () => {
    const data = { properties: { order_id: 'o1', total: 3, products: [{ name: 'n', price: 3 }, null], currency: 'EUR' }, context: { locale: 'de', library: { name: 'x' } } };
    assert.deepEqual(masked(fields(), 'track', order, data), [data, false]);
    const empty = { properties: { order_id: 'o1', products: [] } };
    assert.deepEqual(masked(fields(), 'track', order, empty), [empty, false]);
  });

  it('leaves out fields the plan no longer declares, at any depth, and what it declares nothing inside whole', () => {
    const plan = fields((p) => {
      delete p.events[order].properties.properties.coupon;
      delete p.events[order].properties.properties.products.items.properties.name;
      delete p.context.properties.campaign;
    });
    const data = { properties: { order_id: 'o1', coupon: 'c', products: [{ name: 'n', price: 3 }, { name: 'm' }] }, context: { locale: 'de', campaign: { name: 'spring' } } };
    assert.deepEqual(masked(plan, 'track', order, data), [{ properties: { order_id: 'o1', products: [{ price: 3 }, {}] }, context: { locale: 'de' } }, true]);
    // The whole array of line items removed: not even how many items there were is left.
    const noItems = fields((p) => delete p.events[order].properties.properties.products);
    assert.deepEqual(masked(noItems, 'track', order, { properties: { order_id: 'o1', products: [{ name: 'n', price: 3 }] } }), [{ properties: { order_id: 'o1' } }, true]);
    assert.deepEqual(masked(noItems, 'track', order, { properties: { order_id: 'o1', products: [] } }), [{ properties: { order_id: 'o1' } }, true]);
    // An event the plan no longer declares: its properties go whole; the context is judged by the context section.
    const noEvent = fields((p) => delete p.events[order]);
    assert.deepEqual(masked(noEvent, 'track', order, { properties: { order_id: 'o1' }, context: { locale: 'de' } }), [{ context: { locale: 'de' } }, true]);
  });

  it('leaves out a value whose shape the plan in force no longer declares there', () => {
    // A scalar where the plan declares an array of objects, an object where it declares a scalar.
    assert.deepEqual(masked(fields(), 'track', order, { properties: { order_id: 'o1', products: 'n' } }), [{ properties: { order_id: 'o1' } }, true]);
    assert.deepEqual(masked(fields(), 'track', order, { properties: { order_id: 'o1', coupon: { code: 'c' } } }), [{ properties: { order_id: 'o1' } }, true]);
    // A part no section of this kind declares.
    assert.deepEqual(masked(fields(), 'identify', null, { traits: { country: 'DE' }, properties: { total: 3 } }), [{ traits: { country: 'DE' } }, true]);
  });

  it('leaves out fields the plan declares personal, as before', () => {
    const data = { traits: { country: 'DE', city: 'Bonn' }, context: { externalIds: [{ id: 'x1', type: 'crm' }] } };
    const plan = fields((p) => (p.traits.properties.city['x-candor'].personal = true));
    assert.deepEqual(masked(plan, 'identify', null, data), [{ traits: { country: 'DE' }, context: { externalIds: [{ type: 'crm' }] } }, true]);
  });
});

// What an event was is itself special-category data (or precise location) where its occurrence is.
describe('occurrenceHidden', () => {
  // A special category serves no personalization: the event keeps its reporting purpose only.
  const recategorized = (definition: any, category: string) => Object.assign(definition, { category, purposes: ['analytics.reporting'] }); // eslint-disable-line @typescript-eslint/no-explicit-any -- a test edits the plan document by path
  const special = (p: any) => recategorized(p.events['Order Completed'], 'user.health_and_medical'); // eslint-disable-line @typescript-eslint/no-explicit-any -- as above
  const row = (kind: string, event: string | null, version = 2) => ({ kind, event, plan_version: version });
  const never = () => Promise.reject(new Error('the plan in force declares the event: no stored version is read'));

  it('hides an occurrence the plan in force declares of a special category or precise location, not another', async () => {
    assert.equal(await occurrenceHidden(fields(), row('track', 'Order Completed'), never), false);
    assert.equal(await occurrenceHidden(fields(special), row('track', 'Order Completed'), never), true);
    const precise = fields((p) => recategorized(p.events['Order Completed'], 'user.location.precise'));
    assert.equal(await occurrenceHidden(precise, row('track', 'Order Completed'), never), true);
    const pages = fields((p) => recategorized(p.pages, 'user.health_and_medical'));
    assert.equal(await occurrenceHidden(pages, row('page', 'Allergy advice'), never), true);
    assert.equal(await occurrenceHidden(fields(), row('page', 'Home'), never), false);
    // Identify, group and alias calls have no occurrence of their own.
    assert.equal(await occurrenceHidden(fields(special), row('identify', null), never), false);
  });

  it('judges an event the plan in force no longer declares by the version it was stored under, and hides it when that cannot be read', async () => {
    const removed = fields((p) => delete p.events['Order Completed']);
    const versions = new Map([
      [1, fields()],
      [3, fields(special)],
    ]);
    const storedUnder = (version: number) => Promise.resolve(versions.get(version));
    assert.equal(await occurrenceHidden(removed, row('track', 'Order Completed', 1), storedUnder), false);
    assert.equal(await occurrenceHidden(removed, row('track', 'Order Completed', 3), storedUnder), true);
    assert.equal(await occurrenceHidden(removed, row('track', 'Order Completed', 4), storedUnder), true);
  });
});
