import { Agent, request } from 'node:http';

export interface LoadResult {
  requests: number;
  events: number;
  seconds: number;
  errors: number;
  p50: number;
  p99: number;
}

/**
 * Sends POSTs from `concurrency` keep-alive connections for `seconds`; each body comes from makeBody. Closed loop by
 * default (each connection sends its next request once answered); with `rate`, open loop: requests are sent on a fixed
 * schedule of `rate` a second whatever the answers (waiting for a free connection when all `concurrency` are busy), and
 * each latency counts from the request's scheduled time, so a server that falls behind shows it in full.
 */
export async function load(options: {
  url: string;
  headers: Record<string, string>;
  concurrency: number;
  seconds: number;
  makeBody: () => { body: string; events: number };
  check?: (status: number, body: string) => boolean;
  rate?: number;
}): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
  const target = new URL(options.url);
  const latencies: number[] = [];
  let events = 0;
  let errors = 0;
  const deadline = performance.now() + options.seconds * 1000;
  const started = performance.now();
  const one = (payload: { body: string; events: number }, t0 = performance.now()) =>
    new Promise<void>((resolve) => {
      const req = request(
        { agent, method: 'POST', hostname: target.hostname, port: target.port, path: target.pathname, headers: { ...options.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload.body) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            latencies.push(performance.now() - t0);
            if (res.statusCode === 200 && (!options.check || options.check(res.statusCode, text))) events += payload.events;
            else errors++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(payload.body);
    });
  const worker = async () => {
    while (performance.now() < deadline) await one(options.makeBody());
  };
  const scheduled = async (rate: number) => {
    // Bodies are made ahead, so that making one never delays a send.
    const total = Math.floor(rate * options.seconds);
    const bodies = Array.from({ length: total }, () => options.makeBody());
    const sent: Promise<void>[] = [];
    const begin = performance.now();
    for (let i = 0; i < total; i++) {
      const at = begin + (i * 1000) / rate;
      const wait = at - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      sent.push(one(bodies[i] as { body: string; events: number }, at));
    }
    await Promise.all(sent);
  };
  if (options.rate === undefined) await Promise.all(Array.from({ length: options.concurrency }, worker));
  else await scheduled(options.rate);
  // On a schedule, the rate is the one sent (the answers' tail after the last send is not part of it).
  const seconds = options.rate === undefined ? (performance.now() - started) / 1000 : Math.floor(options.rate * options.seconds) / options.rate;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { requests: latencies.length, events, seconds, errors, p50: at(0.5), p99: at(0.99) };
}
