import { pipeline, Transform } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kernel } from '../../kernel.ts';
import type { ItemResult } from '../../modules/collect/index.ts';
import { MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_BATCH_TAKEN_BYTES, MAX_DEPTH, MAX_EVENT_BYTES, OVER_BATCH_BUDGET, TOO_DEEP, type MessageKind } from '../../modules/collect/index.ts';
import { CandorError } from '../../shared/errors.ts';
import { carriesForbiddenKey, forbiddenKeyPath, jsonParser, messagesJsonParser, PARSE_AS } from '../json.ts';
import type { RouteAccess } from '../route-access.ts';
import { listWithinBudget, shortPath } from './answer-listing.ts';
import { isRecord } from '../../shared/objects.ts';
import { inSlices } from '../../shared/in-slices.ts';

const INGEST: RouteAccess = { audience: 'ingest', purpose: 'analytics.reporting' };
const SINGLE: readonly MessageKind[] = ['identify', 'track', 'page', 'screen', 'group', 'alias'];

const result = {
  type: 'object',
  properties: {
    index: { type: 'integer' },
    messageId: { type: 'string' },
    status: { type: 'string', enum: ['stored', 'duplicate', 'refused', 'invalid', 'suppressed'] },
    code: { type: 'string' },
    purposes: { type: 'array', items: { type: 'string' } },
    dropped: { type: 'array', items: { type: 'string' } },
    droppedUnlisted: { type: 'integer' },
    refusedFields: { type: 'array', items: { type: 'string' } },
    violations: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, rule: { type: 'string' }, message: { type: 'string' } } } },
    violationsUnlisted: { type: 'integer' },
    detail: { type: 'string' },
    gpcHonoured: { type: 'boolean' },
  },
} as const;
const resultList = { type: 'array', items: result } as const;
const answer = {
  type: 'object',
  properties: { success: { type: 'boolean' }, gpcHonoured: { type: 'boolean' }, results: resultList },
} as const;

/**
 * Most bytes of a single-message request body: a message's own limit (MAX_EVENT_BYTES, measured as compact UTF-8 JSON
 * by sizeOf, as in a batch) six times over, since a `\uXXXX` escape takes six bytes for at most three of UTF-8. A message
 * sent escaped, or modestly indented, is then answered as it would be in a batch, COLLECT_EVENT_TOO_LARGE only when it
 * is.
 */
const MAX_SINGLE_BODY_BYTES = 6 * MAX_EVENT_BYTES;

function isGpc(request: FastifyRequest): boolean {
  return request.headers['sec-gpc'] === '1';
}

/** A message answered invalid for a forbidden key (`__proto__`, `constructor`), at its path (shortened: shortPath). */
interface Forbidden {
  index: number;
  messageId: string | undefined;
  path: string;
}

/** What the pipeline gets in place of a message with a forbidden key: no object, so it is answered (and counted) invalid. */
const STAND_IN = { raw: null, bytes: 0 } as const;

/** `path`: already shortened when it is a batch-level context's, which every message of a batch may take. */
function forbiddenIn(message: Record<string, unknown>, index: number, path: string): Forbidden {
  const id = message.messageId;
  return { index, messageId: typeof id === 'string' ? id : typeof id === 'number' && Number.isFinite(id) ? String(id) : undefined, path: shortPath(path) };
}

async function ingest(kernel: Kernel, request: FastifyRequest, reply: FastifyReply, messages: { raw: unknown; bytes: number }[], kind: MessageKind | undefined, forbidden: readonly Forbidden[] = []) {
  const principal = request.principal;
  if (!principal?.source) throw new CandorError('AUTH_CREDENTIAL_WRONG_KIND', { expected: 'write_key' });
  const gpc = isGpc(request);
  const results = await kernel.collect.ingest(messages, kind, { source: principal.source, gpc, receivedAt: Date.now(), actor: { id: principal.tokenId, role: principal.role }, client: request.raw.socket });
  for (const { index, messageId, path } of forbidden) results[index] = { index, messageId, status: 'invalid', code: 'REQUEST_FORBIDDEN_KEY', detail: path };
  // Written as the answer's schema has it, a slice of results at a time: a batch may have MAX_BATCH_MESSAGES (27,962).
  // (Fastify types a serializer's input as an object, whatever the schema.)
  const serialize = reply.compileSerializationSchema(resultList) as unknown as (list: readonly ItemResult[]) => string;
  const listed = await inSlices(listWithinBudget(results), (slice) => [serialize(slice).slice(1, -1)]);
  // The answer says the signal was honoured when a message's result does (Sec-GPC: 1 or its own context.gpc, and the
  // opt-out in force for it): not for a request whose messages were all invalid, or whose opt-out could not be written.
  const gpcHonoured = results.some((r) => r.gpcHonoured === true);
  reply.code(200).type('application/json; charset=utf-8');
  return `{"success":true,${gpcHonoured ? '"gpcHonoured":true,' : ''}"results":[${listed.join(',')}]}`;
}

