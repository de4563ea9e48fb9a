import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import type { Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { addMonths } from './decide.ts';
import type { Consent } from './index.ts';

const actor = CLI_ACTOR;
const SALE = 'third_party_sharing';
const TARGETED = 'marketing.advertising.third_party.targeted';
const GPC_PURPOSES = [SALE, TARGETED];
const rejectsWith = (code: string) => (error: unknown) => isCandorError(error) && error.code === code;

type ReceiptPurpose = { purpose: string; gpc: boolean; gpcOverride: boolean };
const receiptPurposes = async (consent: Consent, receipt: string) =>
  ((await consent.verifyReceipt(receipt)) as unknown as { services: { purposes: ReceiptPurpose[] }[] }).services[0]?.purposes ?? [];

/**
 * Writes, as the service would have, a GPC opt-out and then an opt-in the person confirmed over it (`gpcOverride`) for
 * the sale/sharing and targeted-advertising purposes, `monthsAgo` months ago: the clock is real, the consent old.
 */
async function seedConfirmedOverGpc(consent: Consent, db: Kysely<object>, subjectId: string, monthsAgo: number): Promise<void> {
  const pseudonym = consent.pseudonym(subjectId);
  const confirmedAt = addMonths(Date.now(), -monthsAgo);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- ledger and current rows as the module writes them
  const any = db as Kysely<any>;
  for (const purpose of GPC_PURPOSES) {
    const rows = [
      { state: 'refused', mechanism: 'gpc', gpc: 1, gpc_override: 0, at: new Date(confirmedAt - 86_400_000).toISOString() },
      { state: 'given', mechanism: 'privacy_center', gpc: 0, gpc_override: 1, at: new Date(confirmedAt).toISOString() },
    ].map((row, i) => ({ ...row, id: `ce_seed${i}${randomBytes(8).toString('hex')}`, subject: pseudonym, purpose, basis: 'consent', notice_version: 1, jurisdiction: null }));
    for (const row of rows) await any.insertInto('consent_ledger').values({ ...row, notice_hash: null, source: null, receipt_id: null }).execute();
    const { id, ...last } = rows[1] as (typeof rows)[number];
    await any.insertInto('consent_current').values({ ...last, entry_id: id }).execute();
  }
  // Not through this instance: its memory of the person is read again.
  await consent.forgetSubject(subjectId);
}

describeEachDialect('an opt-in confirmed over GPC that expired before the sweep', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const db = () => ctx.kernel.storage.db as Kysely<object>;
  const newSubject = () => `user-${randomUUID()}`;
  let server: CandorServer;
  let writeKey = '';
  const send = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    server.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json', ...headers },
      payload: JSON.stringify(payload),
    });

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it('no longer stands against a GPC signal: the signal writes the opt-out again', async () => {
    const subject = newSubject();
    await seedConfirmedOverGpc(consent(), db(), subject, 14);
    await consent().load([subject]);
    assert.equal(consent().decide(subject, SALE).reason, 'expired');
    assert.equal(consent().confirmedOverGpc(subject, SALE), false, 'an expired confirmation is spent');
    const written = await consent().recordGpc([subject], {}, actor);
    assert.ok(written, 'the signal wrote its opt-outs');
    assert.deepEqual(written.entries.map((e) => [e.purpose, e.state, e.mechanism, e.gpc]).sort(), [
      [TARGETED, 'refused', 'gpc', true],
      [SALE, 'refused', 'gpc', true],
    ].sort());
    assert.equal(consent().decide(subject, SALE).reason, 'refused');
  });

  it('still stands while it counts', async () => {
    const subject = newSubject();
    await seedConfirmedOverGpc(consent(), db(), subject, 12);
    await consent().load([subject]);
    assert.equal(consent().decide(subject, SALE).allowed, true);
    assert.equal(consent().confirmedOverGpc(subject, SALE), true);
    assert.equal(await consent().recordGpc([subject], {}, actor), undefined, 'nothing to write');
  });

  it('does not let an accept-all click sent with the signal renew it without a new confirmation', async () => {
    const subject = newSubject();
    await seedConfirmedOverGpc(consent(), db(), subject, 14);
    const result = await consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism: 'banner_accept', gpc: true }, actor);
    assert.deepEqual(result.rejected, [{ purpose: SALE, code: 'CONSENT_GPC_CONFLICT' }]);
    assert.deepEqual(result.entries.map((e) => [e.purpose, e.state, e.gpc, e.gpcOverride]).sort(), [
      [TARGETED, 'refused', true, false],
      [SALE, 'refused', true, false],
    ].sort());
    assert.equal(consent().decide(subject, SALE).reason, 'refused');
    // The same click again is refused whole: the opt-out is in force now.
    await assert.rejects(consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism: 'banner_accept', gpc: true }, actor), rejectsWith('CONSENT_GPC_CONFLICT'));
  });

  it('takes a new explicit confirmation, also on the request that carries the signal, and says so in the receipt', async () => {
    const subject = newSubject();
    await seedConfirmedOverGpc(consent(), db(), subject, 14);
    const result = await consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism: 'privacy_center', gpc: true, confirmOverGpc: true }, actor);
    assert.deepEqual(result.rejected, []);
    const given = result.entries.find((e) => e.purpose === SALE && e.state === 'given');
    assert.equal(given?.gpcOverride, true);
    assert.equal(consent().decide(subject, SALE).allowed, true);
    assert.equal(consent().decide(subject, TARGETED).reason, 'refused', 'the signal opted out of the purpose not confirmed again');
    const items = await receiptPurposes(consent(), result.receipt);
    assert.deepEqual(items.map((i) => [i.purpose, i.gpc, i.gpcOverride]).sort(), [
      [TARGETED, true, false],
      [SALE, true, false],
      [SALE, false, true],
    ].sort());
  });

  it('records an accept-all without the signal as a plain consent, which a later signal opts out', async () => {
    const subject = newSubject();
    await seedConfirmedOverGpc(consent(), db(), subject, 14);
    const plain = await consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism: 'banner_accept' }, actor);
    assert.equal(plain.entries[0]?.gpcOverride, false);
    const written = await consent().recordGpc([subject], {}, actor);
    assert.ok(written?.entries.some((e) => e.purpose === SALE && e.state === 'refused' && e.gpc));
    // Confirmed explicitly (here without the signal), it stands against the signal again.
    const other = newSubject();
    await seedConfirmedOverGpc(consent(), db(), other, 14);
    const confirmed = await consent().record(other, [{ purpose: SALE, state: 'given' }], { mechanism: 'privacy_center', confirmOverGpc: true }, actor);
    assert.equal(confirmed.entries[0]?.gpcOverride, true);
    const signal = await consent().recordGpc([other], {}, actor);
    assert.deepEqual(signal?.entries.map((e) => e.purpose), [TARGETED], 'only the purpose not confirmed again');
  });

  it('records the opt-out of an event request with Sec-GPC: 1 for a person whose confirmation expired', async () => {
    const first = await send('/v1/consent', { userId: 'gpc-lapse-1', purposes: { 'analytics.reporting': 'given' }, mechanism: 'banner_save' });
    assert.equal(first.statusCode, 200, first.body);
    const [profile] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'gpc-lapse-1' }], source: 'web', at: new Date().toISOString() }]);
    assert.ok(profile);
    await seedConfirmedOverGpc(consent(), db(), profile, 14);
    const response = await send('/v1/track', { userId: 'gpc-lapse-1', event: 'Product Viewed', properties: { product_id: 'p1' } }, { 'sec-gpc': '1' });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal((response.json() as { gpcHonoured?: boolean }).gpcHonoured, true);
    const last = (await consent().history(profile)).filter((e) => e.purpose === SALE).at(-1);
    assert.deepEqual([last?.state, last?.mechanism, last?.gpc], ['refused', 'gpc', true]);
  });
});

