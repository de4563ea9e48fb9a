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

/** Fastify content-type parser (parseAs: 'string') for JSON bodies. */
export function jsonParser(_request: unknown, body: string | Buffer, done: (error: Error | null, value?: unknown) => void): void {
  try {
    done(null, parseJson(typeof body === 'string' ? body : body.toString('utf8')));
  } catch (error) {
    done(error as Error, undefined);
  }
}
