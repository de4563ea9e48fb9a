import assert from 'node:assert/strict';
import { after, before, it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

const TARGETED = 'marketing.advertising.third_party.targeted';

describeEachDialect('GPC on a refused message', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const send = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    server.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json', ...headers },
      payload: JSON.stringify(payload),
    });
  const profileOf = async (type: string, value: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]))[0] as string;
  const answer = (response: { json: () => unknown }) => response.json() as { gpcHonoured?: boolean; results: { status: string; code?: string; gpcHonoured?: boolean }[] };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('records the opt-out for the known person (and the other owner of an id) when the message itself is refused', async () => {
    const given = { [TARGETED]: 'given', third_party_sharing: 'given' };
    assert.equal((await send('/v1/consent', { userId: 'gpc-ref-1', purposes: given, mechanism: 'banner_save' })).statusCode, 200);
    // Another person used the same device before.
    assert.equal((await send('/v1/consent', { anonymousId: 'gpc-ref-device', purposes: given, mechanism: 'banner_save' })).statusCode, 200);
    const person = await profileOf('user_id', 'gpc-ref-1');
    const other = await profileOf('anonymous_id', 'gpc-ref-device');

    // No analytics consent: the event is refused, but the signal it carries is an opt-out all the same.
    const response = await send('/v1/track', { userId: 'gpc-ref-1', anonymousId: 'gpc-ref-device', event: 'Product Viewed', properties: { product_id: 'p1' } }, { 'sec-gpc': '1' });
    const body = answer(response);
    assert.deepEqual(body.results.map((r) => [r.status, r.code, r.gpcHonoured]), [['refused', 'COLLECT_NO_LAWFUL_BASIS', true]]);
    for (const id of [person, other]) {
      const state = await ctx.kernel.consent.state(id);
      assert.deepEqual([state[TARGETED]?.state, state[TARGETED]?.gpc, state[TARGETED]?.allowed], ['refused', true, false]);
      assert.equal(state.third_party_sharing?.allowed, false);
      assert.ok((await ctx.kernel.consent.history(id)).some((e) => e.mechanism === 'gpc' && e.purpose === TARGETED));
    }
  });

  it('does not say the signal was honoured when its opt-out could not be recorded', async () => {
    assert.equal((await send('/v1/consent', { userId: 'gpc-ref-2', purposes: { [TARGETED]: 'given' }, mechanism: 'banner_save' })).statusCode, 200);
    const person = await profileOf('user_id', 'gpc-ref-2');
    const db = ctx.kernel.storage.db;
    // The audit log refuses every entry: the opt-out (which is audited in its own transaction) cannot be written.
    if (dialect === 'sqlite') await sql`CREATE TRIGGER test_audit_fails BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected failure'); END`.execute(db);
    else {
      await sql`CREATE FUNCTION test_audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`.execute(db);
      await sql`CREATE TRIGGER test_audit_fails BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION test_audit_fails()`.execute(db);
    }
    const warned: unknown[][] = [];
    const warn = mock.method(ctx.kernel.logger, 'warn', (...args: unknown[]) => {
      warned.push(args);
    });
    try {
      const response = await send('/v1/track', { userId: 'gpc-ref-2', event: 'Product Viewed', properties: { product_id: 'p1' } }, { 'sec-gpc': '1' });
      assert.deepEqual(answer(response).results.map((r) => [r.status, r.gpcHonoured]), [['refused', undefined]]);
      // Nor does the answer as a whole: no message of it had the signal honoured.
      assert.equal(answer(response).gpcHonoured, undefined, response.body);
      // The failure is not lost: the operator is told (with no personal data: the source and how many messages).
      const logged = warned.find((args) => args[1] === 'GPC opt-out of refused messages not recorded');
      assert.ok(logged, JSON.stringify(warned.map((args) => args[1])));
      assert.deepEqual([(logged[0] as { source: string }).source, (logged[0] as { messages: number }).messages], ['web', 1]);
    } finally {
      warn.mock.restore();
      if (dialect === 'sqlite') await sql`DROP TRIGGER test_audit_fails`.execute(db);
      else {
        await sql`DROP TRIGGER test_audit_fails ON audit_log`.execute(db);
        await sql`DROP FUNCTION test_audit_fails()`.execute(db);
      }
    }
    assert.equal((await ctx.kernel.consent.state(person))[TARGETED]?.state, 'given');
  });

  it('records the opt-out for the person the gate saw when the message is refused only once resolution moved it', async () => {
    // The device's person gave everything; a new user id on that device would become a profile of its own (one user id
    // per profile), which has no consent: the message is refused before resolution links anything.
    const given = { [TARGETED]: 'given', 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
    assert.equal((await send('/v1/consent', { userId: 'gpc-ref-3', anonymousId: 'gpc-ref-3-device', purposes: given, mechanism: 'banner_save' })).statusCode, 200);
    const person = await profileOf('user_id', 'gpc-ref-3');
    const response = await send('/v1/identify', { anonymousId: 'gpc-ref-3-device', userId: 'gpc-ref-3-other', messageId: 'gpc-ref-3-m1' }, { 'sec-gpc': '1' });
    assert.deepEqual(answer(response).results.map((r) => [r.status, r.code, r.gpcHonoured]), [['refused', 'COLLECT_NO_LAWFUL_BASIS', true]]);
    assert.equal(await profileOf('user_id', 'gpc-ref-3-other'), null, 'nothing was linked');
    const state = await ctx.kernel.consent.state(person);
    assert.deepEqual([state[TARGETED]?.state, state[TARGETED]?.gpc, state[TARGETED]?.allowed], ['refused', true, false]);
    assert.equal(state['analytics.reporting']?.allowed, true, 'other purposes go on');
  });
});
