// Phone numbers as identifiers: read by libphonenumber (its metadata knows each country's calling code, national
// prefix and possible lengths), written as E.164, so one number written several ways is one identifier.
import { findPhoneNumbersInText, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import { makeRoom } from '../../shared/make-room.ts';

/** A phone number read as an identifier: its E.164 form and its national significant number (after the country code). */
export interface ParsedPhone {
  readonly e164: string;
  readonly national: string;
}

/** libphonenumber's reader and finder, behind a seam so that tests can count how often numbers are read. */
export const phoneLibrary = { parse: parsePhoneNumberFromString, find: findPhoneNumbersInText };

/** Characters that are no part of a number: zero-width characters and the soft hyphen. */
export const INVISIBLE = /[\u00ad\u200b-\u200d\u2060\ufeff]/g;
/** Dashes of every kind (en dash, non-breaking hyphen, minus sign …) and spaces of every width. */
const DASHES = /[\p{Pd}\u2212]/gu;
const SEPARATORS = /[\s().\-/]/g;
/** A run of `+` (`++44…`), read as one. */
const PLUSES = /\+{2,}/g;
const DIGIT = /\p{Nd}/u;
/**
 * Characters of a text searched for numbers (`phonesWithin`): libphonenumber takes about 15 µs per character of a text
 * of digits and separators, and two numbers with extensions and labels fit.
 */
const MAX_SEARCHED = 100;
/** Longest text read as a number, separators left out (E.164 has at most 15 digits; an international prefix adds a few). */
const MAX_DIGITS = 20;
/**
 * How many readings a PhoneReader keeps: the reads of one batch; later repeats are answered by the service's cache of
 * prepared identifiers. Kept small: holding 10,000 made each new number about 2 µs slower.
 */
const READINGS = 1_000;

/**
 * What `parsePhone` hands libphonenumber for the text: the number in international form (`+…`), or its digits, read as
 * a national number of `region`; undefined when the text is no number by its characters alone.
 */
function phoneInput(text: string, region: CountryCode | undefined): string | undefined {
  let value = text.normalize('NFKC').replace(INVISIBLE, '').replace(DASHES, '-').trim();
  if (/^tel:/i.test(value)) value = value.slice(4);
  const compact = value.replace(SEPARATORS, '');
  if (!/^(\+|00)?\d+$/.test(compact) || compact.length > MAX_DIGITS) return undefined;
  if (compact.startsWith('+')) return compact;
  if (compact.startsWith('00')) return `+${compact.slice(2)}`;
  return region === undefined ? undefined : compact;
}

/** libphonenumber's reading of a `phoneInput`: international (`+…`), else national in `region`. */
function readInput(input: string, region: CountryCode | undefined): ParsedPhone | undefined {
  const phone = input.startsWith('+') ? phoneLibrary.parse(input) : phoneLibrary.parse(input, region);
  if (phone === undefined || phone.ext !== undefined || !phone.isPossible()) return undefined;
  return { e164: phone.number, national: phone.nationalNumber };
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
  const input = phoneInput(text, region);
  return input === undefined ? undefined : readInput(input, region);
}

/** The text up to its last digit before the last `digits` digits: a number without the extension libphonenumber read after it. */
function withoutLastDigits(text: string, digits: number): string {
  let left = digits;
  for (let i = text.length - 1; i >= 0; i--) {
    if (DIGIT.test(text[i] as string) && left-- === 0) return text.slice(0, i + 1);
  }
  return text;
}

/**
 * The phone numbers libphonenumber finds in a text's first MAX_SEARCHED characters (any possible number; a national one
 * only with `region`), each as the text of the number alone, without extension or label (`+44 (0)20 7946 0018` of
 * `Tel. +44 (0)20 7946 0018 x12`), or its E.164 form where `read` does not read that text as the same number; each
 * once. The text is read as `parsePhone` reads it (NFKC, invisible characters dropped, a leading `00` as `+`), a run of
 * `+` as one.
 */
function findPhones(text: string, region: CountryCode | undefined, read: (text: string) => ParsedPhone | undefined): string[] {
  let value = text.normalize('NFKC').replace(INVISIBLE, '').replace(DASHES, '-').replace(PLUSES, '+').trim();
  if (value.startsWith('00')) value = `+${value.slice(2)}`;
  value = value.slice(0, MAX_SEARCHED);
  const found: string[] = [];
  for (const match of phoneLibrary.find(value, region === undefined ? { extended: true } : { defaultCountry: region, extended: true })) {
    const written = value.slice(match.startsAt, match.endsAt);
    const number = match.number.ext === undefined ? written.trim() : withoutLastDigits(written, match.number.ext.length);
    const phone = read(number)?.e164 === match.number.number ? number : match.number.number;
    if (!found.includes(phone)) found.push(phone);
  }
  return found;
}

/**
 * The phone numbers written in a text that is no number itself (`parsePhone` refuses it): with an extension
 * (`+44 20 7946 0018 x12`, `…;ext=12`), a label (`Tel. +44…`, `+44… (mobile)`), a doubled `+`, several numbers. Each is
 * the text of the number alone (read by `parsePhone` as the number found, its legacy form that of this text) or its
 * E.164 form. Such a text is no identifier: this is for the suppression check only.
 */
export function phonesWithin(text: string, region: CountryCode | undefined): string[] {
  return findPhones(text, region, (number) => parsePhone(number, region));
}

/**
 * `parsePhone` in one region that keeps libphonenumber's last READINGS readings (oldest out first), keyed by what
 * libphonenumber was handed: a new number is read once, though normalization and its legacy form ask for it up to three
 * times, and spellings of one number (`+44 (0)20 7946 0018`, its legacy form `+4402079460018`) share one reading.
 */
export class PhoneReader {
  readonly #region: CountryCode | undefined;
  /** Input → reading; null for a number libphonenumber refused. Oldest first: room is made with makeRoom. */
  readonly #readings = new Map<string, ParsedPhone | null>();
  readonly #limit: number;
  /** Text → the numbers found in it (`within`), oldest first like #readings. */
  readonly #found = new Map<string, readonly string[]>();

  constructor(region: CountryCode | undefined, limit = READINGS) {
    this.#region = region;
    this.#limit = limit;
  }

  /** `parsePhone(text, region)`, read by libphonenumber only if this input was not read lately. */
  read(text: string): ParsedPhone | undefined {
    const input = phoneInput(text, this.#region);
    if (input === undefined) return undefined;
    const known = this.#readings.get(input);
    if (known !== undefined) return known ?? undefined;
    const phone = readInput(input, this.#region);
    makeRoom(this.#readings, this.#limit);
    this.#readings.set(input, phone ?? null);
    return phone;
  }

  /** `phonesWithin(text, region)`, found by libphonenumber only if this text was not searched lately. */
  within(text: string): readonly string[] {
    const known = this.#found.get(text);
    if (known !== undefined) return known;
    const found = findPhones(text, this.#region, (number) => this.read(number));
    makeRoom(this.#found, this.#limit);
    this.#found.set(text, found);
    return found;
  }
}

/** The separators the legacy normalization removed (JavaScript's `\s`: white space, Unicode spaces included). */
const LEGACY_SEPARATORS = /[\s().\-/]/g;
const LEGACY_E164 = /^\+\d{7,15}$/;

/**
 * A phone number's LEGACY form: the number as releases before libphonenumber (up to 4b72e03) normalized it, and so as
 * they stored its pseudonym and put it on the suppression list. Kept unchanged, only to find what those releases
 * stored; new identifiers are never stored in it. NFC, trimmed, white space, parentheses, dots, dashes and slashes
 * removed; a leading `00` read as `+`; bare digits given a `+`; then `+` and 7 to 15 digits, or undefined. It differs
 * from `parsePhone` for a trunk prefix after the country code (`+44 (0)20 7946 0018` was `+4402079460018`, now
 * `+442079460018`), for a number without `+` or `00` (`4155550123` was `+4155550123`; now refused, or `+14155550123`
 * in region US), and for numbers libphonenumber refuses (`+5215512345678`, `+12345678`).
 */
export function legacyPhone(text: string): string | undefined {
  const compact = text.normalize('NFC').trim().replace(LEGACY_SEPARATORS, '');
  const value = compact.startsWith('+') ? compact : compact.startsWith('00') ? `+${compact.slice(2)}` : /^\d+$/.test(compact) ? `+${compact}` : undefined;
  return value !== undefined && LEGACY_E164.test(value) ? value : undefined;
}