/** Thrown by sizeBound when a value nests deeper than MAX_DEPTH. */
const DEEPER = new Error('nested too deep');

/**
 * A bound on the UTF-8 size of a parsed JSON value written back as JSON, without writing it: a UTF-16 unit of a string
 * takes at most 6 bytes (`\uXXXX`), a number, boolean or null at most 32 characters. Stops once over `budget`; throws
 * DEEPER past MAX_DEPTH levels of objects and arrays.
 */
function sizeBound(value: unknown, budget: number, depth: number): number {
  if (typeof value === 'string') return 6 * value.length + 2;
  if (typeof value !== 'object' || value === null) return 32;
  if (depth > MAX_DEPTH) throw DEEPER;
  let n = 2;
  if (Array.isArray(value)) {
    for (const item of value) {
      n += sizeBound(item, budget - n, depth + 1) + 1;
      if (n > budget) return n;
    }
    return n;
  }
  for (const key in value) {
    n += 6 * key.length + 4 + sizeBound((value as Record<string, unknown>)[key], budget - n, depth + 1);
    if (n > budget) return n;
  }
  return n;
}

/**
 * A message's size for the per-event limit: the exact UTF-8 size of its JSON when it may exceed the limit (so the
 * refusal names it), otherwise a bound under the limit; most messages are far below it and need no serialization.
 * `extra`: the exact size of batch-level parts the message takes (written after its own keys), measured once per batch.
 * TOO_DEEP for a message nested deeper than MAX_DEPTH, which is then answered on its own and walked by nothing else.
 */
function sizeOf(value: unknown, extra = 0): number {
  let bound: number;
  try {
    bound = sizeBound(value, MAX_EVENT_BYTES - extra, 1);
  } catch (error) {
    if (error === DEEPER) return TOO_DEEP;
    throw error;
  }
  return bound + extra <= MAX_EVENT_BYTES ? bound + extra : Buffer.byteLength(JSON.stringify(value) ?? '') + extra;
}

/** The exact UTF-8 size of `,"key":value` as JSON.stringify writes it after an object's other keys. */
function memberSize(key: string, value: unknown): number {
  return Buffer.byteLength(`,${JSON.stringify(key)}:${JSON.stringify(value) ?? ''}`);
}

/** Whether an object has no own enumerable key (its JSON is `{}`, so a key added to it takes no comma). */
function isEmpty(value: object): boolean {
  for (const key in value) if (Object.hasOwn(value, key)) return false;
  return true;
}

/** A part sent as `null` is no part, as parseMessage reads it. */
const isAbsent = (v: unknown): v is undefined | null => v === undefined || v === null;

/** One top-level member of a batch-level context, measured once per batch. */
interface ContextMember {
  key: string;
  /** The exact UTF-8 size of `,"key":value`; TOO_DEEP when the value nests deeper than a message may. */
  bytes: number;
  /** Where the member holds a forbidden key, as a path from the message (`context.x.__proto__`), or undefined. */
  forbidden: string | undefined;
}

/**
 * The privacy signals of a batch-level context that a message's own context would otherwise override, `which` of them
 * batchSignalKeys found: `gpc: true` over the message's `gpc: false`, and the batch's
 * `consentManagement.deniedConsentIds` added to the message's own list.
 */
function withBatchSignals(batch: Record<string, unknown>, own: Record<string, unknown>, which: readonly ('gpc' | 'consentManagement')[]): Record<string, unknown> {
  const signals: Record<string, unknown> = {};
  if (which.includes('gpc')) signals.gpc = true;
  if (which.includes('consentManagement')) {
    const ownCm = own.consentManagement as Record<string, unknown>;
    const denied = (batch.consentManagement as Record<string, unknown>).deniedConsentIds as unknown[];
    signals.consentManagement = { ...ownCm, deniedConsentIds: [...((ownCm.deniedConsentIds as unknown[] | undefined) ?? []), ...denied] };
  }
  return signals;
}

