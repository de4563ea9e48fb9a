// CSV import: customer lists (one identify call per row) and event files such as order histories (one track, page
// or screen call per row; consecutive lines of one order become one Order Completed event with products[]), streamed
// in batches through the same pipeline as the HTTP API: tracking plan, consent gate, suppression list, identity,
// encryption, durable store. The import itself holds one batch, one open order and the keys of the latest orders it
// closed (MAX_CLOSED_ORDERS) whatever the file's length; the kernel's caches (people, consent states, data keys, SQLite pages) grow with the people it names up to their limits.
//
// Mapping rules:
// - Header names are trimmed; an empty name leaves its column out; a name given twice (in any case) refuses the file.
// - customers: the user id is user_id (else userId, customer_id, id: the first of them in the header), then
//   anonymous_id, message_id, timestamp; every other column is a trait of the same name (email and phone in any case).
// - events: event, or type (track, page, screen; track by default) with name for pages and screens; user_id (userId,
//   customer_id), anonymous_id, timestamp, message_id; every other column is a property of the same name. A track row
//   without an event but with an order_id is Order Completed. Consecutive Order Completed rows with the same order_id
//   (and ids, or no ids at all: an export that fills them on an order's first line only) are one event: order-level
//   values from its first line, the product_* cells of each line one products[] item (product_id stays, product_name →
//   name, product_price → price, product_quantity → quantity, …). Lines of an order that come after another order's
//   (a file sorted by date) are reported IMPORT_ORDER_NOT_CONSECUTIVE, not stored as a second order: the import
//   remembers the last MAX_CLOSED_ORDERS orders it closed.
// - A non-empty cell in a `__proto__` column (product___proto__ in an order) refuses its row (its order), as HTTP
//   refuses a message holding that key: REQUEST_FORBIDDEN_KEY with the field's path.
// - Cells are trimmed and empty cells left out. A cell becomes a number only where the tracking plan declares that
//   field number or integer (and not also string) and the cell is a plain decimal (1234.5, -3, 1e3; not 1,234.50);
//   true/false become booleans where the plan declares boolean. The rest stays text, for the plan to judge; the plan
//   keeps declared fields and drops the others (counted for the summary).
// - A customers row without a timestamp cell is dated by the import's as-of time (default: when the run starts; the
//   CLI's: the file's modification time): a list says what was true when it was exported, so a later list can set a
//   trait back to an earlier value, and a list older than the stored values changes none of them.
// - The message id is the message_id cell, else `imp_` + a keyed HMAC (the pseudonym key) of kind, source and a
//   SHA-256 of the row's non-empty cells by column name, for customers rows also of the row's time and the claimed
//   basis and purposes, for an order of its order_id and its first line's ids instead: importing the same rows again
//   stores nothing twice, nor do lines of an order stored before (another file, more line items), a customer list of
//   another date or on a wider basis stores again (an event, a fact, is stored once whatever the basis), and the id
//   reveals nothing of the row.
// - A row's number is the line of the file its record starts on (blank lines before it are not part of it), the header
//   being row 1; a line ends at LF, CRLF or a lone CR, inside quoted fields too.
// - The file is UTF-8 (a byte order mark is allowed): the import stops at the row holding the first byte that is not.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { pipeline, Transform, type Readable } from 'node:stream';
import type { Parser } from 'csv-parse';
import type { Actor } from '../../shared/actor.ts';
import type { ErrorCode } from '../../shared/error-codes.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import { isoTime } from '../../shared/iso-time.ts';
import type { Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import { refreshConfiguration, type Catalog, type KeptField, type OutlineSection, type PlanResult } from '../catalog/index.ts';
import { CONFIGURED_BASES, type ConfiguredBasis, type Consent, type Decision } from '../consent/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Identity, Resolution, ResolveItem } from '../identity/index.ts';
import type { Taxonomy } from '../taxonomy/index.ts';
import { messageKey } from './collect.repo.ts';
import { describesBy, fieldAllowed, mergeSurvivors, ResolveAgain, servedPurposes, type Collector, type DescribesCategory, type ItemResult, type ItemStatus } from './collect.service.ts';
import { identifiersOf, MAX_EVENT_BYTES, parseMessage, planInput, type ParsedMessage, type RawIdentifier } from './segment.ts';

export type ImportKind = 'customers' | 'events';

export interface CsvImportDeps {
  storage: Storage;
  audit: AuditLog;
  keyring: Keyring;
  catalog: Catalog;
  consent: Consent;
  identity: Identity;
  collect: Collector;
  taxonomy: Taxonomy;
}

export interface CsvImportOptions {
  kind: ImportKind;
  /** The source the rows are stored under (as a write key's source is). */
  source: string;
  /** The lawful basis the business claims for the records: consent, contract, legal_obligation, legitimate_interests. */
  basis: string;
  /** With basis consent: the purposes each imported person consented to (recorded with mechanism `import`). */
  purposes?: readonly string[] | undefined;
  jurisdiction?: string | undefined;
  noticeVersion?: number | undefined;
  /** Rows per batch through the pipeline (default 500). */
  batchSize?: number | undefined;
  /** Read, map and check every row against the plan and the purposes' bases; write nothing. */
  dryRun?: boolean | undefined;
  actor: Actor;
  /** Largest row in bytes (default 1 MiB): past it, a quote that is never closed would swallow the rest of the file. */
  maxRowBytes?: number | undefined;
  /**
   * customers: the time the list is as of (ISO 8601, not later than now; default: when the run starts): the time of
   * every row without a timestamp cell, and part of its derived message id.
   */
  asOf?: string | undefined;
}

/** What the basis of an import lets through the consent gate, and its as-of time, to tell the operator before the first row. */
export interface ImportBasis {
  basis: ConfiguredBasis;
  /** customers: the time of the rows without a timestamp cell (ISO 8601, UTC): the option's, else when it was checked. */
  asOf?: string;
  /** Purposes the claim covers: the --purposes for consent, otherwise every configured purpose with this basis. */
  purposes: string[];
  /** Purposes with another basis that needs no consent record: the gate lets them through for every row too. */
  alsoAllowed: { purpose: string; basis: ConfiguredBasis }[];
}

/** One row that was not stored: its number in the file (the header is row 1), status, code and a value-free detail. */
export interface RowReport {
  row: number;
  /** `not_processed`: read, but the import stopped on a database failure before the row went through the pipeline. */
  status: Exclude<ItemStatus, 'stored'> | 'not_processed';
  code: ErrorCode | '';
  detail: string;
}

export interface ImportCounts {
  /** Data rows read (malformed ones included). */
  rows: number;
  stored: number;
  duplicate: number;
  refused: number;
  invalid: number;
  suppressed: number;
  /** Rows read but not sent through the pipeline: the import stopped on a database failure first (their batch's). */
  notProcessed: number;
  /**
   * Calls sent through the pipeline (an order of several lines is one), whatever it answered; not those the import
   * answered duplicate itself (a message id stored already, or an earlier row's). A dry run: those a real run would send.
   */
  events: number;
  /** People whose consent this import recorded (basis consent). */
  consents: number;
  /** Bytes of the file up to the end of the last row handed to the pipeline (progress); the whole file once read. */
  bytes: number;
}

export interface ImportSummary extends ImportCounts {
  /** The whole file was read. */
  complete: boolean;
  /** customers: the as-of time of the rows without a timestamp cell (ISO 8601, UTC). */
  asOf?: string;
  /** Why the import stopped early (then `complete` is false). */
  error?: unknown;
  fileSha256: string;
  /** Undeclared fields the tracking plan dropped, with the number of rows that had them. */
  dropped: { path: string; rows: number }[];
  /** Declared fields left out because none of their purposes had a lawful basis for the person. */
  refusedFields: { path: string; rows: number }[];
}

export interface ImportHooks {
  /** Rows of a batch that were not stored, in file order. */
  onRows?: (rows: readonly RowReport[]) => void | Promise<void>;
  onProgress?: (counts: Readonly<ImportCounts>) => void;
  /** A problem the operator should know about before the rows are refused one by one. */
  onWarning?: (message: string) => void;
}

const SOURCE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const JURISDICTION = /^[A-Z]{2}(-[A-Z0-9]{1,3})?$/;
const NUMERIC = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const ORDER_COMPLETED = 'Order Completed';
/** Consecutive lines of one order beyond this are not grouped (the plan allows 500 line items per order). */
export const MAX_ORDER_LINES = 1000;
/**
 * Orders an import remembers having closed (the latest), to report lines of one that come after another order's
 * (IMPORT_ORDER_NOT_CONSECUTIVE): a few tens of MB with ids of usual lengths. Past it, such lines of an order stored are answered duplicate
 * (its message id comes from its order_id and ids), and lines without ids COLLECT_IDENTITY_MISSING.
 */
const MAX_CLOSED_ORDERS = 100_000;
/**
 * Message ids an import remembers from the rows it sent through the pipeline (the latest), to answer a later row with
 * one duplicate: past it, such a row is a duplicate only when the earlier one was stored (the pipeline finds it).
 */
const MAX_RUN_IDS = 100_000;
const DEFAULT_BATCH = 500;
/** Tries of a batch whose write found the database busy (STORAGE_BUSY), and the pause before the second one. */
const BUSY_ATTEMPTS = 4;
const BUSY_PAUSE_MS = 200;
const MAX_BATCH = 10_000;
const DEFAULT_MAX_ROW_BYTES = 1024 * 1024;
/** Distinct field paths counted for the end-of-import summary. */
const MAX_TRACKED_PATHS = 200;

const USER_ID_COLUMNS: Record<ImportKind, readonly string[]> = {
  customers: ['user_id', 'userid', 'customer_id', 'customerid', 'id'],
  events: ['user_id', 'userid', 'customer_id', 'customerid'],
};
const ANONYMOUS_ID_COLUMNS = ['anonymous_id', 'anonymousid'];
const MESSAGE_ID_COLUMNS = ['message_id', 'messageid'];
const TIMESTAMP_COLUMNS = ['timestamp'];
const EVENT_TYPES = new Set(['track', 'page', 'screen']);

const MALFORMED_DETAIL: Record<string, string> = {
  CSV_RECORD_INCONSISTENT_COLUMNS: 'wrong number of columns',
  CSV_QUOTE_NOT_CLOSED: 'a quote is never closed',
  CSV_INVALID_CLOSING_QUOTE: 'misplaced quote',
  INVALID_OPENING_QUOTE: 'misplaced quote',
  CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE: 'misplaced quote',
};

/** Which columns of the header play which part; the rest are traits (customers) or properties (events). */
interface Columns {
  userId: string | undefined;
  anonymousId: string | undefined;
  messageId: string | undefined;
  timestamp: string | undefined;
  event: string | undefined;
  type: string | undefined;
  name: string | undefined;
  orderId: string | undefined;
  /** Every other column: [column, field name]. */
  fields: [string, string][];
}

/** A call ready for the pipeline, with the file rows it came from. */
interface Call {
  rows: number[];
  raw: Record<string, unknown>;
}

/** A row that did not become a call. */
interface Failure {
  rows: number[];
  code: ErrorCode;
  detail: string;
}

type Item = { call: Call } | { failure: Failure };

/** An Order Completed line: its order's key (order_id and the line's ids), its order_id, and whether it gives no id. */
interface OrderLine {
  key: string;
  orderId: string;
  idless: boolean;
}

/** Lines of one order being gathered into one event. */
interface OpenOrder {
  /** The key of its first line: the line's ids give the order's person, and with its order_id its message id. */
  key: string;
  orderId: string;
  first: Call;
  products: Record<string, unknown>[];
  rows: number[];
  tooLarge: boolean;
  /** The path of a forbidden key one of its lines gives it (the whole order is refused), or undefined. */
  forbidden: string | undefined;
  /** Where its latest line ends in the file (bytes). */
  end: number;
}

type CsvRecord = Record<string, string | undefined>;

/** A record as the parser hands it on: its cells, its row number and where it ends in the file (bytes). */
interface ParsedRow {
  record: CsvRecord;
  row: number;
  bytes: number;
}

/** Where the first byte that is not UTF-8 is: the row holding it, its line and its offset in the file. */
interface NotUtf8 {
  row: number;
  line: number;
  offset: number;
}

/** A value parsed from a cell as the tracking plan declares the field: numbers and booleans only where declared. */
export function coerceCell(type: string | undefined, value: string): unknown {
  if (type === undefined) return value;
  const types = type.split('|');
  if (types.includes('string')) return value;
  if ((types.includes('number') || types.includes('integer')) && NUMERIC.test(value)) {
    const n = Number(value);
    return Number.isFinite(n) ? n : value;
  }
  if (types.includes('boolean') && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  return value;
}

/**
 * The key no cell may give a message: assigned to an object it would set the object's prototype instead, and the
 * pipeline assigns fields. A row giving it is refused as HTTP refuses a message holding it (REQUEST_FORBIDDEN_KEY);
 * `constructor` is forbidden over HTTP only when it holds an object, which a cell never is.
 */
const FORBIDDEN_KEY = '__proto__';

/** The line-item key of a `product_*` column: product_id stays, product_name → name, product_price → price, … */
export function productKey(column: string): string | undefined {
  const lower = column.toLowerCase();
  if (!lower.startsWith('product_') || lower.length === 'product_'.length) return undefined;
  return lower === 'product_id' ? 'product_id' : lower.slice('product_'.length);
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Line numbers of byte offsets in a file read once, asked for in increasing order (as the parser ends its records):
 * holds only the bytes between the last offset asked for and the end of what was read. A line ends at LF, CRLF or a
 * lone CR, inside quoted fields too (csv-parse counts a quoted CRLF as two lines, and a blank line to the next record).
 */
class LineIndex {
  readonly #chunks: Buffer[] = [];
  /** Offset in the file of the first byte of #chunks[0]. */
  #base = 0;
  /** Offset of the next byte to count. */
  #at = 0;
  /** The line of the byte at #at. */
  #line = 1;
  #previous = -1;

  feed(chunk: Buffer): void {
    if (chunk.length > 0) this.#chunks.push(chunk);
  }

  /** The line a record that comes after `offset` starts on: the first byte from there that does not end a line. */
  startAfter(offset: number): number {
    this.#advance(offset);
    for (let next = this.#peek(); next === LF || next === CR; next = this.#peek()) this.#advance(this.#at + 1);
    return this.#line;
  }

  /** The line of the last byte before `offset` that does not end a line: the last line of a record ending there. */
  lastLineBefore(offset: number): number {
    this.#advance(offset);
    return this.#previous === LF || this.#previous === CR ? this.#line - 1 : this.#line;
  }

  #peek(): number | undefined {
    return this.#chunks[0]?.[this.#at - this.#base];
  }

  #advance(offset: number): void {
    while (this.#at < offset) {
      const chunk = this.#chunks[0];
      if (chunk === undefined) return;
      const end = Math.min(chunk.length, offset - this.#base);
      let line = this.#line;
      let previous = this.#previous;
      for (let i = this.#at - this.#base; i < end; i++) {
        const byte = chunk[i] as number;
        if (byte === CR || (byte === LF && previous !== CR)) line++;
        previous = byte;
      }
      this.#line = line;
      this.#previous = previous;
      this.#at = this.#base + end;
      if (end === chunk.length) {
        this.#chunks.shift();
        this.#base += chunk.length;
      }
    }
  }
}

/** Where a UTF-8 sequence that the next chunk may complete starts at the end of `bytes` (bytes.length when none does). */
function completeUpTo(bytes: Buffer): number {
  for (let i = bytes.length - 1; i >= Math.max(0, bytes.length - 3); i--) {
    const byte = bytes[i] as number;
    if (byte < 0x80) break;
    if (byte >= 0xc0) return bytes.length - i < (byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2) ? i : bytes.length;
  }
  return bytes.length;
}

/** The index of the first byte of `bytes` that does not begin a well-formed UTF-8 sequence within it (bytes.length when none). */
function firstNotUtf8(bytes: Buffer): number {
  if (isUtf8(bytes)) return bytes.length;
  for (let i = 0; i < bytes.length; ) {
    const byte = bytes[i] as number;
    if (byte < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes after the lead byte, and the range of the first (no overlong forms, surrogates or > U+10FFFF).
    let more: number;
    let low = 0x80;
    let high = 0xbf;
    if (byte >= 0xc2 && byte <= 0xdf) more = 1;
    else if (byte >= 0xe0 && byte <= 0xef) {
      more = 2;
      if (byte === 0xe0) low = 0xa0;
      else if (byte === 0xed) high = 0x9f;
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      more = 3;
      if (byte === 0xf0) low = 0x90;
      else if (byte === 0xf4) high = 0x8f;
    } else return i;
    if (i + more >= bytes.length) return i;
    const first = bytes[i + 1] as number;
    if (first < low || first > high) return i;
    for (let k = 2; k <= more; k++) {
      const next = bytes[i + k] as number;
      if (next < 0x80 || next > 0xbf) return i;
    }
    i += more + 1;
  }
  return bytes.length;
}

function bump(map: Map<string, number>, key: string, n: number): void {
  const current = map.get(key);
  if (current !== undefined) map.set(key, current + n);
  else if (map.size < MAX_TRACKED_PATHS) map.set(key, n);
}

/** The as-of time of a customers import (ISO 8601, UTC): the option checked, else now. */
function asOfTime(options: CsvImportOptions): string {
  if (options.asOf === undefined) return new Date().toISOString();
  if (options.kind !== 'customers') throw new CandorError('IMPORT_OPTION_INVALID', { option: 'as-of', reason: 'only for customers (an event is dated by its timestamp cell)' });
  const ms = isoTime(options.asOf.trim());
  if (Number.isNaN(ms)) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'as-of', allowed: 'an ISO 8601 time such as 2026-03-01T00:00:00Z' });
  if (ms > Date.now()) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'as-of', reason: 'later than now' });
  return new Date(ms).toISOString();
}

