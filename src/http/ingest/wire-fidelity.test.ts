import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { EVENT_DATA_CONTEXT } from '../../modules/collect/collect.repo.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('Segment ingest: ids as sent, group ids, page categories, UTF-8, unreadable requests', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const basic = () => `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
  const post = (url: string, payload: string | Buffer) => server.app.inject({ method: 'POST', url, headers: { authorization: basic(), 'content-type': 'application/json' }, payload });
  type Result = { status: string; code?: string; detail?: string; dropped?: string[] };
  const results = async (url: string, payload: unknown) => {
    const response = await post(url, JSON.stringify(payload));
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: Result[] }).results;
  };
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');
  const stored = (messageId: string) => ctx.kernel.storage.raw.all<{ profile_id: string; data: string; data_enc: string | null }>(`select profile_id, data, data_enc from collect_events where message_id = ${p(1)}`, [messageId]);
  const consent = async (id: Record<string, unknown>) => {
    const response = await post('/v1/consent', JSON.stringify({ mechanism: 'banner_save', ...id, purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } }));
    assert.equal(response.statusCode, 200, response.body);
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('refuses numeric ids JSON cannot carry exactly instead of storing them under a rounded one', async () => {
    await consent({ userId: '9007199254740992' });
    const answered = await results('/v1/batch', {
      batch: [
        { type: 'track', userId: 9007199254740993, messageId: 'num-big', event: 'Product Viewed' },
        { type: 'track', userId: 1e21, messageId: 'num-exp', event: 'Product Viewed' },
        { type: 'track', userId: 2.5, messageId: 'num-frac', event: 'Product Viewed' },
        { type: 'track', userId: 9007199254740991, messageId: 'num-safe', event: 'Product Viewed' },
      ],
    });
    assert.deepEqual(answered.slice(0, 3).map((r) => [r.status, r.code, r.detail]), Array(3).fill(['invalid', 'COLLECT_MESSAGE_INVALID', 'userId must be a string or a whole number up to 2^53']));
    // The largest exact one is an id like any other (nobody consented for it: refused, not invalid).
    assert.deepEqual([answered[3]?.status, answered[3]?.code], ['refused', 'COLLECT_NO_LAWFUL_BASIS']);
    assert.deepEqual(await stored('num-big'), []);
  });

  it('refuses ids longer than 256 characters, the limit /v1/consent has too', async () => {
    const long = 'u'.repeat(257);
    const [answer] = await results('/v1/identify', { userId: long, messageId: 'long-id', traits: { country: 'DE' } });
    assert.deepEqual([answer?.status, answer?.code, answer?.detail], ['invalid', 'COLLECT_MESSAGE_INVALID', 'userId longer than 256 characters']);
    await consent({ userId: 'u'.repeat(256) });
    const [fits] = await results('/v1/identify', { userId: 'u'.repeat(256), messageId: 'long-id-fits', traits: { country: 'DE' } });
    assert.equal(fits?.status, 'stored');
  });

  it("keeps a group call's groupId with the stored event, sealed with the person's key (it may name a household or a person)", async () => {
    await consent({ userId: 'u-group' });
    const [answer] = await results('/v1/group', { userId: 'u-group', groupId: 'acme-1', messageId: 'grp-1', traits: { name: 'ACME' } });
    assert.equal(answer?.status, 'stored');
    const [row] = await stored('grp-1');
    assert.equal((JSON.parse(row?.data ?? '{}') as { groupId?: string }).groupId, undefined, 'not in the plain part');
    assert.ok(row?.data_enc);
    assert.equal((JSON.parse(await ctx.kernel.keyring.decrypt(row.data_enc, EVENT_DATA_CONTEXT)) as { groupId?: string }).groupId, 'acme-1');
  });

  it("takes a page's category through the plan as the category property, checked as the plan declares it", async () => {
    await consent({ anonymousId: 'a-cat' });
    const [kept] = await results('/v1/page', { anonymousId: 'a-cat', name: 'Shoes', category: 'Catalog', messageId: 'pg-cat' });
    assert.equal(kept?.status, 'stored');
    assert.deepEqual((JSON.parse((await stored('pg-cat'))[0]?.data ?? '{}') as { properties?: unknown }).properties, { name: 'Shoes', category: 'Catalog' });
    const [screen] = await results('/v1/batch', { batch: [{ type: 'page', anonymousId: 'a-cat', category: 42, messageId: 'pg-cat-bad' }] });
    assert.deepEqual([screen?.status, screen?.code], ['invalid', 'CATALOG_EVENT_INVALID']);
  });

  it('names the timestamp field that could not be read', async () => {
    const answered = await results('/v1/batch', {
      batch: [
        { type: 'track', userId: 'u-ts', event: 'Product Viewed', timestamp: 'yesterday' },
        { type: 'track', userId: 'u-ts', event: 'Product Viewed', originalTimestamp: 'yesterday' },
        { type: 'track', userId: 'u-ts', event: 'Product Viewed', sentAt: '2026-02-30T00:00:00Z' },
      ],
    });
    assert.deepEqual(answered.map((r) => [r.code, r.detail]), [
      ['COLLECT_TIMESTAMP_INVALID', 'timestamp'],
      ['COLLECT_TIMESTAMP_INVALID', 'originalTimestamp'],
      ['COLLECT_TIMESTAMP_INVALID', 'sentAt'],
    ]);
  });

  it('refuses a body that is not UTF-8 rather than reading two different ids as one', async () => {
    await consent({ userId: 'ut\ufffd' });
    for (const byte of [0xff, 0xfe]) {
      const body = Buffer.concat([Buffer.from('{"userId":"ut'), Buffer.from([byte]), Buffer.from('","messageId":"utf-bad","event":"Product Viewed"}')]);
      const response = await post('/v1/track', body);
      assert.equal(response.statusCode, 400, response.body);
      assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal((response.json() as { code: string }).code, 'REQUEST_MALFORMED_JSON');
    }
    assert.deepEqual(await stored('utf-bad'), []);
    const consentBody = Buffer.concat([Buffer.from('{"mechanism":"api","userId":"cs'), Buffer.from([0xc3]), Buffer.from('","purposes":{"analytics.reporting":"given"}}')]);
    assert.equal((await post('/v1/consent', consentBody)).statusCode, 400);
    // A byte order mark and real U+FFFD characters are UTF-8 like the rest.
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ userId: 'ut\ufffd', messageId: 'utf-bom', event: 'Product Viewed' }))]);
    const ok = await post('/v1/track', bom);
    assert.equal((ok.json() as { results: Result[] }).results[0]?.status, 'stored', ok.body);
  });

  it('answers requests the router or the HTTP parser cannot read as coded problems', async () => {
    const token = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    const longId = await server.app.inject({ method: 'GET', url: `/v1/admin/profiles/prf_${'a'.repeat(300)}`, headers: { authorization: `Bearer ${token}` } });
    assert.equal(longId.statusCode, 400, longId.body);
    assert.equal((longId.json() as { code: string }).code, 'REQUEST_VALIDATION_FAILED');
    assert.match(String(longId.headers['content-type']), /^application\/problem\+json/);
    const address = await server.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = new URL(address);
    for (const request of ['POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n']) {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.end(request));
        let text = '';
        socket.on('data', (chunk) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
      });
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /content-type: application\/problem\+json/i);
      assert.equal((JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { code: string }).code, 'REQUEST_INVALID');
    }
  });
});
