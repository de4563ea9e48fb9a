import { Agent, request } from 'node:http';

/** Latency and count of one kind of request in a run (mixed traffic: batches, consent calls). */
export interface KindResult {
  requests: number;
  errors: number;
  p50: number;
  p99: number;
}

export interface LoadResult {
  requests: number;
  /** Events counted: those of answered requests (`count` decides how many of a request's events count). */
  events: number;
  seconds: number;
  errors: number;
  p50: number;
  p99: number;
  /** Per request kind, where the requests name one. */
  kinds: Record<string, KindResult>;
}

/** One request: its body and how many events it carries; by default POSTed to the run's URL with its headers. */
export interface Payload {
  body: string;
  events: number;
  /** Another path on the same server. */
  path?: string;
  /** Added to the run's headers. */
  headers?: Record<string, string>;
  /** Latency is also reported per kind. */
  kind?: string;
  /** Told every answer (status 0: the request failed). */
  answered?: (status: number, body: string) => void;
}

const percentile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

/**
 * Sends POSTs from `concurrency` keep-alive connections for `seconds`; each request comes from makeBody. Closed loop by
 * default (each connection sends its next request once answered); with `rate`, open loop: requests are sent on a fixed
 * schedule of `rate` a second whatever the answers (waiting for a free connection when all `concurrency` are busy), and
 * each latency counts from the request's scheduled time, so a server that falls behind shows it in full.
 * An answer other than 200, or one `check` rejects, is an error; `count` tells how many of a 200 answer's events count
 * (default: all the request carried).
 */
export async function load(options: {
  url: string;
  headers: Record<string, string>;
  concurrency: number;
  seconds: number;
  makeBody: () => Payload;
  check?: (status: number, body: string) => boolean;
  count?: (body: string, payload: Payload) => number;
  rate?: number;
}): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
  const target = new URL(options.url);
  const latencies: number[] = [];
  const byKind = new Map<string, { latencies: number[]; errors: number }>();
  let events = 0;
  let errors = 0;
  const deadline = performance.now() + options.seconds * 1000;
  const started = performance.now();
  const one = (payload: Payload, t0 = performance.now()) =>
    new Promise<void>((resolve) => {
      const kind = payload.kind === undefined ? undefined : (byKind.get(payload.kind) ?? byKind.set(payload.kind, { latencies: [], errors: 0 }).get(payload.kind));
      const failed = () => {
        errors++;
        if (kind) kind.errors++;
      };
      const req = request(
        {
          agent,
          method: 'POST',
          hostname: target.hostname,
          port: target.port,
          path: payload.path ?? target.pathname,
          headers: { ...options.headers, ...payload.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload.body) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            const latency = performance.now() - t0;
            latencies.push(latency);
            kind?.latencies.push(latency);
            if (res.statusCode === 200 && (!options.check || options.check(res.statusCode, text))) events += options.count ? options.count(text, payload) : payload.events;
            else failed();
            payload.answered?.(res.statusCode ?? 0, text);
            resolve();
          });
        },
      );
      req.on('error', () => {
        failed();
        payload.answered?.(0, '');
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
      sent.push(one(bodies[i] as Payload, at));
    }
    await Promise.all(sent);
  };
  if (options.rate === undefined) await Promise.all(Array.from({ length: options.concurrency }, worker));
  else await scheduled(options.rate);
  // On a schedule, the rate is the one sent (the answers' tail after the last send is not part of it).
  const seconds = options.rate === undefined ? (performance.now() - started) / 1000 : Math.floor(options.rate * options.seconds) / options.rate;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const kinds: Record<string, KindResult> = {};
  for (const [name, k] of byKind) {
    k.latencies.sort((a, b) => a - b);
    kinds[name] = { requests: k.latencies.length, errors: k.errors, p50: percentile(k.latencies, 0.5), p99: percentile(k.latencies, 0.99) };
  }
  return { requests: latencies.length, events, seconds, errors, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), kinds };
}

/** How many results of an ingestion answer have each status (`"status":"stored"` as Candor's serializer writes it). */
export function statusCounts(body: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of body.matchAll(/"status":"([a-z]+)"/g)) counts[m[1] as string] = (counts[m[1] as string] ?? 0) + 1;
  return counts;
}

/** The events an ingestion answer says were stored (not duplicate, suppressed, refused or invalid). */
export const storedCount = (body: string) => statusCounts(body).stored ?? 0;