/** The purpose an import's audit entries name: the one claimed purpose, or the legal obligation to keep records. */
const importPurpose = (claim: ImportBasis): string => (claim.purposes.length === 1 ? (claim.purposes[0] as string) : 'essential.legal_obligation');

/**
 * Imports a CSV file through the ingestion pipeline. One instance per kernel; `check` validates the options against
 * the deployment's purposes, `run` streams a file.
 */
export class CsvImporter {
  readonly #deps: CsvImportDeps;

  constructor(deps: CsvImportDeps) {
    this.#deps = deps;
  }

  /** Validates the options (coded errors) and says which purposes the claimed basis lets through. */
  check(options: CsvImportOptions): ImportBasis {
    const { consent } = this.#deps;
    if (!(CONFIGURED_BASES as readonly string[]).includes(options.basis)) throw new CandorError('IMPORT_BASIS_UNKNOWN', { basis: options.basis, allowed: [...CONFIGURED_BASES] });
    const basis = options.basis as ConfiguredBasis;
    if (!SOURCE_NAME.test(options.source)) throw new CandorError('ACCESS_SOURCE_NAME_INVALID');
    const batchSize = options.batchSize ?? DEFAULT_BATCH;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'batch-size', allowed: `1 to ${MAX_BATCH}` });
    const asOf = options.kind === 'customers' || options.asOf !== undefined ? { asOf: asOfTime(options) } : {};
    const purposes = [...new Set(options.purposes ?? [])];
    const configured = consent.purposes();
    const alsoAllowed = configured.filter((p) => p.basis !== 'consent' && p.basis !== basis).map((p) => ({ purpose: p.key, basis: p.basis }));
    if (basis !== 'consent') {
      const stray = options.purposes !== undefined ? 'purposes' : options.jurisdiction !== undefined ? 'jurisdiction' : options.noticeVersion !== undefined ? 'notice-version' : undefined;
      if (stray) throw new CandorError('IMPORT_OPTION_INVALID', { option: stray, reason: 'only with --basis consent (no consent is recorded on another basis)' });
      return { basis, purposes: configured.filter((p) => p.basis === basis).map((p) => p.key), alsoAllowed, ...asOf };
    }
    if (purposes.length === 0) throw new CandorError('IMPORT_PURPOSES_REQUIRED');
    if (options.jurisdiction !== undefined && !JURISDICTION.test(options.jurisdiction)) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'jurisdiction', allowed: 'ISO 3166 code such as DE or US-CA' });
    const notice = consent.currentNotice();
    if (options.noticeVersion !== undefined && (!Number.isSafeInteger(options.noticeVersion) || options.noticeVersion < 1 || options.noticeVersion > notice.version)) {
      throw new CandorError('CONSENT_NOTICE_UNKNOWN', { noticeVersion: options.noticeVersion });
    }
    for (const purpose of purposes) {
      const config = consent.purpose(purpose);
      if (!config) throw new CandorError('CONSENT_PURPOSE_UNKNOWN', { purpose });
      if (config.basis !== 'consent') throw new CandorError('CONSENT_BASIS_NOT_CONSENT', { purpose, basis: config.basis });
      // An older notice version is checked against the database before the run starts (run()).
      if ((options.noticeVersion === undefined || options.noticeVersion === notice.version) && !notice.purposes.some((p) => p.purpose === purpose)) {
        throw new CandorError('CONSENT_PURPOSE_NOT_IN_NOTICE', { purpose, noticeVersion: notice.version });
      }
    }
    return { basis, purposes, alsoAllowed, ...asOf };
  }

  /**
   * Streams a CSV file (header first) through the pipeline in batches. Rows that cannot be read or stored are
   * reported through `hooks.onRows` and the import goes on; it stops early (`complete: false`, with `error`) when
   * the file itself cannot be read on, or when a batch cannot be written (a busy database is tried again first): the
   * rows read but not sent through the pipeline are then reported `not_processed`, so the counts add up to the rows. Two `import.run` audit entries record the run: `phase: started` before any
   * row is stored, `phase: finished` with the counts at the end.
   */
  async run(input: Readable, options: CsvImportOptions, hooks: ImportHooks = {}): Promise<ImportSummary> {
    let run: ImportRun;
    let claim: ImportBasis;
    try {
      claim = this.check(options);
      // Every claimed purpose must be in the notice version named (an older one is read from the database): the import
      // records the consents all or none, before any row is stored.
      if (claim.basis === 'consent' && options.noticeVersion !== undefined) {
        const rejected = await this.#deps.consent.checkChanges(claim.purposes.map((purpose) => ({ purpose, state: 'given' as const })), { noticeVersion: options.noticeVersion });
        const first = rejected[0];
        if (first) throw new CandorError(first.code, { purposes: rejected.map((r) => r.purpose), noticeVersion: options.noticeVersion });
      }
      run = new ImportRun(this.#deps, options, claim, hooks, await this.#deps.catalog.outline());
      // On record before the first row is stored: an import killed midway never writes its closing entry.
      if (!options.dryRun) await this.#auditStart(options, claim);
    } catch (error) {
      input.destroy();
      throw error;
    }
    const summary = await run.execute(input);
    if (!options.dryRun) await this.#audit(options, claim, summary);
    return summary;
  }

  /** The `import.run` entry written before the first batch (`phase: started`): what is about to be stored, and how. */
  async #auditStart(options: CsvImportOptions, claim: ImportBasis): Promise<void> {
    await this.#deps.audit.append({
      actor: options.actor.id,
      role: options.actor.role,
      action: 'import.run',
      purpose: importPurpose(claim),
      resource: `import:${options.source}`,
      details: { phase: 'started', source: options.source, kind: options.kind, basis: claim.basis, purposes: claim.purposes, ...(claim.asOf !== undefined ? { asOf: claim.asOf } : {}) },
    });
  }

  /** The closing `import.run` entry (`phase: finished`), with the counts and the file's SHA-256. */
  async #audit(options: CsvImportOptions, claim: ImportBasis, summary: ImportSummary): Promise<void> {
    const append = this.#deps.audit.append({
      actor: options.actor.id,
      role: options.actor.role,
      action: 'import.run',
      purpose: importPurpose(claim),
      resource: `import:${options.source}`,
      outcome: summary.complete ? 'success' : 'failure',
      details: {
        phase: 'finished',
        source: options.source,
        kind: options.kind,
        basis: claim.basis,
        purposes: claim.purposes,
        ...(claim.asOf !== undefined ? { asOf: claim.asOf } : {}),
        rows: summary.rows,
        stored: summary.stored,
        duplicate: summary.duplicate,
        refused: summary.refused,
        invalid: summary.invalid,
        suppressed: summary.suppressed,
        notProcessed: summary.notProcessed,
        events: summary.events,
        consents: summary.consents,
        fileSha256: summary.fileSha256,
        complete: summary.complete,
        ...(isCandorError(summary.error) ? { error: summary.error.code } : {}),
      },
    });
    // When the import stopped on a database failure, the audit write may fail too; the first error is the one to show.
    if (summary.complete) await append;
    else await append.catch(() => undefined);
  }
}

