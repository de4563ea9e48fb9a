// What the consent ledger and receipts keep of where a change was made. Both are kept for good (the ledger is
// append-only and outlives an erasure), and a page URL's query string often carries an e-mail address or a token; so
// a source is a page's URL, reduced, or a property's name, never free text that could name the person.
import { unusableText } from '../../shared/text.ts';

/** Most characters of a source as sent (before it is reduced). */
export const MAX_SOURCE = 2000;
/** A query string or fragment, to its end. */
const QUERY_OR_FRAGMENT = /[?#].*$/s;
/** `user:password@` (up to the last `@` before the path), after an optional scheme and `//` (or `\\`, as browsers read it). */
const USERINFO = /^((?:[a-z][a-z0-9+.-]*:)?[/\\]{2})?(?:[^/\\@]*@)+/i;
/** A property's name: letters, digits and `. _ : / -`, at most 200 (`ios-app`, `web:checkout/v2`, `shop.example/privacy`). */
const PROPERTY_TOKEN = /^[A-Za-z0-9._:/-]{1,200}$/;
const HTTP_URL = /^https?:\/\//i;
const WHITESPACE = /\s/u;

/**
 * The source as recorded: without a query string, a fragment or a `user:password@`, so that a page URL is kept as its
 * origin and path (`https://shop.example/account?email=…` as `https://shop.example/account`); a property name such as
 * `ios-app` as given. Null when there is none.
 */
export function recordedSource(source: string | null | undefined): string | null {
  if (!source) return null;
  const reduced = source.replace(QUERY_OR_FRAGMENT, '').replace(USERINFO, '$1');
  return reduced === '' ? null : reduced;
}

/** Whether a reduced source is an http(s) URL (no whitespace, a host) or a property token: nothing else is kept. */
function recordable(reduced: string): boolean {
  if (HTTP_URL.test(reduced)) return !WHITESPACE.test(reduced) && URL.canParse(reduced) && new URL(reduced).hostname !== '';
  return PROPERTY_TOKEN.test(reduced);
}

/**
 * The start of the source of the GPC refusals Candor writes by itself for a purpose flagged sale/sharing or targeted
 * advertising after a person's signal (`purpose-flagged:<purpose>`): retention tells them from a signal by it.
 */
export const FLAGGED_SOURCE = 'purpose-flagged:';

/** Sources that name what Candor writes by itself: a caller's change may not start with one (any case). */
const RESERVED = ['restore:', FLAGGED_SOURCE];

/**
 * Why a caller's consent change may not name this source (the `reason` of CONSENT_CHANGE_INVALID), or undefined when it
 * may: `source` for one too long, with a control character or a lone surrogate, or whose recorded form is neither an
 * http(s) URL nor a property token (free text: `Ada Lovelace +44 20 …`); `source_reserved` for `restore:…`, which
 * names what Candor writes again after a restore, and `purpose-flagged:…`, the GPC refusals it writes for a purpose
 * flagged after a signal.
 */
export function sourceProblem(source: unknown): 'source' | 'source_reserved' | undefined {
  if (source === undefined) return undefined;
  if (typeof source !== 'string' || source.length > MAX_SOURCE || unusableText(source) !== undefined) return 'source';
  const recorded = recordedSource(source);
  if (recorded === null) return undefined;
  if (!recordable(recorded)) return 'source';
  // (A source named `restore`, such as a write key's, is an ordinary one.)
  const lower = recorded.toLowerCase();
  return RESERVED.some((prefix) => lower.startsWith(prefix)) ? 'source_reserved' : undefined;
}

/**
 * The source Candor records of its own (`restore:<backup file>`, `purpose-flagged:<purpose>`): that text when it is
 * recordable, else `fallback`.
 */
export function ownSource(text: string, fallback: string): string {
  const recorded = text.length <= MAX_SOURCE && unusableText(text) === undefined ? recordedSource(text) : null;
  return recorded !== null && recordable(recorded) ? recorded : fallback;
}
