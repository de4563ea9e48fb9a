import { compilesAsBlockedPattern, isIdentifierTypeName, isRuleTypeKey } from '../../shared/patterns.ts';
import { CandorError } from '../../shared/errors.ts';
import { unusableText } from '../../shared/text.ts';
import type { CountryCode } from 'libphonenumber-js';
import { isPhoneRegion } from '../../shared/phone-region.ts';
import { INVISIBLE, legacyPhone, parsePhone, PhoneReader } from './identity.phone.ts';

/** An identifier as it arrives: `user_id`, `anonymous_id`, `email`, `phone` or `custom:<name>`, and its value. */
export interface Identifier {
  type: string;
  value: string;
  /**
   * Another type the value is checked under on the suppression list, never linked as: an alias's previousId is linked
   * as an anonymous id but may be the user id of someone erased.
   */
  alsoSuppressedAs?: string;
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
  /** Region (ISO 3166-1 alpha-2, e.g. `US`) of phone numbers written without `+` or `00`; without it they are refused. */
  defaultPhoneRegion?: string;
}

export const DEFAULT_IDENTITY_RULES: IdentityRules = {
  // Compared NFKC, without zero-width characters, trimmed and lower-cased, and also without one pair of quotes or
  // brackets around the value: `"null"`, `(null)`, `<nil>` and `ｎｕｌｌ` are `null`.
  blockedValues: {
    '*': ['null', 'undefined', 'unknown', 'none', 'nil', 'nan', '0', '-1', 'n/a', 'na', 'n.a.', 'n.a', '#n/a', '-', '', 'true', 'false', '[object object]', 'anonymous', 'guest', 'test', '00000000-0000-0000-0000-000000000000', '00000000000000000000000000000000'],
    email: ['test@test.com', 'test@example.com', 'noreply@example.com', 'no-reply@example.com', 'user@example.com', 'email@example.com', 'a@a.com'],
  },
  blockedPatterns: {
    // Any address at example.com/.org/.net or a subdomain, and the top-level domains reserved for tests and examples
    // (RFC 2606, RFC 6761).
    email: ['[@.]example\\.(com|org|net)$', '^(no[-_.]?reply|do[-_.]?not[-_.]?reply)@', '\\.(test|invalid|localhost|example)$'],
    // All one digit repeated; phone patterns are matched against the E.164 number and the national number, so
    // `+1 555-555-5555` and `+1 (000) 000-0000` are caught by their national digits.
    phone: ['^\\+?(\\d)\\1+$'],
  },
  limits: { user_id: 1, email: 5, phone: 5 },
  priority: ['user_id', 'email', 'phone', 'custom:*', 'anonymous_id'],
};

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** A value wrapped in one pair of quotes or brackets. */
const WRAPPED = /^(?:"(.*)"|'(.*)'|\((.*)\)|<(.*)>|\[(.*)\]|\{(.*)\})$/s;

/** The form blocked values are compared in: NFKC (fullwidth as plain), without invisible characters, trimmed, lower case. */
function comparable(value: string): string {
  return value.normalize('NFKC').replace(INVISIBLE, '').trim().toLowerCase();
}

/** The comparable form and, if it is wrapped in quotes or brackets, the comparable form of what is inside. */
function comparableForms(value: string): string[] {
  const form = comparable(value);
  const inner = WRAPPED.exec(form)?.slice(1).find((group) => group !== undefined);
  return inner === undefined ? [form] : [form, inner.trim()];
}

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
  if (rules.defaultPhoneRegion !== undefined && !isPhoneRegion(rules.defaultPhoneRegion)) {
    problems.push({ path: 'defaultPhoneRegion', problem: 'must be a region code (ISO 3166-1 alpha-2, upper case, e.g. US)' });
  }
  return problems;
}


/** The rules compiled for fast checks: lower-cased sets, compiled patterns, priority ranks. */
export class CompiledRules {
  readonly rules: IdentityRules;
  readonly #blocked = new Map<string, ReadonlySet<string>>();
  /** The E.164 form of every blocked value (of `phone` or `*`) that is a phone number, as identifiers are compared. */
  readonly #blockedPhones = new Set<string>();
  readonly #patterns = new Map<string, readonly RegExp[]>();
  readonly #rank = new Map<string, number>();
  readonly #region: CountryCode | undefined;
  /** Reads phone numbers in #region, each new one by libphonenumber once (normalize and legacy both ask for it). */
  readonly #phones: PhoneReader;