/** The state of one import: header mapping, the open order, the batch, the counts. */
class ImportRun {
  readonly #deps: CsvImportDeps;
  readonly #options: CsvImportOptions;
  readonly #claim: ImportBasis;
  readonly #hooks: ImportHooks;
  readonly #batchSize: number;
  /** Field types per plan section and path, to read numbers and booleans where the plan declares them. */
  readonly #types = new Map<string, Map<string, string>>();
  /** Purposes per plan section: the event's own and, per field path, the field's. */
  readonly #purposes = new Map<string, { event: readonly string[]; fields: Map<string, readonly string[]> }>();
  /** The plan version #types and #purposes were read from. */
  #planVersion: number;
  /** What the gate lets through without looking at a person's ledger (for warnings and the dry run's prediction). */
  readonly #predicted: readonly string[];
  /** Of those, the explicit-consent purposes this import records consent to: only they keep special-category and precise-location fields. */
  readonly #predictedExplicit: readonly string[];
  /** Consent.describes, as the gate asks it. */
  readonly #describes: DescribesCategory;
  readonly #warned = new Set<string>();
  /** customers: the time of rows without a timestamp cell. */
  readonly #asOf: string | undefined;
  /** customers: the claimed basis and purposes, as part of a derived message id. */
  readonly #claimKey: string;
  readonly #hash = createHash('sha256');
  readonly #counts: ImportCounts = { rows: 0, stored: 0, duplicate: 0, refused: 0, invalid: 0, suppressed: 0, notProcessed: 0, events: 0, consents: 0, bytes: 0 };
  readonly #dropped = new Map<string, number>();
  readonly #refusedFields = new Map<string, number>();
  #columns: Columns | undefined;
  #batch: Item[] = [];
  #batchRows = 0;
  /** Where the last row put in a batch ends in the file (bytes): what progress reports once that batch is flushed. */
  #batchedBytes = 0;
  #open: OpenOrder | undefined;
  /**
   * The orders closed so far (the latest MAX_CLOSED_ORDERS), by key and by `[order_id]` (for lines without ids), with
   * the row each started on: a later line of one is reported, not stored as a second order.
   */
  readonly #closed = new Map<string, number>();
  #lastSkipped = 0;
  #tooLarge = false;
  /** Line numbers of the file's bytes, for the rows' numbers. */
  readonly #lines = new LineIndex();
  /** Bytes read from the file so far. */
  #fed = 0;
  /** Where the last record the parser ended or skipped ends in the file (bytes): the next one starts after it. */
  #recordEnd = 0;
  /** Bytes found to be UTF-8 so far, a sequence the next chunk may complete, and the first byte that is not UTF-8. */
  #utf8Checked = 0;
  #utf8Carry: Buffer = Buffer.alloc(0);
  #notUtf8At: number | undefined;
  #notUtf8Reported = false;
  /** The failure of a batch's write: the import stops, and the rows not written are reported not processed. */
  #writeFailure: unknown;
  /** The source and message id (`runKey`) of the latest rows sent through the pipeline, or predicted in a dry run (MAX_RUN_IDS). */
  private readonly runIds = new Set<string>();

  constructor(deps: CsvImportDeps, options: CsvImportOptions, claim: ImportBasis, hooks: ImportHooks, outline: readonly OutlineSection[]) {
    this.#deps = deps;
    this.#options = options;
    this.#claim = claim;
    this.#hooks = hooks;
    this.#asOf = claim.asOf;
    this.#claimKey = JSON.stringify([claim.basis, claim.basis === 'consent' ? [...claim.purposes].sort() : []]);
    this.#batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.#readOutline(outline);
    this.#planVersion = deps.catalog.version();
    this.#predicted = [...new Set([...claim.purposes, ...claim.alsoAllowed.map((a) => a.purpose)])];
    // Consent recorded by the import is given now, so it counts as explicit where the purpose asks for that.
    this.#predictedExplicit = claim.basis === 'consent' ? claim.purposes.filter((p) => deps.consent.purpose(p)?.explicit === true) : [];
    this.#describes = describesBy(deps.consent);
  }

