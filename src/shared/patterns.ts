/**
 * Whether a configured blocked-value pattern compiles as the identity module uses it (a regular expression, matched
 * case-insensitively).
 */
export function compilesAsBlockedPattern(source: string): boolean {
  try {
    new RegExp(source, 'i');
    return true;
  } catch {
    return false;
  }
}

/** Identifier types of the identity graph: the built-in ones and `custom:<name>`. */
const IDENTIFIER_TYPE = /^(user_id|anonymous_id|email|phone|custom:[a-z0-9][a-z0-9_.-]{0,63})$/;

/** Whether a string names an identifier type the identity graph accepts. */
export function isIdentifierTypeName(type: string): boolean {
  return IDENTIFIER_TYPE.test(type);
}

/** Whether a key of the merge rules' limits and priority names identifier types: a type, or `custom:*` for all custom ones. */
export function isRuleTypeKey(key: string): boolean {
  return IDENTIFIER_TYPE.test(key) || key === 'custom:*';
}
