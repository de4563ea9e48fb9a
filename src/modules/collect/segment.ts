import { randomUUID } from 'node:crypto';
import type { ErrorCode } from '../../shared/error-codes.ts';
import { inTimeRange, isoTime } from '../../shared/iso-time.ts';
import { unusableText } from '../../shared/text.ts';
import { isIdentifierType } from '../identity/index.ts';
import { isDataUseUnder, type DataUseLookup } from '../taxonomy/index.ts';
import { isRecord } from '../../shared/objects.ts';

/** The Segment message types Candor accepts. */
export type MessageKind = 'identify' | 'track' | 'page' | 'screen' | 'group' | 'alias';
export const MESSAGE_KINDS: readonly MessageKind[] = ['identify', 'track', 'page', 'screen', 'group', 'alias'];

/** Largest single event, as Segment documents it. */
export const MAX_EVENT_BYTES = 32 * 1024;
/**
 * Largest batch request body (after inflating): RudderStack's server's 4 MB, beyond the 500 KB Segment documents, since
 * RudderStack's libraries build larger batches (rudder-sdk-node measures 450 KB in UTF-16 units, not bytes, and may send
 * a batch whatever its size after waiting for one in flight; the browser SDK's ceiling is 524,288 characters) and retry
 * no 4xx answer: a batch refused whole is lost.
 */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Fewest bytes a message takes in a batch a client library builds, with its comma. Every message Segment's and
 * RudderStack's libraries send carries, besides its type and id, a messageId (a UUID or longer: 50 bytes with its key),
 * a time (`timestamp` or `originalTimestamp`, 38 bytes) and `context.library` (46 bytes even with an empty name and
 * version): with `{"type":"page","userId":1}` and its comma, 164 bytes at the least, which this rounds down for a margin.
 * A bare page call weighs 286 bytes from @rudderstack/rudder-sdk-node and 309 from @segment/analytics-node; the browser
 * libraries add the page and the user agent.
 */
const MIN_LIBRARY_MESSAGE_BYTES = 150;
/**
 * Most messages of a batch: as many as MAX_BATCH_BYTES holds of the smallest message a client library sends, so that
 * no batch a library builds within the body limit is refused for its count (libraries put no bound on it and resend no
 * 4xx). It bounds the work and the answer (a result per message, some 90 bytes each) of a body of messages no library
 * sends: `[0,0,…]`, two bytes each, which a few hundred bytes of gzip hold.
 */
export const MAX_BATCH_MESSAGES = Math.floor(MAX_BATCH_BYTES / MIN_LIBRARY_MESSAGE_BYTES);
/** Deepest nesting of objects and arrays in a message (deeper ones are refused before anything walks them). */
export const MAX_DEPTH = 64;
/** The `bytes` of a message nested deeper than MAX_DEPTH (its size was not measured). */
export const TOO_DEEP = -1;
/**
 * Most bytes of batch-level parts (context members, sentAt) a batch's messages may take in all, counted exactly: a
 * batch-level context is copied into every message, so a small request could otherwise cost the work (and memory) of
 * a very large one. Three times the body limit (with the body, 16 MB as merged): far above what real batch-level parts
 * make (a `sentAt` of ~40 bytes, a context of a few hundred, times a few thousand messages).
 */
export const MAX_BATCH_TAKEN_BYTES = 3 * MAX_BATCH_BYTES;
/** The `bytes` of a message of a batch past MAX_BATCH_TAKEN_BYTES (not merged, not processed). */
export const OVER_BATCH_BUDGET = -2;
/** How far in the future a timestamp may be (clock skew) before the event is refused. */
const MAX_FUTURE_MS = 5 * 60 * 1000;

/** An identifier as sent, before normalization and pseudonymization. */
export interface RawIdentifier {
  type: string;
  value: string;
  /** Another type the value is also checked under on the suppression list (identity's `Identifier.alsoSuppressedAs`). */
  alsoSuppressedAs?: string;
}