  async execute(input: Readable): Promise<ImportSummary> {
    let error: unknown;
    let parser: Parser | undefined;
    let records: Readable | undefined;
    try {
      // Loaded on use: the server never imports CSV, and should not carry the parser in memory.
      const { parse } = await import('csv-parse');
      parser = parse({
        columns: (header: string[]) => this.#header(parser as Parser, header),
        bom: true,
        // Each of LF, CRLF and a lone CR ends a record wherever it appears (csv-parse otherwise settles on the first one
        // it meets: a header ending in CRLF above rows ending in LF ran every row into one record).
        record_delimiter: ['\r\n', '\n', '\r'],
        skip_empty_lines: true,
        // Quotes inside a field are kept as written; only an opening quote that is never closed breaks a row.
        relax_quotes: true,
        skip_records_with_error: true,
        max_record_size: this.#options.maxRowBytes ?? DEFAULT_MAX_ROW_BYTES,
        // Called as the parser ends each record, in file order with on_skip: the row's number is worked out there.
        on_record: (record: CsvRecord, context: { bytes: number }) => this.#record(record, context.bytes),
        on_skip: (err) => this.#skipped(parser as Parser, err),
      });
      const tap = new Transform({
        transform: (chunk: Buffer | string, _encoding, callback) => {
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          this.#hash.update(bytes);
          this.#lines.feed(bytes);
          this.#fed += bytes.length;
          this.#checkUtf8(bytes);
          callback(null, bytes);
        },
        flush: (callback) => {
          // The file ends inside a UTF-8 sequence.
          if (this.#notUtf8At === undefined && this.#utf8Carry.length > 0) this.#notUtf8At = this.#utf8Checked;
          callback();
        },
      });
      // Errors reach the loop through the parser; the callback only keeps the pipeline from throwing them again.
      records = pipeline(input, tap, parser, () => undefined);
      const iterator = records[Symbol.asyncIterator]() as AsyncIterator<unknown>;
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await iterator.next();
        } catch (readError) {
          error = this.#readFailure(readError);
          break;
        }
        if (next.done) break;
        const { tooLarge, notUtf8, unclosed } = next.value as { tooLarge?: number; notUtf8?: NotUtf8; unclosed?: { row: number; last: number } };
        if (tooLarge !== undefined) {
          error = this.#rowTooLarge(tooLarge);
          break;
        }
        if (unclosed !== undefined) {
          error = this.#quoteNotClosed(unclosed.row, unclosed.last);
          break;
        }
        if (notUtf8 !== undefined) {
          error = this.#rowNotUtf8(notUtf8);
          break;
        }
        await this.#row(next.value);
        if (this.#writeFailure !== undefined) break;
      }
      error ??= this.#writeFailure;
      if (error === undefined && this.#columns === undefined) error = new CandorError('IMPORT_HEADER_INVALID', { reason: 'empty_file' });
      // Bytes that are not UTF-8 past the point where the parser gave up on a record (a quote never closed): refused too.
      if (error === undefined && this.#notUtf8At !== undefined) error = new CandorError('IMPORT_FILE_NOT_UTF8', { offset: this.#notUtf8At });
      this.#closeOrder();
      // The whole file was read (trailing blank lines included): the last progress report says so.
      if (error === undefined) this.#batchedBytes = parser.info.bytes;
      await this.#flush(true);
      error ??= this.#writeFailure;
    } catch (failure) {
      error ??= failure;
    } finally {
      // Stopped early (a database failure): stop reading too.
      (records ?? input).destroy();
    }
    if (parser) this.#counts.bytes = parser.info.bytes;
    const list = (map: Map<string, number>) => [...map].map(([path, rows]) => ({ path, rows }));
    return {
      ...this.#counts,
      complete: error === undefined,
      ...(this.#asOf !== undefined ? { asOf: this.#asOf } : {}),
      ...(error !== undefined ? { error } : {}),
      fileSha256: this.#hash.digest('hex'),
      dropped: list(this.#dropped),
      refusedFields: list(this.#refusedFields),
    };
  }

  /** A row past the size limit: reported as that row; the import stops there (csv-parse cannot resync after it). */
  #rowTooLarge(row: number): CandorError {
    const maxBytes = this.#options.maxRowBytes ?? DEFAULT_MAX_ROW_BYTES;
    this.#counts.rows++;
    this.#push({ failure: { rows: [row], code: 'IMPORT_ROW_TOO_LARGE', detail: `larger than ${maxBytes} bytes (a quote never closed?); the file was not read past this row` } }, 1, this.#batchedBytes);
    return new CandorError('IMPORT_ROW_TOO_LARGE', { row, maxBytes });
  }

  /**
   * A quote opened in `row` and never closed: the rest of the file, up to line `last`, was read as that one row, so
   * none of it was imported; reported as that row, and the import ends with an error.
   */
  #quoteNotClosed(row: number, last: number): CandorError {
    this.#counts.rows++;
    const lines = last > row ? `lines ${row}-${last}` : `line ${row}`;
    this.#push({ failure: { rows: [row], code: 'IMPORT_QUOTE_NOT_CLOSED', detail: `a quote is never closed (${lines}, the end of the file): none of these lines was imported` } }, 1, this.#fed);
    return new CandorError('IMPORT_QUOTE_NOT_CLOSED', { row, lastLine: last });
  }

  /** A row holding bytes that are not UTF-8: reported as that row; the import stops there. */
  #rowNotUtf8({ row, line, offset }: NotUtf8): CandorError {
    this.#counts.rows++;
    this.#push({ failure: { rows: [row], code: 'IMPORT_FILE_NOT_UTF8', detail: `not UTF-8 at line ${line} (byte ${offset} of the file); the file was not read past this row` } }, 1, this.#batchedBytes);
    return new CandorError('IMPORT_FILE_NOT_UTF8', { row, line, offset });
  }

  /** Checks a chunk read from the file for UTF-8, a sequence cut at its end completed by the next one. */
  #checkUtf8(chunk: Buffer): void {
    if (this.#notUtf8At !== undefined) return;
    const bytes = this.#utf8Carry.length > 0 ? Buffer.concat([this.#utf8Carry, chunk]) : chunk;
    const end = completeUpTo(bytes);
    const bad = firstNotUtf8(bytes.subarray(0, end));
    if (bad < end) {
      this.#notUtf8At = this.#utf8Checked + bad;
      return;
    }
    this.#utf8Checked += end;
    this.#utf8Carry = Buffer.from(bytes.subarray(end));
  }

  /**
   * Where a record the parser ended or skipped, ending at byte `end`, stands: the line it starts on, and whether it
   * holds the first byte that is not UTF-8 (then where that is).
   */
  #place(end: number): { row: number; notUtf8?: NotUtf8 } {
    const row = this.#lines.startAfter(this.#recordEnd);
    this.#recordEnd = Math.max(this.#recordEnd, end);
    const bad = this.#notUtf8At;
    if (bad === undefined || end <= bad || this.#notUtf8Reported) return { row };
    this.#notUtf8Reported = true;
    return { row, notUtf8: { row, line: this.#lines.lastLineBefore(bad + 1), offset: bad } };
  }

  /** A record the parser ended (at byte `end`): with its row number, or in its place the stop at a byte that is not UTF-8. */
  #record(record: CsvRecord, end: number): ParsedRow | { notUtf8: NotUtf8 } {
    const { row, notUtf8 } = this.#place(end);
    return notUtf8 ? { notUtf8 } : { record, row, bytes: end };
  }

  /** An error from reading or parsing (the header included): coded. */
  #readFailure(error: unknown): unknown {
    if (isCandorError(error)) return error;
    const code = (error as { code?: unknown } | null)?.code;
    return new CandorError('IMPORT_FILE_UNREADABLE', { reason: typeof code === 'string' ? code : 'read_failed' }, { cause: error });
  }

  /** csv-parse skipped a record it could not read: it joins the stream in file order, as a failure. */
  #skipped(parser: Parser, err: { code?: string } | undefined): undefined {
    if (this.#tooLarge || this.#notUtf8Reported) return undefined;
    // Where the parser stopped: the record's end, or for a record it gave up inside (too large), a point in it. A quote
    // never closed is raised at the end of the file (the parser's count stays at the record's start): the record
    // runs to there.
    const unclosed = err?.code === 'CSV_QUOTE_NOT_CLOSED';
    const at = unclosed ? this.#fed : parser.info.bytes;
    const { row, notUtf8 } = this.#place(at);
    if (notUtf8) {
      if (this.#columns === undefined) throw new CandorError('IMPORT_FILE_NOT_UTF8', { ...notUtf8 });
      parser.push({ notUtf8 });
      return undefined;
    }
    // The header itself cannot be read: no row is (the parser would take the next record for the header).
    if (this.#columns === undefined && err?.code !== 'CSV_MAX_RECORD_SIZE') {
      throw new CandorError('IMPORT_HEADER_INVALID', { reason: unclosed ? 'unclosed_quote' : 'malformed' });
    }
    if (unclosed) {
      parser.push({ unclosed: { row, last: this.#lines.lastLineBefore(at) } });
      return undefined;
    }
    if (err?.code === 'CSV_MAX_RECORD_SIZE') {
      // Throwing would drop the rows parsed before it but not yet imported: it goes in the stream behind them instead.
      this.#tooLarge = true;
      parser.push({ tooLarge: row });
      return undefined;
    }
    if (row === this.#lastSkipped) return undefined;
    this.#lastSkipped = row;
    const what = MALFORMED_DETAIL[err?.code ?? ''] ?? err?.code ?? 'unreadable';
    const last = this.#lines.lastLineBefore(at);
    parser.push({ skipped: { row, detail: last > row ? `${what} (lines ${row}-${last})` : what, bytes: at } });
    return undefined;
  }

  /** The header row: which columns are ids, event names, timestamps, line items; the rest are fields. */
  #header(parser: Parser, header: string[]): (string | undefined)[] {
    // The parser has just ended the header's record: the first row starts after it.
    const { notUtf8 } = this.#place(parser.info.bytes);
    if (notUtf8) throw new CandorError('IMPORT_FILE_NOT_UTF8', { ...notUtf8 });
    const names = header.map((h) => (h.trim() === '' ? undefined : h.trim()));
    const seen = new Set<string>();
    for (const name of names) {
      if (name === undefined) continue;
      if (seen.has(name.toLowerCase())) throw new CandorError('IMPORT_HEADER_INVALID', { reason: 'duplicate_column', column: name });
      seen.add(name.toLowerCase());
    }
    const kind = this.#options.kind;
    const present = names.filter((n): n is string => n !== undefined);
    const pick = (candidates: readonly string[]) => {
      for (const candidate of candidates) {
        const found = present.find((n) => n.toLowerCase() === candidate);
        if (found) return found;
      }
      return undefined;
    };
    const userId = pick(USER_ID_COLUMNS[kind]);
    const anonymousId = pick(ANONYMOUS_ID_COLUMNS);
    if (!userId && !anonymousId) throw new CandorError('IMPORT_HEADER_INVALID', { reason: 'no_identity_column', expected: [...USER_ID_COLUMNS[kind], ...ANONYMOUS_ID_COLUMNS] });
    const event = kind === 'events' ? pick(['event']) : undefined;
    const type = kind === 'events' ? pick(['type']) : undefined;
    const orderId = kind === 'events' ? pick(['order_id']) : undefined;
    if (kind === 'events' && !event && !type && !orderId) throw new CandorError('IMPORT_HEADER_INVALID', { reason: 'no_event_column', expected: ['event', 'type', 'order_id'] });
    const columns: Columns = {
      userId,
      anonymousId,
      messageId: pick(MESSAGE_ID_COLUMNS),
      timestamp: pick(TIMESTAMP_COLUMNS),
      event,
      type,
      name: kind === 'events' ? pick(['name']) : undefined,
      orderId,
      fields: [],
    };
    const reserved = new Set([columns.userId, columns.anonymousId, columns.messageId, columns.timestamp, columns.event, columns.type]);
    for (const name of present) {
      if (reserved.has(name)) continue;
      const lower = name.toLowerCase();
      // email and phone are identifiers as well as traits; the plan's names are lower case.
      columns.fields.push([name, kind === 'customers' && (lower === 'email' || lower === 'phone') ? lower : name]);
    }
    this.#columns = columns;
    if (kind === 'customers') this.#checkPurposes('identify', columns.fields.map(([, field]) => `traits.${field}`));
    return names;
  }

  /** Warns once per section when none of the purposes the plan gives these columns can pass the gate through this import. */
  #checkPurposes(section: string, paths: readonly string[]): void {
    if (this.#warned.has(section) || this.#warned.size >= MAX_TRACKED_PATHS) return;
    this.#warned.add(section);
    const declared = this.#purposes.get(section);
    if (!declared) return;
    const purposes = new Set(declared.event);
    for (const path of paths) for (const p of declared.fields.get(path) ?? []) purposes.add(p);
    if ([...purposes].some((p) => this.#predicted.includes(p))) return;
    const what = section === 'identify' ? 'the columns of this file' : `${section.replace(/^track:/, '')} events`;
    const claim = this.#claim.basis === 'consent' ? 'the consent recorded by this import' : `basis ${this.#claim.basis}`;
    this.#hooks.onWarning?.(
      `none of the purposes the tracking plan gives ${what} (${[...purposes].join(', ') || 'none'}) is allowed by ${claim} or needs no consent record: they are refused unless the person consented to one of them before`,
    );
  }

  async #row(value: unknown): Promise<void> {
    const skipped = (value as { skipped?: { row: number; detail: string; bytes: number } }).skipped;
    if (skipped) {
      this.#counts.rows++;
      this.#push({ failure: { rows: [skipped.row], code: 'IMPORT_ROW_MALFORMED', detail: skipped.detail } }, 1, skipped.bytes);
      await this.#flushIfFull();
      return;
    }
    // bytes: where this record ends in the file (the parser itself reads ahead of the rows handed out).
    const { record, row, bytes } = value as ParsedRow;
    this.#counts.rows++;
    const mapped = this.#map(record, row);
    const line = 'order' in mapped ? mapped.order : undefined;
    const open = this.#open;
    // A line without ids joins the open order of its order_id: the export gave the person on the order's first line.
    const joins = open !== undefined && line !== undefined && (line.key === open.key || (line.idless && line.orderId === open.orderId));
    if (open && !joins) {
      this.#closeOrder();
      await this.#flushIfFull();
    }
    const earlier = line === undefined || joins ? undefined : this.#closed.get(line.idless ? JSON.stringify([line.orderId]) : line.key);
    if (earlier !== undefined) {
      const detail = `a line of the order that starts at row ${earlier}, after other orders' lines: not imported (sort the file by order_id)`;
      this.#push({ failure: { rows: [row], code: 'IMPORT_ORDER_NOT_CONSECUTIVE', detail } }, 1, bytes);
    } else if ('order' in mapped) {
      this.#addOrderLine(mapped.order, mapped.call, mapped.product, mapped.forbidden, row, bytes);
    } else {
      this.#push(mapped.item, 1, bytes);
    }
    await this.#flushIfFull();
  }

  /** Puts an item of `rows` file rows, the last of which ends at byte `end`, in the batch. */
  #push(item: Item, rows: number, end: number): void {
    this.#batch.push(item);
    this.#batchRows += rows;
    this.#batchedBytes = Math.max(this.#batchedBytes, end);
  }

  /**
   * Flushes a full batch unless an order is still gathering lines (its rows come before the batch's last ones, and
   * reports stay in file order); a run of unreadable rows inside an order flushes at twice the size.
   */
  async #flushIfFull(): Promise<void> {
    const waiting = this.#open !== undefined && !this.#open.tooLarge;
    if (this.#batchRows >= this.#batchSize * (waiting ? 2 : 1)) await this.#flush();
  }

  #cell(record: CsvRecord, column: string | undefined): string {
    return column === undefined ? '' : (record[column] ?? '').trim();
  }

  #value(section: string, path: string, value: string): unknown {
    return coerceCell(this.#types.get(section)?.get(path), value);
  }

  /** One row as a call, an order line, or a failure. */
  #map(record: CsvRecord, row: number): { item: Item } | { order: OrderLine; call: Call; product: Record<string, unknown>; forbidden: string | undefined } {
    const columns = this.#columns as Columns;
    const cell = (column: string | undefined) => this.#cell(record, column);
    const envelope: Record<string, unknown> = {};
    const userId = cell(columns.userId);
    const anonymousId = cell(columns.anonymousId);
    if (userId) envelope.userId = userId;
    if (anonymousId) envelope.anonymousId = anonymousId;
    const timestamp = cell(columns.timestamp);
    if (timestamp) envelope.timestamp = timestamp;
    const messageId = cell(columns.messageId);
    if (messageId) envelope.messageId = messageId;

    if (this.#options.kind === 'customers') {
      // What the list said as of its date: the values of a later list replace these, those of an earlier one do not.
      if (!timestamp) envelope.timestamp = this.#asOf;
      const traits: Record<string, unknown> = {};
      for (const [column, field] of columns.fields) {
        const value = cell(column);
        if (value === '') continue;
        if (field === FORBIDDEN_KEY) return { item: { failure: { rows: [row], code: 'REQUEST_FORBIDDEN_KEY', detail: `traits.${field}` } } };
        traits[field] = this.#value('identify', `traits.${field}`, value);
      }
      const call: Call = { rows: [row], raw: { ...envelope, traits } };
      // Another date or another claim stores the row again: a value set back, or a field a wider basis now lets through.
      if (!messageId) call.raw.messageId = this.#derivedId(this.#contentHash(record), `${this.#claimKey}\u0000${String(envelope.timestamp)}`);
      return { item: { call } };
    }

    const type = cell(columns.type).toLowerCase() || 'track';
    if (!EVENT_TYPES.has(type)) return { item: { failure: { rows: [row], code: 'IMPORT_ROW_TYPE_UNSUPPORTED', detail: 'type' } } };
    const orderId = cell(columns.orderId);
    let event = type === 'track' ? cell(columns.event) : '';
    if (type === 'track' && !event && orderId) event = ORDER_COMPLETED;
    const section = type === 'track' ? `track:${event}` : type;
    const grouped = event === ORDER_COMPLETED && orderId !== '';
    const properties: Record<string, unknown> = {};
    const product: Record<string, unknown> = {};
    let forbidden: string | undefined;
    for (const [column, field] of columns.fields) {
      const value = cell(column);
      if (value === '') continue;
      const key = grouped ? productKey(column) : undefined;
      if ((key ?? field) === FORBIDDEN_KEY) forbidden ??= key === undefined ? `properties.${field}` : `properties.products[].${key}`;
      else if (key !== undefined) product[key] = this.#value(section, `properties.products[].${key}`, value);
      else properties[field] = this.#value(section, `properties.${field}`, value);
    }
    const raw: Record<string, unknown> = { type, ...envelope, properties };
    if (type === 'track') raw.event = event;
    else if (cell(columns.name)) raw.name = cell(columns.name);
    if (type === 'track' && event) {
      const paths = [...Object.keys(properties).map((k) => `properties.${k}`), ...Object.keys(product).map((k) => `properties.products[].${k}`)];
      this.#checkPurposes(section, paths);
    }
    const call: Call = { rows: [row], raw };
    if (grouped) return { order: { key: JSON.stringify([orderId, userId, anonymousId]), orderId, idless: !userId && !anonymousId }, call, product, forbidden };
    if (forbidden) return { item: { failure: { rows: [row], code: 'REQUEST_FORBIDDEN_KEY', detail: forbidden } } };
    if (!messageId) raw.messageId = this.#derivedId(this.#contentHash(record));
    return { item: { call } };
  }

  /** SHA-256 over a row's non-empty cells by column name (column order and empty columns do not change it). */
  #contentHash(record: CsvRecord): string {
    const cells = Object.entries(record)
      .map(([k, v]) => [k, (v ?? '').trim()] as const)
      .filter(([, v]) => v !== '')
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return createHash('sha256').update(JSON.stringify(cells)).update('\n').digest('hex');
  }

  /**
   * A message id that is the same for the same content of the same source (a row's contentHash, or for an order its
   * order_id and first line's ids; for customers rows, also the same time and claim): a re-run stores nothing twice.
   * Keyed, so it reveals nothing of the row.
   */
  #derivedId(content: string, customer?: string): string {
    const key = `${this.#options.kind}\u0000${this.#options.source}\u0000${customer === undefined ? '' : `${customer}\u0000`}${content}`;
    return `imp_${this.#deps.keyring.pseudonym('collect.import', key)}`;
  }

  #addOrderLine(line: OrderLine, call: Call, product: Record<string, unknown>, forbidden: string | undefined, row: number, end: number): void {
    const open = this.#open;
    if (!open) {
      this.#open = { key: line.key, orderId: line.orderId, first: call, products: Object.keys(product).length > 0 ? [product] : [], rows: [row], tooLarge: false, forbidden, end };
      return;
    }
    if (open.tooLarge) {
      this.#push({ failure: { rows: [row], code: 'IMPORT_ORDER_TOO_LARGE', detail: `more than ${MAX_ORDER_LINES} lines` } }, 1, end);
      return;
    }
    open.end = end;
    open.rows.push(row);
    open.forbidden ??= forbidden;
    if (Object.keys(product).length > 0) open.products.push(product);
    if (open.rows.length > MAX_ORDER_LINES) {
      open.tooLarge = true;
      this.#push({ failure: { rows: open.rows, code: 'IMPORT_ORDER_TOO_LARGE', detail: `more than ${MAX_ORDER_LINES} lines` } }, open.rows.length, end);
      open.rows = [];
      open.products = [];
    }
  }

