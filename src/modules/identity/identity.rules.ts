import { compilesAsBlockedPattern, isIdentifierTypeName, isRuleTypeKey } from '../../shared/patterns.ts';
import { CandorError } from '../../shared/errors.ts';
import { unusableText } from '../../shared/text.ts';

/** An identifier as it arrives: `user_id`, `anonymous_id`, `email`, `phone` or `custom:<name>`, and its value. */
export interface Identifier {
  type: string;
  value: string;
}

/** Merge rules of the identity graph. Values are compared after normalization, case-insensitively. */
export interface IdentityRules {
  /** Values never used as identifiers, per type; `*` applies to every type, `custom:*` to every custom type. */
  blockedValues: Record<string, readonly string[]>;
  /** Regular expression sources (matched case-insensitively against the normalized value), keyed like blockedValues. */
  blockedPatterns?: Record<string, readonly string[]>;
  /** Maximum identifiers of a type per canonical profile (`custom:*` for custom types); types not listed are unlimited. */
  limits: Record<string, number>;
  /** Identifier types, strongest first (`custom:*` stands for every custom type); unlisted types rank last. */
  priority: readonly string[];
}

export const DEFAULT_IDENTITY_RULES: IdentityRules = {
  blockedValues: {
    '*': ['null', 'undefined', 'unknown', 'none', 'nil', 'nan', '0', '-1', 'n/a', 'na', '-', '', 'true', 'false', '[object object]', 'anonymous', 'guest', 'test', '00000000-0000-0000-0000-000000000000'],
    email: ['test@test.com', 'test@example.com', 'noreply@example.com', 'no-reply@example.com', 'user@example.com', 'email@example.com', 'a@a.com'],
  },
  blockedPatterns: {
    // example.com/.org/.net and the top-level domains reserved for tests and examples (RFC 2606, RFC 6761).
    email: ['@example\\.(com|org|net)$', '^(no-?reply|do-?not-?reply)@', '\\.(test|invalid|localhost|example)$'],
    // All one digit repeated, or a leading zero (no E.164 country code starts with 0).
    phone: ['^\\+(\\d)\\1+$', '^\\+0'],
  },
  limits: { user_id: 1, email: 5, phone: 5 },
  priority: ['user_id', 'email', 'phone', 'custom:*', 'anonymous_id'],
};

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const PHONE = /^\+\d{7,15}$/;

/** Whether a string names an identifier type this graph accepts. */
export function isIdentifierType(type: string): boolean {
  return isIdentifierTypeName(type);
}

/**
 * Every problem of a set of rules, by path: keys that are not identifier types (or `*` / `custom:*` where allowed),
 * patterns that do not compile, limits that are not whole numbers of at least 1, priority entries unknown or repeated.
 */
export function identityRulesProblems(rules: IdentityRules): { path: string; problem: string }[] {
  const problems: { path: string; problem: string }[] = [];
  for (const [name, lists] of [['blockedValues', rules.blockedValues], ['blockedPatterns', rules.blockedPatterns ?? {}]] as const) {
    for (const [type, list] of Object.entries(lists)) {
      if (!isRuleTypeKey(type) && type !== '*') problems.push({ path: `${name}.${type}`, problem: 'is not an identifier type' });
      list.forEach((source, index) => {
        if (typeof source !== 'string') problems.push({ path: `${name}.${type}[${index}]`, problem: 'must be a string' });
        else if (name === 'blockedPatterns' && !compilesAsBlockedPattern(source)) problems.push({ path: `${name}.${type}[${index}]`, problem: 'must be a valid regular expression' });
      });
    }
  }
  for (const [type, limit] of Object.entries(rules.limits)) {
    if (!isRuleTypeKey(type)) problems.push({ path: `limits.${type}`, problem: 'is not an identifier type' });
    else if (!Number.isSafeInteger(limit) || limit < 1) problems.push({ path: `limits.${type}`, problem: 'must be a whole number of at least 1' });
  }
  rules.priority.forEach((type, index) => {
    if (!isRuleTypeKey(type)) problems.push({ path: `priority[${index}]`, problem: 'is not an identifier type' });
    else if (rules.priority.indexOf(type) !== index) problems.push({ path: `priority[${index}]`, problem: 'is listed twice' });
  });
  return problems;
}


