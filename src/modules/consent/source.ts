// What the consent ledger and receipts keep of where a change was made. Both are kept for good (the ledger is
// append-only and outlives an erasure), and a page URL's query string often carries an e-mail address or a token.

/** A query string or fragment, to its end. */
const QUERY_OR_FRAGMENT = /[?#].*$/s;
/** `user:password@` (up to the last `@` before the path), after an optional scheme and `//` (or `\\`, as browsers read it). */
const USERINFO = /^((?:[a-z][a-z0-9+.-]*:)?[/\\]{2})?(?:[^/\\@]*@)+/i;

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
