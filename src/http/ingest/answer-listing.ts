import type { ItemResult } from '../../modules/collect/index.ts';
import type { Violation } from '../../modules/catalog/index.ts';

/** The most dropped paths and violations one answer lists, over all its results together. */
export const MAX_ANSWER_LISTED = 1_000;
/** The most characters those listed entries hold together (a dropped path; a violation's path, rule and message). */
export const MAX_ANSWER_LISTED_CHARS = 65_536;

const violationChars = (v: Violation) => v.path.length + v.rule.length + v.message.length;
const pathChars = (path: string) => path.length;

/** The most characters of one segment (a key, with the `[n]` indexes after it) of a path an answer names. */
export const MAX_PATH_SEGMENT_CHARS = 100;
/** The most segments of a path an answer names: the first and last half of them, with `…` between. */
export const MAX_PATH_SEGMENTS = 16;
const ELLIPSIS = '…';

/** A segment of at most MAX_PATH_SEGMENT_CHARS characters and an ellipsis, never cut inside a surrogate pair. */
function shortSegment(segment: string): string {
  if (segment.length <= MAX_PATH_SEGMENT_CHARS) return segment;
  const code = segment.charCodeAt(MAX_PATH_SEGMENT_CHARS - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? MAX_PATH_SEGMENT_CHARS - 1 : MAX_PATH_SEGMENT_CHARS;
  return segment.slice(0, end) + ELLIPSIS;
}

/**
 * A path of the sender's keys (`context.<key>.__proto__`), as an answer names it: each segment cut to
 * MAX_PATH_SEGMENT_CHARS characters and an ellipsis, and the middle of a path of more than MAX_PATH_SEGMENTS segments
 * left out (`…`); one of at most MAX_PATH_SEGMENT_CHARS characters as it is. Keys of megabytes, or nested thousands
 * deep, would otherwise be answered in full, for each message.
 */
export function shortPath(path: string): string {
  // Most paths are short: left as they are without being split.
  if (path.length <= MAX_PATH_SEGMENT_CHARS) return path;
  const segments = path.split('.');
  const kept = segments.length <= MAX_PATH_SEGMENTS ? segments : [...segments.slice(0, MAX_PATH_SEGMENTS / 2), ELLIPSIS, ...segments.slice(-MAX_PATH_SEGMENTS / 2)];
  return kept.map(shortSegment).join('.');
}

/**
 * The results of an answer with at most MAX_ANSWER_LISTED entries of `violations` and `dropped` listed, of at most
 * MAX_ANSWER_LISTED_CHARS characters, in order (by result, its violations before its dropped paths). Past the budget
 * a result lists nothing more and counts the rest in `violationsUnlisted` and `droppedUnlisted`: a batch-level context
 * is taken by each message of a batch, and each would otherwise list its undeclared keys again (tens of
 * megabytes of answer to a request of a few hundred kilobytes). The `detail` of a REQUEST_FORBIDDEN_KEY result, the
 * path of a forbidden key (which a batch-level context gives every message that takes it), is an entry of the same
 * budget, listed before the rest of its result; past the budget the result has no `detail` (its code still says why).
 * Other details are Candor's own short texts.
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
    const path = result.code === 'REQUEST_FORBIDDEN_KEY' && result.detail !== undefined ? [result.detail] : [];
    const listedPath = take(path, pathChars);
    const listedViolations = take(violations, violationChars);
    const listedDropped = take(dropped, pathChars);
    if (listedPath === path.length && listedViolations === violations.length && listedDropped === dropped.length) return result;
    const bounded: ItemResult = { ...result };
    if (listedPath < path.length) delete bounded.detail;
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
