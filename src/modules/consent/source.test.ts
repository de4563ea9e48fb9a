import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { unusableText } from '../../shared/text.ts';
import { ownSource, recordedSource, sourceProblem } from './source.ts';

describe('recordedSource', () => {
  it('keeps a URL as its origin and path, without query string, fragment or user:password@', () => {
    const cases: [string, string][] = [
      ['https://shop.example/account?email=a@b.c', 'https://shop.example/account'],
      ['https://shop.example/account#email=a@b.c', 'https://shop.example/account'],
      ['https://ada:s3cret@shop.example:8443/a/b?x=1#y', 'https://shop.example:8443/a/b'],
      ['https://a@b@shop.example/p', 'https://shop.example/p'],
      ['https:\\\\ada:pw@shop.example\\p', 'https:\\\\shop.example\\p'],
      ['//ada@shop.example/p?q', '//shop.example/p'],
      ['shop.example/privacy?token=abc', 'shop.example/privacy'],
      ['ada:pw@shop.example/p', 'shop.example/p'],
      ['https://shop.example/users/a@b.c/orders', 'https://shop.example/users/a@b.c/orders'],
      ['https://shop.example', 'https://shop.example'],
      ['ios-app', 'ios-app'],
      ['US-CA banner v2', 'US-CA banner v2'],
    ];
    for (const [given, kept] of cases) assert.equal(recordedSource(given), kept, given);
  });

  it('answers null for no source, and for one that is only a query string or fragment', () => {
    for (const none of [undefined, null, '', '?email=a@b.c', '#x']) assert.equal(recordedSource(none), null, String(none));
  });
});

describe('sourceProblem', () => {
  it('takes an http(s) URL and a property token, as recorded once reduced', () => {
    const accepted = [
      undefined,
      '',
      '?email=a@b.c',
      'https://ada:pw@shop.example:8443/a/b?x=1#y',
      'HTTP://shop.example',
      'https://bücher.example/ü',
      'https://shop.example/users/a@b.c/orders',
      'ios-app',
      'web:checkout/v2.1',
      'shop.example/privacy?token=abc',
      '//ada@shop.example/p?q',
      'restore',
      'x'.repeat(200),
    ];
    for (const source of accepted) assert.equal(sourceProblem(source), undefined, String(source));
  });

  it('refuses free text, a URL with whitespace or no host, and what cannot be stored', () => {
    const refused = [
      'LEAK SRC46 Ada Lovelace +44 20 7946 0046',
      'US-CA banner v2',
      'ada+shop',
      'zq-%41da',
      'https://shop.example/Ada Lovelace',
      'https://',
      'https:\\\\shop.example\\p',
      'javascript:alert(1)',
      'x'.repeat(201),
      `https://shop.example/${'p'.repeat(2000)}`,
      'web\u0007',
      42,
    ];
    for (const source of refused) assert.equal(sourceProblem(source), 'source', String(source));
  });

  it('reserves restore: and purpose-flagged: for what Candor writes by itself', () => {
    for (const source of ['restore:backup.db', 'RESTORE:x', 'restore:x?y', 'purpose-flagged:marketing.advertising', 'Purpose-Flagged:x', 'purpose-flagged:']) assert.equal(sourceProblem(source), 'source_reserved', source);
    for (const source of ['restore', 'purpose-flagged', 'web:purpose-flagged:x']) assert.equal(sourceProblem(source), undefined, source);
    assert.equal(ownSource('restore:candor-2026-01-01.db', 'restore:backup'), 'restore:candor-2026-01-01.db');
    assert.equal(ownSource('restore:my backup (Ada).db', 'restore:backup'), 'restore:backup');
  });
});

describe('unusableText', () => {
  it('refuses control characters and lone surrogates, and takes any other text', () => {
    assert.equal(unusableText('https://shop.example/\u0000'), 'a control character');
    assert.equal(unusableText('a\u007fb'), 'a control character');
    assert.equal(unusableText('x\ud800'), 'not well-formed Unicode');
    assert.equal(unusableText('x\udfff'), 'not well-formed Unicode');
    for (const ok of ['https://shop.example/ü', 'shop 😀', '\u00a0', '']) assert.equal(unusableText(ok), undefined, ok);
  });
});