  /** The lines of the open order become one Order Completed event with products[]. */
  #closeOrder(): void {
    const open = this.#open;
    this.#open = undefined;
    if (!open) return;
    this.#remember(open);
    if (open.tooLarge) return;
    if (open.forbidden) {
      this.#push({ failure: { rows: open.rows, code: 'REQUEST_FORBIDDEN_KEY', detail: open.forbidden } }, open.rows.length, open.end);
      return;
    }
    const raw: Record<string, unknown> = { ...open.first.raw, properties: { ...(open.first.raw.properties as Record<string, unknown>) } };
    if (open.products.length > 0) (raw.properties as Record<string, unknown>).products = open.products;
    // One order, one id: its lines in another file, or more of them, are answered duplicate instead of stored again.
    if (raw.messageId === undefined) raw.messageId = this.#derivedId(`order\u0000${open.key}`);
    this.#push({ call: { rows: open.rows, raw } }, open.rows.length, open.end);
  }

  /** Remembers a closed order by its key and its order_id, with the row it started on; the oldest go past the bound. */
  #remember(open: OpenOrder): void {
    const first = open.first.rows[0] as number;
    for (const key of [open.key, JSON.stringify([open.orderId])]) {
      this.#closed.delete(key);
      this.#closed.set(key, first);
    }
    for (const key of this.#closed.keys()) {
      if (this.#closed.size <= 2 * MAX_CLOSED_ORDERS) break;
      this.#closed.delete(key);
    }
  }

  /**
   * Sends the batch through the pipeline and reports every row that was not stored, then the progress: up to the end
   * of the batch's last row (the last flush reports even an empty batch).
   */
  /** Field types and purposes per plan section, from the plan in force. */
  #readOutline(outline: readonly OutlineSection[]): void {
    this.#types.clear();
    this.#purposes.clear();
    for (const section of outline) {
      const key = section.section === 'track' ? `track:${section.event ?? ''}` : section.section;
      this.#types.set(key, new Map(section.fields.map((f) => [f.path, f.type])));
      this.#purposes.set(key, { event: section.purposes, fields: new Map(section.fields.map((f) => [f.path, f.purposes])) });
    }
  }

  /**
   * What another process changed while the import runs (custom taxonomy entries added, a tracking plan published,
   * purposes or notices changed) is in force from the next batch on, as on a server within a second: a long import does
   * not keep storing under the plan it started with. Costs no query while nobody else writes.
   */
  async #refreshConfiguration(): Promise<void> {
    const { catalog } = this.#deps;
    const { planVersion: version, taxonomyChanged } = await refreshConfiguration(this.#deps);
    if (version !== this.#planVersion || taxonomyChanged) {
      this.#planVersion = version;
      this.#readOutline(await catalog.outline());
    }
  }

  async #flush(last = false): Promise<void> {
    if (!this.#options.dryRun) await this.#refreshConfiguration();
    const items = this.#batch;
    this.#batch = [];
    this.#batchRows = 0;
    this.#counts.bytes = this.#batchedBytes;
    if (items.length === 0) {
      if (last) this.#hooks.onProgress?.(this.#counts);
      return;
    }
    const calls = items.flatMap((item) => ('call' in item ? [item.call] : []));
    const messages = calls.map((call) => ({ raw: call.raw, bytes: Buffer.byteLength(JSON.stringify(call.raw)) }));
    const results = calls.length === 0 ? [] : this.#options.dryRun ? await this.#predict(messages) : await this.#written(messages);
    const reports: RowReport[] = [];
    let next = 0;
    for (const item of items) {
      if ('failure' in item) {
        for (const row of item.failure.rows) reports.push({ row, status: 'invalid', code: item.failure.code, detail: item.failure.detail });
        this.#counts.invalid += item.failure.rows.length;
        continue;
      }
      const rows = item.call.rows;
      if (results === undefined) {
        const failure = this.#writeFailure;
        const code = isCandorError(failure) ? failure.code : 'INTERNAL_ERROR';
        for (const row of rows) reports.push({ row, status: 'not_processed', code, detail: 'the import stopped on a database failure before this row was written; import the file again (rows stored already are answered duplicate)' });
        this.#counts.notProcessed += rows.length;
        continue;
      }
      const result = results[next++] as ItemResult;
      this.#counts[result.status] += rows.length;
      for (const path of result.dropped ?? []) bump(this.#dropped, path.replace(/\[\d+\]/g, '[]'), rows.length);
      for (const path of result.refusedFields ?? []) bump(this.#refusedFields, path.replace(/\[\d+\]/g, '[]'), rows.length);
      if (result.status === 'stored') continue;
      const detail = describe(result, this.#claim.basis, this.#options.kind);
      for (const row of rows) reports.push({ row, status: result.status, code: result.code ?? '', detail });
    }
    reports.sort((a, b) => a.row - b.row);
    if (reports.length > 0) await this.#hooks.onRows?.(reports);
    this.#hooks.onProgress?.(this.#counts);
  }

  /**
   * The batch's results, or undefined once a write failed (this one, or an earlier batch's): the failure is kept and
   * the import stops. A busy database (STORAGE_BUSY) is tried again a few times first: the messages' ids are the same
   * each time, so what a failed try did store is answered duplicate, never stored twice.
   */
  async #written(messages: { raw: unknown; bytes: number }[]): Promise<ItemResult[] | undefined> {
    if (this.#writeFailure !== undefined) return undefined;
    // Once: a try again must not find the batch's own rows as earlier ones.
    let repeated: Map<number, ItemResult> | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        repeated ??= await this.#repeated(messages);
        return await this.#ingest(messages, repeated);
      } catch (error) {
        if (attempt < BUSY_ATTEMPTS && isCandorError(error, 'STORAGE_BUSY')) {
          await new Promise((resolve) => setTimeout(resolve, BUSY_PAUSE_MS * attempt));
          continue;
        }
        this.#writeFailure = error;
        return undefined;
      }
    }
  }

  /**
   * The batch through the pipeline, but for its rows answered duplicate already (`repeated`): those make no profile
   * and record no consent. With basis consent, the rows the import's gate refused go through it after the others, as
   * a later request would: the pipeline leaves a group's refused messages out of its resolution all at once, so a row
   * refused only because of a merge another refused row would make is refused with it there, while the import judged
   * it without that merge (and recorded its person's consent).
   */
  async #ingest(messages: { raw: unknown; bytes: number }[], repeated: ReadonlyMap<number, ItemResult>): Promise<ItemResult[]> {
    const { collect } = this.#deps;
    const { kind, source, actor } = this.#options;
    const receivedAt = Date.now();
    const sent = repeated.size === 0 ? messages : messages.filter((_, index) => !repeated.has(index));
    let refused: ReadonlySet<number> = new Set();
    if (this.#claim.basis === 'consent') {
      const recorded = await this.#recordConsent(this.#valid(sent, receivedAt));
      this.#counts.consents += recorded.consents;
      refused = recorded.refused;
    }
    const ingest = async (part: { raw: unknown; bytes: number }[]) => (part.length === 0 ? [] : await collect.ingest(part, kind === 'customers' ? 'identify' : undefined, { source, gpc: false, receivedAt, actor }));
    let answers: ItemResult[];
    if (refused.size === 0) answers = await ingest(sent);
    else {
      const first = await ingest(sent.filter((_, index) => !refused.has(index)));
      const later = await ingest(sent.filter((_, index) => refused.has(index)));
      let nextFirst = 0;
      let nextLater = 0;
      answers = sent.map((_, index) => ({ ...((refused.has(index) ? later[nextLater++] : first[nextFirst++]) as ItemResult), index }));
    }
    // Counted once the pipeline answered (a try again after a busy database sends them again, counted then).
    this.#counts.events += sent.length;
    if (repeated.size === 0) return answers;
    let next = 0;
    return messages.map((_, index) => repeated.get(index) ?? { ...(answers[next++] as ItemResult), index });
  }

  /**
   * The rows of a batch answered duplicate before the pipeline sees them, by index: a message id stored already
   * (collect.storedKeys), or given by an earlier row of the run that went through the pipeline (whatever its answer: a
   * message id names one message, and its first row's answer stands). The others' ids are remembered. Reads only.
   */
  async #repeated(messages: readonly { raw: unknown; bytes: number }[]): Promise<Map<number, ItemResult>> {
    const { source } = this.#options;
    const checked = this.#valid(messages, Date.now());
    const stored = await this.#deps.collect.storedKeys(checked.map(({ message }) => ({ source, dedupAt: message.dedupAt, messageId: message.messageId })));
    const repeated = new Map<number, ItemResult>();
    for (const { index, message, plan } of checked) {
      const key = runKey(source, message.messageId);
      const dropped = plan.dropped.length > 0 ? { dropped: plan.dropped } : {};
      if (stored.has(messageKey(source, message.dedupAt, message.messageId))) {
        repeated.set(index, { index, messageId: message.messageId, status: 'duplicate', ...dropped });
        continue;
      }
      if (this.runIds.has(key)) {
        repeated.set(index, { index, messageId: message.messageId, status: 'duplicate', detail: 'an earlier row of the file has the same message id', ...dropped });
        continue;
      }
      this.runIds.add(key);
      if (this.runIds.size > MAX_RUN_IDS) this.runIds.delete(this.runIds.values().next().value as string);
    }
    return repeated;
  }

  /**
   * The messages the pipeline will not reject as invalid, with what the tracking plan makes of them: their envelope
   * and the plan checked as the Collector checks them, so that no profile is made for a row that is not stored and no
   * consent recorded for it.
   */
  #valid(messages: readonly { raw: unknown; bytes: number }[], receivedAt: number): { index: number; message: ParsedMessage; plan: PlanResult }[] {
    const { catalog } = this.#deps;
    const kind = this.#options.kind === 'customers' ? 'identify' : undefined;
    const valid: { index: number; message: ParsedMessage; plan: PlanResult }[] = [];
    // Only a check, not counted: the Collector counts these messages in the plan's statistics when it processes them.
    for (const [index, { raw, bytes }] of messages.entries()) {
      const parsed = parseMessage(raw, kind, receivedAt, bytes);
      if (!parsed.ok) continue;
      const { name, data } = planInput(parsed.message);
      const plan = catalog.check(parsed.message.kind, name, data);
      if (plan.ok) valid.push({ index, message: parsed.message, plan });
    }
    return valid;
  }

  /**
   * Basis consent: resolves each row of the batch as the pipeline will resolve it — looked up by every identifier the
   * plan keeps (user id, anonymous id, e-mail, phone), blocked values ignored and erased people (any of their
   * identifiers suppressed) left out first, linked by those the gate keeps for the person — and records `given` for the
   * claimed purposes where the ledger has no record yet, for the people the rows the gate lets through are stored for
   * only: an import never overrides a refusal, a withdrawal, a GPC opt-out or an expired consent, and a re-run records
   * nothing twice. Someone nobody knows yet gets a profile, linked by the identifiers the pipeline will link once this
   * consent is recorded.
   */
  async #recordConsent(checked: readonly { index: number; message: ParsedMessage; plan: PlanResult }[]): Promise<{ consents: number; refused: ReadonlySet<number> }> {
    const { storage, identity, consent } = this.#deps;
    const { source, actor } = this.#options;
    const all = checked.map(({ index, message, plan }) => {
      // The rows of an import carry no context (no external ids).
      const lookup: ResolveItem = { identifiers: identifiersOf(message, plan.data.traits, plan.data.context), source, messageId: message.messageId, at: message.occurredAt };
      return { index, message, plan, lookup };
    });
    const none = { consents: 0, refused: new Set<number>() };
    if (all.length === 0) return none;
    // As the Collector does before its gate: the suppression list, then who is known already (looking up creates nothing).
    const suppressed = await identity.isSuppressedBatch(storage.raw, all.map((p) => p.lookup));
    const open = all.filter((_, i) => !suppressed[i]);
    if (open.length === 0) return none;
    // The person the pipeline's gate will see: the holder of the row's strongest known identifier.
    const found = await identity.lookupBatch(storage.raw, open.map((p) => p.lookup));
    const seen = [...new Set(found.filter((id): id is string => id !== null))];
    if (seen.length > 0) await consent.load(seen);
    const gate: ImportGate = { claimed: new Set(this.#claim.purposes), describes: this.#describes, consent };
    // Linked first as the pipeline links the message: by the fields the gate keeps for that person, whatever purposes
    // the import claims, with the import's consent where they have no record (nobody known: a purpose needing no
    // consent record, or a claimed one).
    const rows = open.map((p, i): ImportRow => {
      const at = found[i] ?? null;
      const gated = gateRow(gate, p.plan, at === null ? undefined : consent.decideMerged(at, [], p.plan.purposes), true);
      return { ...p, link: { ...p.lookup, identifiers: linkedBy(gate, p, gated) } };
    });
    // Every row is resolved and judged here, a known person's too: a row the gate will refuse must link, merge and make
    // nothing, nor get its person the import's consent, and a merge the pipeline would make for one row (its person
    // merged into someone who refused) changes what another row of the batch may do. Resolved as the pipeline resolves
    // it (the limit per identifier type: a new user id next to another account's address is someone new); an erasure
    // committed since the check above makes nobody.
    const { resolutions, persons: landed, refused } = await resolveGated(this.#deps, gate, rows, seen);
    const merges = resolutions.flatMap((r) => r.merges);
    if (merges.length > 0) await identity.notifyMerges(merges);
    // The import's consent goes to each person a row is stored for, as they are once the merges are applied (not to a
    // profile merged away), and to nobody else.
    const canonicals = await identity.canonicalsIn(storage.raw, landed);
    const persons = new Set(
      landed.flatMap((id) => {
        const canonical = canonicals.get(id);
        return canonical === undefined ? [] : [canonical];
      }),
    );
    await consent.load([...persons]);
    let recorded = 0;
    for (const profileId of persons) {
      const missing = this.#claim.purposes.filter((purpose) => consent.decide(profileId, purpose).reason === 'no_record');
      if (missing.length === 0) continue;
      // Checked again under the person's lock: another import (or a banner) may have recorded one since.
      const { entries } = await consent.record(
        profileId,
        missing.map((purpose) => ({ purpose, state: 'given' as const })),
        { mechanism: 'import', noticeVersion: this.#options.noticeVersion, jurisdiction: this.#options.jurisdiction, source, onlyUnrecorded: true },
        actor,
      );
      if (entries.length > 0) recorded++;
    }
    return { consents: recorded, refused: new Set(refused.map((row) => row.index)) };
  }

  /** The gate's own field rule, with the purposes the claimed basis allows. */
  #predictedAllowed(field: KeptField): boolean {
    return fieldAllowed(field, this.#predicted, this.#predictedExplicit, this.#describes);
  }

  /**
   * Dry run: the envelope and the tracking plan as the pipeline checks them, duplicates as the import answers them
   * (#repeated), then the suppression list, the gate predicted from the purposes' bases and identifiers the identity
   * rules refuse (blocked or malformed values), in the pipeline's order. Reads only.
   */
  async #predict(messages: readonly { raw: unknown; bytes: number }[]): Promise<ItemResult[]> {
    const { catalog, identity, storage, consent } = this.#deps;
    const { source } = this.#options;
    const now = Date.now();
    const checked: { index: number; message: ParsedMessage; plan: PlanResult; lookup: ResolveItem }[] = [];
    const repeated = await this.#repeated(messages);
    // The calls a real run would send through the pipeline: all but those the import answers duplicate itself.
    this.#counts.events += messages.length - repeated.size;
    const results = messages.map(({ raw, bytes }, index): ItemResult | undefined => {
      const duplicate = repeated.get(index);
      if (duplicate !== undefined) return duplicate;
      const parsed = parseMessage(raw, this.#options.kind === 'customers' ? 'identify' : undefined, now, bytes);
      if (!parsed.ok) return { index, messageId: parsed.messageId, status: 'invalid', code: parsed.code, detail: parsed.detail };
      const m = parsed.message;
      // Not counted in the plan's statistics: a dry run writes nothing.
      const { name, data } = planInput(m);
      const plan = catalog.check(m.kind, name, data);
      if (!plan.ok) return { index, messageId: m.messageId, status: 'invalid', code: plan.code ?? 'CATALOG_EVENT_INVALID', violations: plan.violations, dropped: plan.dropped };
      checked.push({ index, message: m, plan, lookup: { identifiers: identifiersOf(m, plan.data.traits, plan.data.context), source, messageId: m.messageId, at: m.occurredAt } });
      return undefined;
    });
    if (checked.length === 0) return results as ItemResult[];
    const suppressed = await identity.isSuppressedBatch(storage.raw, checked.map((c) => c.lookup));
    // Someone with no identifier left is nobody: the import records no consent for them, and the gate lets through only
    // the purposes that need no consent record.
    const forNobody = this.#predicted.filter((p) => (consent.purpose(p)?.basis ?? 'consent') !== 'consent');
    checked.forEach(({ index, message: m, plan, lookup }, i) => {
      if (suppressed[i]) {
        results[index] = { index, messageId: m.messageId, status: 'suppressed', code: 'COLLECT_SUBJECT_SUPPRESSED' };
        return;
      }
      const nobody = !lookup.identifiers.some((id) => identity.normalize(id) !== undefined);
      const allowed = nobody
        ? servedPurposes(plan, plan.purposes.filter((p) => forNobody.includes(p)), [], this.#describes)
        : servedPurposes(plan, plan.purposes.filter((p) => this.#predicted.includes(p)), this.#predictedExplicit, this.#describes);
      if (allowed.length === 0) {
        results[index] = { index, messageId: m.messageId, status: 'refused', code: 'COLLECT_NO_LAWFUL_BASIS', dropped: plan.dropped };
        return;
      }
      if (nobody) {
        // The gate let it through, but resolution finds no one to store it for (as the pipeline answers it).
        results[index] = { index, messageId: m.messageId, status: 'invalid', code: 'COLLECT_IDENTITY_MISSING', detail: 'blocked' };
        return;
      }
      const refusedFields = plan.fields.filter((f) => !this.#predictedAllowed(f)).map((f) => f.path);
      results[index] = { index, messageId: m.messageId, status: 'stored', purposes: allowed, dropped: plan.dropped, refusedFields };
    });
    return results as ItemResult[];
  }
}

/** What the gate of an import with basis consent needs to judge a row for a person: the purposes it claims. */
interface ImportGate {
  claimed: ReadonlySet<string>;
  describes: DescribesCategory;
  consent: Consent;
}

/** A row of an import with basis consent, as the import resolves it before the pipeline stores it. */
interface ImportRow {
  /** Its place among the messages of the batch sent through the pipeline. */
  index: number;
  message: ParsedMessage;
  plan: PlanResult;
  /** Every identifier of the row: the pipeline looks its person up by them. */
  lookup: ResolveItem;
  /** The identifiers to link first: those of the fields the gate keeps for the person its look-up finds beforehand. */
  link: ResolveItem;
}

/**
 * The consent gate for one row and one person, as it will decide once this import's consents are recorded: a purpose
 * of the row is allowed when the person's decision allows it (`decisions`; undefined: nobody known), or, where the
 * import's consent goes to that person (`withClaim`), when the import claims it and the person has no record of it
 * (recorded by this import, explicit where the purpose asks for it), or, for nobody known, when it needs no consent
 * record. Returns the purposes the row is stored for (servedPurposes; none: refused) and those allowed explicitly.
 */
function gateRow(gate: ImportGate, plan: PlanResult, decisions: ReadonlyMap<string, Decision> | undefined, withClaim: boolean): { served: readonly string[]; explicit: string[] } {
  const { claimed, consent } = gate;
  const allowed: string[] = [];
  const explicit: string[] = [];
  for (const purpose of plan.purposes) {
    const decision = decisions?.get(purpose);
    if (decision?.allowed) {
      allowed.push(purpose);
      if (decision.explicit) explicit.push(purpose);
    } else if (withClaim && claimed.has(purpose) && (decision === undefined || decision.reason === 'no_record')) {
      allowed.push(purpose);
      if (consent.purpose(purpose)?.explicit === true) explicit.push(purpose);
    } else if (decisions === undefined && (consent.purpose(purpose)?.basis ?? 'consent') !== 'consent') {
      allowed.push(purpose);
    }
  }
  return { served: servedPurposes(plan, allowed, explicit, gate.describes), explicit };
}

/**
 * The identifiers resolution links for a row the gate lets through: those of the fields it keeps for the purposes the
 * row is stored for, as the pipeline's gate keeps them (collect.service #gate, linkableItem).
 */
function linkedBy(gate: ImportGate, row: { message: ParsedMessage; plan: PlanResult }, gated: { served: readonly string[]; explicit: readonly string[] }): RawIdentifier[] {
  const traits = row.plan.data.traits;
  if (traits === undefined) return identifiersOf(row.message, undefined);
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(traits)) {
    const field = row.plan.declared.get(`traits.${key}`);
    if (field !== undefined && fieldAllowed(field, gated.served, gated.explicit, gate.describes)) kept[key] = value;
  }
  return identifiersOf(row.message, kept);
}

const linkKey = (identifiers: readonly RawIdentifier[]): string => JSON.stringify(identifiers.map((id) => [id.type, id.value]));

/**
 * Resolves rows of an import with basis consent as the pipeline will find them once they are stored
 * (collect.service #regateBeforeLinking): inside the transaction, before it commits, each row is gated for the person
 * the pipeline will gate it for once this commits (the one its strongest known identifier belongs to) and for the
 * person it lands on, with the consent they will have once the merges it makes are applied (every merged profile's
 * refusals, withdrawals, GPC opt-outs and restrictions bind it; a profile made by this transaction has no record; the
 * import's consent counts for the people rows land on). A row whose links are not the ones that gate keeps is resolved
 * again with those (one it comes back to never settles: it is refused), so that the pipeline links nothing more and
 * nothing the gate leaves out; a row that person would refuse is left out (one at a time in file order: firstRefused)
 * and the resolution made again without it, so that it links, merges and makes nothing. The consent of people not
 * loaded for this write (`loaded`) is loaded first. Rows an erasure committed meanwhile suppressed are left out too.
 * Returns the resolutions, the people rows land on and the rows refused.
 */
async function resolveGated(deps: CsvImportDeps, gate: ImportGate, rows: readonly ImportRow[], loaded: readonly string[]): Promise<{ resolutions: Resolution[]; persons: string[]; refused: ImportRow[] }> {
  const { storage, identity, consent } = deps;
  const fresh = new Set(loaded);
  const links = new Map(rows.map((row) => [row, row.link]));
  // The links each row was resolved with since a row was last left out.
  let tried = new Map(rows.map((row) => [row, new Set([linkKey(row.link.identifiers)])]));
  let left = rows;
  const refusedRows: ImportRow[] = [];
  for (let round = 0; ; round++) {
    if (round > 8 * rows.length + 8) throw new Error('identity resolution did not settle');
    try {
      return await storage.raw.transaction(async (tx) => {
        const erased = await identity.suppressedInGroup(tx, left.map((row) => row.lookup));
        left = left.filter((_, i) => !erased[i]);
        const resolutions = await identity.resolveBatch(tx, left.map((row) => links.get(row) ?? row.link));
        const merges = resolutions.flatMap((r) => r.merges);
        const made = new Set(resolutions.flatMap((r) => (r.created && r.holder !== null ? [r.holder] : [])));
        const { survivorOf, mergedInto } = mergeSurvivors(merges);
        // Each row is judged for the person its profile belongs to once every merge of the batch is applied (a later
        // row may merge it into someone else), as the pipeline will judge it after this commit.
        const persons = resolutions.map((r) => (r.profileId === null ? null : survivorOf(r.profileId)));
        // The person the pipeline's look-up will find: another than the row's own where the row leaves out its
        // strongest identifier (a field the gate does not keep) and someone else holds it.
        const found = await identity.lookupBatch(tx, left.map((row) => row.lookup));
        const gatedFor = persons.map((person, i) => (person === null ? null : survivorOf(found[i] ?? person)));
        const load = new Set<string>();
        for (const person of [...persons, ...gatedFor]) {
          if (person === null) continue;
          for (const id of [person, ...(mergedInto.get(person) ?? [])]) if (!made.has(id) && (!fresh.has(id) || !consent.isLoaded(id))) load.add(id);
        }
        if (load.size > 0) throw new ResolveAgain<ImportRow>([...load], new Set());
        const receiving = new Set(persons.filter((id): id is string => id !== null));
        const gated = (person: string, row: ImportRow) => gateRow(gate, row.plan, consent.decideMerged(person, mergedInto.get(person) ?? [], row.plan.purposes, made), receiving.has(person));
        const refused = new Set<ImportRow>();
        const relinked = new Map<ImportRow, RawIdentifier[]>();
        left.forEach((row, i) => {
          const person = persons[i] ?? null;
          const at = gatedFor[i] ?? null;
          if (person === null || at === null) return;
          const atGate = gated(at, row);
          if (atGate.served.length === 0) refused.add(row);
          else {
            const identifiers = linkedBy(gate, row, atGate);
            if (linkKey(identifiers) !== linkKey((links.get(row) ?? row.link).identifiers)) relinked.set(row, identifiers);
            else if (at !== person && gated(person, row).served.length === 0) refused.add(row);
          }
        });
        let again = false;
        for (const [row, identifiers] of relinked) {
          const seen = tried.get(row) ?? new Set<string>();
          const key = linkKey(identifiers);
          if (seen.has(key)) {
            refused.add(row);
            continue;
          }
          seen.add(key);
          tried.set(row, seen);
          links.set(row, { ...row.link, identifiers });
          again = true;
        }
        // Links first: a row refused with the others' links may be stored with theirs settled.
        if (again) throw new ResolveAgain<ImportRow>([], new Set());
        if (refused.size > 0) {
          // Whether a row is refused for its person as the merges of the rows up to some row leave it.
          const refusedBy = (row: ImportRow, person: string, merged: readonly string[]) => gateRow(gate, row.plan, consent.decideMerged(person, merged, row.plan.purposes, made), true).served.length === 0;
          throw new ResolveAgain<ImportRow>([], firstRefused(left, resolutions, gatedFor, refused, refusedBy));
        }
        return { resolutions, persons: [...receiving], refused: refusedRows };
      });
    } catch (error) {
      if (!(error instanceof ResolveAgain)) throw error;
      const again = error as ResolveAgain<ImportRow>;
      if (again.load.length > 0) {
        await consent.load(again.load);
        for (const id of again.load) fresh.add(id);
      }
      if (again.refused.size > 0) {
        refusedRows.push(...again.refused);
        left = left.filter((row) => !again.refused.has(row));
        tried = new Map(left.map((row) => [row, new Set([linkKey((links.get(row) ?? row.link).identifiers)])]));
      }
    }
  }
}

/**
 * The rows to leave out of a resolution first, of those refused (`refused`): one per group of rows that share a person
 * (a profile one resolves to, holds, merges or is gated for; rows of separate groups change nothing of each other's
 * resolution). Rows are taken as if one at a time in file order, each judged for its person as the merges of the rows
 * up to it leave it (`refusedBy`): the first row refused by then is left out, or, when a row is stored but its merge
 * makes earlier rows refused, the earliest of those. A row refused only because of a merge that a row refused itself
 * would make is thus judged again without that merge, whatever the batch size. (A row refused for the person the
 * pipeline gates it for, or for links that never settle, counts as refused by its own turn.)
 */
function firstRefused(
  rows: readonly ImportRow[],
  resolutions: readonly Resolution[],
  gatedFor: readonly (string | null)[],
  refused: ReadonlySet<ImportRow>,
  refusedBy: (row: ImportRow, person: string, merged: readonly string[]) => boolean,
): Set<ImportRow> {
  const parent = new Map<string, string>();
  const find = (key: string): string => {
    let root = key;
    for (let up = parent.get(root); up !== undefined && up !== root; up = parent.get(root)) root = up;
    parent.set(key, root);
    return root;
  };
  const join = (a: string, b: string) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(ra, rb);
  };
  resolutions.forEach((r, i) => {
    const row = `\u0000${i}`;
    for (const id of [r.profileId, r.holder, gatedFor[i] ?? null, ...r.merges.flatMap((m) => [m.from, m.into])]) if (id !== null) join(row, id);
  });
  // The merges of the rows up to each one, followed to their end (computed where asked).
  const upTo = new Map<number, ReturnType<typeof mergeSurvivors>>();
  const survivorsUpTo = (step: number) => {
    let known = upTo.get(step);
    if (known === undefined) {
      known = mergeSurvivors(resolutions.slice(0, step + 1).flatMap((r) => r.merges));
      upTo.set(step, known);
    }
    return known;
  };
  // The turn at which a refused row is first refused: its own, or that of the later row whose merge makes it refused.
  const turnOf = (i: number): number => {
    const row = rows[i] as ImportRow;
    const profileId = resolutions[i]?.profileId ?? null;
    if (profileId === null) return i;
    for (let step = i; step < resolutions.length; step++) {
      if (step > i && (resolutions[step]?.merges.length ?? 0) === 0) continue;
      const { survivorOf, mergedInto } = survivorsUpTo(step);
      const person = survivorOf(profileId);
      if (refusedBy(row, person, mergedInto.get(person) ?? [])) return step;
    }
    return i;
  };
  // Per group, the earliest turn at which a row is refused: the row whose turn it is when it is refused itself (it is
  // never stored, nor its merge made), else the earliest row refused then.
  const first = new Map<string, { turn: number; at: number }>();
  rows.forEach((row, i) => {
    if (!refused.has(row)) return;
    const group = find(`\u0000${i}`);
    const turn = turnOf(i);
    const best = first.get(group);
    if (best === undefined || turn < best.turn) first.set(group, { turn, at: i });
    else if (turn === best.turn && best.at !== turn && i === turn) first.set(group, { turn, at: i });
  });
  return new Set([...first.values()].map(({ at }) => rows[at] as ImportRow));
}

/**
 * A message id of the run, whatever its row's time: every row is received during the run, so the recent ids
 * (collect_recent_ids) make a later one a duplicate of an earlier one stored.
 */
const runKey = (source: string, messageId: string): string => `${source}\u0000${messageId}`;

/** A value-free explanation of a result: field paths and rules, never what the row held. */
function describe(result: ItemResult, basis: ConfiguredBasis, kind: ImportKind): string {
  switch (result.status) {
    case 'duplicate':
      if (result.detail !== undefined) return result.detail;
      return kind === 'events' ? 'stored earlier (same source and message id; an event is stored once, whatever the basis)' : 'stored earlier (same source, time and message id)';
    case 'suppressed':
      return 'the person was erased';
    case 'refused':
      return `no purpose of this row has a lawful basis for this person (import basis ${basis})`;
    default:
      if (result.violations && result.violations.length > 0) return result.violations.map((v) => `${v.path}: ${v.rule}`).join('; ');
      if (result.code === 'COLLECT_EVENT_TOO_LARGE') return `larger than ${MAX_EVENT_BYTES} bytes`;
      return result.detail ?? '';
  }
}
