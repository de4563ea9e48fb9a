import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Keys whose values are personal data or secrets; compared case-insensitively without separators. */
const PERSONAL_KEYS = new Set(
  [
    'email', 'phone', 'phoneNumber', 'mobile', 'name', 'firstName', 'lastName', 'fullName', 'username',
    'address', 'street', 'city', 'postalCode', 'zip', 'birthday', 'dateOfBirth', 'birthdate', 'age', 'gender',
    'ip', 'ipAddress', 'remoteAddress', 'userId', 'anonymousId', 'previousId', 'traits', 'context',
    'password', 'secret', 'token', 'authorization', 'cookie', 'key', 'masterKey', 'writeKey', 'databaseUrl',
    // Database errors carry the offending row (PostgreSQL's detail/where) or the query's parameters.
    'detail', 'where', 'parameters', 'params', 'values',
  ].map(normalize),
);

const EMAIL_PATTERN = /[^\s@"'<>]+@[^\s@"'<>]+\.[a-z]{2,}/gi;
/** Candor credentials (API tokens, write keys, customer sessions) that end up in free text. */
const CREDENTIAL_PATTERN = /\b(cnd|cwk|css)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/g;
const REDACTED = '[redacted]';

function normalize(key: string): string {
  return key.toLowerCase().replace(/[_\-.]/g, '');
}

/** Whether a log field of this name is treated as personal data or a secret. */
export function isPersonalKey(key: string): boolean {
  return PERSONAL_KEYS.has(normalize(key));
}

/** Replaces personal fields (by key) and anything shaped like an email address (by value). */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.replace(EMAIL_PATTERN, '[redacted-email]').replace(CREDENTIAL_PATTERN, '$1_[redacted]');
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = isPersonalKey(key) && inner !== undefined && inner !== null ? REDACTED : redact(inner, depth + 1);
  }
  return out;
}

interface LoggedRequest {
  method?: string;
  url?: string;
  routeOptions?: { url?: string };
  id?: string;
}

/** The logger: JSON lines, personal fields redacted, request URLs logged without query strings. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      serializers: {
        req: (req: LoggedRequest) => ({
          id: req.id,
          method: req.method,
          route: req.routeOptions?.url,
          // A matched route is logged by its pattern only: its path may hold a download token or a profile id.
          path: req.routeOptions?.url ? undefined : req.url?.split('?')[0],
        }),
        res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
        err: pino.stdSerializers.err,
      },
      hooks: {
        // Every line passes here last (objects, messages and child bindings alike), so nothing escapes redaction.
        streamWrite: (line: string) => JSON.stringify(redact(JSON.parse(line))) + '\n',
      },
    },
    destination,
  );
}
