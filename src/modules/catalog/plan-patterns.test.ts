import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CANDOR_DATA_USES, DATA_CATEGORIES, DATA_USES } from '../taxonomy/taxonomy.data.ts';
import type { FieldSchema } from './catalog.schemas.ts';
import { DEFAULT_PLAN } from './default-plan.ts';
import { compilePlan, linearPattern, MAX_PATTERN_SIZE, type CompiledPlan, type TaxonomyLookup } from './plan-compiler.ts';

const taxonomy: TaxonomyLookup = {
  dataCategory: (key) => DATA_CATEGORIES.find((e) => e.key === key),
  dataUse: (key) => [...DATA_USES, ...CANDOR_DATA_USES].find((e) => e.key === key),
};

const annotation = { category: 'user.behavior', purposes: ['analytics.reporting'], retention: 'P1Y', personal: false };
/** A plan whose event E has the fields given. */
const planWith = (properties: Record<string, FieldSchema>) => ({ name: 'P', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties } } } });
const text = (keywords: Partial<FieldSchema>): FieldSchema => ({ type: 'string', ...keywords, 'x-candor': annotation });

function compile(plan: unknown, lenient = false): CompiledPlan {
  const { compiled, problems } = compilePlan(plan, taxonomy, { lenient });
  assert.deepEqual(problems, []);
  assert.ok(compiled);
  return compiled;
}

