import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, type preParsingHookHandler } from 'fastify';
import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import { MIGRATIONS, type Kernel } from '../kernel.ts';
import { CandorError } from '../shared/errors.ts';
import { registerAdminRoutes } from './admin/index.ts';
import { registerIngestRoutes } from './ingest/index.ts';
import { installGuard } from './guard.ts';
import { jsonParser, PARSE_AS } from './json.ts';
import { HttpMetrics } from './metrics.ts';
import { answerClientError, answerUnsupportedExpectation, MAX_PARAM_LENGTH, newerSchemaCheck, sendProblem } from './problem.ts';
import { registerPublicRoutes } from './public/index.ts';
import { installStopping, type Stopping } from './stopping.ts';
import { registerSubjectRoutes } from './subject/index.ts';
import { addTextFormats } from './text-formats.ts';
import type { RouteRecord } from './route-access.ts';

export interface CandorServer {
  readonly app: FastifyInstance;
  /** Every registered route with its access declaration. */
  readonly routes: readonly RouteRecord[];
  readonly metrics: HttpMetrics;
  /** Once `app.close()` has begun: new requests answered SERVER_STOPPING, and when the route handlers are done. */
  readonly stopping: Stopping;
}

/** How long a connection may take, in milliseconds (docs/security.md, Connections). */
export interface ServerTimeouts {
  /** A whole request, headers and body, must arrive within this of its first byte; a silent new connection is closed. */
  request: number;
  /** How often requests are checked against `request`: a request is cut off at most this much after its time. */
  requestCheck: number;
  /** A connection silent this long is closed, unless a request of it is being worked on and not yet answered. */
  idle: number;
  /** A kept-alive connection waits this long for its next request. */
  keepAlive: number;
}

export const SERVER_TIMEOUTS: Readonly<ServerTimeouts> = Object.freeze({
  request: 30_000,
  // Node's default is 30 s: a request could go on for that long past its time.
  requestCheck: 1_000,
  idle: 60_000,
  // Longer than the 60 s idle timeout of common load balancers, so that they close a kept-alive connection first.
  keepAlive: 72_000,
});

/**
 * Requests of one connection let through and not yet answered in full (answer handed to the operating system): past
 * this, the connection is not read and the requests already read wait. A client that pipelines requests and never
 * reads the answers would otherwise have the server work on and keep every answer (docs/security.md, Connections).
 */
export const MAX_UNANSWERED = 16;

export interface ServerOptions {
  /** Registers extra routes before the server is sealed (tests, plugins); they pass the same guard. */
  extend?: (app: FastifyInstance) => void | Promise<void>;
  /** Other time limits than SERVER_TIMEOUTS (tests). */
  timeouts?: Partial<ServerTimeouts>;
}

