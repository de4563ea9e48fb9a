/**
 * The `identityRules` setting: changes to the identity graph's merge rules (blocked values and patterns, limits per
 * type, priority, the default region of phone numbers), checked when the configuration loads and applied over the
 * identity module's defaults by the kernel.
 */

import { isPhoneRegion } from '../shared/phone-region.ts';
import { compilesAsBlockedPattern, isRuleTypeKey } from '../shared/patterns.ts';
import { isRecord } from '../shared/objects.ts';

/** The shape of the identity module's merge rules (config depends on no module, so it is restated here). */
export interface IdentityRulesShape {
  blockedValues: Record<string, readonly string[]>;
  blockedPatterns?: Record<string, readonly string[]>;
  limits: Record<string, number>;
  priority: readonly string[];
  defaultPhoneRegion?: string;
}

/** What the setting changes; keys left out keep the defaults. */
export interface IdentityRulesSetting {
  /** Drop the built-in blocked values and patterns; only those given here apply. */
  readonly replaceDefaultBlocked?: boolean;
  /** Added to the built-in blocked values of the same key. */
  readonly blockedValues?: Readonly<Record<string, readonly string[]>>;
  /** Regular expressions (case-insensitive), added to the built-in patterns of the same key. */
  readonly blockedPatterns?: Readonly<Record<string, readonly string[]>>;
  /** Replace the limit of each type given; other types keep theirs. */
  readonly limits?: Readonly<Record<string, number>>;
  /** Replaces the whole priority order. */
  readonly priority?: readonly string[];
  /** Region (ISO 3166-1 alpha-2, upper case) phone numbers written without `+` or `00` are read in. */
  readonly defaultPhoneRegion?: string;
}

/** One problem of the setting: where (a path inside it), a stable code, and what is wrong. Never the value. */
export interface IdentityRulesProblem {
  path: string;
  code:
    | 'IDENTITY_RULES_NOT_OBJECT'
    | 'IDENTITY_RULES_KEY_UNKNOWN'
    | 'IDENTITY_RULES_TYPE_UNKNOWN'
    | 'IDENTITY_RULES_VALUE_INVALID'
    | 'IDENTITY_RULES_PATTERN_INVALID'
    | 'IDENTITY_RULES_LIMIT_INVALID'
    | 'IDENTITY_RULES_PRIORITY_INVALID'
    | 'IDENTITY_RULES_REGION_INVALID';
  problem: string;
}

const isBlockKey = (key: string) => isRuleTypeKey(key) || key === '*';
const KEYS = ['replaceDefaultBlocked', 'blockedValues', 'blockedPatterns', 'limits', 'priority', 'defaultPhoneRegion'];

