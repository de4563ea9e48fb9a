import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  DATA_CATEGORIES,
  DATA_SUBJECTS,
  DATA_USES,
  IDENTIFYING_CATEGORIES,
  LEGAL_BASES,
  SPECIAL_CATEGORIES,
} from './taxonomy.data.ts';

// Repo root is three levels above src/modules/taxonomy; the fideslang reference
// files live next to it and are read only here, never shipped.
const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
const fideslangDir = resolve(repoRoot, '..', 'shared', 'data', 'fideslang');

interface FideslangEntry {
  fides_key: string;
  description: string | null;
  parent_key?: string | null;
}

function readFideslang(file: string, property: string): FideslangEntry[] {
  const parsed: unknown = JSON.parse(readFileSync(resolve(fideslangDir, file), 'utf8'));
  const list = (parsed as Record<string, unknown>)[property];
  assert.ok(Array.isArray(list), `${file} should contain a "${property}" array`);
  return list as FideslangEntry[];
}

const fideslang = {
  categories: readFideslang('data_categories.json', 'data_category'),
  uses: readFideslang('data_uses.json', 'data_use'),
  subjects: readFideslang('data_subjects.json', 'data_subject'),
};

function assertSameKeys(label: string, ours: readonly { key: string }[], theirs: readonly FideslangEntry[]): void {
  const ourKeys = new Set(ours.map((e) => e.key));
  const theirKeys = new Set(theirs.map((e) => e.fides_key));
  const missing = [...theirKeys].filter((k) => !ourKeys.has(k));
  const extra = [...ourKeys].filter((k) => !theirKeys.has(k));
  assert.deepEqual(
    { missing, extra },
    { missing: [], extra: [] },
    `${label}: missing ${JSON.stringify(missing)}, extra ${JSON.stringify(extra)}`,
  );
}

function assertUniqueKeys(label: string, entries: readonly { key: string }[]): void {
  const seen = new Set<string>();
  for (const { key } of entries) {
    assert.ok(!seen.has(key), `${label}: duplicate key ${key}`);
    seen.add(key);
  }
}

function assertParentsComeFirst(label: string, entries: readonly { key: string; parentKey: string | null }[]): void {
  const seen = new Set<string>();
  for (const { key, parentKey } of entries) {
    if (parentKey !== null) {
      assert.ok(seen.has(parentKey), `${label}: parent ${parentKey} of ${key} must exist and appear earlier`);
    }
    seen.add(key);
  }
}

function words(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9\s]+/g, ' ')
    .split(/\s+/)
    .filter((w) => w.length > 0);
}

const RUN_LENGTH = 8;

function sharedRun(a: string, b: string): string | null {
  const wa = words(a);
  const wb = words(b);
  const runs = new Set<string>();
  for (let i = 0; i + RUN_LENGTH <= wb.length; i++) runs.add(wb.slice(i, i + RUN_LENGTH).join(' '));
  for (let i = 0; i + RUN_LENGTH <= wa.length; i++) {
    const run = wa.slice(i, i + RUN_LENGTH).join(' ');
    if (runs.has(run)) return run;
  }
  return null;
}

function assertOwnWording(
  label: string,
  ours: readonly { key: string; description: string }[],
  theirs: readonly FideslangEntry[],
): void {
  const theirByKey = new Map(theirs.map((e) => [e.fides_key, e.description ?? '']));
  const allTheirs = theirs.map((e) => e.description ?? '').filter((d) => d.length > 0);
  for (const { key, description } of ours) {
    assert.ok(description.trim().length > 0, `${label} ${key}: description is empty`);
    const normalized = words(description).join(' ');
    const original = theirByKey.get(key) ?? '';
    assert.notEqual(normalized, words(original).join(' '), `${label} ${key}: description equals fideslang's`);
    for (const other of allTheirs) {
      const run = sharedRun(description, other);
      assert.equal(run, null, `${label} ${key}: description shares "${run}" with fideslang text "${other}"`);
    }
  }
}

function category(key: string) {
  const entry = DATA_CATEGORIES.find((e) => e.key === key);
  assert.ok(entry, `missing category ${key}`);
  return entry;
}

test('ships every fideslang data category key', () => {
  assertSameKeys('data categories', DATA_CATEGORIES, fideslang.categories);
});

test('ships every fideslang data use key', () => {
  assertSameKeys('data uses', DATA_USES, fideslang.uses);
});

test('ships every fideslang data subject key', () => {
  assertSameKeys('data subjects', DATA_SUBJECTS, fideslang.subjects);
});

test('keeps fideslang parent keys for categories and uses', () => {
  const theirParents = new Map(
    [...fideslang.categories, ...fideslang.uses].map((e) => [e.fides_key, e.parent_key ?? null]),
  );
  for (const { key, parentKey } of [...DATA_CATEGORIES, ...DATA_USES]) {
    assert.equal(parentKey, theirParents.get(key), `${key}: parent differs from fideslang`);
  }
});