/**
 * The members withBatchSignals adds to a message's own context (`gpc`, `consentManagement`), found without copying;
 * none when there is nothing to add (a malformed value of either side is left for the message's checks).
 */
function batchSignalKeys(batch: Record<string, unknown>, own: Record<string, unknown>): ('gpc' | 'consentManagement')[] {
  const keys: ('gpc' | 'consentManagement')[] = [];
  if (batch.gpc === true && own.gpc === false) keys.push('gpc');
  const batchCm = batch.consentManagement;
  const ownCm = own.consentManagement;
  if (isRecord(batchCm) && isRecord(ownCm) && Array.isArray(batchCm.deniedConsentIds) && batchCm.deniedConsentIds.length > 0) {
    const ownDenied = ownCm.deniedConsentIds;
    if (ownDenied === undefined || Array.isArray(ownDenied)) keys.push('consentManagement');
  }
  return keys;
}

/**
 * A batch-level context's members summed once, so that what a message with a context of its own takes is found in
 * time linear in that message's own keys, never in the batch context's size times the number of messages.
 */
interface MemberIndex {
  byKey: Map<string, ContextMember>;
  /** How many members, and their bytes (TOO_DEEP ones not counted in the bytes). */
  count: number;
  bytes: number;
  /** The members nested too deep, and those holding a forbidden key, in order. */
  tooDeep: ContextMember[];
  forbidden: ContextMember[];
}

function indexMembers(members: readonly ContextMember[]): MemberIndex {
  const index: MemberIndex = { byKey: new Map(), count: members.length, bytes: 0, tooDeep: [], forbidden: [] };
  for (const m of members) {
    index.byKey.set(m.key, m);
    if (m.bytes === TOO_DEEP) index.tooDeep.push(m);
    else index.bytes += m.bytes;
    if (m.forbidden !== undefined) index.forbidden.push(m);
  }
  return index;
}

/**
 * What a message with a context of its own takes of the batch-level one (the members it does not have): how many,
 * their bytes, whether one nests too deep, and the first forbidden key among them. Linear in the message's own keys:
 * a member it does not override is found by skipping the ones it does.
 */
function takenOf(index: MemberIndex, own: Record<string, unknown>): { count: number; bytes: number; tooDeep: boolean; forbidden: string | undefined } {
  let count = index.count;
  let bytes = index.bytes;
  let tooDeep = index.tooDeep.length;
  for (const key of Object.keys(own)) {
    const m = index.byKey.get(key);
    if (m === undefined) continue;
    count--;
    if (m.bytes === TOO_DEEP) tooDeep--;
    else bytes -= m.bytes;
  }
  let forbidden: string | undefined;
  for (const m of index.forbidden) {
    if (Object.hasOwn(own, m.key)) continue;
    forbidden = m.forbidden;
    break;
  }
  return { count, bytes, tooDeep: tooDeep > 0, forbidden };
}

/** The members of a batch-level context, each measured (and searched for forbidden keys when `poisoned`) once. */
function membersOf(context: Record<string, unknown>, poisoned: boolean): ContextMember[] {
  return Object.keys(context).map((key) => {
    const value = context[key];
    // A computed key defines `__proto__` as a plain member here, as JSON.parse did, instead of setting a prototype.
    const at = poisoned ? forbiddenKeyPath({ context: { [key]: value } }) : undefined;
    const forbidden = at === undefined ? undefined : shortPath(at);
    try {
      // The value sits at the depth of a message's context member: message 1, context 2, value 3.
      sizeBound(value, Number.POSITIVE_INFINITY, 3);
    } catch (error) {
      if (error === DEEPER) return { key, bytes: TOO_DEEP, forbidden };
      throw error;
    }
    return { key, bytes: memberSize(key, value), forbidden };
  });
}

/** Content codings a request body may have (RFC 9110 section 8.4.1; x-gzip is gzip), besides identity. */
const SUPPORTED_CODINGS = ['gzip', 'x-gzip', 'deflate'];
/** The Accept-Encoding of a 415 answer to a coding Candor cannot decode (RFC 9110 section 15.5.16). */
const ACCEPTED_CODINGS = 'gzip, deflate';

