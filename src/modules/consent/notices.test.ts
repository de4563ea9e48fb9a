import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { materialChanges, noticeHash } from './notices.ts';

const parents: Record<string, string | null> = { user: null, 'user.contact': 'user', 'user.contact.email': 'user.contact', 'user.behavior': 'user', 'user.behavior.browsing_history': 'user.behavior' };
const parentOf = (key: string) => parents[key];

describe('notice versions', () => {
  it('hash the text with the purposes and categories, whatever order they are listed in', () => {
    const a = noticeHash('text', [{ purpose: 'b', categories: ['y', 'x'] }, { purpose: 'a', categories: ['z'] }]);
    assert.equal(a, noticeHash('text', [{ purpose: 'a', categories: ['z'] }, { purpose: 'b', categories: ['x', 'y', 'x'] }]));
    assert.notEqual(a, noticeHash('text.', [{ purpose: 'a', categories: ['z'] }, { purpose: 'b', categories: ['x', 'y'] }]));
    assert.notEqual(a, noticeHash('text', [{ purpose: 'a', categories: ['z'] }, { purpose: 'b', categories: ['x'] }]));
  });

  it('are material when they add a purpose or widen its categories, not when they narrow or drop them', () => {
    const before = [{ purpose: 'p1', categories: ['user.contact'] }, { purpose: 'p2', categories: ['user.behavior.browsing_history'] }];
    assert.deepEqual(materialChanges(undefined, before, parentOf), [], 'the first notice needs no renewal');
    assert.deepEqual(materialChanges(before, before, parentOf), []);
    assert.deepEqual(materialChanges(before, [{ purpose: 'p1', categories: ['user.contact.email'] }], parentOf), [], 'narrower category, purpose dropped');
    assert.deepEqual(materialChanges(before, [...before, { purpose: 'p3', categories: ['user.contact'] }], parentOf), ['p3']);
    assert.deepEqual(materialChanges(before, [before[0] as never, { purpose: 'p2', categories: ['user.behavior'] }], parentOf), ['p2'], 'a parent is wider');
  });
});