/** Builds the HTTP server over a kernel: routes grouped by audience, each guarded by its declaration. */
export async function buildServer(kernel: Kernel, options: ServerOptions = {}): Promise<CandorServer> {
  const timeouts = { ...SERVER_TIMEOUTS, ...options.timeouts };
  const connections = new WeakMap<Socket, Connection>();
  const app = Fastify({
    loggerInstance: kernel.logger as FastifyBaseLogger,
    bodyLimit: kernel.config.bodyLimit,
    // Per-request lines would carry request details into logs; metrics count requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    // Answered SERVER_STOPPING (problem+json, Retry-After) by installStopping instead of Fastify's uncoded 503.
    return503OnClosing: false,
    exposeHeadRoutes: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    // Requests the router or Node's HTTP parser could not take are answered as problem+json with a code, like the rest.
    frameworkErrors: (error, request, reply) => void sendProblem(request, reply, error),
    clientErrorHandler: (error, socket) => answerClientError(error, socket, answeredOn(connections.get(socket))),
    // A request whose body trickles in (a byte every few seconds) would hold its connection for ever: the whole request
    // must arrive within 30 s (Fastify's default is no limit), checked every second (Node's default: 30 s). Node cuts a
    // request off no earlier than its headersTimeout either (60 s unless given), so that one is the same.
    requestTimeout: timeouts.request,
    http: { requestTimeout: timeouts.request, headersTimeout: timeouts.request, connectionsCheckingInterval: timeouts.requestCheck },
    // A connection without traffic while none of its requests is worked on (a client that stops reading an answer).
    connectionTimeout: timeouts.idle,
    keepAliveTimeout: timeouts.keepAlive,
    // request.ip is the client's address as proxies named in trustProxy report it (the rights rate limit counts it).
    trustProxy: kernel.config.trustProxy,
  });
  boundUnanswered(app, connections);
  closeWhenIdle(app.server, connections);
  // Node answers an Expect other than 100-continue with a bare 417 of its own.
  app.server.on('checkExpectation', answerUnsupportedExpectation);
  continueOnceChecked(app);
  const stopping = installStopping(app);
  // Answers about a person are never kept by a browser or a proxy cache: subject sessions and their routes, rights
  // requests (codes, download links) and staff reads of personal data. (A callback hook: no promise per request.)
  app.addHook('onSend', (request, reply, payload, done) => {
    const access = request.routeOptions.config.access;
    const url = request.routeOptions.url ?? '';
    if (access && (access.audience === 'subject' || access.personalData === true || url.startsWith('/v1/rights/') || url === '/v1/subject-sessions')) {
      reply.header('cache-control', 'no-store');
    }
    // Answered before its body arrived (a refused credential, an unknown route): instead of reading the rest of the body,
    // which could take as long as the client likes, the connection is closed once the answer is out.
    if (request.raw.complete === false && hasBody(request.raw)) reply.header('connection', 'close');
    done(null, payload);
  });
  // Bodies are validated strictly (no coercion, no silent removal of unknown fields); query strings and path
  // parameters arrive as text and are coerced to the declared types.
  const strict = addTextFormats(new Ajv({ allErrors: true, removeAdditional: false, coerceTypes: false, useDefaults: true, strict: false }));
  const coercing = addTextFormats(new Ajv({ allErrors: true, removeAdditional: false, coerceTypes: true, useDefaults: true, strict: false }));
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));

  app.removeAllContentTypeParsers();
  // By media type only: readsBody (Expect: 100-continue) finds parsers that way, not RegExp or '*' ones.
  app.addContentTypeParser('application/json', { parseAs: PARSE_AS }, jsonParser);

  const routes: RouteRecord[] = [];
  const metrics = new HttpMetrics();
  installGuard(app, kernel, routes);
  const unobserve = kernel.collect.observe((source, status, refused, count) => metrics.ingested(source, status, refused, count));
  app.addHook('onClose', async () => unobserve());

  // A newer release's migrations applied under this server break its statements: answered as such, not as a 500.
  const newerSchema = newerSchemaCheck(kernel.storage, MIGRATIONS, kernel.logger);
  app.setErrorHandler(async (error, request, reply) => sendProblem(request, reply, await newerSchema(error)));
  app.setNotFoundHandler((request, reply) => {
    // The ingest and subject routes answer any origin (OPTIONS /v1/* says so): a path under them this server does not
    // have (another API version's) is answered the coded 404 a browser can read, not a CORS failure.
    if (request.url.startsWith('/v1/') && !request.url.startsWith('/v1/admin/')) reply.header('access-control-allow-origin', '*');
    return sendProblem(request, reply, new CandorError('ROUTE_NOT_FOUND'));
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.observe(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Candor API',
        version: '0.1.0',
        description: 'Customer data platform with consent enforced by default. Errors are application/problem+json with a stable `code`.',
      },
      components: {
        securitySchemes: {
          apiToken: { type: 'http', scheme: 'bearer', description: 'Staff API token (cnd_…); the operation lists the roles it allows' },
          writeKey: { type: 'http', scheme: 'basic', description: 'Write key (cwk_…) as the Basic user name, the password empty' },
          writeKeyBearer: { type: 'http', scheme: 'bearer', description: 'Write key (cwk_…) as Bearer (browsers may put it in the body as `writeKey` instead)' },
          subjectSession: { type: 'http', scheme: 'bearer', description: 'Privacy-center session of a verified customer (css_…)' },
        },
      },
    },
  });
  await app.register(async (scope) => registerPublicRoutes(scope, kernel, metrics));
  await app.register(async (scope) => registerIngestRoutes(scope, kernel));
  await app.register(async (scope) => registerSubjectRoutes(scope, kernel));
  await app.register(async (scope) => registerAdminRoutes(scope, kernel), { prefix: '/v1/admin' });
  if (options.extend) await app.register(async (scope) => options.extend?.(scope));
  await app.ready();
  return { app, routes, metrics, stopping };
}

/**
 * Meets `Expect: 100-continue` once the request has been routed and has passed its route's checks (its credential, the
 * server not stopping, an ingest route's Content-Encoding), and only when the route would read its body: a
 * Content-Length within the route's body limit, a Content-Type the route parses. Otherwise the coded answer (401, 413
 * REQUEST_BODY_TOO_LARGE, 415 REQUEST_UNSUPPORTED_MEDIA_TYPE, …) goes out before the client sends the body. Node would
 * answer 100 Continue at once, before anything is checked, and a client still uploading when the answer comes and the
 * connection closes may see a reset instead of the answer (curl, and clients built on it such as analytics-php, send
 * the header for larger bodies). (A callback hook: no promise per request.)
 */
function continueOnceChecked(app: FastifyInstance): void {
  const expecting = new WeakSet<IncomingMessage>();
  // With a listener for 'checkContinue', Node neither answers 100 Continue nor emits 'request' on its own.
  app.server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    expecting.add(request);
    app.server.emit('request', request, response);
  });
  const meet: preParsingHookHandler = (request, reply, payload, done) => {
    if (expecting.delete(request.raw) && readsBody(request)) reply.raw.writeContinue();
    done(null, payload);
  };
  // The last step before the body is read: a route's own hooks run after those of its scopes, so this one runs after
  // every other preParsing hook of the route (which may refuse the request) wherever the route is registered.
  app.addHook('onRoute', (route) => {
    route.preParsing = [...(route.preParsing === undefined ? [] : [route.preParsing].flat()), meet];
  });
  // An unknown route is no route of onRoute's: its not-found handler reads a body it has a parser for, and runs only the
  // hooks of its scope.
  app.addHook('preParsing', (request, reply, payload, done) => {
    if (request.is404) meet.call(app, request, reply, payload, done);
    else done(null, payload);
  });
}