test('has unique keys in every list', () => {
  assertUniqueKeys('data categories', DATA_CATEGORIES);
  assertUniqueKeys('data uses', DATA_USES);
  assertUniqueKeys('data subjects', DATA_SUBJECTS);
  assertUniqueKeys('legal bases', LEGAL_BASES);
  assertUniqueKeys('special categories', SPECIAL_CATEGORIES);
});

test('lists every parent before its children', () => {
  assertParentsComeFirst('data categories', DATA_CATEGORIES);
  assertParentsComeFirst('data uses', DATA_USES);
});

test('describes categories, uses and subjects in its own words rather than fideslang text', () => {
  assertOwnWording('data category', DATA_CATEGORIES, fideslang.categories);
  assertOwnWording('data use', DATA_USES, fideslang.uses);
  assertOwnWording('data subject', DATA_SUBJECTS, fideslang.subjects);
});

test('marks racial or ethnic origin as an Art. 9 special category that is protected and sensitive', () => {
  const race = category('user.demographic.race_ethnicity');
  assert.equal(race.specialCategory, 'racial_or_ethnic_origin');
  assert.equal(race.protectedAttribute, true);
  assert.equal(race.sensitivePersonalInformation, true);
});

test('marks genetic data as the genetic special category', () => {
  const genetic = category('user.health_and_medical.genetic');
  assert.equal(genetic.specialCategory, 'genetic');
  assert.equal(genetic.protectedAttribute, true);
  assert.equal(genetic.sensitivePersonalInformation, true);
});

test('marks criminal history as Art. 10 criminal convictions data', () => {
  const criminal = category('user.criminal_history');
  assert.equal(criminal.specialCategory, 'criminal_convictions');
  assert.equal(criminal.protectedAttribute, true);
});

test('treats precise location as protected and sensitive but not an Art. 9 special category', () => {
  const precise = category('user.location.precise');
  assert.equal(precise.specialCategory, null);
  assert.equal(precise.protectedAttribute, true);
  assert.equal(precise.sensitivePersonalInformation, true);
});

test('treats an email address as ordinary personal data', () => {
  const email = category('user.contact.email');
  assert.equal(email.specialCategory, null);
  assert.equal(email.protectedAttribute, false);
  assert.equal(email.sensitivePersonalInformation, false);
});

test('makes every special-category data category a protected attribute', () => {
  for (const entry of DATA_CATEGORIES) {
    if (entry.specialCategory !== null) {
      assert.equal(entry.protectedAttribute, true, `${entry.key} is ${entry.specialCategory} but not protected`);
    }
  }
});

test('lets a child of a special category stay a special category', () => {
  const byKey = new Map(DATA_CATEGORIES.map((e) => [e.key, e]));
  for (const entry of DATA_CATEGORIES) {
    const parent = entry.parentKey === null ? undefined : byKey.get(entry.parentKey);
    if (parent?.specialCategory) {
      assert.notEqual(entry.specialCategory, null, `${entry.key} lost its parent's special category`);
    }
  }
});

test('cites GDPR Art. 6(1)(a)-(f) and only needs a consent record for consent', () => {
  assert.deepEqual(
    LEGAL_BASES.map((b) => b.article),
    ['a', 'b', 'c', 'd', 'e', 'f'].map((letter) => `GDPR Art. 6(1)(${letter})`),
  );
  for (const basis of LEGAL_BASES) {
    assert.equal(basis.requiresConsentRecord, basis.key === 'consent', `${basis.key} consent-record flag`);
  }
});

test('cites Art. 9(1) for eight special categories and Art. 10 for criminal convictions', () => {
  assert.equal(SPECIAL_CATEGORIES.length, 9);
  for (const entry of SPECIAL_CATEGORIES) {
    const expected = entry.key === 'criminal_convictions' ? 'GDPR Art. 10' : 'GDPR Art. 9(1)';
    assert.equal(entry.article, expected, `${entry.key} article`);
  }
});

test('uses only known special-category keys on data categories', () => {
  const known = new Set(SPECIAL_CATEGORIES.map((s) => s.key));
  for (const entry of DATA_CATEGORIES) {
    if (entry.specialCategory !== null) {
      assert.ok(known.has(entry.specialCategory), `${entry.key}: unknown special category ${entry.specialCategory}`);
    }
  }
});

test('names only built-in categories as identifying, an exemption always below an identifying one', () => {
  const byKey = new Map(DATA_CATEGORIES.map((e) => [e.key, e]));
  for (const [key, identifying] of IDENTIFYING_CATEGORIES) {
    assert.ok(byKey.has(key), `${key} is a built-in category`);
    if (identifying) continue;
    let parent = byKey.get(key)?.parentKey ?? null;
    while (parent !== null && IDENTIFYING_CATEGORIES.get(parent) === undefined) parent = byKey.get(parent)?.parentKey ?? null;
    assert.equal(parent !== null && IDENTIFYING_CATEGORIES.get(parent), true, `${key} exempts from an identifying category`);
  }
});
