import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCandorError } from '../../shared/errors.ts';
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

  it('writes phone numbers as E.164 and refuses numbers without + or 00 when no default region is set', () => {
    assert.equal(norm('phone', '+44 (20) 7946-0018'), '+442079460018');
    assert.equal(norm('phone', '0044 20 7946 0018'), '+442079460018');
    assert.equal(norm('phone', '+1.415.555.0134'), '+14155550134');
    assert.equal(norm('phone', '020 7946 0018'), undefined);
    // A national number is no international one: (479) 123-4467 in Arkansas is not +47 912 34 467 in Norway.
    assert.equal(norm('phone', '(479) 123-4467'), undefined);
    assert.equal(norm('phone', '4791234467'), undefined);
    assert.equal(norm('phone', '1.415.555.0134'), undefined);
    assert.equal(norm('phone', '+12'), undefined);
    assert.equal(norm('phone', 'call me'), undefined);
    assert.equal(norm('phone', '+1111111111'), undefined);
    assert.equal(norm('phone', '+999 1234 5678'), undefined, 'no country has the calling code 999');
    assert.equal(norm('phone', '+1 415 555 01'), undefined, 'too short for its country');
    assert.equal(norm('phone', '+1 415 555 0134 ext. 7'), undefined, 'an extension is a line of an office, not a person');
  });

  it('reads national numbers in the default region, and international ones as before', () => {
    const us = new CompiledRules({ ...DEFAULT_IDENTITY_RULES, defaultPhoneRegion: 'US' });
    const phone = (value: string) => us.normalize({ type: 'phone', value })?.value;
    assert.equal(phone('(479) 123-4467'), '+14791234467');
    assert.equal(phone('1-415-555-0134'), '+14155550134');
    assert.equal(phone('011 44 20 7946 0018'), '+442079460018', "the region's own international prefix");
    assert.equal(phone('+47 912 34 467'), '+4791234467');
    assert.equal(phone('555-0134'), undefined, 'a local number without its area code');
    const gb = new CompiledRules({ ...DEFAULT_IDENTITY_RULES, defaultPhoneRegion: 'GB' });
    assert.equal(gb.normalize({ type: 'phone', value: '020 7946 0018' })?.value, '+442079460018');
  });

  it('reads a trunk prefix written after the country code as no part of the number', () => {
    for (const value of ['+44 (0)20 7946 0018', '+44 020 7946 0018', '+44(0)2079460018', '(+44) 20 7946 0018']) assert.equal(norm('phone', value), '+442079460018', value);
  });

  it('reads dashes of every kind, fullwidth digits, invisible characters and tel: URIs as the plain number', () => {
    const fw = (s: string) => [...s].map((c) => (c >= '!' && c <= '~' ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c)).join('');
    for (const value of ['+44 20 7946\u20130018', '+44 20 7946\u20110018', '+44\u221220\u22127946\u22120018', fw('+44 20 7946 0018'), 'tel:+44-20-7946-0018', 'TEL:+442079460018', '+44207946\u200b0018', '\u00a0+44\u00a020\u00a07946\u00a00018']) {
      assert.equal(norm('phone', value), '+442079460018', JSON.stringify(value));
    }
    assert.equal(norm('phone', 'tel:+44-20-7946-0018;ext=12'), undefined, 'a tel: URI with parameters');
    assert.equal(norm('phone', 'tel:020-7946-0018'), undefined);
  });

  it('keeps the pseudonym input of numbers stored in E.164 as it was: E.164 in, the same E.164 out', () => {
    for (const value of ['+442079460018', '+4791234467', '+390612345678', '+4915112345678', '+14155550134', '+8613800138000']) {
      assert.equal(norm('phone', value), value);
      assert.equal(norm('phone', norm('phone', value) as string), value, 'normalizing twice changes nothing');
    }
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

  it('compares blocked values NFKC, without invisible characters and without one pair of quotes or brackets', () => {
    const junk = ['(null)', '<nil>', '"null"', "'null'", '<null>', '(none)', 'N.A.', 'n.a', '#N/A', 'null\u200b', '\u200bnull', '\u00a0null\u00a0', 'ｎｕｌｌ', 'ＵＮＤＥＦＩＮＥＤ', '{00000000-0000-0000-0000-000000000000}', '"undefined"'];
    for (const value of junk) {
      assert.equal(norm('user_id', value), undefined, JSON.stringify(value));
      assert.equal(norm('anonymous_id', value), undefined, JSON.stringify(value));
      assert.equal(norm('custom:crm_id', value), undefined, JSON.stringify(value));
    }
    for (const value of ['(alice)', 'null-island', 'u-null', 'nullable']) assert.equal(norm('user_id', value), value, 'only the whole value is compared');
  });

  it('refuses addresses at any subdomain of the example domains and the usual no-reply mailboxes', () => {
    for (const value of ['someone@mail.example.com', 'a@x.y.example.org', 'no_reply@shop.io', 'no.reply@shop.io', 'do_not_reply@shop.io', 'Do.Not.Reply@shop.io']) assert.equal(norm('email', value), undefined, value);
    for (const value of ['ada@example.community', 'ada@myexample.com', 'reply@shop.io']) assert.equal(norm('email', value), value);
  });

  it('refuses placeholder numbers by their national digits too', () => {
    for (const value of ['+1 555-555-5555', '+1 (000) 000-0000', '+1 111-111-1111', '+44 0000 000000', '+33 0 00 00 00 00']) assert.equal(norm('phone', value), undefined, value);
    assert.equal(norm('phone', '+1 415 555 5555'), '+14155555555');
  });

  it('reads configured blocked numbers like identifiers, in the default region', () => {
    const configured = new CompiledRules({ ...DEFAULT_IDENTITY_RULES, blockedValues: { ...DEFAULT_IDENTITY_RULES.blockedValues, phone: ['+1 (555) 010-0100', '0044 20 7946 0099', '(415) 555-0199'] } });
    for (const value of ['+15550100100', '+1 555 010 0100', '+442079460099', '+44 (0)20 7946 0099']) assert.equal(configured.normalize({ type: 'phone', value }), undefined, value);
    assert.equal(configured.normalize({ type: 'phone', value: '+14155550199' })?.value, '+14155550199', 'a national number is no number without a region');
    const us = new CompiledRules({ ...configured.rules, defaultPhoneRegion: 'US' });
    assert.equal(us.normalize({ type: 'phone', value: '+14155550199' }), undefined);
    assert.equal(us.normalize({ type: 'phone', value: '415-555-0199' }), undefined);
  });

  it('refuses a default phone region that is no region code (CONFIG_INVALID, by path)', () => {
    for (const region of ['us', 'USA', 'XX', '']) {
      assert.throws(
        () => new CompiledRules({ ...DEFAULT_IDENTITY_RULES, defaultPhoneRegion: region }),
        (error) => isCandorError(error, 'CONFIG_INVALID') && JSON.stringify(error.details?.problems).includes('"path":"defaultPhoneRegion"'),
        region,
      );
    }
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