/**
 * Whether the route would read a request's body: Fastify refuses without reading it a Content-Length over the route's
 * limit, and a body of a type (or of none) no parser of the route's scope takes. (Candor's parsers are registered by
 * media type, which is what Fastify then looks them up by: a parser added by RegExp or as the '*' catch-all would be
 * used by Fastify but not found here, and a client waiting for 100 Continue would wait for nothing.)
 */
function readsBody(request: FastifyRequest): boolean {
  // Fastify never reads the body of these.
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'TRACE') return false;
  if (Number(request.headers['content-length']) > request.routeOptions.bodyLimit) return false;
  const mediaType = request.headers['content-type']?.split(';')[0] ?? '';
  return request.server.hasContentTypeParser(mediaType);
}

/** Whether a request announces a body (RFC 9112 section 6.3): a Content-Length other than 0, or a Transfer-Encoding. */
function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** What the server knows of one connection's requests. */
interface Connection {
  /** Answers of requests let through, in the order of the requests, until written out in full (or the connection is gone). */
  readonly open: Set<ServerResponse>;
  /** Requests read while MAX_UNANSWERED were open, in order: each is let through when an answer is written out. */
  readonly waiting: (() => void)[];
  /** Whether the server stopped reading the connection. */
  held: boolean;
  /** The last request let through, and its answer. */
  last: { readonly request: IncomingMessage; readonly response: ServerResponse } | undefined;
}

/**
 * Lets at most MAX_UNANSWERED requests of a connection be worked on or wait for their answers to be written out, and
 * stops reading the connection meanwhile. Node stops reading a connection whose answers pile up only once a whole
 * chunk of requests (64 KB, some 1,600 small GETs) has been read and each of them handed on: with answers made
 * asynchronously, a client that pipelines requests and reads none of the answers has the server make and keep all of
 * them. (A callback hook, run before the others: no promise per request, and nothing is done for a waiting request.)
 */
function boundUnanswered(app: FastifyInstance, connections: WeakMap<Socket, Connection>): void {
  app.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    // Requests injected in tests have no connection.
    if (!(socket instanceof Socket)) return done();
    let connection = connections.get(socket);
    if (connection === undefined) connection = watch(socket, connections);
    const tracked = connection;
    const admit = () => {
      tracked.open.add(reply.raw);
      tracked.last = { request: request.raw, response: reply.raw };
      reply.raw.once('close', () => settle(socket, tracked, reply.raw));
      if (tracked.open.size >= MAX_UNANSWERED && !tracked.held) {
        tracked.held = true;
        socket.pause();
      }
      done();
    };
    if (tracked.open.size >= MAX_UNANSWERED) tracked.waiting.push(admit);
    else admit();
  });
}

/** Starts tracking a connection. */
function watch(socket: Socket, connections: WeakMap<Socket, Connection>): Connection {
  const connection: Connection = { open: new Set(), waiting: [], held: false, last: undefined };
  connections.set(socket, connection);
  // Node resumes reading on its own (its backpressure gone, a request's body wanted): not while this holds it.
  socket.on('resume', () => {
    if (connection.held) socket.pause();
  });
  // Requests still waiting are not worked on for a connection that is gone.
  socket.once('close', () => {
    connection.waiting.length = 0;
  });
  return connection;
}

/** An answer of the connection was written out (or the connection is gone): the next request waiting goes on. */
function settle(socket: Socket, connection: Connection, response: ServerResponse): void {
  connection.open.delete(response);
  if (socket.destroyed) return;
  const next = connection.waiting.shift();
  if (next !== undefined) return next();
  if (connection.held && connection.open.size < MAX_UNANSWERED) {
    connection.held = false;
    socket.resume();
  }
}

/**
 * Whether something was already answered on a connection where the answer to a client error would go: an answer being
 * written, or the last request's answer written before its body arrived in full (the error is about that body).
 */
function answeredOn(connection: Connection | undefined): boolean {
  if (connection === undefined) return false;
  for (const response of connection.open) if (response.headersSent) return true;
  return connection.last !== undefined && connection.last.response.headersSent && !connection.last.request.complete;
}

/**
 * Closes a connection that stayed silent for the server's timeout (Fastify's connectionTimeout): before its first
 * request, or while an answer waits for the client to read it. A request still being worked on, the first of its
 * connection not yet answered, keeps its connection: a scoring run answers when it is done. (Between requests, Node
 * closes a kept-alive connection at keepAliveTimeout.)
 */
function closeWhenIdle(server: Server, connections: WeakMap<Socket, Connection>): void {
  // With a listener for 'timeout', Node leaves the socket to it instead of destroying it.
  server.on('timeout', (socket: Socket) => {
    const first = connections.get(socket)?.open.values().next().value;
    if (first !== undefined && !first.headersSent) return;
    socket.destroy();
  });
}
