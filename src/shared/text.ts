/** Control characters (NUL included, which PostgreSQL cannot store in text). */
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Why a text that names something or is kept as given (an id, an event name, a consent's source) cannot be, or
 * undefined: a control character, or half of a surrogate pair (two different such ids would become the same text once
 * encoded, and so the same person). Ingestion and the consent endpoints refuse the same texts through this one check.
 */
export function unusableText(text: string): string | undefined {
  if (!text.isWellFormed()) return 'not well-formed Unicode';
  if (CONTROL.test(text)) return 'a control character';
  return undefined;
}
