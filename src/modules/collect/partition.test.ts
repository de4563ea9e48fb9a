import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeParts } from './collect.subject-data.ts';
import { partition, type FieldRule } from './partition.ts';

const rules = new Map<string, FieldRule>([
  ['traits.email', { personal: true, allowed: true }],
  ['traits.country', { personal: false, allowed: true }],
  ['traits.health', { personal: true, allowed: false }],
  ['properties.order_id', { personal: false, allowed: true }],
  ['properties.products[].price', { personal: false, allowed: true }],
  ['properties.products[].engraving', { personal: true, allowed: true }],
  ['properties.tags', { personal: false, allowed: true }],
]);

describe('partition', () => {
  it('splits personal from plain fields and leaves refused ones out', () => {
    const out = partition({ traits: { email: 'a@b.co', country: 'NL', health: 'asthma' } }, rules);
    assert.deepEqual(out.plain, { traits: { country: 'NL' } });
    assert.deepEqual(out.personal, { traits: { email: 'a@b.co' } });
    assert.deepEqual(out.refused, ['traits.health']);
    assert.equal(out.personalCount, 1);
  });

  it('keeps array positions in both parts', () => {
    const out = partition({ properties: { order_id: 'o1', products: [{ price: 5, engraving: 'For Ada' }, { price: 7 }], tags: ['a', 'b'] } }, rules);
    assert.deepEqual(out.plain, { properties: { order_id: 'o1', products: [{ price: 5 }, { price: 7 }], tags: ['a', 'b'] } });
    assert.deepEqual(out.personal, { properties: { products: [{ engraving: 'For Ada' }, null] } });
  });

  it('keeps an empty array of objects in the plain part, at any depth', () => {
    const out = partition({ properties: { order_id: 'o1', products: [] } }, rules);
    assert.deepEqual(out.plain, { properties: { order_id: 'o1', products: [] } });
    assert.deepEqual(out.personal, {});
    const nested = partition({ properties: { products: [{ price: 5, engraving: 'For Ada', options: [] }] } }, rules);
    assert.deepEqual(nested.plain, { properties: { products: [{ price: 5, options: [] }] } });
    assert.deepEqual(nested.personal, { properties: { products: [{ engraving: 'For Ada' }] } });
    assert.deepEqual(partition({ properties: { tags: [] } }, rules).plain, { properties: { tags: [] } }, 'an empty array of scalars, as before');
  });

  it('keeps an item left with no field as an empty object, so it reads back as one', () => {
    const out = partition({ properties: { products: [{ price: 5 }, {}, { engraving: 'For Ada' }] } }, rules);
    assert.deepEqual(out.plain, { properties: { products: [{ price: 5 }, {}, null] } });
    assert.deepEqual(out.personal, { properties: { products: [null, null, { engraving: 'For Ada' }] } });
    assert.deepEqual(mergeParts(out.plain, out.personal), { properties: { products: [{ price: 5 }, {}, { engraving: 'For Ada' }] } });
    const onlyPersonal = partition({ properties: { products: [{ engraving: 'For Ada' }, {}] } }, rules);
    assert.deepEqual([onlyPersonal.plain, onlyPersonal.personal], [{}, { properties: { products: [{ engraving: 'For Ada' }, {}] } }], 'nothing in clear tells how many items there were');
    assert.deepEqual(mergeParts(onlyPersonal.plain, onlyPersonal.personal), { properties: { products: [{ engraving: 'For Ada' }, {}] } });
    // None kept anything: the array is left out whole, as before.
    const nothing = partition({ properties: { order_id: 'o1', products: [{}, {}] } }, rules);
    assert.deepEqual([nothing.plain, nothing.personal], [{ properties: { order_id: 'o1' } }, {}]);
  });

  it('treats a field without a rule as personal', () => {
    assert.deepEqual(partition({ context: { ip: '10.0.0.1' } }, rules).personal, { context: { ip: '10.0.0.1' } });
  });
});