/**
 * The one coding to undo for a Content-Encoding header: `identity` for none, or undefined when the body cannot be
 * read, being in an unknown coding or in more than one (stacked codings are not undone). Codings are case-insensitive
 * and `identity` in the list changes nothing.
 */
function contentCoding(header: string | undefined): 'identity' | 'gzip' | 'deflate' | undefined {
  if (header === undefined) return 'identity';
  let coding: 'identity' | 'gzip' | 'deflate' = 'identity';
  for (const part of header.split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '' || name === 'identity') continue;
    if (coding !== 'identity') return undefined;
    if (name === 'gzip' || name === 'x-gzip') coding = 'gzip';
    else if (name === 'deflate') coding = 'deflate';
    else return undefined;
  }
  return coding;
}

/**
 * Passes an inflated body on up to the first chunk past `limit` (which Fastify answers 413), then takes nothing more,
 * so the inflater stalls. Fastify only stops listening at the limit, and the inflater would otherwise go on inflating
 * all the body it has been given: half a megabyte of gzip inflates to half a gigabyte.
 */
function bounded(limit: number): Transform {
  let passed = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, next) {
      passed += chunk.length;
      this.push(chunk);
      if (passed <= limit) next();
    },
  });
}

/** Headers a browser may always send: the write key, the body's type and encoding, Sec-GPC. */
const BASE_HEADERS = 'authorization, content-type, content-encoding, sec-gpc';
/** A list of header names as a preflight asks for them (RFC 9110 tokens, comma-separated), of a sane length. */
const HEADER_NAMES = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t]*,[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;

/**
 * The headers a CORS preflight is allowed: those it asks for. Client libraries add their own, and differ: analytics.js
 * sends X-Retry-Count on a resend; RudderStack's browser SDK sends AnonymousId and SentAt with every request and
 * Rsa-Retry-Attempt, Rsa-Since-Last-Attempt, … on resends. Allowing them is safe: answers allow any origin but never
 * credentials (cookies), and Candor reads none of those headers but the write key, the body's type and encoding and
 * Sec-GPC.
 */
function allowedHeaders(requested: string | undefined): string {
  const asked = requested?.trim() ?? '';
  return asked.length > 0 && asked.length <= 2048 && HEADER_NAMES.test(asked) ? asked : BASE_HEADERS;
}

/**
 * The Segment HTTP tracking API (identify, track, page, screen, group, alias, batch and import), so existing Segment
 * and RudderStack client libraries can send to Candor unchanged. Every answer lists a result per message.
 */
export function registerSegmentRoutes(app: FastifyInstance, kernel: Kernel): void {
  // Browsers send JSON as text/plain (no CORS preflight); some server libraries compress.
  app.addContentTypeParser('text/plain', { parseAs: PARSE_AS }, jsonParser);
  // @rudderstack/rudder-sdk-node gzips by default and axios then labels the JSON body as a form; still JSON.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: PARSE_AS }, jsonParser);
  app.addHook('preParsing', async (request, reply, payload) => {
    const coding = contentCoding(request.headers['content-encoding']);
    if (coding === undefined) {
      reply.header('accept-encoding', ACCEPTED_CODINGS);
      throw new CandorError('REQUEST_UNSUPPORTED_MEDIA_TYPE', { header: 'content-encoding', supported: SUPPORTED_CODINGS });
    }
    if (coding === 'identity') return payload;
    // The body limit applies to the inflated body; Fastify checks Content-Length against the bytes received.
    // A body that does not inflate (garbage, or cut short) is an error on the inflating stream, which the body reader
    // hears when it reads. A request answered without reading its body (an unsupported content type, a refused
    // credential) has no reader, and an error nobody listens to would end the process: the inflater keeps a listener of
    // its own for as long as it lives (pipeline's goes once the source has ended, before a cut-short body's error).
    const inflater = coding === 'gzip' ? createGunzip() : createInflate();
    inflater.on('error', () => {});
    // The inflated body is held to the route's limit, not to a ratio of the compressed size: a request then costs no more
    // than an uncompressed one at the limit, and real batches of repeated events inflate 80 times and more, so a ratio
    // low enough to matter would refuse some of them whole.
    const inflated = pipeline(payload, inflater, bounded(request.routeOptions.bodyLimit), () => {}) as unknown as typeof payload & { receivedEncodedLength: number };
    inflated.receivedEncodedLength = 0;
    payload.on('data', (chunk: Buffer) => {
      inflated.receivedEncodedLength += chunk.length;
    });
    // Answered (or the connection gone) before the body was read to its end: nothing more of it is inflated or read.
    reply.raw.once('close', () => {
      if (!inflated.readableEnded) inflated.destroy();
    });
    return inflated;
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('access-control-allow-origin', '*');
    return payload;
  });
  app.options(
    '/v1/*',
    { config: { access: { audience: 'public', purpose: 'essential.service.operations' } }, schema: { hide: true } },
    async (request, reply) => {
      reply
        .header('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS')
        .header('access-control-allow-headers', allowedHeaders(request.headers['access-control-request-headers']))
        .header('vary', 'Access-Control-Request-Headers')
        .header('access-control-max-age', '86400')
        .code(204);
      return '';
    },
  );

  // A forbidden key (`__proto__`, `constructor`) spoils only the message that carries it: these routes parse such a body
  // and answer that message on its own, in their own scope, as the other ingest routes (consent) refuse it whole.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    for (const type of ['application/json', 'text/plain', 'application/x-www-form-urlencoded']) scope.addContentTypeParser(type, { parseAs: PARSE_AS }, messagesJsonParser);
    registerMessageRoutes(scope, kernel);
  });
}

