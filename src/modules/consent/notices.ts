import { createHash } from 'node:crypto';
import type { NoticePurpose } from './consent.types.ts';

/** Purposes in key order, each with its categories sorted and de-duplicated: the form that is hashed and stored. */
export function normalizePurposes(purposes: readonly NoticePurpose[]): NoticePurpose[] {
  return [...purposes]
    .map((p) => ({ purpose: p.purpose, categories: [...new Set(p.categories)].sort() }))
    .sort((a, b) => (a.purpose < b.purpose ? -1 : a.purpose > b.purpose ? 1 : 0));
}

/** SHA-256 (hex) over the notice text and the purposes and categories it describes. */
export function noticeHash(text: string, purposes: readonly NoticePurpose[]): string {
  return createHash('sha256').update(JSON.stringify(['candor notice v1', text, normalizePurposes(purposes)])).digest('hex');
}

/**
 * The purposes for which a new notice is a material change against the previous one: purposes it adds, and
 * purposes whose categories it widens. A category is covered when it, or one of its ancestors, was listed before,
 * so naming a narrower category is not a widening.
 */
export function materialChanges(
  previous: readonly NoticePurpose[] | undefined,
  next: readonly NoticePurpose[],
  parentOf: (category: string) => string | null | undefined,
): string[] {
  if (!previous) return [];
  const before = new Map(previous.map((p) => [p.purpose, new Set(p.categories)]));
  const affected: string[] = [];
  for (const p of next) {
    const old = before.get(p.purpose);
    if (!old) {
      affected.push(p.purpose);
      continue;
    }
    if (p.categories.some((c) => !isCovered(c, old, parentOf))) affected.push(p.purpose);
  }
  return affected.sort();
}

/** A category and those above it in the taxonomy, itself first (bounded, in case of a cycle among custom entries). */
export function* lineage(category: string, parentOf: (category: string) => string | null | undefined): Generator<string> {
  for (let c: string | null | undefined = category, depth = 0; c && depth < 32; c = parentOf(c), depth++) yield c;
}

/** Whether a category is listed, or lies under one listed: what a notice's list of categories covers. */
export function isCovered(category: string, listed: ReadonlySet<string>, parentOf: (category: string) => string | null | undefined): boolean {
  for (const c of lineage(category, parentOf)) if (listed.has(c)) return true;
  return false;
}
