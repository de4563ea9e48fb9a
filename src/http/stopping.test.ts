import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'node:test';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { buildServer } from './server.ts';

const PUBLIC = { access: { audience: 'public', purpose: 'essential.service.operations' } } as const;

/** A connection whose answers are collected, and a promise of its close. */
function open(port: number): { socket: Socket; received: () => string; closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => received, closed };
}

describeEachDialect('HTTP server: stopping', (dialect) => {
  const ctx = useKernel(dialect);

  it('answers a request that arrives while it stops SERVER_STOPPING (problem+json, 503, Retry-After) and closes its connection', async () => {
    const server = await buildServer(ctx.kernel);
    const accepted: Socket[] = [];
    server.app.server.on('connection', (socket: Socket) => accepted.push(socket));
    const port = Number(new URL(await server.app.listen({ host: '127.0.0.1', port: 0 })).port);
    const client = open(port);
    try {
      // Half of the request line and headers: the connection has a request in progress, so the close does not drop it.
      const head = 'GET /healthz HTTP/1.1\r\nHost: x\r\n';
      client.socket.write(head);
      while (accepted.length === 0 || (accepted[0]?.bytesRead ?? 0) < head.length) await sleep(5);
      const closing = server.app.close();
      client.socket.write('\r\n');
      await client.closed;
      await closing;
    } finally {
      client.socket.destroy();
    }
    const answer = client.received();
    assert.match(answer, /^HTTP\/1\.1 503 /);
    assert.match(answer, /\r\nretry-after: 5\r\n/i);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.match(answer, /\r\ncontent-type: application\/problem\+json/i);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { code: string; status: number };
    assert.equal(body.code, 'SERVER_STOPPING');
    assert.equal(body.status, 503);
  });

  it('answers a request in flight when it stops with Connection: close, and tells when its handler has finished', async () => {
    let entered = () => {};
    const handlerEntered = new Promise<void>((resolve) => (entered = resolve));
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const server = await buildServer(ctx.kernel, {
      extend: (scope) => {
        scope.get('/test/hold', { config: PUBLIC }, async () => {
          entered();
          await released;
          return { done: true };
        });
      },
    });
    const port = Number(new URL(await server.app.listen({ host: '127.0.0.1', port: 0 })).port);
    const client = open(port);
    try {
      client.socket.write('GET /test/hold HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      await handlerEntered;
      const closing = server.app.close();
      let settled = false;
      const handlersDone = server.stopping.settled().then(() => (settled = true));
      await sleep(0);
      assert.equal(settled, false, 'a handler at work is not settled');
      release();
      await handlersDone;
      await client.closed;
      await closing;
    } finally {
      client.socket.destroy();
    }
    assert.match(client.received(), /^HTTP\/1\.1 200 /);
    assert.match(client.received(), /\r\nconnection: close\r\n/i);
    assert.match(client.received(), /\{"done":true\}$/);
  });
});
