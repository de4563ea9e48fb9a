import { isSupportedCountry, type CountryCode } from 'libphonenumber-js';

/**
 * Whether a code names a region libphonenumber knows (ISO 3166-1 alpha-2, upper case as ISO writes them: `US`, `GB`;
 * a lower-case `us` would be a second spelling to document and match). Shared by the configuration's check and the
 * identity module.
 */
export function isPhoneRegion(code: string): code is CountryCode {
  return /^[A-Z]{2}$/.test(code) && isSupportedCountry(code);
}
