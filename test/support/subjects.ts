import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import type { ItemResult } from '../../src/modules/collect/index.ts';
import type { ResolveItem } from '../../src/modules/identity/index.ts';
import { buildServer } from '../../src/http/server.ts';

/** A person with distinctive identifiers, so that a byte scan finds them if anything is left in plain text. */
export interface TestPerson {
  userId: string;
  anonymousId: string;
  email: string;
  phone: string;
  firstName: string;
  lastName: string;
  /** A product id only this person's events carry, stored in the clear (not personal): the scan's control. */
  productId: string;
}

export function person(tag: string): TestPerson {
  const t = tag.replace(/[^a-z0-9]/gi, '').toLowerCase();
  return {
    userId: `usr-zq${t}-70931`,
    anonymousId: `anon-zq${t}-55120`,
    email: `zebulon.${t}.quillfeather@quillmail.org`,
    phone: `+4917${String(Math.abs(hashCode(t))).padStart(9, '7').slice(0, 9)}`,
    firstName: `Zebulonius${t}`,
    lastName: `Quillfeather${t}`,
    productId: `sku-zq${t}-unique`,
  };
}

function hashCode(text: string): number {
  let h = 7;
  for (const c of text) h = (h * 31 + c.charCodeAt(0)) | 0;
  return h;
}

const PURPOSES = { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given', 'marketing.communications.sms': 'given' };

/** The person's identify and track messages, as a sender would send them. */
export function messagesOf(p: TestPerson, events: number, prefix = 'm'): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [
    {
      type: 'identify',
      messageId: `${prefix}-${p.userId}-identify`,
      userId: p.userId,
      anonymousId: p.anonymousId,
      traits: { email: p.email, phone: p.phone, first_name: p.firstName, last_name: p.lastName },
    },
  ];
  for (let i = 0; i < events; i++) {
    out.push({
      type: 'track',
      messageId: `${prefix}-${p.userId}-${i}`,
      userId: p.userId,
      anonymousId: p.anonymousId,
      event: 'Product Viewed',
      properties: { product_id: p.productId, name: 'Quill', price: 10 + (i % 7), url: `https://shop.example.org/p/${p.productId}?u=${p.userId}` },
    });
  }
  return out;
}

/** Gives consent through the real ingest route, then sends the messages through kernel.collect.ingest in batches. */
export async function ingestPerson(kernel: Kernel, p: TestPerson, events: number, prefix = 'm'): Promise<ItemResult[]> {
  const server = await buildServer(kernel);
  try {
    const key = await kernel.access.createWriteKey('web', null, CLI_ACTOR);
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/consent',
      headers: { authorization: `Basic ${Buffer.from(`${key.secret}:`).toString('base64')}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ mechanism: 'banner_save', userId: p.userId, anonymousId: p.anonymousId, purposes: PURPOSES }),
    });
    assert.equal(response.statusCode, 200, response.body);
  } finally {
    await server.app.close();
  }
  return sendMessages(kernel, messagesOf(p, events, prefix));
}

/** Sends messages through the ingestion pipeline as the `web` source. */
export async function sendMessages(kernel: Kernel, messages: readonly Record<string, unknown>[]): Promise<ItemResult[]> {
  const results: ItemResult[] = [];
  for (let i = 0; i < messages.length; i += 500) {
    const part = messages.slice(i, i + 500).map((raw) => ({ raw, bytes: JSON.stringify(raw).length }));
    results.push(...(await kernel.collect.ingest(part, undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: { id: 'test-write-key', role: 'ingest' } })));
  }
  return results;
}

/** A new buyer who allows profiling and completed one order a day ago (a person every scoring model can score). */
export async function buyerWithAnOrder(kernel: Kernel): Promise<{ userId: string; profileId: string }> {
  const userId = uniqueId('buyer');
  const [resolved] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  const profileId = resolved?.profileId;
  assert.ok(profileId);
  await kernel.consent.record(profileId, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
  const orderId = uniqueId('order');
  const order = await sendMessages(kernel, [{ type: 'track', userId, messageId: orderId, timestamp: new Date(Date.now() - 86_400_000).toISOString(), event: 'Order Completed', properties: { order_id: orderId, total: 30, currency: 'EUR' } }]);
  assert.equal(order[0]?.status, 'stored', JSON.stringify(order));
  return { userId, profileId };
}

/** A value no other test uses: `prefix-` and 12 random hex digits. */
export const uniqueId = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

/** An identity resolution item of the `web` source with these identifiers (type → value), stamped now. */
export const resolveItem = (ids: Record<string, string>, messageId: string): ResolveItem => ({
  identifiers: Object.entries(ids).map(([type, value]) => ({ type, value })),
  source: 'web',
  messageId,
  at: new Date().toISOString(),
});
