// A TCP proxy in front of PostgreSQL for fault tests: it forwards bytes both ways until told to stall (stop forwarding
// without closing anything, as a network that lost a flow does: no reset ever comes), either every connection or
// only those whose startup message carries an application_name ending in a given suffix.
import net from 'node:net';

interface Pair {
  client: net.Socket;
  server: net.Socket;
  /** The connection's startup message (it names the application_name). */
  startup: string;
  /** Bytes read while stalled, each way: written on once forwarding resumes. */
  heldUp: Buffer[];
  heldDown: Buffer[];
}

export interface TcpProxy {
  /** A postgres:// URL like `url`, through the proxy. */
  readonly url: string;
  /** Stops forwarding on every connection (suffix: only on those whose application_name ends with it), new ones too. */
  stall(suffix?: string): void;
  /** Forwards again. */
  resume(): void;
  /** Closes every connection open through it at once (each side sees its socket end or reset). */
  cut(): void;
  /** Connections open through the proxy. */
  readonly open: number;
  close(): Promise<void>;
}

/** Starts a proxy on a free local port to the host and port of `url` (a postgres:// URL). */
export async function startTcpProxy(url: string): Promise<TcpProxy> {
  const target = new URL(url);
  const pairs = new Set<Pair>();
  let stalled: { suffix: string | undefined } | undefined;
  const isStalled = (pair: Pair) => stalled !== undefined && (stalled.suffix === undefined || pair.startup.includes(`${stalled.suffix}\0`));
  const apply = (pair: Pair) => {
    if (isStalled(pair)) {
      pair.client.pause();
      pair.server.pause();
      return;
    }
    for (const chunk of pair.heldUp.splice(0)) pair.server.write(chunk);
    for (const chunk of pair.heldDown.splice(0)) pair.client.write(chunk);
    pair.client.resume();
    pair.server.resume();
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    const pair: Pair = { client, server: upstream, startup: '', heldUp: [], heldDown: [] };
    pairs.add(pair);
    client.on('data', (chunk) => {
      if (pair.startup === '') pair.startup = chunk.toString('latin1');
      if (isStalled(pair)) pair.heldUp.push(chunk);
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (isStalled(pair)) pair.heldDown.push(chunk);
      else client.write(chunk);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
    apply(pair);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(port);
  return {
    url: proxied.toString(),
    stall(suffix) {
      stalled = { suffix };
      for (const pair of pairs) apply(pair);
    },
    resume() {
      stalled = undefined;
      for (const pair of pairs) apply(pair);
    },
    cut() {
      for (const pair of pairs) {
        pair.client.resetAndDestroy();
        pair.server.destroy();
      }
      pairs.clear();
    },
    get open() {
      return pairs.size;
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.server.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
