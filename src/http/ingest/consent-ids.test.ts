import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { sendMessages } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

describeEachDialect('POST /v1/consent, /v1/consent/opt-out-notice and /v1/subject-sessions take the ids ingestion takes, and keep no query string', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  /** A backend's token: sessions are issued with it, never with a write key. */
  let issuer = '';
  const post = (url: string, body: Record<string, unknown>) =>
    server.app.inject({
      method: 'POST',
      url,
      headers: { authorization: url === '/v1/subject-sessions' ? `Bearer ${issuer}` : `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
  const consent = (body: Record<string, unknown>) => post('/v1/consent', { mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given' }, ...body });
  const optOutNotice = (body: Record<string, unknown>) => post('/v1/consent/opt-out-notice', { purpose: 'analytics.reporting', jurisdiction: 'US-CA', noticeVersion: ctx.kernel.consent.currentNotice().version, ...body });
  const session = (body: Record<string, unknown>) => post('/v1/subject-sessions', body);
  type Problem = { code?: string; details?: { errors?: { in: string; path: string; rule: string; message: string }[]; reason?: string } };
  const problem = (response: { json: () => unknown }) => response.json() as Problem;
  const profileOf = async (type: string, value: string) => {
    const [id] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]);
    return id;
  };
  const payloadOf = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')) as { source?: unknown };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
    const purpose = ctx.kernel.consent.purpose('analytics.reporting');
    assert.ok(purpose);
    await ctx.kernel.consent.setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
  });
  after(async () => {
    await server.app.close();
  });

  const unusable: [string, string][] = [
    ['a lone surrogate', 'u-\ud800-x'],
    ['a NUL', 'u-\u0000-x'],
    ['a newline', 'u-\n-x'],
  ];

  for (const [what, value] of unusable) {
    it(`refuses an id with ${what} with REQUEST_VALIDATION_FAILED on every endpoint, creating no one`, async () => {
      for (const [field, type] of [['userId', 'user_id'], ['anonymousId', 'anonymous_id']] as const) {
        for (const [name, call] of [['consent', consent], ['opt-out notice', optOutNotice], ['session', session]] as const) {
          const response = await call({ [field]: value });
          assert.equal(response.statusCode, 400, `${name} ${field}: ${response.body}`);
          assert.equal(problem(response).code, 'REQUEST_VALIDATION_FAILED', response.body);
          assert.deepEqual(problem(response).details?.errors?.map((e) => [e.in, e.path, e.rule]), [['body', `/${field}`, 'format']]);
        }
        assert.equal(await profileOf(type, value), null, `no ${type} for ${what}`);
        assert.equal(await profileOf(type, value.toWellFormed()), null);
      }
    });
  }

  it('never gives an event sent with the U+FFFD form of a refused id a consent to be stored under', async () => {
    const refused = await consent({ userId: 'u-\udc00-late', purposes: { 'analytics.reporting': 'given' } });
    assert.equal(refused.statusCode, 400, refused.body);
    const [result] = await sendMessages(ctx.kernel, [{ type: 'track', userId: 'u-\ufffd-late', messageId: 'late-1', event: 'Product Viewed', properties: { product_id: 'p1' } }]);
    assert.notEqual(result?.status, 'stored', JSON.stringify(result));
  });

  it('takes ids of up to 256 characters, as ingestion does, and refuses longer ones', async () => {
    const longest = `u-${'x'.repeat(254)}`;
    const ok = await consent({ userId: longest });
    assert.equal(ok.statusCode, 200, ok.body);
    const [stored] = await sendMessages(ctx.kernel, [{ type: 'track', userId: longest, messageId: 'long-1', event: 'Product Viewed', properties: { product_id: 'p1' } }]);
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    assert.equal((await session({ userId: longest })).statusCode, 201);
    assert.equal((await optOutNotice({ anonymousId: `a-${'y'.repeat(254)}` })).statusCode, 200);
    // 129 characters outside the BMP are 258 UTF-16 units, as ingestion counts them.
    for (const tooLong of [`${longest}x`, '\u{1F600}'.repeat(129)]) {
      for (const call of [consent, optOutNotice, session]) {
        const response = await call({ userId: tooLong });
        assert.equal(response.statusCode, 400, response.body);
        assert.equal(problem(response).code, 'REQUEST_VALIDATION_FAILED');
      }
    }
  });

  it('issues a session for a whole-number id, read as text as a consent or a message reads it, and refuses the numbers they refuse', async () => {
    const given = await consent({ userId: 7788 });
    assert.equal(given.statusCode, 200, given.body);
    const person = await profileOf('user_id', '7788');
    assert.ok(person);
    for (const [body, profile] of [[{ userId: 7788 }, person], [{ userId: '7788' }, person], [{ anonymousId: 4343 }, undefined]] as const) {
      const response = await session(body);
      assert.equal(response.statusCode, 201, `${JSON.stringify(body)}: ${response.body}`);
      const { profileId } = await ctx.kernel.subjectSessions.authenticate((response.json() as { token: string }).token);
      assert.equal(profileId, profile ?? (await profileOf('anonymous_id', '4343')), JSON.stringify(body));
    }
    assert.ok(await profileOf('anonymous_id', '4343'), 'the number named the anonymous id 4343');
    const refused = [['userId', '2.5', 'type'], ['userId', '1e21', 'maximum'], ['anonymousId', '9007199254740993', 'maximum'], ['anonymousId', '-9007199254740993', 'minimum'], ['userId', 'true', 'type']] as const;
    for (const [field, text, rule] of refused) {
      const response = await session(JSON.parse(`{"${field}":${text}}`) as Record<string, unknown>);
      assert.equal(response.statusCode, 400, `${field} ${text}: ${response.body}`);
      assert.equal(problem(response).code, 'REQUEST_VALIDATION_FAILED');
      assert.deepEqual(problem(response).details?.errors?.map((e) => [e.path, e.rule]), [[`/${field}`, rule]], response.body);
    }
    assert.equal(await profileOf('user_id', '2.5'), null);
  });

  it('refuses a control character or a lone surrogate in source with a coded 400, creating no one', async () => {
    for (const source of ['https://shop.example/\u0000', 'web\u0007', 'https://shop.example/\ud83d']) {
      for (const call of [consent, optOutNotice]) {
        const response = await call({ anonymousId: 'a-bad-source', source });
        assert.equal(response.statusCode, 400, response.body);
        assert.equal(problem(response).code, 'REQUEST_VALIDATION_FAILED', response.body);
        assert.deepEqual(problem(response).details?.errors?.map((e) => e.path), ['/source']);
      }
    }
    assert.equal(await profileOf('anonymous_id', 'a-bad-source'), null);
    const profileId = await profileOf('user_id', `u-${'x'.repeat(254)}`);
    assert.ok(profileId);
    // The module refuses it too, for every other caller.
    await assert.rejects(ctx.kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'api', source: 'x\u0000' }, CLI_ACTOR), (error: { code?: string; details?: { reason?: string } }) => {
      assert.equal(error.code, 'CONSENT_CHANGE_INVALID');
      assert.equal(error.details?.reason, 'source');
      return true;
    });
  });

  it('keeps only the origin and path of a source URL in the ledger and in the receipt', async () => {
    const given = await consent({ anonymousId: 'a-source-url', source: 'https://quillon:zz3cret@Shop.example:8443/account/settings?email=quillon%40b.c&token=abc#topmark' });
    assert.equal(given.statusCode, 200, given.body);
    const notice = await optOutNotice({ anonymousId: 'a-source-url-2', source: 'https://shop.example/ca?ref=mail&email=quillon@b.c' });
    assert.equal(notice.statusCode, 200, notice.body);
    const withdrawn = await consent({ anonymousId: 'a-source-url', purposes: undefined, withdrawAll: true, source: 'shop.example/privacy#email=quillon@b.c' });
    assert.equal(withdrawn.statusCode, 200, withdrawn.body);

    const first = await profileOf('anonymous_id', 'a-source-url');
    const second = await profileOf('anonymous_id', 'a-source-url-2');
    assert.ok(first && second);
    const history = [...(await ctx.kernel.consent.history(first)), ...(await ctx.kernel.consent.history(second))];
    assert.deepEqual([...new Set(history.map((e) => e.source))].sort(), ['https://Shop.example:8443/account/settings', 'https://shop.example/ca', 'shop.example/privacy']);
    for (const response of [given, notice, withdrawn]) {
      const { receipt } = response.json() as { receipt: string };
      const payload = payloadOf(receipt);
      assert.ok(typeof payload.source === 'string' && !/[?#@]|zz3cret|token/.test(payload.source), JSON.stringify(payload.source));
      assert.deepEqual(await ctx.kernel.consent.verifyReceipt(receipt).then((p) => p.source), payload.source);
    }
    assert.equal(payloadOf((given.json() as { receipt: string }).receipt).source, 'https://Shop.example:8443/account/settings');
    const everything = JSON.stringify(history);
    for (const secret of ['quillon', 'zz3cret', 'token=', 'ref=mail', 'topmark']) assert.ok(!everything.includes(secret), `${secret} is not kept`);
  });
});
