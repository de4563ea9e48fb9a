// Phone numbers as identifiers: read by libphonenumber (its metadata knows each country's calling code, national
// prefix and possible lengths), written as E.164, so one number written several ways is one identifier.
import { isSupportedCountry, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/** A phone number read as an identifier: its E.164 form and its national significant number (after the country code). */
export interface ParsedPhone {
  e164: string;
  national: string;
}

/** Characters that are no part of a number: zero-width characters and the soft hyphen. */
const INVISIBLE = /[\u00ad\u200b-\u200d\u2060\ufeff]/g;
/** Dashes of every kind (en dash, non-breaking hyphen, minus sign …) and spaces of every width. */
const DASHES = /[\p{Pd}\u2212]/gu;
const SEPARATORS = /[\s().\-/]/g;
/** Longest text read as a number, separators left out (E.164 has at most 15 digits; an international prefix adds a few). */
const MAX_DIGITS = 20;

/** Whether a code names a region libphonenumber knows (ISO 3166-1 alpha-2, upper case: `US`, `GB`). */
export function isPhoneRegion(code: string): code is CountryCode {
  return /^[A-Z]{2}$/.test(code) && isSupportedCountry(code);
}

/**
 * The number in E.164 form (`+442079460018`), or undefined when the text is no phone number: anything but digits,
 * one leading `+` and separators (spaces, dashes of any kind, dots, slashes, parentheses), an extension, a number
 * whose length is not possible for its country, or an unknown country code. Compatibility forms (fullwidth digits) are
 * read as plain ones (NFKC), invisible characters dropped, and a `tel:` URI without parameters read as its number.
 * `00` before the country code counts as `+`; a number without either is read as a national number of `region`,
 * and refused without one (`(479) 123-4467` is no Norwegian `+47…`).
 */
export function parsePhone(text: string, region: CountryCode | undefined): ParsedPhone | undefined {
  let value = text.normalize('NFKC').replace(INVISIBLE, '').replace(DASHES, '-').trim();
  if (/^tel:/i.test(value)) value = value.slice(4);
  const compact = value.replace(SEPARATORS, '');
  if (!/^(\+|00)?\d+$/.test(compact) || compact.length > MAX_DIGITS) return undefined;
  const international = compact.startsWith('+') ? compact : compact.startsWith('00') ? `+${compact.slice(2)}` : undefined;
  if (international === undefined && region === undefined) return undefined;
  const phone = international === undefined ? parsePhoneNumberFromString(compact, region) : parsePhoneNumberFromString(international);
  if (phone === undefined || phone.ext !== undefined || !phone.isPossible()) return undefined;
  return { e164: phone.number, national: phone.nationalNumber };
}
