import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CompiledRules, DEFAULT_IDENTITY_RULES, type Identifier } from './identity.rules.ts';

const rules = new CompiledRules(DEFAULT_IDENTITY_RULES);
const norm = (type: string, value: string) => rules.normalize({ type, value })?.value;

describe('identity rules', () => {
  it('trims values, lower-cases e-mail addresses and keeps other identifiers as sent', () => {
    assert.equal(norm('email', '  Ada.Lovelace@Example.ORG.uk '), 'ada.lovelace@example.org.uk');
    assert.equal(norm('user_id', '  U-123 '), 'U-123');
    assert.equal(norm('anonymous_id', '6f1c2a7e-AB'), '6f1c2a7e-AB');
    assert.equal(norm('custom:crm_id', ' C-9 '), 'C-9');
  });

  it('reduces phone numbers to + and digits, and refuses numbers without a country code', () => {
    assert.equal(norm('phone', '+44 (20) 7946-0018'), '+442079460018');
    assert.equal(norm('phone', '0044 20 7946 0018'), '+442079460018');
    assert.equal(norm('phone', '1.415.555.0134'), '+14155550134');
    assert.equal(norm('phone', '020 7946 0018'), undefined);
    assert.equal(norm('phone', '+12'), undefined);
    assert.equal(norm('phone', 'call me'), undefined);
    assert.equal(norm('phone', '+1111111111'), undefined);
  });

  it('refuses blocked values of every type after normalization, whatever their case', () => {
    for (const value of ['null', 'NULL', ' undefined ', 'Unknown', 'n/a', '-', '', '0', '[object Object]']) {
      assert.equal(norm('user_id', value), undefined, value);
      assert.equal(norm('anonymous_id', value), undefined, value);
    }
    assert.equal(norm('email', 'TEST@example.com'), undefined);
    assert.equal(norm('email', 'someone@example.net'), undefined);
    assert.equal(norm('email', 'noreply@shop.io'), undefined);
    // The top-level domains reserved for tests and examples hold no one's mailbox.
    for (const value of ['qa@mail.test', 'a@shop.example', 'x@host.invalid', 'root@box.LOCALHOST']) assert.equal(norm('email', value), undefined, value);
    assert.equal(norm('email', 'ada@shop.io'), 'ada@shop.io');
    assert.equal(norm('email', 'ada@test.io'), 'ada@test.io', 'only the top-level domain counts');
    assert.equal(norm('anonymous_id', '00000000-0000-0000-0000-000000000000'), undefined, 'the nil UUID');
  });

  it('refuses malformed e-mail addresses, unknown types and values that are not text', () => {
    assert.equal(norm('email', 'not-an-email'), undefined);
    assert.equal(norm('email', 'a@b'), undefined);
    assert.equal(norm('device_id', 'd-1'), undefined);
    assert.equal(norm('custom:', 'x'), undefined);
    assert.equal(norm('custom:Bad Name', 'x'), undefined);
    assert.equal(rules.normalize({ type: 'user_id', value: { id: 1 } } as unknown as Identifier), undefined);
    assert.deepEqual(rules.normalize({ type: 'user_id', value: 42 } as unknown as Identifier), { type: 'user_id', value: '42' });
  });

  it('refuses values ingestion refuses as names: half of a surrogate pair, a control character', () => {
    for (const type of ['user_id', 'anonymous_id', 'email', 'custom:crm_id']) {
      const value = type === 'email' ? 'ada@shop.io' : 'U-123';
      assert.equal(norm(type, value), value);
      assert.equal(norm(type, `\uD800${value}`), undefined, `${type}: lone high surrogate`);
      assert.equal(norm(type, `${value}\uDFFF`), undefined, `${type}: lone low surrogate`);
      assert.equal(norm(type, `${value.slice(0, 3)}\u0000${value.slice(3)}`), undefined, `${type}: NUL`);
    }
    assert.equal(norm('user_id', 'x\uFFFDy'), 'x\uFFFDy', 'U+FFFD itself is a character like any other');
    assert.equal(norm('user_id', 'U-123\n'), 'U-123', 'trimmed whitespace is no part of the value');
  });

  it('applies custom:* rules to every custom type and ranks unlisted types last', () => {
    const custom = new CompiledRules({
      blockedValues: { 'custom:*': ['nobody'] },
      limits: { 'custom:*': 2, user_id: 1 },
      priority: ['user_id', 'custom:*', 'email'],
    });
    assert.equal(custom.normalize({ type: 'custom:crm', value: 'Nobody' }), undefined);
    assert.equal(custom.limit('custom:crm'), 2);
    assert.equal(custom.limit('email'), Number.POSITIVE_INFINITY);
    assert.equal(custom.rank('user_id'), 0);
    assert.equal(custom.rank('custom:loyalty'), 1);
    assert.equal(custom.rank('email'), 2);
    assert.equal(custom.rank('anonymous_id'), 3);
  });
});
