import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { unusableText } from '../../shared/text.ts';
import { recordedSource } from './source.ts';

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

describe('unusableText', () => {
  it('refuses control characters and lone surrogates, and takes any other text', () => {
    assert.equal(unusableText('https://shop.example/\u0000'), 'a control character');
    assert.equal(unusableText('a\u007fb'), 'a control character');
    assert.equal(unusableText('x\ud800'), 'not well-formed Unicode');
    assert.equal(unusableText('x\udfff'), 'not well-formed Unicode');
    for (const ok of ['https://shop.example/ü', 'shop 😀', '\u00a0', '']) assert.equal(unusableText(ok), undefined, ok);
  });
});