/** Keys of a batch request whose forbidden keys spoil only the messages that take them. */
const MESSAGE_PARTS: ReadonlySet<string> = new Set(['batch', 'context']);

function registerMessageRoutes(app: FastifyInstance, kernel: Kernel): void {
  // analytics.js (@segment/analytics-next) posts to Segment's short paths: /v1/t, /v1/i, … and /v1/b for batches.
  for (const kind of SINGLE) {
    for (const path of [`/v1/${kind}`, `/v1/${kind.charAt(0)}`]) {
      app.post(
        path,
        {
          bodyLimit: MAX_SINGLE_BODY_BYTES,
          config: { access: INGEST },
          schema: { tags: ['ingest'], summary: `Segment ${kind} call.`, body: { type: 'object' }, response: { 200: answer } },
        },
        async (request, reply) => {
          const body = request.body as Record<string, unknown>;
          if (carriesForbiddenKey(body)) return ingest(kernel, request, reply, [STAND_IN], kind, [forbiddenIn(body, 0, forbiddenKeyPath(body) ?? '')]);
          return ingest(kernel, request, reply, [{ raw: body, bytes: sizeOf(body) }], kind);
        },
      );
    }
  }

  for (const path of ['/v1/batch', '/v1/import', '/v1/b']) {
    app.post<{ Body: { batch: unknown[]; context?: unknown; sentAt?: unknown; integrations?: unknown } }>(
      path,
      {
        bodyLimit: MAX_BATCH_BYTES,
        config: { access: INGEST },
        schema: {
          tags: ['ingest'],
          summary: 'A batch of Segment messages (each with its own type).',
          body: { type: 'object' },
          response: { 200: answer },
        },
      },
      async (request, reply) => {
        const { batch, context, sentAt } = request.body;
        if (!Array.isArray(batch) || batch.length === 0 || batch.length > MAX_BATCH_MESSAGES) throw new CandorError('COLLECT_BATCH_INVALID');
        const poisoned = carriesForbiddenKey(request.body);
        // Anywhere but in the messages and the batch-level context they take, a forbidden key spoils the request.
        if (poisoned && forbiddenKeyPath(request.body, MESSAGE_PARTS) !== undefined) throw new CandorError('REQUEST_FORBIDDEN_KEY');
        const contextPath = poisoned ? forbiddenKeyPath({ context }) : undefined;
        // Shortened once: every message that takes the context is answered with it.
        const contextForbidden = contextPath === undefined ? undefined : shortPath(contextPath);
        const forbidden: Forbidden[] = [];
        // `null` is no batch-level part, as it is no part of a message: the message's own null takes the batch's.
        const hasContext = !isAbsent(context);
        const hasSentAt = !isAbsent(sentAt);
        // A batch-level context nested too deep makes every message that takes it too deep.
        const contextTooDeep = hasContext && sizeOf({ context }) === TOO_DEEP;
        // The per-event limit applies to a message as merged: the batch-level parts it takes count for it, measured once.
        let contextBytes: number | undefined;
        let memberIndex: MemberIndex | undefined;
        let sentAtBytes: number | undefined;
        // The bytes of batch-level parts the messages took so far, exactly (see MAX_BATCH_TAKEN_BYTES).
        let takenTotal = 0;
        // A slice at a time: a batch may have MAX_BATCH_MESSAGES (27,962; the pipeline takes them so too).
        const messages = await inSlices(batch, (slice, start) => slice.map((raw, i) => {
          const index = start + i;
          if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
            const message = raw as Record<string, unknown>;
            // The batch-level context is merged into a message's own, whose members win (Segment's HTTP API). A message
            // with no context (or `null`) takes it whole, and so does every message when it is no object: each is then
            // answered COLLECT_MESSAGE_INVALID, never stored without the consent signals the batch may have carried.
            const own = message.context;
            const takesContext = hasContext && (isAbsent(own) || !isRecord(context));
            const mergesContext = isRecord(context) && isRecord(own);
            // The batch-level members a message with a context of its own takes: those it does not have.
            const taken = mergesContext ? takenOf((memberIndex ??= indexMembers(membersOf(context, poisoned))), own as Record<string, unknown>) : undefined;
            if (poisoned) {
              // Answered here and never copied: the pipeline assigns fields, and assigning `__proto__` sets a prototype.
              const at = forbiddenKeyPath(message) ?? (takesContext ? contextForbidden : taken?.forbidden);
              if (at !== undefined) {
                forbidden.push(forbiddenIn(message, index, at));
                return STAND_IN;
              }
            }
            // The message as measured: without a null the batch-level part replaces.
            let measured = message;
            const replace = (key: string) => {
              if (message[key] !== null) return;
              if (measured === message) measured = { ...message };
              delete measured[key];
            };
            // Measured first, from the sizes of the parts it takes; built only when within the limit, so that a batch
            // whose context is large costs no copy per message (a copy within the limit is at most MAX_EVENT_BYTES).
            let extra = 0;
            if (takesContext) {
              replace('context');
              if (contextTooDeep) return { raw: message, bytes: TOO_DEEP };
              extra += contextBytes ??= memberSize('context', context);
            } else if (taken !== undefined && taken.count > 0) {
              if (taken.tooDeep) return { raw: message, bytes: TOO_DEEP };
              // Each member taken adds its `,"key":value`; into an empty context, the first one without its comma.
              extra += taken.bytes;
              if (isEmpty(own as Record<string, unknown>)) extra -= 1;
            }
            // The batch's privacy signals are never weakened by a message's own members (fail closed): its GPC signal
            // stands over a message's `gpc: false`, and its denied consent ids are added to the message's own.
            const signals = mergesContext ? batchSignalKeys(context, own as Record<string, unknown>) : [];
            // Counted as the batch's whole member would be: never less than what the message now carries.
            for (const key of signals) extra += memberIndex?.byKey.get(key)?.bytes ?? 0;
            // Batch-level context and sentAt apply to every message: the sentAt to those with none of their own.
            const takesSentAt = isAbsent(message.sentAt) && hasSentAt;
            if (takesSentAt) {
              replace('sentAt');
              // Only a string or a number is a time: another sentAt (an array, perhaps nested thousands deep) makes the
              // message COLLECT_TIMESTAMP_INVALID, and is not measured.
              if (typeof sentAt === 'string' || typeof sentAt === 'number') extra += sentAtBytes ??= memberSize('sentAt', sentAt);
            }
            const bytes = sizeOf(measured, extra > 0 && isEmpty(measured) ? extra - 1 : extra);
            if (bytes === TOO_DEEP || bytes > MAX_EVENT_BYTES) return { raw: message, bytes };
            // A message that takes batch-level parts past the batch's budget is answered, not merged.
            if (extra > 0 && takenTotal + extra > MAX_BATCH_TAKEN_BYTES) return { raw: message, bytes: OVER_BATCH_BUDGET };
            takenTotal += extra;
            const merged: Record<string, unknown> = { ...message };
            if (takesContext) merged.context = context;
            else if (taken !== undefined && taken.count > 0) merged.context = isEmpty(own as Record<string, unknown>) ? context : { ...context, ...(own as Record<string, unknown>) };
            if (signals.length > 0) merged.context = { ...(merged.context as Record<string, unknown>), ...withBatchSignals(context as Record<string, unknown>, own as Record<string, unknown>, signals) };
            if (takesSentAt) merged.sentAt = sentAt;
            return { raw: merged, bytes };
          }
          return { raw, bytes: 0 };
        }));
        return ingest(kernel, request, reply, messages, undefined, forbidden);
      },
    );
  }
}
