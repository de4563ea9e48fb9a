import type { Ajv } from 'ajv';
import { unusableText } from '../shared/text.ts';

/**
 * Schema formats of the text a request names or stores as given, registered with the server's validators: text
 * ingestion would refuse (`unusableText`: a control character, half of a surrogate pair) is answered
 * REQUEST_VALIDATION_FAILED, rule `format`, on both databases (PostgreSQL cannot hold a NUL; both turn half a pair into
 * U+FFFD). Every free-text field and filter of a schema declares one of them.
 */
export const TEXT_FORMATS = {
  /** A name, label, key or filter: one line, no control character. */
  line: 'single-line',
  /** Prose (a description, a notice, a reason): tabs and line breaks too, no other control character. */
  prose: 'multi-line',
} as const;

const LINE_BREAKS_AND_TABS = /[\t\n\r]/g;

/** Registers the text formats with a validator the server compiles request schemas with. */
export function addTextFormats(ajv: Ajv): Ajv {
  ajv.addFormat(TEXT_FORMATS.line, { type: 'string', validate: (text: string) => unusableText(text) === undefined });
  ajv.addFormat(TEXT_FORMATS.prose, { type: 'string', validate: (text: string) => unusableText(text.replace(LINE_BREAKS_AND_TABS, ' ')) === undefined });
  return ajv;
}

/** A string of one line: spread into a property's schema with its length limits. */
export const LINE = { type: 'string', format: TEXT_FORMATS.line } as const;
/** A string of prose: spread into a property's schema with its length limits. */
export const PROSE = { type: 'string', format: TEXT_FORMATS.prose } as const;
