import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { identityFlows, london, tag } from '../../../test/support/identity-flows.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { parsePhone, phoneLibrary, PhoneReader } from './identity.phone.ts';

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