describeEachDialect('an opt-in confirmed over GPC after a material notice change', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const newSubject = () => `user-${randomUUID()}`;

  it('needs renewal with a new confirmation; until then the signal opts the person out', async () => {
    const [signalled, clicked] = [newSubject(), newSubject()];
    for (const subject of [signalled, clicked]) {
      await consent().recordGpc([subject], {}, actor);
      const confirmed = await consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism: 'privacy_center', confirmOverGpc: true }, actor);
      assert.deepEqual((await receiptPurposes(consent(), confirmed.receipt)).map((i) => [i.purpose, i.gpcOverride]), [[SALE, true]], 'the receipt says it was confirmed over GPC');
      assert.equal(consent().confirmedOverGpc(subject, SALE), true);
    }
    const current = consent().currentNotice();
    const widened = current.purposes.map((p) => (p.purpose === SALE ? { ...p, categories: [...p.categories, 'user.contact.phone_number'] } : p));
    assert.deepEqual((await consent().publishNotice({ text: `${current.text}\n\nWith phone numbers.`, purposes: widened }, actor)).renewalRequired, [SALE]);

    assert.equal(consent().decide(signalled, SALE).reason, 'renewal_required');
    assert.equal(consent().confirmedOverGpc(signalled, SALE), false);
    const written = await consent().recordGpc([signalled], {}, actor);
    assert.deepEqual(written?.entries.map((e) => [e.purpose, e.state, e.gpc]), [[SALE, 'refused', true]]);

    const click = await consent().record(clicked, [{ purpose: SALE, state: 'given' }], { mechanism: 'banner_accept', gpc: true }, actor);
    assert.deepEqual(click.rejected, [{ purpose: SALE, code: 'CONSENT_GPC_CONFLICT' }]);
    assert.equal(consent().decide(clicked, SALE).reason, 'refused');
    const renewed = await consent().record(clicked, [{ purpose: SALE, state: 'given' }], { mechanism: 'banner_save', gpc: true, confirmOverGpc: true }, actor);
    assert.deepEqual(renewed.entries.map((e) => [e.state, e.gpcOverride]), [['given', true]]);
    assert.equal(consent().decide(clicked, SALE).allowed, true);
  });
});
