import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { planWithEvent } from '../../../test/support/plans.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

describeEachDialect('ingestion pipeline', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let writeKeyId = '';
  const basic = () => ({ authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` });
  const send = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { ...basic(), 'content-type': 'application/json', ...headers }, payload: JSON.stringify(payload) });
  const results = (response: { json: () => unknown }) => (response.json() as { results: { status: string; code?: string; purposes?: string[]; dropped?: string[]; refusedFields?: string[]; detail?: string }[] }).results;
  const consent = (body: Record<string, unknown>, headers: Record<string, string> = {}) => send('/v1/consent', { mechanism: 'banner_save', ...body }, headers);
  const storedRows = async () => (await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events`.execute(ctx.kernel.storage.db)).rows[0]?.n;

  before(async () => {
    server = await buildServer(ctx.kernel);
    const key = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    writeKey = key.secret;
    writeKeyId = key.id;
  });
  after(async () => {
    await server.app.close();
  });

  it('stores nothing for a person without consent and counts the refusal per purpose', async () => {
    const before = Number(await storedRows());
    const response = await send('/v1/track', { anonymousId: 'anon-nobody', event: 'Product Viewed', properties: { product_id: 'p1', price: 10 } });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(results(response).map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS']]);
    assert.equal(Number(await storedRows()), before);
    const refusals = await ctx.kernel.collect.refusals({ source: 'web' });
    assert.ok(refusals.some((r) => r.event === 'Product Viewed' && r.purpose === 'analytics.reporting' && Number(r.count) >= 1));
    assert.equal(await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-nobody' }], source: 'web', at: new Date().toISOString() }]).then((r) => r[0]), null);
  });

  it('stores a consented event with its purposes, drops undeclared fields and encrypts personal ones', async () => {
    const given = await consent({ anonymousId: 'anon-1', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    const body = given.json() as { receipt: string; recorded: unknown[] };
    assert.ok(await ctx.kernel.consent.verifyReceipt(body.receipt));
    const response = await send('/v1/page', {
      anonymousId: 'anon-1',
      messageId: 'page-1',
      name: 'Home',
      properties: { path: '/', url: 'https://shop.example/?email=ada@example.com', secret_tracking_pixel: 'x' },
      context: { ip: '203.0.113.9', page: { path: '/' } },
    });
    const [result] = results(response);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.deepEqual(result?.purposes?.sort(), ['analytics.reporting', 'personalize.profiling']);
    assert.ok(result?.dropped?.includes('properties.secret_tracking_pixel'));
    assert.ok(result?.dropped?.some((p) => p.startsWith('context.ip')));
    const row = (await sql<{ data: string; data_enc: string | null; profile_id: string }>`SELECT data, data_enc, profile_id FROM collect_events WHERE message_id = 'page-1'`.execute(ctx.kernel.storage.db)).rows[0];
    assert.ok(row);
    assert.ok(!row.data.includes('ada@example.com') && !row.data.includes('203.0.113.9') && !row.data.includes('secret_tracking_pixel'));
    assert.ok(row.data_enc && !row.data_enc.includes('ada@example.com'));
    const events = await ctx.kernel.collect.events([row.profile_id], { decrypt: true, limit: 10 });
    assert.equal((events[0]?.personal as { properties: { url: string } }).properties.url, 'https://shop.example/?email=ada@example.com');
  });

  it('answers every message of a mixed batch, storing the good ones', async () => {
    const response = await send('/v1/batch', {
      batch: [
        { type: 'track', anonymousId: 'anon-1', event: 'Product Viewed', messageId: 'b-1', properties: { product_id: 'p1', price: 10 } },
        { type: 'track', event: 'Product Viewed', properties: {} },
        { type: 'track', anonymousId: 'anon-1', event: 'Product Viewed', messageId: 'b-3', properties: { price: 'ten' } },
        { type: 'track', anonymousId: 'anon-1', event: 'Rocket Launched', messageId: 'b-4' },
        { type: 'page', anonymousId: 'anon-1', messageId: 'b-5', timestamp: 'not a date' },
        { type: 'page', anonymousId: 'anon-1', messageId: 'b-6', timestamp: '2999-01-01T00:00:00Z' },
        { type: 'screen', anonymousId: 'anon-1', messageId: 'b-7', name: 'Cart' },
      ],
    });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(results(response).map((r) => r.code ?? r.status), [
      'stored',
      'COLLECT_IDENTITY_MISSING',
      'CATALOG_EVENT_INVALID',
      'CATALOG_EVENT_UNDECLARED',
      'COLLECT_TIMESTAMP_INVALID',
      'COLLECT_TIMESTAMP_IN_FUTURE',
      'stored',
    ]);
  });

  it('answers a message whose only identifier is blocked with the identity missing, detail blocked', async () => {
    const response = await send('/v1/track', { userId: 'unknown', event: 'Order Completed', messageId: 'blocked-1', properties: { order_id: 'ob1', revenue: 5, currency: 'EUR' } });
    assert.equal(response.statusCode, 200);
    const [result] = results(response);
    assert.deepEqual([result?.status, result?.code, result?.detail], ['invalid', 'COLLECT_IDENTITY_MISSING', 'blocked'], JSON.stringify(result));
  });

  it('stores a duplicate messageId once', async () => {
    const message = { type: 'track', anonymousId: 'anon-1', event: 'Product Viewed', messageId: 'dup-1', properties: { product_id: 'p2' } };
    const first = await send('/v1/batch', { batch: [message, message] });
    assert.deepEqual(results(first).map((r) => r.status), ['stored', 'duplicate']);
    const again = await send('/v1/track', message);
    assert.deepEqual(results(again).map((r) => r.status), ['duplicate']);
    const count = (await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE message_id = 'dup-1'`.execute(ctx.kernel.storage.db)).rows[0]?.n;
    assert.equal(Number(count), 1);
  });

  it('recognises a re-sent message by its source, messageId and the sender\'s own time', async () => {
    const at = '2026-11-30T10:00:00.000Z';
    const timed = { type: 'track', anonymousId: 'anon-1', event: 'Product Viewed', messageId: 'dup-timed', timestamp: at, properties: { product_id: 'p2' } };
    assert.deepEqual(results(await send('/v1/batch', { batch: [timed] })).map((r) => r.status), ['stored']);
    // A retry carries the same timestamp, written another way: the same instant is the same key.
    assert.deepEqual(results(await send('/v1/batch', { batch: [{ ...timed, timestamp: Date.parse(at) }] })).map((r) => r.status), ['duplicate']);
    // Only originalTimestamp and sentAt (RudderStack): the skew-corrected time moves with each retry, the key does not.
    const skewed = { type: 'track', anonymousId: 'anon-1', event: 'Product Viewed', messageId: 'dup-skewed', originalTimestamp: at, properties: { product_id: 'p2' } };
    assert.deepEqual(results(await send('/v1/batch', { batch: [{ ...skewed, sentAt: '2026-11-30T10:00:01.000Z' }] })).map((r) => r.status), ['stored']);
    assert.deepEqual(results(await send('/v1/batch', { batch: [{ ...skewed, sentAt: '2026-11-30T10:05:00.000Z' }] })).map((r) => r.status), ['duplicate']);
    // The same messageId at another time of the sender's, within a day of the first: a duplicate too (a sender that
    // sets its own messageId gets a new timestamp from its client library on every call).
    assert.deepEqual(results(await send('/v1/batch', { batch: [{ ...timed, timestamp: '2026-11-30T11:00:00.000Z' }] })).map((r) => r.status), ['duplicate']);
    const keys = (await sql<{ dedup_at: string }>`SELECT dedup_at FROM collect_events WHERE message_id IN ('dup-timed', 'dup-skewed') ORDER BY dedup_at`.execute(ctx.kernel.storage.db)).rows;
    assert.deepEqual(keys.map((k) => k.dedup_at), [at, at]);
  });

  it('answers a message whose time no date can hold with its code and stores the rest of the batch', async () => {
    const good = { type: 'page', anonymousId: 'anon-1', messageId: 'time-good', properties: { path: '/' } };
    const bad = { type: 'page', anonymousId: 'anon-1', messageId: 'time-bad', originalTimestamp: 1e17, sentAt: 1e17 + 1000, properties: { path: '/' } };
    const response = await send('/v1/batch', { batch: [good, bad] });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(results(response).map((r) => [r.status, r.code]), [['stored', undefined], ['invalid', 'COLLECT_TIMESTAMP_INVALID']]);
  });

  it('answers a message nested too deep, or with an id that cannot name anything, on its own and stores the rest', async () => {
    await consent({ anonymousId: 'anon-1', purposes: { 'analytics.reporting': 'given' } });
    // 10,000 nested arrays (20 KB): written as text, since JSON.stringify itself cannot walk that deep.
    const deep = '__DEEP__';
    const nest = (url: string, body: unknown) =>
      server.app.inject({ method: 'POST', url, headers: { ...basic(), 'content-type': 'application/json' }, payload: JSON.stringify(body).replace(`"${deep}"`, `${'['.repeat(10_000)}"bottom"${']'.repeat(10_000)}`) });
    const good = { type: 'page', anonymousId: 'anon-1', messageId: 'shape-good', properties: { path: '/' } };
    const batch = [
      good,
      { type: 'track', anonymousId: 'anon-1', messageId: 'shape-deep', event: 'Product Viewed', properties: { product_id: 'p1', x: deep } },
      { type: 'page', anonymousId: 'anon-1', messageId: 'shape-\ud800', properties: { path: '/' } },
      { type: 'page', anonymousId: 'anon-1', messageId: 'shape-\u0000', properties: { path: '/' } },
      { type: 'page', anonymousId: 'anon-1', messageId: 'shape-long-'.padEnd(300, 'x'), properties: { path: '/' } },
      { type: 'page', anonymousId: 'anon-1', messageId: 'shape-time', timestamp: 'May 5', properties: { path: '/' } },
    ];
    const response = await nest('/v1/batch', { batch });
    assert.equal(response.statusCode, 200, response.body.slice(0, 500));
    assert.deepEqual(results(response).map((r) => [r.status, r.code]), [
      ['stored', undefined],
      ['invalid', 'COLLECT_MESSAGE_INVALID'],
      ['invalid', 'COLLECT_MESSAGE_INVALID'],
      ['invalid', 'COLLECT_MESSAGE_INVALID'],
      ['invalid', 'COLLECT_MESSAGE_INVALID'],
      ['invalid', 'COLLECT_TIMESTAMP_INVALID'],
    ]);
    const single = await nest('/v1/track', { anonymousId: 'anon-1', messageId: 'shape-deep-1', event: 'Product Viewed', properties: { x: deep } });
    assert.equal(single.statusCode, 200, single.body.slice(0, 500));
    assert.equal(results(single)[0]?.code, 'COLLECT_MESSAGE_INVALID');
  });

  it('answers a whole re-sent batch as duplicates and stores nothing twice', async () => {
    const at = Date.now() - 60_000;
    const batch = Array.from({ length: 70 }, (_, i) => ({ type: 'page', anonymousId: 'anon-1', messageId: `resent-${i}`, timestamp: new Date(at + i).toISOString(), properties: { path: `/p/${i}` } }));
    assert.deepEqual(new Set(results(await send('/v1/batch', { batch })).map((r) => r.status)), new Set(['stored']));
    const before = Number(await storedRows());
    assert.deepEqual(new Set(results(await send('/v1/batch', { batch })).map((r) => r.status)), new Set(['duplicate']));
    const mixed = [...batch.slice(0, 35), ...Array.from({ length: 35 }, (_, i) => ({ type: 'page', anonymousId: 'anon-1', messageId: `fresh-${i}`, timestamp: new Date(at + i).toISOString(), properties: { path: `/q/${i}` } }))];
    assert.deepEqual(results(await send('/v1/batch', { batch: mixed })).map((r) => r.status), [...Array(35).fill('duplicate'), ...Array(35).fill('stored')]);
    assert.equal(Number(await storedRows()), before + 35);
  });

  it('links an identify to the anonymous visitor and keeps traits encrypted in the profile', async () => {
    const response = await send('/v1/identify', { anonymousId: 'anon-1', userId: 'user-1', traits: { email: 'Ada@Lovelace.dev', first_name: 'Ada', country: 'NL', favourite_colour: 'teal' } });
    const [result] = results(response);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.ok(result?.dropped?.includes('traits.favourite_colour'));
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'email', value: 'ada@lovelace.dev' }], source: 'web', at: new Date().toISOString() }]);
    assert.ok(profileId);
    const view = await ctx.kernel.profiles.get(await ctx.kernel.identity.members(profileId), { decrypt: true });
    assert.equal(JSON.stringify(view).includes('Ada'), true);
    const raw = JSON.stringify((await sql`SELECT * FROM profiles_traits`.execute(ctx.kernel.storage.db)).rows);
    assert.ok(!raw.includes('Ada@Lovelace.dev') && !raw.includes('ada@lovelace.dev') && !raw.includes('"Ada"'));
  });

  it('refuses special-category and precise-location fields without explicit consent, keeping the rest', async () => {
    const survey = await send('/v1/track', { userId: 'user-1', event: 'Survey Answered', properties: { survey_id: 's1', rating: 8, allergies: ['nuts'] } });
    const [result] = results(survey);
    assert.equal(result?.status, 'stored', JSON.stringify(result));
    assert.deepEqual(result?.refusedFields, ['properties.allergies']);
    const located = await send('/v1/page', { userId: 'user-1', properties: { path: '/stores' }, context: { location: { city: 'Delft', latitude: 52.01, longitude: 4.36 } } });
    const [page] = results(located);
    assert.equal(page?.status, 'stored');
    assert.deepEqual(page?.refusedFields?.sort(), ['context.location.latitude', 'context.location.longitude']);
  });

  it('keeps a special-category field once the person gave explicit consent for a purpose that declares it', async () => {
    const given = await consent({ userId: 'user-1', purposes: { fairness_audit: 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    const survey = await send('/v1/track', { userId: 'user-1', event: 'Survey Answered', properties: { survey_id: 's2', allergies: ['nuts'] } });
    const [result] = results(survey);
    assert.equal(result?.status, 'stored');
    assert.equal(result?.refusedFields, undefined);
    await consent({ userId: 'user-1', purposes: { 'personalize.content.limited': 'given' } });
    const located = await send('/v1/page', { userId: 'user-1', properties: { path: '/stores' }, context: { location: { latitude: 52.01, longitude: 4.36 } } });
    assert.equal(results(located)[0]?.refusedFields, undefined, located.body);
    assert.ok(results(located)[0]?.purposes?.includes('analytics.reporting'));
  });

  it('stops storing the moment consent is withdrawn', async () => {
    await consent({ userId: 'user-2', purposes: { 'analytics.reporting': 'given' } });
    assert.equal(results(await send('/v1/track', { userId: 'user-2', event: 'Product Viewed', properties: { product_id: 'p1' } }))[0]?.status, 'stored');
    const withdrawn = await consent({ userId: 'user-2', withdrawAll: true, mechanism: 'privacy_center' });
    assert.equal(withdrawn.statusCode, 200, withdrawn.body);
    assert.equal(results(await send('/v1/track', { userId: 'user-2', event: 'Product Viewed', properties: { product_id: 'p1' } }))[0]?.code, 'COLLECT_NO_LAWFUL_BASIS');
  });

  it('honours Sec-GPC: 1 as an opt-out of sale and targeted advertising for the device and says so', async () => {
    const response = await consent({ anonymousId: 'anon-gpc', purposes: { 'analytics.reporting': 'given' } }, { 'sec-gpc': '1' });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal((response.json() as { gpcHonoured: boolean }).gpcHonoured, true);
    const track = await send('/v1/track', { anonymousId: 'anon-gpc', event: 'Product Viewed', properties: { product_id: 'p1' } }, { 'sec-gpc': '1' });
    assert.equal((track.json() as { gpcHonoured: boolean }).gpcHonoured, true);
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-gpc' }], source: 'web', at: new Date().toISOString() }]);
    const state = await ctx.kernel.consent.state(profileId as string);
    assert.equal(state['marketing.advertising.third_party.targeted']?.state, 'refused');
    assert.equal(state['marketing.advertising.third_party.targeted']?.gpc, true);
  });

  it("honours a message's own GPC flag (context.gpc, a server relaying a browser's signal) for that message only", async () => {
    const given = { 'analytics.reporting': 'given', 'marketing.advertising.third_party.targeted': 'given' };
    const flagged = await consent({ anonymousId: 'anon-relay-1', purposes: given, gpc: true });
    assert.equal(flagged.statusCode, 200, flagged.body);
    assert.equal((flagged.json() as { gpcHonoured: boolean }).gpcHonoured, true, 'the consent call flagged by its body');
    await consent({ anonymousId: 'anon-relay-2', purposes: given });
    const profileOf = async (anonymousId: string) =>
      (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: anonymousId }], source: 'web', at: new Date().toISOString() }]))[0] as string;
    const targeted = async (anonymousId: string) => (await ctx.kernel.consent.state(await profileOf(anonymousId)))['marketing.advertising.third_party.targeted'];
    assert.equal((await targeted('anon-relay-1'))?.gpc, true);
    assert.equal((await targeted('anon-relay-2'))?.state, 'given');

    const batch = await send('/v1/batch', {
      batch: [
        { type: 'track', anonymousId: 'anon-relay-3', event: 'Product Viewed', properties: { product_id: 'p1' }, context: { gpc: true, page: { path: '/p1' } } },
        { type: 'track', anonymousId: 'anon-relay-2', event: 'Product Viewed', properties: { product_id: 'p2' }, context: { gpc: false } },
        { type: 'track', anonymousId: 'anon-relay-2', event: 'Product Viewed', properties: { product_id: 'p3' }, context: { gpc: 'yes' } },
      ],
    });
    const body = batch.json() as { gpcHonoured?: boolean; results: { status: string; code?: string; gpcHonoured?: boolean; dropped?: string[]; detail?: string }[] };
    assert.equal(body.gpcHonoured, true);
    // anon-relay-3 is unknown and gave no consent: nothing is stored, which honours the signal too.
    assert.deepEqual(body.results.map((r) => [r.status, r.gpcHonoured]), [['refused', true], ['stored', undefined], ['invalid', undefined]]);
    assert.equal(body.results[2]?.code, 'COLLECT_MESSAGE_INVALID', 'an unreadable signal is refused, not ignored');
    assert.ok(!(body.results[1]?.dropped ?? []).includes('context.gpc'), 'the flag is a protocol field, not data the plan drops');

    const one = await send('/v1/track', { anonymousId: 'anon-relay-2', event: 'Product Viewed', properties: { product_id: 'p4' }, context: { gpc: true } });
    const answer = one.json() as { gpcHonoured?: boolean; results: { status: string; gpcHonoured?: boolean }[] };
    assert.deepEqual([answer.gpcHonoured, answer.results[0]?.status, answer.results[0]?.gpcHonoured], [true, 'stored', true]);
    const state = await targeted('anon-relay-2');
    assert.equal(state?.state, 'refused');
    assert.equal(state?.gpc, true);
    // The flag is not stored with the event.
    const events = await ctx.kernel.collect.events([await profileOf('anon-relay-2')], { decrypt: true, limit: 10 });
    const stored = events.find((e) => (e.data as { properties?: { product_id?: string } }).properties?.product_id === 'p4');
    assert.ok(stored);
    assert.ok(!JSON.stringify([stored.data, stored.personal]).includes('gpc'), JSON.stringify(stored));
    assert.ok(!stored.purposes.includes('marketing.advertising.third_party.targeted'), 'left out for the flagged message itself');
  });

  it('accepts browser-style text/plain bodies with the write key inside, and gzip bodies', async () => {
    await consent({ anonymousId: 'anon-browser', purposes: { 'analytics.reporting': 'given' } });
    const plain = await server.app.inject({
      method: 'POST',
      url: '/v1/batch',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify({ writeKey, batch: [{ type: 'page', anonymousId: 'anon-browser', properties: { path: '/a' } }] }),
    });
    assert.equal(plain.statusCode, 200, plain.body);
    assert.equal(plain.headers['access-control-allow-origin'], '*');
    assert.equal(results(plain)[0]?.status, 'stored');
    const gz = await server.app.inject({
      method: 'POST',
      url: '/v1/track',
      headers: { ...basic(), 'content-type': 'application/json', 'content-encoding': 'gzip' },
      payload: gzipSync(JSON.stringify({ anonymousId: 'anon-browser', event: 'Product Viewed', properties: { product_id: 'p9' } })),
    });
    assert.equal(results(gz)[0]?.status, 'stored', gz.body);
    const preflight = await server.app.inject({ method: 'OPTIONS', url: '/v1/batch' });
    assert.equal(preflight.statusCode, 204);
    assert.equal(preflight.headers['access-control-allow-headers'], 'authorization, content-type, content-encoding, sec-gpc');
    // A library's own headers (RudderStack's browser SDK) are allowed when the preflight asks for them.
    const asked = 'anonymousid, authorization, content-type, rsa-retry-attempt, sentat';
    const rudder = await server.app.inject({ method: 'OPTIONS', url: '/v1/track', headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST', 'access-control-request-headers': asked } });
    assert.equal(rudder.statusCode, 204);
    assert.equal(rudder.headers['access-control-allow-headers'], asked);
    assert.equal(rudder.headers['access-control-allow-origin'], '*');
    assert.equal(rudder.headers['access-control-allow-credentials'], undefined, 'never credentials');
    // Something that is not a list of header names is not echoed.
    const odd = await server.app.inject({ method: 'OPTIONS', url: '/v1/track', headers: { 'access-control-request-headers': 'x-a\r\nx-b: 1' } });
    assert.equal(odd.headers['access-control-allow-headers'], 'authorization, content-type, content-encoding, sec-gpc');
  });

  it('processes a purpose under an opt-out notice only where the jurisdiction allows it, and records it', async () => {
    const purpose = ctx.kernel.consent.purpose('analytics.reporting');
    assert.ok(purpose);
    await ctx.kernel.consent.setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    const noticeVersion = ctx.kernel.consent.currentNotice().version;
    const refused = await send('/v1/consent/opt-out-notice', { anonymousId: 'anon-de', purpose: 'analytics.reporting', jurisdiction: 'DE', noticeVersion });
    assert.equal((refused.json() as { code: string }).code, 'CONSENT_OPT_OUT_NOT_ALLOWED');
    const before = await send('/v1/track', { anonymousId: 'anon-ca', event: 'Product Viewed', properties: { product_id: 'p1' } });
    assert.equal(results(before)[0]?.code, 'COLLECT_NO_LAWFUL_BASIS');
    const shown = await send('/v1/consent/opt-out-notice', { anonymousId: 'anon-ca', purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion, source: 'https://shop.example/ca' });
    assert.equal(shown.statusCode, 200, shown.body);
    assert.equal((shown.json() as { recorded: { basis: string }[] }).recorded[0]?.basis, 'opt_out_notice');
    const after = await send('/v1/track', { anonymousId: 'anon-ca', event: 'Product Viewed', properties: { product_id: 'p1' } });
    assert.deepEqual(results(after)[0]?.purposes, ['analytics.reporting']);
  });

  it('keeps an opt-in confirmed over GPC for events that carry the signal again (the browser keeps sending it)', async () => {
    // Of a category notice 1 describes for both purposes (the occurrence is kept for a purpose only where it does).
    await ctx.kernel.catalog.publish(planWithEvent('Partner Offer Viewed', ['analytics.reporting', 'third_party_sharing'], 'user.behavior.purchase_history'), CLI_ACTOR);
    const offer = { anonymousId: 'anon-confirmed', event: 'Partner Offer Viewed', properties: { query: 'lamps' } };
    const first = await consent({ anonymousId: 'anon-confirmed', purposes: { 'analytics.reporting': 'given', third_party_sharing: 'given' } }, { 'sec-gpc': '1' });
    assert.deepEqual((first.json() as { rejected: { purpose: string; code: string }[] }).rejected, [{ purpose: 'third_party_sharing', code: 'CONSENT_GPC_CONFLICT' }]);
    assert.deepEqual(results(await send('/v1/track', offer, { 'sec-gpc': '1' }))[0]?.purposes, ['analytics.reporting']);
    const confirmed = await consent({ anonymousId: 'anon-confirmed', purposes: { third_party_sharing: 'given' }, confirmOverGpc: true, mechanism: 'privacy_center' }, { 'sec-gpc': '1' });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.deepEqual(results(await send('/v1/track', offer, { 'sec-gpc': '1' }))[0]?.purposes, ['analytics.reporting', 'third_party_sharing']);
    // Someone who never confirmed: the signal still leaves the sale out.
    await consent({ anonymousId: 'anon-unconfirmed', purposes: { 'analytics.reporting': 'given', third_party_sharing: 'given' } });
    assert.deepEqual(results(await send('/v1/track', { ...offer, anonymousId: 'anon-unconfirmed' }, { 'sec-gpc': '1' }))[0]?.purposes, ['analytics.reporting']);
  });

  it('records a GPC signal for every profile linked to the device, not only the one the event is stored for', async () => {
    const targeted = 'marketing.advertising.third_party.targeted';
    const stateOf = async (type: string, value: string) => {
      const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]);
      return (await ctx.kernel.consent.state(id as string))[targeted];
    };
    // Grace consented to everything on the family tablet; Hedy signs in on it with GPC on.
    await consent({ userId: 'u-grace', anonymousId: 'anon-tablet', purposes: { 'analytics.reporting': 'given', [targeted]: 'given' } });
    await consent({ userId: 'u-hedy', purposes: { 'analytics.reporting': 'given' } });
    const track = await send('/v1/track', { userId: 'u-hedy', anonymousId: 'anon-tablet', event: 'Product Viewed', properties: { product_id: 'p1' } }, { 'sec-gpc': '1' });
    assert.equal(results(track)[0]?.status, 'stored', track.body);
    assert.equal((await stateOf('user_id', 'u-hedy'))?.gpc, true);
    const grace = await stateOf('user_id', 'u-grace');
    assert.deepEqual([grace?.state, grace?.gpc], ['refused', true], 'the device owner is opted out too');
    // The same through the consent call: Ida's laptop is Jon's profile's device.
    await consent({ userId: 'u-jon', anonymousId: 'anon-laptop', purposes: { [targeted]: 'given' } });
    const ida = await consent({ userId: 'u-ida', anonymousId: 'anon-laptop', purposes: { 'analytics.reporting': 'given' } }, { 'sec-gpc': '1' });
    assert.equal(ida.statusCode, 200, ida.body);
    assert.deepEqual([(await stateOf('user_id', 'u-jon'))?.state, (await stateOf('user_id', 'u-jon'))?.gpc], ['refused', true]);
  });

  it('records the GPC signal of an opt-out-notice request first: a sale under the notice is refused, other purposes go on', async () => {
    const sharing = ctx.kernel.consent.purpose('third_party_sharing');
    assert.ok(sharing?.saleOrSharing);
    await ctx.kernel.consent.setPurpose({ ...sharing, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    const noticeVersion = ctx.kernel.consent.currentNotice().version;
    const sale = await send('/v1/consent/opt-out-notice', { anonymousId: 'anon-ca-gpc', purpose: 'third_party_sharing', jurisdiction: 'US-CA', noticeVersion }, { 'sec-gpc': '1' });
    assert.equal(sale.statusCode, 409, sale.body);
    assert.equal((sale.json() as { code: string }).code, 'CONSENT_GPC_CONFLICT');
    const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-ca-gpc' }], source: 'web', at: new Date().toISOString() }]);
    const state = await ctx.kernel.consent.state(profileId as string);
    assert.deepEqual([state.third_party_sharing?.state, state.third_party_sharing?.gpc, state.third_party_sharing?.allowed], ['refused', true, false]);
    // The same signal in the body (a server relaying it), for a purpose that is not a sale: recorded, and said so.
    const analytics = await send('/v1/consent/opt-out-notice', { anonymousId: 'anon-ca-gpc-2', purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion, gpc: true });
    assert.equal(analytics.statusCode, 200, analytics.body);
    assert.equal((analytics.json() as { gpcHonoured?: boolean }).gpcHonoured, true);
    const [other] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'anonymous_id', value: 'anon-ca-gpc-2' }], source: 'web', at: new Date().toISOString() }]);
    const otherState = await ctx.kernel.consent.state(other as string);
    assert.equal(otherState['analytics.reporting']?.allowed, true);
    assert.equal(otherState.third_party_sharing?.gpc, true);
  });

  it('checks the consent of the person an event is finally stored for, not of the device it came from', async () => {
    // Alice consented on a shared device; Bob signs in on it. His events do not ride on her consent.
    await consent({ userId: 'u-alice', anonymousId: 'anon-shared', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    const bob = await send('/v1/track', { userId: 'u-bob', anonymousId: 'anon-shared', event: 'Product Viewed', properties: { product_id: 'p1' } });
    assert.equal(results(bob)[0]?.code, 'COLLECT_NO_LAWFUL_BASIS', bob.body);
    // Dave refused; Erin consented. An identify joining Dave's device and Erin's e-mail merges them; Dave's refusal wins.
    await consent({ userId: 'u-dave', anonymousId: 'anon-dave', purposes: { 'analytics.reporting': 'refused', 'personalize.profiling': 'refused' } });
    await consent({ anonymousId: 'anon-erin', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    await send('/v1/identify', { anonymousId: 'anon-erin', traits: { email: 'erin@lovelace.dev' } });
    const joined = await send('/v1/identify', { anonymousId: 'anon-dave', traits: { email: 'erin@lovelace.dev', country: 'NL' } });
    const [result] = results(joined);
    assert.ok(result?.status === 'refused' || !(result?.purposes ?? []).some((p) => p === 'analytics.reporting' || p === 'personalize.profiling'), joined.body);
  });

  it('gates the event that would merge with the merged consent, also when the profile it was checked for survives, and then links nothing', async () => {
    // Frank consented under his user id; on another device he refused everything before signing in. The event that
    // would link the two is checked against the merged person's consent (the refusal wins) before anything is linked:
    // it is refused, so it merges nothing, and each device's own choice stands.
    await consent({ userId: 'u-frank', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
    await consent({ anonymousId: 'anon-frank-phone', purposes: { 'analytics.reporting': 'refused', 'personalize.profiling': 'refused' } });
    const profileOf = async (type: string, value: string) =>
      (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]))[0];
    const frank = await profileOf('user_id', 'u-frank');
    const phone = await profileOf('anonymous_id', 'anon-frank-phone');
    const linking = await send('/v1/track', { userId: 'u-frank', anonymousId: 'anon-frank-phone', event: 'Product Viewed', properties: { product_id: 'p1' } });
    assert.deepEqual(results(linking).map((r) => [r.status, r.code]), [['refused', 'COLLECT_NO_LAWFUL_BASIS']], linking.body);
    assert.ok(frank && phone && frank !== phone);
    assert.equal(await profileOf('anonymous_id', 'anon-frank-phone'), phone);
    const fromPhone = await send('/v1/track', { anonymousId: 'anon-frank-phone', event: 'Product Viewed', properties: { product_id: 'p2' } });
    assert.equal(results(fromPhone)[0]?.code, 'COLLECT_NO_LAWFUL_BASIS', fromPhone.body);
    const fromLaptop = await send('/v1/track', { userId: 'u-frank', event: 'Product Viewed', properties: { product_id: 'p3' } });
    assert.equal(results(fromLaptop)[0]?.status, 'stored', fromLaptop.body);
  });

  it('drops events about suppressed (erased) identifiers', async () => {
    const hash = ctx.kernel.identity.hash({ type: 'user_id', value: 'user-erased' });
    await ctx.kernel.identity.suppress([{ type: 'user_id', valueHash: hash }], 'erasure');
    const response = await send('/v1/track', { userId: 'user-erased', event: 'Product Viewed', properties: { product_id: 'p1' } });
    assert.equal(results(response)[0]?.code, 'COLLECT_SUBJECT_SUPPRESSED');
    const viaConsent = await consent({ userId: 'user-erased', purposes: { 'analytics.reporting': 'given' } });
    assert.equal((viaConsent.json() as { code: string }).code, 'COLLECT_SUBJECT_SUPPRESSED');
  });

  it('refuses a message over 32 KB with its exact size, and measures one near the limit exactly', async () => {
    const big = { type: 'track', anonymousId: 'anon-big', event: 'Product Viewed', properties: { product_id: 'x'.repeat(33_000) } };
    // 'é' takes two bytes as UTF-8: about 24 KB, under the limit, though a quick bound per character would exceed it.
    const near = { type: 'track', anonymousId: 'anon-near', event: 'Product Viewed', properties: { product_id: 'é'.repeat(12_000) } };
    const small = { type: 'track', anonymousId: 'anon-small', event: 'Product Viewed', properties: { product_id: 'p1' } };
    const response = await send('/v1/batch', { batch: [big, near, small], context: { locale: 'nl-NL' } });
    const answered = (response.json() as { results: { status: string; code?: string; detail?: string }[] }).results;
    assert.equal(answered[0]?.code, 'COLLECT_EVENT_TOO_LARGE');
    // Measured as merged: the batch-level context the message takes counts.
    assert.equal(answered[0]?.detail, `${Buffer.byteLength(JSON.stringify({ ...big, context: { locale: 'nl-NL' } }))} bytes`);
    assert.notEqual(answered[1]?.code, 'COLLECT_EVENT_TOO_LARGE');
    assert.notEqual(answered[2]?.code, 'COLLECT_EVENT_TOO_LARGE');
    const single = await send('/v1/track', big);
    assert.equal(results(single)[0]?.code, 'COLLECT_EVENT_TOO_LARGE');
  });

  it('answers bad requests with specific codes', async () => {
    const noKey = await server.app.inject({ method: 'POST', url: '/v1/track', headers: { 'content-type': 'application/json' }, payload: '{}' });
    assert.equal((noKey.json() as { code: string }).code, 'AUTH_CREDENTIAL_MISSING');
    const emptyBatch = await send('/v1/batch', { batch: [] });
    assert.equal((emptyBatch.json() as { code: string }).code, 'COLLECT_BATCH_INVALID');
    // Over the single-message body limit (six times the 32 KB a message may take as compact JSON): refused unread.
    const tooBig = await send('/v1/track', { anonymousId: 'a', event: 'Product Viewed', properties: { name: 'x'.repeat(200_000) } });
    assert.equal(tooBig.statusCode, 413);
    const adminToken = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    const wrongKind = await server.app.inject({ method: 'POST', url: '/v1/track', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, payload: '{}' });
    assert.equal((wrongKind.json() as { code: string }).code, 'AUTH_CREDENTIAL_WRONG_KIND');
    await ctx.kernel.access.revoke(writeKeyId, CLI_ACTOR);
    const revoked = await send('/v1/track', { anonymousId: 'anon-1', event: 'Product Viewed' });
    assert.equal((revoked.json() as { code: string }).code, 'AUTH_CREDENTIAL_REVOKED');
  });

  it('shows refusal counts and a person\'s events to staff, decrypted only for privacy roles, and counts outcomes in /metrics', async () => {
    const owner = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    const analyst = (await ctx.kernel.access.createToken('analyst', null, CLI_ACTOR)).secret;
    const refusals = await server.app.inject({ url: '/v1/admin/collect/refusals?source=web', headers: { authorization: `Bearer ${analyst}` } });
    assert.equal(refusals.statusCode, 200);
    assert.ok((refusals.json() as { purpose: string }[]).some((r) => r.purpose === 'analytics.reporting'));
    const lookup = await server.app.inject({ method: 'POST', url: '/v1/admin/profiles/lookup', headers: { authorization: `Bearer ${owner}` }, payload: { type: 'anonymous_id', value: 'anon-1' } });
    assert.equal(lookup.statusCode, 200, lookup.body);
    const profileId = (lookup.json() as { id: string }).id;
    const missing = await server.app.inject({ method: 'POST', url: '/v1/admin/profiles/lookup', headers: { authorization: `Bearer ${owner}` }, payload: { type: 'user_id', value: 'nobody' } });
    assert.equal(missing.statusCode, 404);
    const asOwner = await server.app.inject({ url: `/v1/admin/subjects/${profileId}/events`, headers: { authorization: `Bearer ${owner}` } });
    assert.equal(asOwner.statusCode, 200, asOwner.body);
    assert.ok(asOwner.body.includes('https://shop.example/?email=ada@example.com'));
    const asAnalyst = await server.app.inject({ url: `/v1/admin/subjects/${profileId}/events`, headers: { authorization: `Bearer ${analyst}` } });
    assert.ok(!asAnalyst.body.includes('ada@example.com') && asAnalyst.body.includes('masked'));
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 1000 });
    assert.equal(reads.at(-1)?.subject, ctx.kernel.keyring.pseudonym('subject', profileId as string));
    const metrics = (await server.app.inject({ url: '/metrics' })).body;
    assert.match(metrics, /candor_ingest_messages_total\{source="web",status="stored"\} \d+/);
    assert.match(metrics, /candor_ingest_refused_total\{source="web",purpose="analytics.reporting"\} \d+/);
    // One batch: each outcome is counted as many times as it happened.
    const value = (text: string, name: string, labels: string) => Number(new RegExp(`${name}\\{${labels}\\} (\\d+)`).exec(text)?.[1] ?? 0);
    const counts = (text: string) => ({
      stored: value(text, 'candor_ingest_messages_total', 'source="web",status="stored"'),
      invalid: value(text, 'candor_ingest_messages_total', 'source="web",status="invalid"'),
      refused: value(text, 'candor_ingest_messages_total', 'source="web",status="refused"'),
      refusedAnalytics: value(text, 'candor_ingest_refused_total', 'source="web",purpose="analytics.reporting"'),
    });
    const before = counts(metrics);
    const stored = (i: number) => ({ type: 'track', anonymousId: 'anon-1', messageId: `metrics-${i}`, event: 'Product Viewed', properties: { product_id: 'p1', price: 10 } });
    const fresh = await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR);
    const batch = await send('/v1/batch', { batch: [stored(1), stored(2), { type: 'track', event: 'Product Viewed' }, stored(3), { type: 'track', anonymousId: 'anon-metrics-nobody', event: 'Product Viewed', properties: { product_id: 'p1' } }] }, { authorization: `Basic ${Buffer.from(`${fresh.secret}:`).toString('base64')}` });
    assert.equal(batch.statusCode, 200, batch.body);
    assert.deepEqual(results(batch).map((r) => r.status), ['stored', 'stored', 'invalid', 'stored', 'refused']);
    const after = counts((await server.app.inject({ url: '/metrics' })).body);
    assert.deepEqual({ stored: after.stored - before.stored, invalid: after.invalid - before.invalid, refused: after.refused - before.refused, refusedAnalytics: after.refusedAnalytics - before.refusedAnalytics }, { stored: 3, invalid: 1, refused: 1, refusedAnalytics: 1 });
  });
});
