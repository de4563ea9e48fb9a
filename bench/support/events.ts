import { randomUUID } from 'node:crypto';

/** A deterministic pseudo-random source, so runs are comparable. */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CATEGORIES = ['Shoes', 'Jackets', 'Bags', 'Hats', 'Socks'];

/** Realistic shop traffic in Segment's spec: page views, product views, cart adds, orders, identifies. */
export function makeEvent(random: () => number, users: number): Record<string, unknown> {
  const user = Math.floor(random() * users);
  const product = Math.floor(random() * 500);
  const base = {
    messageId: randomUUID(),
    userId: `user-${user}`,
    anonymousId: `anon-${user}`,
    timestamp: new Date().toISOString(),
    context: {
      library: { name: 'analytics.js', version: '5.2.0' },
      locale: 'en-GB',
      userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
      page: { path: `/products/${product}`, url: `https://shop.example/products/${product}`, referrer: 'https://search.example/?q=shoes', title: `Product ${product}` },
      ip: '203.0.113.7',
    },
  };
  const product_ = { product_id: `p-${product}`, sku: `SKU-${product}`, category: CATEGORIES[product % 5], name: `Product ${product}`, brand: 'Acme', price: 10 + (product % 90) };
  const roll = random();
  if (roll < 0.4) return { ...base, type: 'page', name: 'Product', properties: { path: `/products/${product}`, title: `Product ${product}`, url: `https://shop.example/products/${product}` } };
  if (roll < 0.7) return { ...base, type: 'track', event: 'Product Viewed', properties: { ...product_, currency: 'EUR' } };
  if (roll < 0.85) return { ...base, type: 'track', event: 'Product Added', properties: { ...product_, quantity: 1, cart_id: `c-${user}` } };
  if (roll < 0.95) {
    return {
      ...base,
      type: 'track',
      event: 'Order Completed',
      properties: { order_id: randomUUID(), total: 42.5, revenue: 40, shipping: 2.5, tax: 7, currency: 'EUR', products: [{ ...product_, quantity: 1 }, { ...product_, product_id: `p-${product + 1}`, quantity: 2 }] },
    };
  }
  return { ...base, type: 'identify', traits: { email: `user${user}@shop-customer.net`, first_name: 'Sam', last_name: `Customer${user}`, country: 'NL', city: 'Delft' } };
}
