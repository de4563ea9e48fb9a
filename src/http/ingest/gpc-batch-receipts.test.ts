import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { isCandorError } from '../../shared/errors.ts';

const TARGETED = 'marketing.advertising.third_party.targeted';
type Payload = { piiPrincipalId: string; linkedPiiPrincipalIds?: string[]; services: { purposes: { piiPrincipalId: string }[] }[] };

// A server relays one batch (one write key) for several people, each message flagging its own browser's GPC signal:
// each person gets a receipt of their own, and no receipt names someone the message's device does not belong to.
describeEachDialect('GPC receipts of a relayed batch', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, consent, profileOf } = useIngestServer(ctx);
  const viewed = (ids: Record<string, string>) => ({ type: 'track', ...ids, event: 'Product Viewed', properties: { product_id: 'p1' }, context: { gpc: true } });
  const batch = async (messages: Record<string, unknown>[]) => {
    const response = await send('/v1/batch', { batch: messages });
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: { status: string; gpcHonoured?: boolean }[] }).results.map((r) => [r.status, r.gpcHonoured]);
  };
  const known = async (type: string, value: string) => {
    const id = await profileOf(type, value);
    assert.ok(id, value);
    return id;
  };
  /** The GPC receipt of a person's opt-outs (one), as the person fetches it, and who it names. */
  const gpcReceipt = async (profileId: string) => {
    const ids = new Set((await ctx.kernel.consent.history(profileId)).filter((e) => e.mechanism === 'gpc').map((e) => e.receiptId as string));
    assert.equal(ids.size, 1, 'one receipt covers the person’s GPC entries');
    const receiptId = [...ids][0] as string;
    const payload = (await ctx.kernel.consent.verifyReceipt((await ctx.kernel.consent.receipt(receiptId, [profileId])).receipt)) as unknown as Payload;
    const items = [...new Set(payload.services[0]?.purposes.map((p) => p.piiPrincipalId))];
    return { receiptId, principal: payload.piiPrincipalId, linked: payload.linkedPiiPrincipalIds ?? [], items };
  };
  const notFetchedBy = async (receiptId: string, profileId: string) => {
    await assert.rejects(ctx.kernel.consent.receipt(receiptId, [profileId]), (error) => isCandorError(error, 'CONSENT_RECEIPT_NOT_FOUND'));
  };
  const pseudonym = (id: string) => ctx.kernel.consent.pseudonym(id);

  it('signs one receipt per person for the stored messages of unrelated people, each naming that person only', async () => {
    for (const userId of ['rb-alice', 'rb-bob', 'rb-carl']) await consent(userId, { 'analytics.reporting': 'given' });
    assert.deepEqual(await batch([viewed({ userId: 'rb-alice' }), viewed({ userId: 'rb-bob' }), viewed({ userId: 'rb-alice' }), viewed({ userId: 'rb-carl' })]), Array(4).fill(['stored', true]));
    const people = [await known('user_id', 'rb-alice'), await known('user_id', 'rb-bob'), await known('user_id', 'rb-carl')];
    const receipts = [];
    for (const id of people) {
      const receipt = await gpcReceipt(id);
      assert.deepEqual([receipt.principal, receipt.linked, receipt.items], [pseudonym(id), [], [pseudonym(id)]]);
      receipts.push(receipt.receiptId);
      for (const other of people) if (other !== id) await notFetchedBy(receipt.receiptId, other);
    }
    assert.equal(new Set(receipts).size, 3);
  });

  it('links only the profiles of the same message’s device: a shared tablet’s owner, not the batch’s other people', async () => {
    // Grace's tablet; Hedy signs in on it, Ivan on a device of his own, both relayed in one batch.
    await send('/v1/consent', { mechanism: 'banner_save', userId: 'rb-grace', anonymousId: 'rb-tablet', purposes: { 'analytics.reporting': 'given', [TARGETED]: 'given' } });
    await consent('rb-hedy', { 'analytics.reporting': 'given' });
    await consent('rb-ivan', { 'analytics.reporting': 'given' });
    assert.deepEqual(await batch([viewed({ userId: 'rb-ivan' }), viewed({ userId: 'rb-hedy', anonymousId: 'rb-tablet' })]), Array(2).fill(['stored', true]));
    const [grace, hedy, ivan] = [await known('user_id', 'rb-grace'), await known('user_id', 'rb-hedy'), await known('user_id', 'rb-ivan')];
    const hedys = await gpcReceipt(hedy);
    assert.deepEqual([hedys.principal, hedys.linked], [pseudonym(hedy), [pseudonym(grace)]], 'the tablet’s signal covers its owner');
    assert.equal((await gpcReceipt(grace)).receiptId, hedys.receiptId);
    const ivans = await gpcReceipt(ivan);
    assert.deepEqual([ivans.principal, ivans.linked, ivans.items], [pseudonym(ivan), [], [pseudonym(ivan)]]);
    await notFetchedBy(ivans.receiptId, hedy);
    await notFetchedBy(ivans.receiptId, grace);
    await notFetchedBy(hedys.receiptId, ivan);
  });

  it('signs one receipt per person for messages refused at the consent gate', async () => {
    for (const userId of ['rb-jo', 'rb-kim']) {
      await consent(userId, { 'analytics.reporting': 'refused' });
    }
    assert.deepEqual(await batch([viewed({ userId: 'rb-jo' }), viewed({ userId: 'rb-kim' })]), Array(2).fill(['refused', true]));
    const [jo, kim] = [await known('user_id', 'rb-jo'), await known('user_id', 'rb-kim')];
    const jos = await gpcReceipt(jo);
    const kims = await gpcReceipt(kim);
    assert.deepEqual([jos.principal, jos.linked, kims.principal, kims.linked], [pseudonym(jo), [], pseudonym(kim), []]);
    await notFetchedBy(jos.receiptId, kim);
    await notFetchedBy(kims.receiptId, jo);
  });
});
