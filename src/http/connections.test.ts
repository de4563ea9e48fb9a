import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { buildServer, MAX_UNANSWERED, type CandorServer, type ServerTimeouts } from './server.ts';

const PUBLIC = { access: { audience: 'public', purpose: 'essential.service.operations' } } as const;

/** Resolves when the socket closes, or rejects after `ms` (far longer than any limit under test). */
function closed(socket: Socket, ms = 10_000): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the connection was still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A connection to the server whose answers are collected in `received` (the socket reads, so it sees the close). */
function open(port: number): { socket: Socket; received: () => string } {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.on('error', () => {});
  return { socket, received: () => received };
}

describeEachDialect('HTTP connections: time limits', (dialect) => {
  const ctx = useKernel(dialect);
  // Short limits, so that the tests wait a second or so; the defaults are SERVER_TIMEOUTS.
  const timeouts: ServerTimeouts = { request: 500, requestCheck: 100, idle: 1_500, keepAlive: 3_000 };
  let server: CandorServer;
  let port = 0;
  /** The server's side of each connection, by the client's port. */
  const accepted = new Map<number, Socket>();
  /** Requests of /test/counted worked on. */
  let counted = 0;

  before(async () => {
    server = await buildServer(ctx.kernel, {
      timeouts,
      extend: (scope) => {
        scope.get('/test/slow', { config: PUBLIC }, async () => {
          await sleep(timeouts.idle + 1_000);
          return { done: true };
        });
        scope.get('/test/large', { config: PUBLIC }, async () => 'x'.repeat(20_000_000));
        scope.post('/test/echo', { config: PUBLIC }, async (request) => ({ got: request.body }));
        // A new answer of 1 MB each time, as /openapi.json is serialized anew for each request.
        scope.get('/test/counted', { config: PUBLIC }, async () => {
          counted++;
          return 'x'.repeat(1_000_000);
        });
        // Answers before reading the body and keeps the connection (as no route of Candor's does: they close it).
        scope.post('/test/early', {
          config: PUBLIC,
          onRequest: (_request, reply, done) => {
            reply.hijack();
            reply.raw.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok');
            done();
          },
        }, async () => 'never');
      },
    });
    server.app.server.on('connection', (socket: Socket) => accepted.set(socket.remotePort ?? 0, socket));
    port = Number(new URL(await server.app.listen({ host: '127.0.0.1', port: 0 })).port);
  });
  after(async () => {
    await server.app.close();
  });

  it('answers and closes a connection that sends no request within the request time', async () => {
    const { socket, received } = open(port);
    try {
      await closed(socket);
    } finally {
      socket.destroy();
    }
    assert.match(received(), /^HTTP\/1\.1 400 /);
    assert.match(received(), /the request took too long to arrive/);
  });

  it('cuts off a body that trickles in once the request time is over, not a check interval of Node later', async () => {
    const { socket, received } = open(port);
    socket.write('POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"');
    const started = Date.now();
    // A byte every 100 ms: the whole body would take 100 s.
    const trickle = setInterval(() => socket.writable && socket.write('a'), 100);
    try {
      await closed(socket, 20_000);
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
    const elapsed = Date.now() - started;
    assert.match(received(), /^HTTP\/1\.1 400 /);
    assert.match(received(), /the request took too long to arrive/);
    // Node checks every connectionsCheckingInterval (30 s by default): the limit held within its own time plus a margin.
    assert.ok(elapsed < timeouts.request + 10 * timeouts.requestCheck + 2_000, `cut off after ${elapsed} ms`);
  });

  it('closes a connection whose client stops reading its answer once it has been idle', async () => {
    const { socket } = open(port);
    socket.once('data', () => socket.pause());
    socket.write('GET /test/large HTTP/1.1\r\nHost: x\r\n\r\n');
    try {
      await new Promise((resolve) => socket.once('connect', resolve));
      const serverSide = accepted.get(socket.localPort ?? 0);
      assert.ok(serverSide, 'the server side of the connection');
      // The paused client sees no close; the server's side of the connection tells.
      await closed(serverSide);
    } finally {
      socket.destroy();
    }
  });

  it('keeps a connection between requests for the keep-alive time, longer than the idle time, and closes it after', async () => {
    const { socket, received } = open(port);
    let arrived: (() => void) | undefined;
    socket.on('data', () => arrived?.());
    /** Sends a GET over the connection and reads its whole answer (by its Content-Length). */
    const get = async (path: string) => {
      const from = received().length;
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      for (;;) {
        const answer = received().slice(from);
        const end = answer.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(answer)?.[1];
        if (end >= 0 && length !== undefined && answer.length >= end + 4 + Number(length)) return answer;
        await new Promise<void>((resolve, reject) => {
          arrived = resolve;
          socket.once('close', () => reject(new Error(`the connection was closed: ${answer}`)));
        });
      }
    };
    try {
      assert.match(await get('/healthz'), /^HTTP\/1\.1 200 /);
      await sleep(timeouts.idle + 500);
      assert.match(await get('/healthz'), /^HTTP\/1\.1 200 /, 'the same connection, quiet for longer than the idle time');
      await closed(socket);
    } finally {
      socket.destroy();
    }
  });

  it('keeps the connection of a request that is worked on for longer than the idle time, and answers it', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/test/slow`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { done: true });
  });

  it('stops reading a connection whose client pipelines requests and reads none of the answers', async () => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    // The client reads nothing: answers pile up in the operating system's buffers, then in the server.
    socket.pause();
    const sent = 20_000;
    const request = 'GET /test/counted HTTP/1.1\r\nHost: x\r\n\r\n';
    const before = counted;
    try {
      socket.write(request.repeat(sent));
      await new Promise((resolve) => socket.once('connect', resolve));
      const serverSide = accepted.get(socket.localPort ?? 0);
      assert.ok(serverSide, 'the server side of the connection');
      // Until the server stops making answers (the operating system takes a few MB of them before the client reads).
      for (let last = -1; counted !== last; ) {
        last = counted;
        await sleep(300);
      }
      const handled = counted - before;
      // Node alone stops reading only after a whole chunk of requests (64 KB, some 1,500 of these) has been handed on.
      assert.ok(handled >= MAX_UNANSWERED && handled < 200, `${handled} of ${sent} requests worked on`);
      assert.ok(serverSide.bytesRead < (sent / 4) * request.length, `${serverSide.bytesRead} bytes read`);
      // Silent for the idle time, with answers waiting to be read: closed, the requests read past the bound never worked on.
      await closed(serverSide);
      assert.equal(counted - before, handled);
    } finally {
      socket.destroy();
    }
  });

  it('answers every request pipelined on a connection, in order, beyond the bound of unanswered ones', async () => {
    const { socket, received } = open(port);
    const count = 4 * MAX_UNANSWERED;
    try {
      socket.write(Array.from({ length: count }, (_, i) => `GET /healthz?n=${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join('') + 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await closed(socket);
    } finally {
      socket.destroy();
    }
    const statuses = received().match(/HTTP\/1\.1 \d{3}/g) ?? [];
    assert.deepEqual(statuses, Array(count + 1).fill('HTTP/1.1 200'));
  });

  it('closes the connection once it has answered a request whose body had not arrived, and writes nothing more', async () => {
    for (const head of [
      // A refused credential, answered before the body is read.
      'POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer cwk_0123456789abcdef_nope\r\nContent-Length: 5000\r\n\r\n{',
      'POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{',
    ]) {
      const { socket, received } = open(port);
      socket.write(head);
      // The body keeps coming, more slowly than the request time allows.
      const trickle = setInterval(() => socket.writable && socket.write(head.includes('chunked') ? '1\r\n \r\n' : ' '), 100);
      try {
        await closed(socket);
      } finally {
        clearInterval(trickle);
        socket.destroy();
      }
      const statuses = received().match(/HTTP\/1\.1 \d{3}/g) ?? [];
      assert.equal(statuses.length, 1, `one answer to ${head.split(' ', 2).join(' ')}: ${received()}`);
      assert.match(received(), /^connection: close\r$/im);
    }
  });

  it('writes no answer of its own for a request already answered whose body does not arrive in time', async () => {
    const { socket, received } = open(port);
    socket.write('POST /test/early HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"');
    const trickle = setInterval(() => socket.writable && socket.write('a'), 100);
    try {
      await closed(socket);
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
    // Cut off at the request time; a 400 written then would read as the answer to a request the client never sent.
    assert.match(received(), /^HTTP\/1\.1 200 /);
    assert.deepEqual(received().match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 200']);
  });

  it('answers an Expect header other than 100-continue with a coded problem, and closes the connection', async () => {
    for (const path of ['/healthz', '/test/echo']) {
      const { socket, received } = open(port);
      socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: teapot\r\n\r\n{}`);
      try {
        await closed(socket);
      } finally {
        socket.destroy();
      }
      const [head = '', body = ''] = received().split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 417 /);
      assert.match(head, /^content-type: application\/problem\+json\r?$/im);
      assert.match(head, /^connection: close\r?$/im);
      const problem = JSON.parse(body) as { status: number; code: string; details: unknown };
      assert.deepEqual([problem.status, problem.code, problem.details], [417, 'REQUEST_EXPECTATION_UNSUPPORTED', { header: 'expect', supported: ['100-continue'] }]);
    }
  });
});
