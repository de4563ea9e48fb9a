import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { identityFlows, london, tag } from '../../../test/support/identity-flows.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { parsePhone, phoneLibrary, PhoneReader, phonesWithin } from './identity.phone.ts';

// libphonenumber takes tens of microseconds per number: a new number is read by it once, however often normalization,
// the blocked check and the legacy form ask for it.

describe('PhoneReader', () => {
  it('reads as parsePhone does, in its region', () => {
    const written = ['+44 (0)20 7946 0018', '0044 20 7946 0018', '(415) 555-0123', '４１５\u200b５５５ ０１２３', 'tel:+14155550123', '+12345678', '+1 415 555 0123 ext 7', '+1 (000) 000-0000', 'n/a', ''];
    for (const region of [undefined, 'US', 'GB'] as const) {
      const reader = new PhoneReader(region);
      for (const text of [...written, ...written]) assert.deepEqual(reader.read(text), parsePhone(text, region), `${text} in ${region}`);
    }
  });

  it('reads a number once for all its spellings and keeps the last readings only, oldest out first', (t) => {
    const parse = t.mock.method(phoneLibrary, 'parse');
    const reader = new PhoneReader(undefined, 2);
    assert.equal(reader.read('+44 (0)20 7946 0018')?.e164, '+442079460018');
    assert.equal(reader.read('+4402079460018')?.e164, '+442079460018');
    assert.equal(parse.mock.callCount(), 1);
    assert.equal(reader.read('+12345678'), undefined);
    assert.equal(reader.read('+1 234 5678'), undefined);
    assert.equal(parse.mock.callCount(), 2);
    assert.equal(reader.read('+1 415 555 0123')?.e164, '+14155550123');
    assert.equal(parse.mock.callCount(), 3);
    // The London number was read first: it made room for the third.
    assert.equal(reader.read('+4402079460018')?.e164, '+442079460018');
    assert.equal(parse.mock.callCount(), 4);
  });
});

describe('phonesWithin (numbers in a text that is no number, for the suppression check)', () => {
  it('finds the number without its extension or label, as text its legacy form can be read from', () => {
    const cases: [string, string[], string[]][] = [
      ['+44 20 7946 0018 x12', ['+44 20 7946 0018'], ['+44 20 7946 0018']],
      ['+442079460018;ext=12', ['+442079460018'], ['+442079460018']],
      ['tel:+442079460018;ext=12', ['+442079460018'], ['+442079460018']],
      ['+44 (0)20 7946 0018 ext. 7', ['+44 (0)20 7946 0018'], ['+44 (0)20 7946 0018']],
      ['Tel. +44 20 7946 0018', ['+44 20 7946 0018'], ['+44 20 7946 0018']],
      ['+44 20 7946 0018 (mobile)', ['+44 20 7946 0018'], ['+44 20 7946 0018']],
      ['++442079460018', ['+442079460018'], ['+442079460018']],
      ['0044 20 7946 0018 ext 3', ['+44 20 7946 0018'], ['+44 20 7946 0018']],
      ['+４４ ２０ ７９４６ ００１８ x12', ['+44 20 7946 0018'], ['+44 20 7946 0018']],
      ['+44 20 7946 0018 (home), +44 20 7946 0019 (work)', ['+44 20 7946 0018', '+44 20 7946 0019'], ['+44 20 7946 0018', '+44 20 7946 0019']],
      // A national number only in a region.
      ['Mobile: (415) 555-0134 x2', [], ['(415) 555-0134']],
      ['n/a', [], []],
      // Only the first 100 characters are searched.
      [`${'.'.repeat(100)} +44 20 7946 0018`, [], []],
    ];
    for (const [text, none, us] of cases) {
      assert.deepEqual(phonesWithin(text, undefined), none, text);
      assert.deepEqual(phonesWithin(text, 'US'), us, `${text} in US`);
      assert.deepEqual(new PhoneReader('US').within(text), us, `${text} in US (reader)`);
    }
  });

  it('searches a text once while it is among the last readings', (t) => {
    const find = t.mock.method(phoneLibrary, 'find');
    const reader = new PhoneReader(undefined, 2);
    for (let i = 0; i < 3; i++) assert.deepEqual(reader.within('+44 20 7946 0018 x12'), ['+44 20 7946 0018']);
    assert.equal(find.mock.callCount(), 1);
  });
});

let line = 0;
describeEachDialect('phone numbers on their way through ingestion', (dialect) => {
  const ctx = useKernel(dialect);
  const { consent, identify, profileOf } = identityFlows(ctx, useIngestServer(ctx));

  it('reads a new number with libphonenumber once, a trunk prefix or a refused number included, and a known one not at all', async (t) => {
    const parse = t.mock.method(phoneLibrary, 'parse');
    const n = String(++line).padStart(3, '0');
    // In E.164; with a trunk prefix (its legacy form differs); refused by libphonenumber (only its legacy form is taken).
    const written = [london(), `+44 (0)20 7946 1${n}`, `+1 200 0${n}`];
    const reads: number[] = [];
    for (const phone of written) {
      for (const message of [1, 2]) {
        const anonymousId = `reads-${tag()}`;
        await consent({ anonymousId });
        const before = parse.mock.callCount();
        assert.equal(await identify({ anonymousId }, { phone }), 'stored', `${phone}, message ${message}`);
        reads.push(parse.mock.callCount() - before);
      }
    }
    assert.deepEqual(reads, [1, 0, 1, 0, 1, 0]);
    // What was read once still decides as before: the number links the person, the refused one nobody.
    assert.ok(await profileOf('phone', `+44 (0)20 7946 1${n}`));
  });
});
