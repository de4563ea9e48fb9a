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
