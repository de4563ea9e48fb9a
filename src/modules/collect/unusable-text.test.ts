// Text PostgreSQL refuses in a text column (NUL) or that names nothing (a lone surrogate), sent in any part of a
// message under a plan that pins no string with a pattern: each message is answered, the good ones of the batch are
// stored, and only an ISO-4217-shaped currency reaches a person's computed figures.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';
import { CsvImporter, type RowReport } from './index.ts';

/** The default plan without a single `pattern`: a shop's own plan declaring `{ type: 'string', maxLength: 3 }` for a currency. */
function patternless(): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  const strip = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(strip);
    else if (typeof node === 'object' && node !== null) {
      delete (node as Record<string, unknown>).pattern;
      Object.values(node).forEach(strip);
    }
  };
  strip(plan);
  return plan;
}

const NUL = '\u0000';
const PURPOSES = { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given' };

describeEachDialect('Unusable text in a message', (dialect) => {
  const ctx = useKernel(dialect);
  const ingest = useIngestServer(ctx);
  before(async () => {
    await ctx.kernel.catalog.publish(patternless(), CLI_ACTOR);
  });

  const computed = async (userId: string) => {
    const profile = await ingest.profileOf('user_id', userId);
    assert.ok(profile, userId);
    return (await ctx.kernel.profiles.get([profile], { decrypt: false })).computed;
  };

  it('answers an order whose currency holds a NUL, stores the good order beside it, and counts only a three-letter currency', async () => {
    for (const userId of ['cur-good', 'cur-nul', 'cur-lower']) await ingest.consent(userId, PURPOSES);
    const order = (userId: string, messageId: string, currency: string, total: number) => ({ type: 'track', userId, event: 'Order Completed', messageId, properties: { order_id: messageId, total, currency } });
    const response = await ingest.send('/v1/batch', {
      batch: [
        order('cur-good', 'cur-1', 'EUR', 10),
        order('cur-nul', 'cur-2', `E${NUL}R`, 10),
        order('cur-nul', 'cur-3', 'USD', 7),
        order('cur-lower', 'cur-4', ' usd ', 5),
        order('cur-lower', 'cur-5', '\uD800SD', 3),
      ],
    });
    assert.equal(response.statusCode, 200, response.body);
    const results = (response.json() as { results: { status: string }[] }).results;
    assert.deepEqual(results.map((r) => r.status), ['stored', 'stored', 'stored', 'stored', 'stored']);
    const good = await computed('cur-good');
    assert.equal(good?.currency, 'EUR');
    assert.equal(good?.totalOrderValue, 10);
    // The order with a NUL names no currency: its value is added as revenue naming none, and USD comes from the next.
    const nul = await computed('cur-nul');
    assert.equal(nul?.orderCount, 2);
    assert.equal(nul?.currency, 'USD');
    assert.equal(nul?.totalOrderValue, 17);
    // Trimmed and upper-cased; a lone surrogate names none.
    const lower = await computed('cur-lower');
    assert.equal(lower?.currency, 'USD');
    assert.equal(lower?.totalOrderValue, 8);
    const events = await ctx.kernel.collect.events([(await ingest.profileOf('user_id', 'cur-nul')) as string], { decrypt: true, limit: 10 });
    const sent = events.map((e) => (e.data as { properties?: { currency?: string } }).properties?.currency).sort();
    assert.deepEqual(sent, [`E${NUL}R`, 'USD'], 'the event is stored as sent');
  });

  it('answers a NUL in any other part of a message, and stores the good message of the batch', async () => {
    for (const userId of ['any-good', 'any-bad']) await ingest.consent(userId, PURPOSES);
    const bad = { userId: 'any-bad' };
    const batch: Record<string, unknown>[] = [
      { type: 'track', userId: 'any-good', event: 'Order Completed', properties: { order_id: 'g1', total: 1, currency: 'EUR' } },
      { type: 'track', ...bad, event: `Order${NUL}Completed`, properties: { order_id: 'b1' } },
      { type: 'track', ...bad, event: 'Order Completed', properties: { order_id: `b${NUL}2`, coupon: NUL, products: [{ product_id: NUL, name: NUL, category: NUL }] } },
      { type: 'track', ...bad, event: 'Order Completed', properties: { order_id: 'b3', [`un${NUL}declared`]: 1 }, [`top${NUL}level`]: 1 },
      { type: 'track', userId: `any${NUL}bad`, event: 'Order Completed', properties: { order_id: 'b4' } },
      { type: 'track', anonymousId: 'a', userId: 'any-bad', messageId: `m${NUL}`, event: 'Order Completed', properties: { order_id: 'b5' } },
      { type: 'identify', ...bad, traits: { phone: `+49${NUL}1`, first_name: NUL, city: NUL, [`tr${NUL}ait`]: 1 } },
      { type: 'identify', ...bad, traits: { email: `x${NUL}@candor-shop.dev` } },
      { type: 'identify', ...bad, context: { traits: { last_name: NUL } } },
      { type: 'identify', ...bad, context: { externalIds: [{ id: `e${NUL}`, type: 'crm', collection: 'users', encoding: 'none' }, { id: 'e2', type: `cr${NUL}m`, collection: NUL, encoding: NUL }] } },
      { type: 'page', ...bad, name: `P${NUL}`, properties: {} },
      { type: 'page', ...bad, name: 'Home', category: NUL, properties: { title: NUL, path: NUL }, context: { library: { name: NUL, version: NUL }, locale: NUL, userAgent: NUL, page: { title: NUL }, campaign: { name: NUL } } },
      { type: 'screen', ...bad, name: 'Cart', properties: { name: 'Cart' }, context: { app: { name: NUL }, device: { type: NUL }, os: { name: NUL }, timezone: NUL } },
      { type: 'track', ...bad, event: 'Order Completed', properties: { order_id: 'b6' }, context: { consentManagement: { deniedConsentIds: [NUL] } } },
      { type: 'track', ...bad, event: 'Order Completed', timestamp: `2026-01-01${NUL}`, properties: { order_id: 'b7' } },
      { type: 'group', ...bad, groupId: 'g1', traits: { name: NUL, industry: NUL, plan: NUL, [`k${NUL}`]: 1 } },
      { type: 'group', ...bad, groupId: `g${NUL}` },
      { type: 'alias', userId: 'any-bad', previousId: `p${NUL}` },
      { type: 'track', ...bad, event: 'Survey Answered', properties: { survey_id: NUL, allergies: [NUL] } },
      { type: 'track', ...bad, event: 'Email Signed Up', properties: { list_id: NUL, list_name: NUL } },
      { type: 'track', ...bad, event: `Unknown ${NUL}`, properties: {} },
      { type: 'track', ...bad, event: 'Not in the plan', properties: { [NUL]: NUL } },
    ];
    const response = await ingest.send('/v1/batch', { batch });
    assert.equal(response.statusCode, 200, response.body);
    const results = (response.json() as { results: { status: string; code?: string }[] }).results;
    // Ids, names, a message id and a timestamp that hold one are refused; elsewhere the text is data, kept as sent.
    const answered = ['stored', 'COLLECT_MESSAGE_INVALID', 'stored', 'stored', 'COLLECT_MESSAGE_INVALID', 'COLLECT_MESSAGE_INVALID', 'stored', 'CATALOG_EVENT_INVALID', 'stored', 'stored', 'COLLECT_MESSAGE_INVALID'];
    answered.push('stored', 'stored', 'stored', 'COLLECT_TIMESTAMP_INVALID', 'stored', 'COLLECT_MESSAGE_INVALID', 'COLLECT_MESSAGE_INVALID', 'stored', 'stored', 'COLLECT_MESSAGE_INVALID', 'CATALOG_EVENT_UNDECLARED');
    assert.deepEqual(results.map((r) => r.code ?? r.status), answered);
    assert.ok(await ingest.profileOf('user_id', 'any-good'));
    // The refusal counts and the plan's statistics name events and paths: written without a failure too.
    await ctx.kernel.collect.flush();
    await ctx.kernel.catalog.flushStats();
  });

  it('imports an order file whose currency cell holds a NUL: every row stored, and a re-run answers duplicate', async () => {
    const file = ['user_id,order_id,timestamp,total,currency', 'csv-1,2001,2026-03-01T10:00:00Z,30,EUR', `csv-2,2002,2026-03-01T10:00:00Z,30,E${NUL}R`, 'csv-3,2003,2026-03-01T10:00:00Z,30,EUR'].join('\n');
    const run = async () => {
      const reports: RowReport[] = [];
      const summary = await new CsvImporter(ctx.kernel).run(Readable.from([file]), { kind: 'events', source: 'shop', basis: 'contract', actor: CLI_ACTOR }, { onRows: (rows) => void reports.push(...rows) });
      return { summary, reports };
    };
    const first = await run();
    assert.equal(first.summary.error, undefined);
    assert.equal(first.summary.stored, 3);
    assert.deepEqual(first.reports, []);
    assert.equal((await computed('csv-2')).currency, null);
    assert.equal((await computed('csv-3')).currency, 'EUR');
    const again = await run();
    assert.equal(again.summary.complete, true);
    assert.equal(again.summary.duplicate, 3);
  });
});
