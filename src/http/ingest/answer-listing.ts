import type { ItemResult } from '../../modules/collect/index.ts';
import type { Violation } from '../../modules/catalog/index.ts';

/** The most dropped paths and violations one answer lists, over all its results together. */
export const MAX_ANSWER_LISTED = 1_000;
/** The most characters those listed entries hold together (a dropped path; a violation's path, rule and message). */
export const MAX_ANSWER_LISTED_CHARS = 65_536;

const violationChars = (v: Violation) => v.path.length + v.rule.length + v.message.length;
const pathChars = (path: string) => path.length;

/**
 * The results of an answer with at most MAX_ANSWER_LISTED entries of `violations` and `dropped` listed, of at most
 * MAX_ANSWER_LISTED_CHARS characters, in order (by result, its violations before its dropped paths). Past the budget
 * a result lists nothing more and counts the rest in `violationsUnlisted` and `droppedUnlisted`: a batch-level context
 * is taken by each of up to 2,500 messages, and each would otherwise list its undeclared keys again (tens of
 * megabytes of answer to a request of a few hundred kilobytes).
 */
export function listWithinBudget(results: readonly ItemResult[]): ItemResult[] {
  let entries = MAX_ANSWER_LISTED;
  let chars = MAX_ANSWER_LISTED_CHARS;
  /** How many of `items`, from the first, the budget left lists; taken from it. Once one does not fit, none does. */
  const take = <T>(items: readonly T[], size: (item: T) => number): number => {
    let n = 0;
    for (const item of items) {
      const c = size(item);
      if (entries === 0 || c > chars) {
        entries = 0;
        break;
      }
      entries--;
      chars -= c;
      n++;
    }
    return n;
  };
  return results.map((result) => {
    const { violations = [], dropped = [] } = result;
    const listedViolations = take(violations, violationChars);
    const listedDropped = take(dropped, pathChars);
    if (listedViolations === violations.length && listedDropped === dropped.length) return result;
    const bounded: ItemResult = { ...result };
    if (listedViolations < violations.length) {
      if (listedViolations > 0) bounded.violations = violations.slice(0, listedViolations);
      else delete bounded.violations;
      bounded.violationsUnlisted = (result.violationsUnlisted ?? 0) + violations.length - listedViolations;
    }
    if (listedDropped < dropped.length) {
      if (listedDropped > 0) bounded.dropped = dropped.slice(0, listedDropped);
      else delete bounded.dropped;
      bounded.droppedUnlisted = (result.droppedUnlisted ?? 0) + dropped.length - listedDropped;
    }
    return bounded;
  });
}