/** A Segment message after envelope checks: ids, name, timestamps; payload still as sent. */
export interface ParsedMessage {
  kind: MessageKind;
  messageId: string;
  /** Whether the sender gave the messageId (only then can duplicates be recognised). */
  messageIdGiven: boolean;
  userId: string | undefined;
  anonymousId: string | undefined;
  previousId: string | undefined;
  groupId: string | undefined;
  /** Event name (track) or page/screen name. */
  name: string | undefined;
  /** A page's or screen's `category` as sent (Segment's field): it goes through the plan as the `category` property. */
  category: unknown;
  occurredAt: string;
  /**
   * The sender's own time of the message (`timestamp`, else `originalTimestamp`), '' when it gave neither: with the
   * source and messageId the key that recognises a re-sent message, which carries both unchanged.
   */
  dedupAt: string;
  properties: unknown;
  traits: unknown;
  context: unknown;
  /** The message carried its own `writeKey` field (browser clients). */
  writeKey: string | undefined;
  /**
   * The sender flagged the message with a Global Privacy Control signal (`context.gpc: true`, e.g. a server relaying
   * a browser's `Sec-GPC: 1`): a protocol field, taken out of the context, never stored with the event.
   */
  gpc: boolean;
  /**
   * Purposes the person denied for this message, as RudderStack's browser SDK says (`context.consentManagement`'s
   * `deniedConsentIds`, trimmed and lower-cased; see undeniedPurposes for what an entry denies): a protocol field, taken
   * out of the context, never stored. It only takes purposes away; its `allowedConsentIds` grants nothing.
   */
  denied: readonly string[];
  /**
   * The message's own top-level keys outside the protocol (PROTOCOL_FIELDS), as sent; NONE when it has none. Never
   * kept: the tracking plan lists and counts them as dropped.
   */
  otherKeys: readonly string[];
  bytes: number;
}

export type ParseOutcome = { ok: true; message: ParsedMessage } | { ok: false; code: ErrorCode; messageId: string | undefined; detail: string };

const NONE: readonly string[] = Object.freeze([]);

/**
 * The top-level fields of a message in the Segment and RudderStack protocols, on any call type: those Candor reads,
 * and the envelope their libraries and servers write (routing, library metadata, times), which says nothing about the
 * person. Whether a call type takes `properties` or `traits` is the tracking plan's to say. Any other key (a stray
 * `email`, RudderStack's mobile `userProperties`) is dropped, and the plan lists and counts it.
 */
const PROTOCOL_FIELDS: ReadonlySet<string> = new Set([
  // Read by Candor.
  'type', 'messageId', 'userId', 'anonymousId', 'previousId', 'groupId', 'event', 'name', 'category',
  'properties', 'traits', 'context', 'timestamp', 'originalTimestamp', 'sentAt', 'writeKey',
  // Envelope: `integrations` and `_metadata` (analytics.js, analytics-node, rudder-sdk-node), `channel` (RudderStack's
  // libraries), and what Segment's servers add to events they relay (`receivedAt`, `version`).
  'integrations', '_metadata', 'channel', 'receivedAt', 'version',
  // Envelope: RudderStack's mobile libraries (rudder-sdk-android, rudder-sdk-ios).
  'action', 'destinationProps',
]);

/** Fields holding ids: strings, or whole numbers read as text; null, absent or blank when there is none. */
const ID_FIELDS = ['messageId', 'userId', 'anonymousId', 'previousId', 'groupId'] as const;

/**
 * An id of another type than text or a whole number JSON carries exactly. A number beyond 2^53 has been rounded by the
 * time it is read (9007199254740993 arrives as …992, another person's id), and 1e21 or 2.5 would be read as text no
 * sender wrote ("1e+21"): such an id is refused rather than guessed.
 */
function malformedId(v: unknown): boolean {
  return v !== undefined && v !== null && typeof v !== 'string' && !Number.isSafeInteger(v);
}

function idValue(v: unknown): string | undefined {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v;
  if (Number.isSafeInteger(v)) return String(v);
  return undefined;
}

function parseTime(v: unknown): number | undefined | null {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') return null;
  // Text must be ISO 8601: what Date.parse reads besides ("May 5", "x 1", "2025-02-30") is guesswork about a date.
  const t = typeof v === 'number' ? v : isoTime(v.trim());
  // Outside years 1 to 9999 a time is stored as text that sorts wrong (or could not be written as a date at all).
  return inTimeRange(t) ? t : null;
}

