import { isUtf8 } from 'node:buffer';
import secureJson from 'secure-json-parse';
import { CandorError } from '../shared/errors.ts';

/** Parses a JSON body, telling malformed JSON apart from prototype-poisoning keys (`__proto__`, `constructor`). */
export function parseJson(body: string): unknown {
  if (body.length === 0) throw new CandorError('REQUEST_MALFORMED_JSON');
  try {
    return secureJson.parse(body, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (error) {
    if (error instanceof SyntaxError && /forbidden prototype property/.test(error.message)) throw new CandorError('REQUEST_FORBIDDEN_KEY');
    throw new CandorError('REQUEST_MALFORMED_JSON');
  }
}

// The text tests secure-json-parse makes before it looks for forbidden keys in a parsed value (also \u-escaped keys).
const PROTO_KEY = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"\s*:/;
const CONSTRUCTOR_KEY = /"(?:c|\\u0063)(?:o|\\u006[Ff])(?:n|\\u006[Ee])(?:s|\\u0073)(?:t|\\u0074)(?:r|\\u0072)(?:u|\\u0075)(?:c|\\u0063)(?:t|\\u0074)(?:o|\\u006[Ff])(?:r|\\u0072)"\s*:/;

/** Bodies parsed by parseMessagesJson that hold a forbidden key somewhere. */
const withForbiddenKey = new WeakSet<object>();

/**
 * Parses a JSON body of messages without failing on a forbidden key, so that only the messages carrying one are
 * refused: such a body is marked (carriesForbiddenKey) and its `__proto__` keys stay own data properties, harmless
 * until something copies them by assignment. Only a text in which such a key appears is walked.
 */
export function parseMessagesJson(body: string): unknown {
  if (body.length === 0) throw new CandorError('REQUEST_MALFORMED_JSON');
  let value: unknown;
  try {
    value = secureJson.parse(body, undefined, { protoAction: 'ignore', constructorAction: 'ignore' });
  } catch {
    throw new CandorError('REQUEST_MALFORMED_JSON');
  }
  if (typeof value === 'object' && value !== null && (PROTO_KEY.test(body) || CONSTRUCTOR_KEY.test(body)) && forbiddenKeyPath(value) !== undefined) {
    withForbiddenKey.add(value);
  }
  return value;
}

/** Whether a body parsed by parseMessagesJson holds a forbidden key (then see forbiddenKeyPath for where). */
export function carriesForbiddenKey(body: unknown): boolean {
  return typeof body === 'object' && body !== null && withForbiddenKey.has(body);
}

interface Visit {
  value: object;
  /** The key or index under which the parent holds this value. */
  key: string | number;
  parent: Visit | undefined;
}

function pathOf(visit: Visit, key: string): string {
  const parts: (string | number)[] = [key];
  for (let at: Visit | undefined = visit; at?.parent; at = at.parent) parts.push(at.key);
  let path = '';
  for (let i = parts.length - 1; i >= 0; i--) {
    const part = parts[i] as string | number;
    path += typeof part === 'number' ? `[${part}]` : path === '' ? part : `.${part}`;
  }
  return path;
}

/**
 * Where a parsed JSON value holds its first forbidden key, as a field path (`properties.items[0].__proto__`), or
 * undefined. Forbidden as secure-json-parse forbids them: any `__proto__` key, and a `constructor` key holding an
 * object that has a `prototype` key. `skip` names keys of the value itself whose contents are not looked at.
 */
export function forbiddenKeyPath(value: unknown, skip?: ReadonlySet<string>): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  // A stack, not recursion: a body may nest deeper than the call stack reaches.
  const stack: Visit[] = [{ value, key: '', parent: undefined }];
  for (let visit = stack.pop(); visit; visit = stack.pop()) {
    const node = visit.value;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) {
        const item: unknown = node[i];
        if (typeof item === 'object' && item !== null) stack.push({ value: item, key: i, parent: visit });
      }
      continue;
    }
    if (Object.hasOwn(node, '__proto__')) return pathOf(visit, '__proto__');
    if (Object.hasOwn(node, 'constructor')) {
      const ctor: unknown = (node as Record<string, unknown>).constructor;
      if (typeof ctor === 'object' && ctor !== null && Object.hasOwn(ctor, 'prototype')) return pathOf(visit, 'constructor');
    }
    const keys = Object.keys(node);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      if (visit.parent === undefined && skip?.has(key)) continue;
      const child: unknown = (node as Record<string, unknown>)[key];
      if (typeof child === 'object' && child !== null) stack.push({ value: child, key, parent: visit });
    }
  }
  return undefined;
}

/**
 * JSON is UTF-8 (RFC 8259 §8.1). Decoding leniently would turn each invalid byte into U+FFFD, so that `"u\xff"` and
 * `"u\xfe"` became the same id, and the same person: a body that is not UTF-8 is refused instead. (A byte order mark
 * is skipped, as JSON readers may.)
 */
function decodeBody(body: string | Buffer): string {
  if (typeof body === 'string') return body;
  // isUtf8 then toString: as strict as a fatal TextDecoder, and about twice as fast on message-sized bodies.
  if (!isUtf8(body)) throw new CandorError('REQUEST_MALFORMED_JSON', { reason: 'the body is not valid UTF-8' });
  const hasBom = body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf;
  return body.toString('utf8', hasBom ? 3 : 0);
}

/** How the JSON parsers below take a body from Fastify: as bytes, which they decode strictly (decodeBody). */
export const PARSE_AS = 'buffer';

/** Methods whose requests carry no body to read: an empty one is no body, whatever Content-Type a client sets. */
const BODILESS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS']);

/** A Fastify content-type parser (parseAs: PARSE_AS) over a body parser. */
function parserOf(parse: (body: string) => unknown) {
  return (request: { method?: string }, body: string | Buffer, done: (error: Error | null, value?: unknown) => void): void => {
    // A client library that sets `Content-Type: application/json` on every request sends it on a DELETE without a body.
    if (body.length === 0 && BODILESS.has(request.method ?? '')) {
      done(null, undefined);
      return;
    }
    try {
      done(null, parse(decodeBody(body)));
    } catch (error) {
      done(error as Error, undefined);
    }
  };
}

/** Fastify content-type parser for JSON bodies: a forbidden key refuses the whole request. */
export const jsonParser = parserOf(parseJson);

/** Fastify content-type parser for JSON bodies of messages: a forbidden key is left for the route to answer per message. */
export const messagesJsonParser = parserOf(parseMessagesJson);