describe('plan patterns', () => {
  it('match as ECMAScript patterns in unicode mode do, the default plan\'s included', () => {
    const patterns = [
      '^[A-Z]{3}$',
      '^\\d{4}-\\d{2}-\\d{2}',
      '^.$',
      '^a.c$',
      '^\\s+$',
      '^\\S+$',
      '^[\\s,]+$',
      '^[^\\s]+$',
      '\\u00e9',
      '^[\\u0000-\\u007F]*$',
      '\\u{1F600}',
      '^\\p{L}+$',
      '^\\P{L}+$',
      '^a$',
      '\\bfoo\\b',
      '^(\\w+\\s?)*$',
      'x{2,}',
      '^a{2,3}$',
      '(?<year>\\d{4})',
      '\\/',
      '[\\-a]',
      '^$',
      'a|b',
      '[.]',
      '\\.',
    ];
    const values = ['EUR', 'eur', '2024-01-02', 'a', '\r', '\n', '\u2028', '😀', 'abc', 'a\rc', ' \t', '\u00a0\u3000', '\v', 'a,b', 'é', '\u0080', 'foo bar', 'xx', 'aaa', 'aa', '1999', '/', '-', '', 'a\n', '.', 'b'];
    for (const pattern of patterns) {
      const matcher = linearPattern(pattern);
      assert.ok(typeof matcher !== 'string', `${pattern}: ${String(matcher)}`);
      const ecma = new RegExp(pattern, 'u');
      for (const value of values) assert.equal(matcher.test(value), ecma.test(value), `${pattern} on ${JSON.stringify(value)}`);
    }
  });

  it('match as ECMAScript patterns in unicode mode do where RE2 reads the same text otherwise, or are refused', () => {
    const patterns = [
      '^\\uD83D\\uDE00$', // a surrogate pair of escapes is one code point
      '^[\\uD83D\\uDE00]$',
      '^[\\uD83D\\uDE00-\\uD83D\\uDE4F]$',
      '^\\uD83D\\uDE00{2}$',
      '^\\u{1F600}$',
      '^[\\u{1F600}-\\u{1F64F}]$',
      '^[^][]$', // `[^]` then `[]`, not one class without `]` and `[`
      '^[]$',
      '^[^]$',
      '^[^]{2}$',
      '^a[]|b$',
      '^[[:alpha:][x]$', // no POSIX class in brackets
      '^[[:a]$',
      '^\\0$',
      '^[\\0]$',
      '^[\\b]$', // backspace in brackets
      '\\b',
      '\\B',
      '^\\cA$',
      '^[\\cj]$',
      '^\\x41$',
      '^\\v$',
      '^(?<y>\\d{4})$',
      '^(?i:abc)$',
      '^(?i:k)$',
      '^(?i:\\w)$',
      '^(?i:\\W)$',
      '^(?i:[^a])$',
      '^(?i:\\p{Lu})$',
      '^(?i:ß)$',
      '^(?i:a(?-i:b))$',
      '^(?s:.)$',
      '^(?s:a(?-s:.))$',
      '^(?i-s:.)$',
      '^\\p{Script=Greek}$',
      '^\\p{gc=Lu}$',
      '^\\P{L}$',
      'a$',
      '^a',
      '^\\w+$',
      '^[\\d]$',
      '^\\D$',
      '^\\s$',
      '^[^\\s]$',
      '^\\S$',
      '^.{2}$',
      '^[😀]$',
      '^😀{2}$',
      '^\\$$',
      '^[\\-a]$',
      '^(?:a|)$',
    ];
    const values = ['', 'a', 'A', 'b', 'ab', 'aB', 'Ab', 'abc', 'ABC', ']', '[', ':', 'x', '😀', '😀😀', '🙏', '\0', '\b', '\u0001', '\n', '\r', '\v', '\u2028', 'a\n', '\na', 'K', 'k', '\u212A', '\u017F', 's', 'ß', 'ẞ', 'é', '٣', '3', '2024', 'α', 'Ǆ', '1', ' ', '\u0085', '\uFEFF', '$', '-', '.', '!'];
    for (const pattern of patterns) {
      const matcher = linearPattern(pattern);
      assert.ok(typeof matcher !== 'string', `${pattern}: ${String(matcher)}`);
      const ecma = new RegExp(pattern, 'u');
      for (const value of values) assert.equal(matcher.test(value), ecma.test(value), `${pattern} on ${JSON.stringify(value)}`);
    }
    const refused: [string, RegExp][] = [
      ['^\\uD83D$', /lone surrogate/], // can never match: ingestion refuses lone surrogates
      ['^[\\uDE00]$', /lone surrogate/],
      ['^\\u{D83D}\\u{DE00}$', /lone surrogate/],
      ['^\\uD83D\\u{DE00}$', /lone surrogate/],
      ['^\ud83d$', /lone surrogate/],
      ['(?i:\\b)', /\\b under the i modifier/],
      ['(?i:a\\B)', /\\B under the i modifier/],
      ['^(?i:\\P{Lu})$', /\\P\{…\} under the i modifier/],
      ['^(?m:a$)', /m modifier/],
      ['^\\p{Letter}$', /linear-time engine/],
      ['^\\p{sc=Grek}$', /linear-time engine/],
      ['^(?:(?<a>x)|(?<a>y))$', /linear-time engine/],
      ['^a{,3}$', /not a valid regular expression/],
      ['^[[:alpha:]]$', /not a valid regular expression/],
      ['^\\x{41}$', /not a valid regular expression/],
    ];
    for (const [pattern, why] of refused) {
      const matcher = linearPattern(pattern);
      assert.equal(typeof matcher, 'string', pattern);
      assert.match(String(matcher), why, pattern);
    }
  });

  it('refuse at its path a pattern that cannot run in linear time, in a field or in the items of an array', () => {
    const refused = {
      lookahead: '^(?=a)\\w+$',
      negativeLookahead: '^(?!admin)',
      lookbehind: '(?<=@)example',
      backreference: '^(a)\\1$',
      named: '^(?<c>a)\\k<c>$',
      bracketedNotSpace: '^[\\S]+$',
      large: '^.{1,1000}$',
      nested: '(\\w{1,100}){50}',
      invalid: '[\\w-.]',
    };
    const fields: Record<string, FieldSchema> = Object.fromEntries(Object.entries(refused).map(([name, pattern]) => [name, text({ pattern })]));
    fields.list = { type: 'array', items: { type: 'string', pattern: '(\\d)\\1' }, 'x-candor': annotation };
    const { compiled, problems } = compilePlan(planWith(fields), taxonomy);
    assert.equal(compiled, undefined);
    const base = '/events/E/properties/properties';
    assert.deepEqual(problems.map((p) => p.path).sort(), [...Object.keys(refused).map((name) => `${base}/${name}/pattern`), `${base}/list/items/pattern`].sort());
    const at = (name: string) => problems.find((p) => p.path.startsWith(`${base}/${name}/`))?.problem ?? '';
    assert.match(at('lookahead'), /not supported by the linear-time engine \(RE2: no lookahead, lookbehind or backreference\)/);
    assert.match(at('backreference'), /linear-time engine/);
    assert.match(at('bracketedNotSpace'), /\\S inside brackets/);
    assert.match(at('large'), new RegExp(`more than ${MAX_PATTERN_SIZE} instructions`));
    assert.match(at('nested'), /MAX_PATTERN_SIZE/);
    assert.match(at('invalid'), /not a valid regular expression/);
    assert.deepEqual(compilePlan(planWith({ ok: text({ pattern: '^.{1,255}$' }) }), taxonomy).problems, [], 'a bounded length within the size');
  });

  it('run a catastrophic backtracking pattern in time linear in the value', () => {
    // On V8's engine each of these takes longer than the age of the universe.
    const plan = compile(planWith({ word: text({ pattern: '^(a+)+$' }), words: text({ pattern: '^(\\w+\\s?)*$' }) }));
    const value = 'a'.repeat(30_000) + '!';
    const result = plan.process('track', 'E', { properties: { word: value, words: value } });
    assert.deepEqual(result.violations.map((v) => [v.path, v.rule, v.message]), [
      ['properties.word', 'pattern', 'must match pattern "^(a+)+$"'],
      ['properties.words', 'pattern', 'must match pattern "^(\\w+\\s?)*$"'],
    ]);
    assert.equal(plan.process('track', 'E', { properties: { word: 'a'.repeat(30_000), words: 'ab cd' } }).ok, true);
  });

  it('are not run on a string longer than maxLength, counted in code points as maxLength counts', () => {
    const plan = compile(planWith({ f: text({ maxLength: 20, pattern: '^(\\w+\\s?)*$' }), e: text({ maxLength: 3, pattern: '^a+$' }) }));
    const long = plan.process('track', 'E', { properties: { f: `${'a'.repeat(23)}!` } });
    assert.deepEqual(long.violations.map((v) => [v.path, v.rule]), [['properties.f', 'maxLength']]);
    const fits = plan.process('track', 'E', { properties: { f: `${'a'.repeat(19)}!` } });
    assert.deepEqual(fits.violations.map((v) => [v.path, v.rule]), [['properties.f', 'pattern']]);
    // Three emoji are six UTF-16 units but three code points: within maxLength, so the pattern runs.
    const emoji = plan.process('track', 'E', { properties: { e: '😀😀😀' } });
    assert.deepEqual(emoji.violations.map((v) => [v.path, v.rule]), [['properties.e', 'pattern']]);
  });

  it('of a stored version that the linear engine cannot run are left out of its validation, and the version loads', () => {
    const stored = planWith({ code: text({ pattern: '^(?!test-)' }), other: text({ pattern: '^[a-z]+$' }) });
    assert.ok(compilePlan(stored, taxonomy).problems.length > 0, 'refused when published now');
    const plan = compile(stored, true);
    assert.equal(plan.process('track', 'E', { properties: { code: 'test-1' } }).ok, true);
    assert.equal(plan.process('track', 'E', { properties: { other: 'A1' } }).violations[0]?.rule, 'pattern', 'the others still apply');
  });

  it('of the default plan are unchanged', () => {
    assert.deepEqual(compilePlan(DEFAULT_PLAN, taxonomy).problems, []);
  });
});