  /** Compiles the rules; rules with problems are refused (`CONFIG_INVALID`, problems under `identityRules`). */
  constructor(rules: IdentityRules) {
    const problems = identityRulesProblems(rules);
    if (problems.length > 0) throw new CandorError('CONFIG_INVALID', { problems: problems.map((p) => ({ key: 'identityRules', ...p })) });
    this.rules = rules;
    this.#region = rules.defaultPhoneRegion as CountryCode | undefined;
    this.#phones = new PhoneReader(this.#region);
    for (const [type, values] of Object.entries(rules.blockedValues)) {
      this.#blocked.set(type, new Set(values.map(comparable)));
      if (type !== 'phone' && type !== '*') continue;
      // A configured number is read like an identifier: `+1 (555) 010-0100` blocks `+15550100100`.
      for (const value of values) {
        const phone = parsePhone(value, this.#region);
        if (phone) this.#blockedPhones.add(phone.e164);
      }
    }
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

  /**
   * Whether a normalized value is blocked for its type: on a blocked list (compared NFKC, without invisible characters,
   * case-insensitively, and also without one pair of quotes or brackets around it) or matching a blocked pattern. A
   * phone number is also compared by E.164 with configured numbers, and its patterns are matched against `national`.
   */
  isBlocked(type: string, value: string, national?: string): boolean {
    const forms = comparableForms(value);
    if (type === 'phone' && this.#blockedPhones.has(value)) return true;
    for (const key of this.#keysOf(type)) {
      const blocked = this.#blocked.get(key);
      if (blocked && forms.some((form) => blocked.has(form))) return true;
      const patterns = this.#patterns.get(key);
      if (patterns?.some((p) => p.test(value) || (forms[0] !== value && p.test(forms[0] as string)) || (national !== undefined && p.test(national)))) return true;
    }
    return false;
  }

  /**
   * Trims (and NFC-normalizes) the value; e-mail addresses are lower-cased, phone numbers read by libphonenumber and
   * written as E.164 (`parsePhone`, national numbers only with `defaultPhoneRegion`). Returns undefined for an unknown
   * type, a value ingestion refuses as a name (`unusableText`: half of a surrogate pair, a control character), a
   * malformed e-mail or phone number, or a blocked value.
   */
  normalize(id: Identifier): Identifier | undefined {
    let value = usableText(id.value);
    if (value === undefined || !isIdentifierTypeName(id.type)) return undefined;
    if (id.type === 'email') {
      value = value.toLowerCase();
      if (!EMAIL.test(value)) return undefined;
    } else if (id.type === 'phone') {
      const phone = this.#phones.read(value);
      if (phone === undefined || this.isBlocked(id.type, phone.e164, phone.national)) return undefined;
      return { type: id.type, value: phone.e164 };
    }
    if (this.isBlocked(id.type, value)) return undefined;
    return { type: id.type, value };
  }

  /**
   * A phone number's LEGACY form (`legacyPhone`: how releases before libphonenumber stored it) when it differs from
   * `normalized` (what `normalize` made of `id`), also when libphonenumber refused the number as malformed; undefined
   * for other types, for a legacy form equal to the normalized one or blocked, and for a number blocked now.
   * `matchable` is false when the legacy form is itself a number in E.164 form, which this release stores for whoever
   * has that number (`(479) 123-4467` was `+4791234467`, a Norwegian number): such a form may be someone else's.
   */
  legacy(id: Identifier, normalized: Identifier | undefined): { id: Identifier; matchable: boolean } | undefined {
    if (id.type !== 'phone') return undefined;
    const value = usableText(id.value);
    if (value === undefined) return undefined;
    // Refused as blocked (a placeholder such as +1 (000) 000-0000), not as malformed: no form of it links anyone.
    if (normalized === undefined && this.#phones.read(value) !== undefined) return undefined;
    const legacy = legacyPhone(value);
    if (legacy === undefined || legacy === normalized?.value || this.isBlocked(id.type, legacy)) return undefined;
    // A legacy form starts with `+`: the default region plays no part in reading it.
    return { id: { type: id.type, value: legacy }, matchable: this.#phones.read(legacy)?.e164 !== legacy };
  }

  /**
   * The phone numbers written in a phone value that is no number itself (`phonesWithin`: with an extension, a label, a
   * doubled `+`), as phone identifiers of the number alone, for the suppression check only: such a value links no one.
   * Empty for other types and for a value that reads as one number (refused because blocked).
   */
  phonesWithin(id: Identifier): Identifier[] {
    if (id.type !== 'phone' || typeof id.value !== 'string' || this.#phones.read(id.value) !== undefined) return [];
    return this.#phones.within(id.value).map((value) => ({ type: id.type, value }));
  }
}

/**
 * An identifier's value as text, NFC and trimmed (a finite number as its decimal text), or undefined when it is
 * neither or holds what ingestion refuses in a name: a lone surrogate would be hashed as U+FFFD, and so name whoever
 * holds the id with U+FFFD in its place.
 */
function usableText(raw: unknown): string | undefined {
  const text = typeof raw === 'string' ? raw : typeof raw === 'number' && Number.isFinite(raw) ? String(raw) : undefined;
  if (text === undefined) return undefined;
  const value = text.normalize('NFC').trim();
  return unusableText(value) === undefined ? value : undefined;
}