/** Most characters of a messageId (client libraries send UUIDs or similar; a longer one is not an id). */
export const MAX_MESSAGE_ID_LENGTH = 256;
/**
 * Most characters of a userId, anonymousId, previousId or groupId: the same everywhere a person is named by one
 * (ingestion, `/v1/consent`, privacy-center sessions), so nobody is stored under an id they could not consent with.
 */
export const MAX_ID_LENGTH = 256;

/** Why an id field cannot name a person (too long, or unusable as a name), or undefined. */
function idProblem(field: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.length > MAX_ID_LENGTH) return `${field} longer than ${MAX_ID_LENGTH} characters`;
  return unusableField(field, value);
}

/** `field: why` when the field is present and cannot name anything, else undefined. */
function unusableField(field: string, value: string | undefined): string | undefined {
  const why = value === undefined ? undefined : unusableText(value);
  return why && `${field}: ${why}`;
}

/**
 * Checks the envelope of one Segment message (type, ids, timestamps, size) and picks out its parts, following the
 * Segment spec's field names. `kind` is fixed by the endpoint for single calls and read from `type` in batches.
 */
export function parseMessage(raw: unknown, kind: MessageKind | undefined, receivedAt: number, bytes: number): ParseOutcome {
  if (!isRecord(raw)) return { ok: false, code: 'COLLECT_MESSAGE_INVALID', messageId: undefined, detail: 'not an object' };
  const givenId = idValue(raw.messageId);
  const fail = (code: ErrorCode, detail: string): ParseOutcome => ({ ok: false, code, messageId: givenId, detail });
  if (bytes === TOO_DEEP) return fail('COLLECT_MESSAGE_INVALID', `nested deeper than ${MAX_DEPTH} levels`);
  if (bytes === OVER_BATCH_BUDGET) return fail('COLLECT_BATCH_CONTEXT_TOO_LARGE', `over ${MAX_BATCH_TAKEN_BYTES} bytes taken`);
  if (bytes > MAX_EVENT_BYTES) return fail('COLLECT_EVENT_TOO_LARGE', `${bytes} bytes`);
  if (givenId !== undefined) {
    if (givenId.length > MAX_MESSAGE_ID_LENGTH) return fail('COLLECT_MESSAGE_INVALID', `messageId longer than ${MAX_MESSAGE_ID_LENGTH} characters`);
    const why = unusableField('messageId', givenId);
    if (why) return fail('COLLECT_MESSAGE_INVALID', why);
  }
  const type = kind ?? (typeof raw.type === 'string' ? raw.type : undefined);
  if (!type || !(MESSAGE_KINDS as readonly string[]).includes(type)) return fail('COLLECT_MESSAGE_TYPE_UNKNOWN', 'type');
  // An id of another type (an object, true, NaN) is a sender's mistake, not an absent id: read as absent, a message
  // whose userId is malformed would be stored as its anonymous device's.
  for (const field of ID_FIELDS) if (malformedId(raw[field])) return fail('COLLECT_MESSAGE_INVALID', `${field} must be a string or a whole number up to 2^53`);
  const userId = idValue(raw.userId);
  const anonymousId = idValue(raw.anonymousId);
  if (!userId && !anonymousId) return fail('COLLECT_IDENTITY_MISSING', 'userId/anonymousId');
  const previousId = idValue(raw.previousId);
  const groupId = idValue(raw.groupId);
  const unusableId = idProblem('userId', userId) ?? idProblem('anonymousId', anonymousId) ?? idProblem('previousId', previousId) ?? idProblem('groupId', groupId);
  if (unusableId) return fail('COLLECT_MESSAGE_INVALID', unusableId);
  let name: string | undefined;
  if (type === 'track') {
    if (typeof raw.event !== 'string' || raw.event.trim() === '') return fail('COLLECT_MESSAGE_INVALID', 'event');
    name = raw.event;
  } else if (type === 'page' || type === 'screen') {
    // A name that is no string is refused, as an event that is none: dropped, it would go unreported.
    if (raw.name !== undefined && raw.name !== null && typeof raw.name !== 'string') return fail('COLLECT_MESSAGE_INVALID', 'name');
    name = typeof raw.name === 'string' ? raw.name : undefined;
  }
  const unusable = unusableField(type === 'track' ? 'event' : 'name', name);
  if (unusable) return fail('COLLECT_MESSAGE_INVALID', unusable);
  if (type === 'alias' && (!previousId || !userId)) return fail('COLLECT_MESSAGE_INVALID', 'previousId/userId');
  if (type === 'group' && !groupId) return fail('COLLECT_MESSAGE_INVALID', 'groupId');
  const timestamp = parseTime(raw.timestamp);
  const original = parseTime(raw.originalTimestamp);
  const sentAt = parseTime(raw.sentAt);
  if (timestamp === null || original === null || sentAt === null) return fail('COLLECT_TIMESTAMP_INVALID', timestamp === null ? 'timestamp' : original === null ? 'originalTimestamp' : 'sentAt');
  // The sender's own time of the event: Segment's libraries send `timestamp`, RudderStack's `originalTimestamp`.
  const given = timestamp ?? original;
  // Segment's clock-skew correction, whenever the sender also says when it sent (`sentAt`, the message's or its
  // batch's): the device's clock is trusted for the interval between the event and the send, not for absolute time.
  const at = given === undefined ? receivedAt : sentAt !== undefined ? receivedAt - (sentAt - given) : given;
  if (!inTimeRange(at)) return fail('COLLECT_TIMESTAMP_INVALID', 'timestamp');
  if (at > receivedAt + MAX_FUTURE_MS) return fail('COLLECT_TIMESTAMP_IN_FUTURE', 'timestamp');
  for (const part of ['properties', 'traits', 'context'] as const) {
    if (raw[part] !== undefined && raw[part] !== null && !isRecord(raw[part])) return fail('COLLECT_MESSAGE_INVALID', part);
  }
  let context = isRecord(raw.context) ? raw.context : undefined;
  let gpc = false;
  if (context !== undefined && context.gpc !== undefined) {
    // A privacy signal that cannot be read is not ignored: the message is refused, and the sender told why.
    if (typeof context.gpc !== 'boolean') return fail('COLLECT_MESSAGE_INVALID', 'context.gpc (a boolean)');
    const { gpc: signal, ...rest } = context;
    gpc = signal as boolean;
    context = rest;
  }
  let denied: readonly string[] = NONE;
  if (context !== undefined && context.consentManagement !== undefined) {
    const { consentManagement: given, ...rest } = context;
    if (!isRecord(given)) return fail('COLLECT_MESSAGE_INVALID', 'context.consentManagement (an object)');
    const ids = given.deniedConsentIds;
    if (ids !== undefined) {
      if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) return fail('COLLECT_MESSAGE_INVALID', 'context.consentManagement.deniedConsentIds (an array of strings)');
      // Read so as to deny more rather than less: ` Analytics.Reporting` is the purpose a person meant.
      if (ids.length > 0) denied = (ids as string[]).map((id) => id.trim().toLowerCase());
    }
    context = rest;
  }
  // Segment clients send identify traits at the top level; older ones put them in context.traits, which are then the
  // traits (and no longer part of the context, so the answer does not list them as dropped).
  let traits = isRecord(raw.traits) ? raw.traits : undefined;
  if (traits === undefined && type === 'identify' && context !== undefined && isRecord(context.traits)) {
    const { traits: fallback, ...rest } = context;
    traits = fallback as Record<string, unknown>;
    context = rest;
  }
  const occurredAt = new Date(at).toISOString();
  // Checked without allocating: most messages have no other key.
  let otherKeys: string[] | undefined;
  for (const key in raw) if (!PROTOCOL_FIELDS.has(key) && Object.hasOwn(raw, key)) (otherKeys ??= []).push(key);
  return {
    ok: true,
    message: {
      kind: type as MessageKind,
      messageId: givenId ?? randomUUID(),
      messageIdGiven: givenId !== undefined,
      userId,
      anonymousId,
      previousId,
      groupId,
      name,
      // analytics-swift and analytics-kotlin send a screen's category at the top level, as pages have it.
      category: type === 'page' || type === 'screen' ? raw.category : undefined,
      occurredAt,
      // The sender's time, not the corrected one: a retry carries a later sentAt, and so another corrected time.
      dedupAt: given !== undefined ? new Date(given).toISOString() : '',
      properties: isRecord(raw.properties) ? raw.properties : undefined,
      traits,
      context,
      writeKey: typeof raw.writeKey === 'string' ? raw.writeKey : undefined,
      gpc,
      denied,
      otherKeys: otherKeys ?? NONE,
      bytes,
    },
  };
}

