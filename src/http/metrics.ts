import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of the HTTP server: request counts and latencies by route. */
export class HttpMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'method' | 'route' | 'status'>;
  readonly #latency: Histogram<'method' | 'route'>;
  readonly #ingested: Counter<'source' | 'status'>;
  readonly #refused: Counter<'source' | 'purpose'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'candor_' });
    this.#requests = new Counter({
      name: 'candor_http_requests_total',
      help: 'HTTP requests answered, by method, route and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.#latency = new Histogram({
      name: 'candor_http_request_duration_seconds',
      help: 'Time to answer HTTP requests, by method and route.',
      labelNames: ['method', 'route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.#ingested = new Counter({
      name: 'candor_ingest_messages_total',
      help: 'Messages received for ingestion, by source and outcome (stored, duplicate, refused, invalid, suppressed).',
      labelNames: ['source', 'status'],
      registers: [this.registry],
    });
    this.#refused = new Counter({
      name: 'candor_ingest_refused_total',
      help: 'Messages not stored because no purpose had a lawful basis, counted once per purpose they declared.',
      labelNames: ['source', 'purpose'],
      registers: [this.registry],
    });
  }

  /** Counts ingested messages by source and outcome, and each purpose they were refused for. */
  ingested(source: string, status: string, refusedPurposes: readonly string[], count: number): void {
    this.#ingested.inc({ source, status }, count);
    for (const purpose of refusedPurposes) this.#refused.inc({ source, purpose }, count);
  }

  observe(method: string, route: string, status: number, seconds: number): void {
    this.#requests.inc({ method, route, status: String(status) });
    this.#latency.observe({ method, route }, seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