/** Checks the setting's value (already parsed from JSON) and returns it typed, or every problem found. */
export function parseIdentityRules(raw: unknown): { setting: IdentityRulesSetting; problems: IdentityRulesProblem[] } {
  const problems: IdentityRulesProblem[] = [];
  if (!isRecord(raw)) return { setting: {}, problems: [{ path: '', code: 'IDENTITY_RULES_NOT_OBJECT', problem: 'must be a JSON object' }] };
  for (const key of Object.keys(raw)) {
    if (!KEYS.includes(key)) problems.push({ path: key, code: 'IDENTITY_RULES_KEY_UNKNOWN', problem: `is not one of ${KEYS.join(', ')}` });
  }
  const setting: { -readonly [K in keyof IdentityRulesSetting]: IdentityRulesSetting[K] } = {};

  if (raw.replaceDefaultBlocked !== undefined) {
    if (typeof raw.replaceDefaultBlocked === 'boolean') setting.replaceDefaultBlocked = raw.replaceDefaultBlocked;
    else problems.push({ path: 'replaceDefaultBlocked', code: 'IDENTITY_RULES_VALUE_INVALID', problem: 'must be true or false' });
  }

  const lists = (name: 'blockedValues' | 'blockedPatterns'): Record<string, string[]> | undefined => {
    const value = raw[name];
    if (value === undefined) return undefined;
    if (!isRecord(value)) {
      problems.push({ path: name, code: 'IDENTITY_RULES_NOT_OBJECT', problem: 'must be an object of lists keyed by identifier type' });
      return undefined;
    }
    const out: Record<string, string[]> = {};
    for (const [type, list] of Object.entries(value)) {
      const path = `${name}.${type}`;
      if (!isBlockKey(type)) {
        problems.push({ path, code: 'IDENTITY_RULES_TYPE_UNKNOWN', problem: 'must be user_id, anonymous_id, email, phone, custom:<name>, custom:* or *' });
        continue;
      }
      if (!Array.isArray(list)) {
        problems.push({ path, code: 'IDENTITY_RULES_VALUE_INVALID', problem: 'must be a list of strings' });
        continue;
      }
      list.forEach((item: unknown, index) => {
        if (typeof item !== 'string') {
          problems.push({ path: `${path}[${index}]`, code: 'IDENTITY_RULES_VALUE_INVALID', problem: 'must be a string' });
        } else if (name === 'blockedPatterns' && !compilesAsBlockedPattern(item)) {
          problems.push({ path: `${path}[${index}]`, code: 'IDENTITY_RULES_PATTERN_INVALID', problem: 'must be a valid regular expression' });
        }
      });
      out[type] = list.filter((item): item is string => typeof item === 'string');
    }
    return out;
  };
  const blockedValues = lists('blockedValues');
  if (blockedValues) setting.blockedValues = blockedValues;
  const blockedPatterns = lists('blockedPatterns');
  if (blockedPatterns) setting.blockedPatterns = blockedPatterns;

  if (raw.limits !== undefined) {
    if (!isRecord(raw.limits)) {
      problems.push({ path: 'limits', code: 'IDENTITY_RULES_NOT_OBJECT', problem: 'must be an object of whole numbers keyed by identifier type' });
    } else {
      const limits: Record<string, number> = {};
      for (const [type, limit] of Object.entries(raw.limits)) {
        if (!isRuleTypeKey(type)) problems.push({ path: `limits.${type}`, code: 'IDENTITY_RULES_TYPE_UNKNOWN', problem: 'must be user_id, anonymous_id, email, phone, custom:<name> or custom:*' });
        else if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) problems.push({ path: `limits.${type}`, code: 'IDENTITY_RULES_LIMIT_INVALID', problem: 'must be a whole number of at least 1' });
        else limits[type] = limit;
      }
      setting.limits = limits;
    }
  }

  if (raw.priority !== undefined) {
    if (!Array.isArray(raw.priority) || raw.priority.length === 0) {
      problems.push({ path: 'priority', code: 'IDENTITY_RULES_PRIORITY_INVALID', problem: 'must be a non-empty list of identifier types' });
    } else {
      const seen = new Set<string>();
      raw.priority.forEach((type: unknown, index) => {
        if (typeof type !== 'string' || !isRuleTypeKey(type)) problems.push({ path: `priority[${index}]`, code: 'IDENTITY_RULES_TYPE_UNKNOWN', problem: 'must be user_id, anonymous_id, email, phone, custom:<name> or custom:*' });
        else if (seen.has(type)) problems.push({ path: `priority[${index}]`, code: 'IDENTITY_RULES_PRIORITY_INVALID', problem: 'is listed twice' });
        seen.add(String(type));
      });
      setting.priority = raw.priority.filter((type): type is string => typeof type === 'string');
    }
  }

  if (raw.defaultPhoneRegion !== undefined) {
    const region = raw.defaultPhoneRegion;
    if (typeof region === 'string' && isPhoneRegion(region)) setting.defaultPhoneRegion = region;
    else problems.push({ path: 'defaultPhoneRegion', code: 'IDENTITY_RULES_REGION_INVALID', problem: 'must be a region code with a telephone numbering plan (ISO 3166-1 alpha-2, upper case, e.g. US)' });
  }
  return { setting, problems };
}

/** The merge rules in force: the defaults (the identity module's) with the setting applied over them. */
export function applyIdentityRules(defaults: IdentityRulesShape, setting: IdentityRulesSetting): IdentityRulesShape {
  const replace = setting.replaceDefaultBlocked === true;
  const union = (base: Readonly<Record<string, readonly string[]>> | undefined, extra: Readonly<Record<string, readonly string[]>> | undefined) => {
    const out: Record<string, readonly string[]> = replace ? {} : { ...base };
    for (const [type, list] of Object.entries(extra ?? {})) out[type] = [...new Set([...(out[type] ?? []), ...list])];
    return out;
  };
  return {
    blockedValues: union(defaults.blockedValues, trimmed(setting.blockedValues)),
    blockedPatterns: union(defaults.blockedPatterns, setting.blockedPatterns),
    limits: { ...defaults.limits, ...setting.limits },
    priority: setting.priority ?? defaults.priority,
    ...(setting.defaultPhoneRegion ?? defaults.defaultPhoneRegion ? { defaultPhoneRegion: setting.defaultPhoneRegion ?? defaults.defaultPhoneRegion } : {}),
  };
}

// Values are compared with normalized (trimmed, NFC) identifiers, so a configured value is normalized the same way
// (phone numbers are read as numbers, with the region in force, when the identity module compiles the rules).
function trimmed(lists: Readonly<Record<string, readonly string[]>> | undefined): Record<string, readonly string[]> | undefined {
  return lists && Object.fromEntries(Object.entries(lists).map(([type, list]) => [type, list.map((v) => v.normalize('NFC').trim())]));
}
