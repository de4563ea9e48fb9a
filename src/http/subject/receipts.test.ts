import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { decodeJwt } from 'jose';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { resolveItem, uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { ResolveItem } from '../../modules/identity/index.ts';
import { buildServer, type CandorServer } from '../server.ts';

const uid = uniqueId;
const item = resolveItem;

describeEachDialect('consent receipts by id (privacy center and admin)', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  /** A backend's token: sessions are issued with it, never with a write key. */
  let issuer = '';
  const tokens: Record<string, string> = {};
  const user = uid('cust');
  const email = `${uid('ada')}@shop.io`;
  const deviceAnon = uid('anon');
  let main = '';
  let device = '';
  const asBusiness = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: url === '/v1/subject-sessions' ? `Bearer ${issuer}` : `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, ...headers }, payload: payload as Record<string, unknown> });
  const asCustomer = (url: string, bearer: string) => server.app.inject({ url, headers: { authorization: `Bearer ${bearer}` } });
  const asStaff = (url: string, role: string) => server.app.inject({ url, headers: { authorization: `Bearer ${tokens[role]}` } });
  const session = async (userId: string) => ((await asBusiness('/v1/subject-sessions', { userId })).json() as { token: string }).token;

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    issuer = (await ctx.kernel.access.createToken('session_issuer', null, CLI_ACTOR)).secret;
    for (const role of ['owner', 'privacy_officer', 'marketer']) tokens[role] = (await ctx.kernel.access.createToken(role, null, CLI_ACTOR)).secret;
    const { identity, storage, consent } = ctx.kernel;
    const resolve = async (i: ResolveItem) => (await storage.raw.transaction((tx) => identity.resolveBatch(tx, [i])))[0];
    main = (await resolve(item({ user_id: user, email }, 'm-1')))?.profileId as string;
    device = (await resolve(item({ anonymous_id: deviceAnon }, 'm-2')))?.profileId as string;
    // The device agreed to e-mail marketing and refused analytics; the signed-in person refused e-mail marketing.
    await consent.record(device, [{ purpose: 'marketing.communications.email', state: 'given' }, { purpose: 'analytics.reporting', state: 'refused' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    await consent.record(main, [{ purpose: 'marketing.communications.email', state: 'refused' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    // The device's anonymous id arrives with the e-mail address: the device profile merges into the main one.
    const login = await resolve(item({ email, anonymous_id: deviceAnon }, 'm-login'));
    assert.equal(login?.merges[0]?.from, device);
    await identity.notifyMerges(login?.merges ?? []);
  });
  after(async () => {
    await server.app.close();
  });

  it('lets the customer fetch every receipt their history lists, GPC opt-outs from ingestion and merges included', async () => {
    const consented = await asBusiness('/v1/consent', { userId: user, purposes: { 'analytics.reporting': 'given' }, mechanism: 'banner_save' });
    assert.equal(consented.statusCode, 200, consented.body);
    // A GPC signal on an event: recorded by the collector, its receipt handed to nobody.
    const track = await asBusiness('/v1/track', { userId: user, event: 'Product Viewed', properties: { product_id: 'p1' } }, { 'sec-gpc': '1' });
    assert.equal((track.json() as { gpcHonoured?: boolean }).gpcHonoured, true, track.body);
    const token = await session(user);
    const history = ((await asCustomer('/v1/me/consent', token)).json() as { history: { mechanism: string; receiptId: string | null }[] }).history;
    const mechanisms = new Set(history.map((e) => e.mechanism));
    assert.ok(mechanisms.has('gpc') && mechanisms.has('merge'), JSON.stringify([...mechanisms]));
    const pseudonym = ctx.kernel.consent.pseudonym(main);
    // The person's profiles: the device merged into theirs recorded some of the entries listed.
    const theirs = [pseudonym, ctx.kernel.consent.pseudonym(device)];
    for (const id of new Set(history.flatMap((e) => (e.receiptId ? [e.receiptId] : [])))) {
      const response = await asCustomer(`/v1/me/consent/receipts/${id}`, token);
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as { receiptId: string; receipt: string; mechanism: string };
      assert.equal(body.receiptId, id);
      const payload = await ctx.kernel.consent.verifyReceipt(body.receipt);
      assert.ok(theirs.includes(payload.sub as string));
      const text = JSON.stringify(decodeJwt(body.receipt));
      for (const plain of [user, email, main, deviceAnon]) assert.ok(!text.includes(plain), 'pseudonyms only');
    }
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 500 });
    assert.equal(reads.at(-1)?.subject, pseudonym, 'audited as a read of the person');
  });

  it("lets the customer fetch receipts of a profile merged into theirs, and nobody else's (404)", async () => {
    const deviceReceipt = (await ctx.kernel.consent.history(device)).find((e) => e.receiptId !== null)?.receiptId as string;
    const mine = await asCustomer(`/v1/me/consent/receipts/${deviceReceipt}`, await session(user));
    assert.equal(mine.statusCode, 200, mine.body);
    const other = await session(uid('other'));
    const theirs = await asCustomer(`/v1/me/consent/receipts/${deviceReceipt}`, other);
    assert.equal(theirs.statusCode, 404);
    assert.equal((theirs.json() as { code: string }).code, 'CONSENT_RECEIPT_NOT_FOUND');
    assert.equal(((await asCustomer('/v1/me/consent/receipts/no-such-receipt', other)).json() as { code: string }).code, 'CONSENT_RECEIPT_NOT_FOUND');
    assert.equal((await server.app.inject({ url: `/v1/me/consent/receipts/${deviceReceipt}` })).statusCode, 401);
  });

  it('serves a receipt to privacy staff by profile id (a merged-away one too), audited, and to nobody else', async () => {
    const mergeReceipt = (await ctx.kernel.consent.history(main)).find((e) => e.mechanism === 'merge')?.receiptId as string;
    for (const profileId of [main, device]) {
      const response = await asStaff(`/v1/admin/subjects/${profileId}/consent/receipts/${mergeReceipt}`, 'privacy_officer');
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as { receipt: string; subjects: string[]; mechanism: string };
      assert.equal(body.mechanism, 'merge');
      assert.deepEqual(body.subjects, [ctx.kernel.consent.pseudonym(main)]);
      assert.equal((await ctx.kernel.consent.verifyReceipt(body.receipt)).jti, mergeReceipt);
    }
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 500 });
    assert.equal(reads.at(-1)?.subject, ctx.kernel.consent.pseudonym(main));
    assert.equal((await asStaff(`/v1/admin/subjects/${main}/consent/receipts/${mergeReceipt}`, 'marketer')).statusCode, 403);
    const stranger = (await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [item({ user_id: uid('stranger') }, 'm-s')])))[0]?.profileId as string;
    const notTheirs = await asStaff(`/v1/admin/subjects/${stranger}/consent/receipts/${mergeReceipt}`, 'owner');
    assert.equal(notTheirs.statusCode, 404);
    assert.equal((notTheirs.json() as { code: string }).code, 'CONSENT_RECEIPT_NOT_FOUND');
  });

  it('lists in the history of the customer and of staff the ledger entries of a profile merged into the person, oldest first', async () => {
    const { consent } = ctx.kernel;
    const own = await consent.history(main);
    const merged = await consent.history(device);
    const deviceReceipt = merged.find((e) => e.purpose === 'marketing.communications.email')?.receiptId as string;
    assert.ok(deviceReceipt);
    const ordered = (list: { at: string }[]) => list.every((e, i) => i === 0 || (list[i - 1] as { at: string }).at <= e.at);

    const response = await asCustomer('/v1/me/consent', await session(user));
    assert.equal(response.statusCode, 200, response.body);
    const history = (response.json() as { history: Record<string, unknown>[] }).history;
    assert.equal(history.length, own.length + merged.length);
    assert.ok(ordered(history as { at: string }[]));
    // The consent the device gave before sign-in, with the receipt the customer can fetch; the answer's shape is unchanged.
    const given = history.find((e) => e.receiptId === deviceReceipt && e.purpose === 'marketing.communications.email');
    assert.deepEqual(given && Object.keys(given).sort(), ['at', 'basis', 'mechanism', 'noticeVersion', 'purpose', 'receiptId', 'state']);
    assert.deepEqual([given?.state, given?.mechanism], ['given', 'banner_save']);
    assert.ok(!response.body.includes(consent.pseudonym(device)) && !response.body.includes(device), 'no id of the merged profile');

    for (const profileId of [main, device]) {
      const read = await asStaff(`/v1/admin/subjects/${profileId}/consent`, 'privacy_officer');
      assert.equal(read.statusCode, 200, read.body);
      const body = read.json() as { subject: string; history: { id: string; subject: string; receiptId: string | null; at: string }[] };
      assert.equal(body.subject, consent.pseudonym(main));
      assert.deepEqual(new Set(body.history.map((e) => e.id)), new Set([...own, ...merged].map((e) => e.id)));
      assert.ok(ordered(body.history));
      // Each entry names the profile it was recorded for, as the ledger does.
      assert.deepEqual(new Set(body.history.filter((e) => e.receiptId === deviceReceipt).map((e) => e.subject)), new Set([consent.pseudonym(device)]));
    }
  });

  it("answers the admin consent read for a merged-away profile id with the canonical profile's state, not a stale one", async () => {
    const response = await asStaff(`/v1/admin/subjects/${device}/consent`, 'privacy_officer');
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { subject: string; purposes: Record<string, { state: string; allowed: boolean }> };
    assert.equal(body.subject, ctx.kernel.consent.pseudonym(main));
    // The device's own ledger still says "given"; the person refused.
    assert.equal((await ctx.kernel.consent.state(device))['marketing.communications.email']?.allowed, true);
    assert.equal(body.purposes['marketing.communications.email']?.state, 'refused');
    assert.equal(body.purposes['marketing.communications.email']?.allowed, false);
    const direct = (await asStaff(`/v1/admin/subjects/${main}/consent`, 'owner')).json() as { purposes: unknown };
    assert.deepEqual(body.purposes, direct.purposes);
  });
});