/**
 * The purposes of `purposes` the message does not deny, in their order (the same array when it denies none). An entry
 * denies the purpose it names and every purpose under it in the taxonomy (`analytics` denies `analytics.reporting`,
 * `marketing` a custom `promo_targeting` whose parent is `marketing.advertising`: isDataUseUnder, as consent
 * decisions class purposes); matched without regard to case (taxonomy keys are lower case).
 */
export function undeniedPurposes(message: ParsedMessage, purposes: readonly string[], uses: DataUseLookup): readonly string[] {
  if (message.denied.length === 0) return purposes;
  return purposes.filter((purpose) => !isDataUseUnder(uses, purpose.toLowerCase(), message.denied));
}

/**
 * The identifiers a message carries: ids always, email and phone from identify traits, and `custom:<type>` from
 * `context.externalIds` (Segment's `{ id, type, collection?, encoding? }` entries; entries whose lower-cased type is no
 * custom identifier name, or whose id is not a usable string or number, are left out). `traits` and `context` are the
 * message's data as far as it may be used: after the plan, or after the consent gate.
 */
export function identifiersOf(message: ParsedMessage, traits: Record<string, unknown> | undefined, context?: Record<string, unknown>): RawIdentifier[] {
  const out: RawIdentifier[] = [];
  if (message.userId) out.push({ type: 'user_id', value: message.userId });
  if (message.anonymousId) out.push({ type: 'anonymous_id', value: message.anonymousId });
  if (message.kind === 'alias' && message.previousId) {
    // alias links the id a person had before (in practice their anonymous id) to their user id. It may be a former
    // user id too, so an erased person's user id given as previousId is suppressed like their user id.
    out.push({ type: 'anonymous_id', value: message.previousId, alsoSuppressedAs: 'user_id' });
  }
  // Only an identify call's traits are the person's: a group call's email and phone are the company's, which would
  // merge everyone who joins it.
  if (traits && message.kind === 'identify') {
    if (typeof traits.email === 'string') out.push({ type: 'email', value: traits.email });
    if (typeof traits.phone === 'string') out.push({ type: 'phone', value: traits.phone });
  }
  const external = context?.externalIds;
  if (Array.isArray(external)) {
    for (const entry of external) {
      if (!isRecord(entry) || typeof entry.type !== 'string') continue;
      const type = `custom:${entry.type.toLowerCase()}`;
      const value = idValue(entry.id);
      if (value === undefined || !isIdentifierType(type) || unusableText(value) !== undefined) continue;
      // The same id sent twice is one identifier.
      if (!out.some((id) => id.type === type && id.value === value)) out.push({ type, value });
    }
  }
  return out;
}

/**
 * The parts of a message the tracking plan checks, and the event name it checks them under: a page or screen name is
 * free text, so it goes through the plan as the `name` property (unless one is given), never around it.
 */
export function planInput(message: ParsedMessage): { name: string | undefined; data: { properties: unknown; traits: unknown; context: unknown; otherKeys: readonly string[] } } {
  let { name, properties } = message;
  if ((message.kind === 'page' || message.kind === 'screen') && name !== undefined) {
    const given = (properties ?? {}) as Record<string, unknown>;
    properties = given.name === undefined ? { ...given, name } : given;
    name = undefined;
  }
  // A page's or screen's category likewise: kept when the plan declares `category` for them, else dropped and listed.
  if (message.category !== undefined && message.category !== null) {
    const given = (properties ?? {}) as Record<string, unknown>;
    if (given.category === undefined) properties = { ...given, category: message.category };
  }
  return { name, data: { properties, traits: message.traits, context: message.context, otherKeys: message.otherKeys } };
}
