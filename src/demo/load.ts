/**
 * Sends a synthetic shop to Candor the way a real shop would: through the ingestion API (consent first, then
 * identify, page views, product views and orders in batches), so every privacy step runs. The shop's last day is
 * today; customers who refuse profiling or browse with GPC say so in their consent calls.
 */
import { generateShop, type ShopCustomer, type ShopParams } from './shop.ts';

/** One HTTP call into the ingestion API (Fastify's `inject` or a real client), with the write key already set. */
export type Send = (url: string, body: unknown, headers?: Record<string, string>) => Promise<{ statusCode: number; body: string }>;

export interface LoadSummary {
  customers: number;
  refusedProfiling: number;
  gpc: number;
  events: number;
  stored: number;
  refused: number;
  orders: number;
}

const DAY_MS = 86_400_000;

function eventsOf(c: ShopCustomer, dayToIso: (day: number) => string): Record<string, unknown>[] {
  const events: Record<string, unknown>[] = [];
  const [first, ...last] = c.name.split(' ');
  events.push({ type: 'identify', userId: c.id, messageId: `${c.id}-identify`, timestamp: dayToIso(c.joinedDay), traits: { email: c.email, first_name: first, last_name: last.join(' '), country: c.country, age_range: c.survey.ageRange, gender: c.survey.gender } });
  c.sessions.forEach((s, i) => {
    events.push({ type: 'page', userId: c.id, messageId: `${c.id}-page-${i}`, name: 'Shop', timestamp: dayToIso(s.day), properties: { path: '/shop' } });
    s.productsViewed.forEach((productId, j) => {
      events.push({ type: 'track', userId: c.id, event: 'Product Viewed', messageId: `${c.id}-view-${i}-${j}`, timestamp: dayToIso(s.day), properties: { product_id: productId, category: productId.split('-')[0] } });
    });
  });
  for (const o of c.orders) {
    events.push({
      type: 'track',
      userId: c.id,
      event: 'Order Completed',
      messageId: o.orderId,
      timestamp: dayToIso(o.day),
      properties: { order_id: o.orderId, total: o.total, revenue: o.total, currency: 'EUR', products: o.items.map((item) => ({ product_id: item.productId, category: item.category, price: item.price, quantity: item.quantity })) },
    });
  }
  return events;
}

export async function loadShop(send: Send, params: Partial<ShopParams> & Pick<ShopParams, 'customers' | 'seed'>, options: { now?: Date; onProgress?: (done: number, total: number) => void } = {}): Promise<LoadSummary> {
  const now = options.now ?? new Date();
  const weeks = params.weeks ?? 78;
  // The shop ends at today's midnight (UTC), so each order keeps its time of day and none is in the future.
  const endMs = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const dayToIso = (day: number) => new Date(endMs - (weeks * 7 - day) * DAY_MS).toISOString();
  const summary: LoadSummary = { customers: 0, refusedProfiling: 0, gpc: 0, events: 0, stored: 0, refused: 0, orders: 0 };
  let pending: Record<string, unknown>[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const response = await send('/v1/batch', { batch: pending });
    if (response.statusCode !== 200) throw new Error(`batch refused (${response.statusCode}): ${response.body.slice(0, 300)}`);
    for (const r of (JSON.parse(response.body) as { results: { status: string }[] }).results) {
      if (r.status === 'stored' || r.status === 'duplicate') summary.stored++;
      else summary.refused++;
    }
    pending = [];
  };
  for (const c of generateShop(params)) {
    summary.customers++;
    if (!c.consent.profiling) summary.refusedProfiling++;
    if (c.consent.gpc) summary.gpc++;
    const purposes: Record<string, string> = {
      'analytics.reporting': 'given',
      'personalize.profiling': c.consent.profiling ? 'given' : 'refused',
      'marketing.communications.email': c.consent.marketingEmail ? 'given' : 'refused',
      fairness_audit: c.consent.fairnessAudit ? 'given' : 'refused',
    };
    const response = await send('/v1/consent', { userId: c.id, purposes, mechanism: c.consent.profiling ? 'banner_accept' : 'banner_save', source: 'https://shop.example/' }, c.consent.gpc ? { 'sec-gpc': '1' } : {});
    if (response.statusCode !== 200) throw new Error(`consent refused (${response.statusCode}): ${response.body.slice(0, 300)}`);
    const events = eventsOf(c, dayToIso);
    summary.events += events.length;
    summary.orders += c.orders.length;
    pending.push(...events);
    if (pending.length >= 200) await flush();
    options.onProgress?.(summary.customers, params.customers);
  }
  await flush();
  return summary;
}