/** The rules compiled for fast checks: lower-cased sets, compiled patterns, priority ranks. */
export class CompiledRules {
  readonly rules: IdentityRules;
  readonly #blocked = new Map<string, ReadonlySet<string>>();
  readonly #patterns = new Map<string, readonly RegExp[]>();
  readonly #rank = new Map<string, number>();

  /** Compiles the rules; rules with problems are refused (`CONFIG_INVALID`, problems under `identityRules`). */
  constructor(rules: IdentityRules) {
    const problems = identityRulesProblems(rules);
    if (problems.length > 0) throw new CandorError('CONFIG_INVALID', { problems: problems.map((p) => ({ key: 'identityRules', ...p })) });
    this.rules = rules;
    for (const [type, values] of Object.entries(rules.blockedValues)) this.#blocked.set(type, new Set(values.map((v) => v.toLowerCase())));
    for (const [type, sources] of Object.entries(rules.blockedPatterns ?? {})) this.#patterns.set(type, sources.map((s) => new RegExp(s, 'i')));
    rules.priority.forEach((type, index) => {
      if (!this.#rank.has(type)) this.#rank.set(type, index);
    });
  }

  /** The keys under which a type's rules may be listed, most specific first. */
  #keysOf(type: string): string[] {
    return type.startsWith('custom:') ? [type, 'custom:*', '*'] : [type, '*'];
  }

  /** Rank of a type in the priority order: 0 is strongest; unlisted types come after every listed one. */
  rank(type: string): number {
    return this.#rank.get(type) ?? (type.startsWith('custom:') ? this.#rank.get('custom:*') : undefined) ?? this.rules.priority.length;
  }

  /** How many identifiers of this type one canonical profile may hold. */
  limit(type: string): number {
    const limits = this.rules.limits;
    return limits[type] ?? (type.startsWith('custom:') ? limits['custom:*'] : undefined) ?? Number.POSITIVE_INFINITY;
  }

  isBlocked(type: string, value: string): boolean {
    const lower = value.toLowerCase();
    for (const key of this.#keysOf(type)) {
      if (this.#blocked.get(key)?.has(lower)) return true;
      if (this.#patterns.get(key)?.some((p) => p.test(value))) return true;
    }
    return false;
  }

  /**
   * Trims (and NFC-normalizes) the value; e-mail addresses are lower-cased, phone numbers reduced to `+` and digits.
   * Returns undefined for an unknown type, a value ingestion refuses as a name (`unusableText`: half of a surrogate
   * pair, a control character), a malformed e-mail or phone number, or a blocked value.
   */
  normalize(id: Identifier): Identifier | undefined {
    const raw: unknown = id.value;
    const text = typeof raw === 'string' ? raw : typeof raw === 'number' && Number.isFinite(raw) ? String(raw) : undefined;
    if (text === undefined || !isIdentifierTypeName(id.type)) return undefined;
    let value = text.normalize('NFC').trim();
    // A lone surrogate would be hashed as U+FFFD, and so name whoever holds the id with U+FFFD in its place.
    if (unusableText(value) !== undefined) return undefined;
    if (id.type === 'email') {
      value = value.toLowerCase();
      if (!EMAIL.test(value)) return undefined;
    } else if (id.type === 'phone') {
      value = normalizePhone(value) ?? '';
      if (!PHONE.test(value)) return undefined;
    }
    if (this.isBlocked(id.type, value)) return undefined;
    return { type: id.type, value };
  }
}

/** `+44 (20) 7946-0018` → `+442079460018`; `0044…` → `+44…`; digits without a prefix get a `+`. */
function normalizePhone(value: string): string | undefined {
  const compact = value.replace(/[\s().\-/]/g, '');
  if (compact.startsWith('+')) return compact;
  if (compact.startsWith('00')) return '+' + compact.slice(2);
  return /^\d+$/.test(compact) ? '+' + compact : undefined;
}
