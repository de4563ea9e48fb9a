import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { MAX_BATCH_BYTES, MAX_EVENT_BYTES } from '../modules/collect/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { buildServer, type CandorServer } from './server.ts';

/** Resolves once `done` holds for what the socket received, or rejects after `ms`. */
function until(socket: Socket, received: () => string, done: (text: string) => boolean, ms = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!done(received())) return false;
      clearTimeout(timer);
      socket.off('data', check);
      socket.off('close', closed);
      resolve(received());
      return true;
    };
    const closed = () => {
      if (!check()) reject(new Error(`closed after ${JSON.stringify(received().slice(0, 200))}`));
    };
    const timer = setTimeout(() => reject(new Error(`nothing more after ${JSON.stringify(received().slice(0, 200))}`)), ms);
    socket.on('data', check);
    socket.on('close', closed);
    check();
  });
}

// Node meets `Expect: 100-continue` at once unless told otherwise: a client then sends a body the server refuses (too
// large, a wrong credential) and, still uploading when the answer comes and the connection closes, may see a reset.
describeEachDialect('HTTP: Expect: 100-continue', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let port = 0;
  let writeKey = '';
  const opened: Socket[] = [];
  /**
   * Sends a request's head with Expect: 100-continue; the body is sent by the test, if at all. `body`: the headers that
   * describe it (JSON unless told).
   */
  const ask = (path: string, length: number, key = writeKey, body = 'Content-Type: application/json\r\n', method = 'POST') => {
    const socket = connect(port, '127.0.0.1');
    opened.push(socket);
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('error', () => {});
    socket.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${Buffer.from(`${key}:`).toString('base64')}\r\n${body}Content-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`);
    return { socket, received: () => received };
  };
  /** Sends a body once the server answered 100 Continue (and nothing else); the answer that follows, head and body. */
  const continued = async (path: string, body: string | Buffer, headers?: string) => {
    const { socket, received } = ask(path, Buffer.byteLength(body), writeKey, headers);
    await until(socket, received, (text) => text.includes('\r\n\r\n'));
    assert.equal(received(), 'HTTP/1.1 100 Continue\r\n\r\n');
    socket.write(body);
    const text = await until(socket, received, (t) => /\r\n\r\n[^]*\]\}$/.test(t.slice(25)));
    const [, head = '', answer = ''] = text.split('\r\n\r\n');
    return { head, answer };
  };
  /** The first answer on a connection that is closed after it, with its problem body. */
  const refused = async (path: string, length: number, key?: string, body?: string) => {
    const { socket, received } = ask(path, length, key, body);
    const text = await until(socket, received, () => socket.destroyed || socket.readableEnded);
    const [head = '', answer = ''] = text.split('\r\n\r\n');
    return { head, problem: JSON.parse(answer) as { status: number; code: string; details?: { header?: string } } };
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    port = Number(new URL(await server.app.listen({ host: '127.0.0.1', port: 0 })).port);
  });
  after(async () => {
    for (const socket of opened) socket.destroy();
    await server.app.close();
  });

  it('answers a body larger than the route takes 413 REQUEST_BODY_TOO_LARGE instead of 100 Continue, each route by its own limit', async () => {
    const cases: [string, number][] = [
      ['/v1/track', 6 * MAX_EVENT_BYTES + 1],
      ['/v1/batch', MAX_BATCH_BYTES + 1],
      // A route with the server's limit (CANDOR_BODY_LIMIT).
      ['/v1/consent', ctx.kernel.config.bodyLimit + 1],
    ];
    for (const [path, length] of cases) {
      const { head, problem } = await refused(path, length);
      assert.match(head, /^HTTP\/1\.1 413 /, `${path}: ${head}`);
      assert.match(head, /^connection: close\r?$/im);
      assert.deepEqual([problem.status, problem.code], [413, 'REQUEST_BODY_TOO_LARGE'], path);
    }
  });

  it('answers a refused write key 401 instead of 100 Continue', async () => {
    const { head, problem } = await refused('/v1/batch', 100_000, 'cwk_nobody_secret');
    assert.match(head, /^HTTP\/1\.1 401 /, head);
    assert.equal(problem.code, 'AUTH_CREDENTIAL_INVALID');
  });

  it('answers a body in a coding or of a type the route does not take 415 instead of 100 Continue', async () => {
    const cases: [string, string | undefined][] = [
      // An ingest route's own check, in a hook of its scope.
      ['Content-Type: application/json\r\nContent-Encoding: br\r\n', 'content-encoding'],
      // No parser for the type, or no type at all.
      ['Content-Type: application/xml\r\n', undefined],
      ['', undefined],
    ];
    for (const [headers, header] of cases) {
      const { head, problem } = await refused('/v1/batch', 1_000, writeKey, headers);
      assert.match(head, /^HTTP\/1\.1 415 /, `${JSON.stringify(headers)}: ${head}`);
      assert.match(head, /^connection: close\r?$/im);
      assert.deepEqual([problem.code, problem.details?.header], ['REQUEST_UNSUPPORTED_MEDIA_TYPE', header], headers);
    }
  });

  it('answers 100 Continue to a gzip body of a type only the ingest routes parse, then inflates and answers it', async () => {
    const body = gzipSync(JSON.stringify({ batch: [{ type: 'track', userId: 'u-continue', event: 'Product Viewed', messageId: 'c-gzip' }] }));
    const { head, answer } = await continued('/v1/batch', body, 'Content-Type: text/plain\r\nContent-Encoding: gzip\r\n');
    assert.match(head, /^HTTP\/1\.1 200 /, head);
    assert.equal((JSON.parse(answer) as { results: { messageId: string }[] }).results[0]?.messageId, 'c-gzip');
  });

  it('answers 100 Continue on an unknown route, whose not-found handler reads the body, and then 404', async () => {
    const body = '{}';
    const { socket, received } = ask('/v1/nothing-here', body.length);
    await until(socket, received, (text) => text.includes('\r\n\r\n'));
    assert.equal(received(), 'HTTP/1.1 100 Continue\r\n\r\n');
    socket.write(body);
    const text = await until(socket, received, (t) => t.endsWith('}'));
    assert.match(text.split('\r\n\r\n')[1] ?? '', /^HTTP\/1\.1 404 /);
  });

  it('answers a GET with a body and Expect at once, without 100 Continue (its body is never read)', async () => {
    const { socket, received } = ask('/readyz', 2, writeKey, undefined, 'GET');
    const text = await until(socket, received, (t) => t.includes('\r\n\r\n'));
    assert.doesNotMatch(text, /^HTTP\/1\.1 100 /);
    assert.match(text, /^HTTP\/1\.1 \d{3} /);
  });

  it('answers 100 Continue to a request it takes, then reads the body and answers it', async () => {
    // Over the single-message limit, within the batch limit: a batch route's own limit is the one that counts.
    const batch = Array.from({ length: 3_000 }, (_, i) => ({ type: 'track', userId: 'u-continue', event: 'Product Viewed', messageId: `c${i}` }));
    const body = JSON.stringify({ batch });
    assert.ok(body.length > 6 * MAX_EVENT_BYTES);
    const { head, answer } = await continued('/v1/batch', body);
    assert.match(head, /^HTTP\/1\.1 200 /, head);
    assert.equal((JSON.parse(answer) as { results: unknown[] }).results.length, 3_000);
  });
});
