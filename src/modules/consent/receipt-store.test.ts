import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { addMonths } from './decide.ts';

const actor = CLI_ACTOR;
const rejectsWith = (code: string) => (error: unknown) => isCandorError(error) && error.code === code;

describeEachDialect('consent receipts kept', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const newSubject = () => `user-${randomUUID()}`;

  /** Every receipt id in the subjects' ledgers can be fetched, verifies, and names them only by pseudonym. */
  async function assertEveryReceiptKept(subjects: readonly string[]): Promise<Set<string>> {
    const mechanisms = new Set<string>();
    for (const subject of subjects) {
      const ids = new Set((await consent().history(subject)).flatMap((e) => (e.receiptId === null ? [] : [e.receiptId])));
      assert.ok(ids.size > 0, 'the subject has receipts');
      for (const id of ids) {
        const stored = await consent().receipt(id, [subject]);
        assert.equal(stored.receiptId, id);
        const payload = await consent().verifyReceipt(stored.receipt);
        assert.equal(payload.jti, id);
        assert.ok(stored.subjects.includes(consent().pseudonym(subject)));
        const text = JSON.stringify(decodeJwt(stored.receipt));
        for (const s of subjects) assert.ok(!text.includes(s), 'no plain subject id in the receipt');
        mechanisms.add(String(payload.collectionMethod));
      }
    }
    return mechanisms;
  }

  it('keeps the receipt of every kind of change, those not handed to anyone included (GPC, merge, rights requests)', async () => {
    const from = newSubject();
    const into = newSubject();
    await consent().record(from, [{ purpose: 'analytics.reporting', state: 'refused' }], { mechanism: 'banner_save' }, actor);
    await consent().record(into, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, actor);
    await consent().withdrawAll(into, { mechanism: 'privacy_center' }, actor);
    const gpc = await consent().recordGpc([from], { source: 'https://shop.example/' }, actor);
    assert.ok(gpc);
    const merged = await consent().mergeSubjects(from, into, actor);
    assert.ok(merged.receiptId);
    const objected = await consent().objectToMarketing([from], {}, actor);
    assert.ok(objected.receiptId);
    await consent().liftObjection([from], {}, actor);
    const mechanisms = await assertEveryReceiptKept([from, into]);
    for (const m of ['banner_save', 'privacy_center', 'gpc', 'merge']) assert.ok(mechanisms.has(m), m);
    // The receipt a caller was handed is the one stored.
    assert.equal((await consent().receipt(gpc.receiptId, [from])).receipt, gpc.receipt);
    assert.equal((await consent().receipt(merged.receiptId, [into])).receipt, merged.receipt);
  });

  it('keeps an opt-out-notice receipt and an opt-out of sale/sharing asked for through a rights request', async () => {
    const subject = newSubject();
    const purpose = consent().purpose('analytics.reporting');
    assert.ok(purpose);
    await consent().setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, actor);
    try {
      const shown = await consent().recordOptOutNotice(subject, 'analytics.reporting', { jurisdiction: 'US-CA', noticeVersion: consent().currentNotice().version }, actor);
      assert.ok(shown.receiptId);
      assert.equal((await consent().receipt(shown.receiptId, [subject])).mechanism, 'notice_opt_out');
      const optOut = await consent().optOutOfSaleSharing([subject], {}, actor);
      assert.ok(optOut.receiptId);
      assert.equal((await consent().receipt(optOut.receiptId, [subject])).mechanism, 'privacy_center');
    } finally {
      await consent().setPurpose(purpose, actor);
    }
  });

  it('gives a receipt covering several profiles to each of them, and to nobody else', async () => {
    const device = newSubject();
    const linked = newSubject();
    const stranger = newSubject();
    const gpc = await consent().recordGpc([device, linked], {}, actor);
    assert.ok(gpc);
    const stored = await consent().receipt(gpc.receiptId, [linked]);
    assert.deepEqual(stored.subjects, [consent().pseudonym(device), consent().pseudonym(linked)]);
    assert.equal(stored.subject, consent().pseudonym(device));
    await assert.rejects(consent().receipt(gpc.receiptId, [stranger]), rejectsWith('CONSENT_RECEIPT_NOT_FOUND'));
    await assert.rejects(consent().receipt(randomUUID(), [device]), rejectsWith('CONSENT_RECEIPT_NOT_FOUND'));
    // Any profile of the person will do (a profile merged into the one asked for).
    assert.equal((await consent().receipt(gpc.receiptId, [stranger, device])).receiptId, gpc.receiptId);
  });

  it('refuses to change or delete a stored receipt (append-only), and erasure keeps them with the ledger', async () => {
    const subject = newSubject();
    const { receiptId } = await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, actor);
    const db = ctx.kernel.storage.db;
    await assert.rejects(sql`UPDATE consent_receipts SET jws = 'x' WHERE id = ${receiptId}`.execute(db), /append-only/);
    await assert.rejects(sql`DELETE FROM consent_receipts WHERE id = ${receiptId}`.execute(db), /append-only/);
    if (dialect === 'postgres') await assert.rejects(sql`TRUNCATE consent_receipts`.execute(db), /append-only/);
    await ctx.kernel.storage.raw.transaction((tx) => consent().subjectData().erase(tx, { profileId: subject, profileIds: [subject], identifiers: [] }));
    assert.equal((await consent().receipt(receiptId, [subject])).receiptId, receiptId);
    const rows = await sql<{ subject: string }>`SELECT subject FROM consent_receipts WHERE id = ${receiptId}`.execute(db);
    assert.equal(rows.rows[0]?.subject, consent().pseudonym(subject), 'kept under the pseudonym only');
  });

  it('states in each signed receipt the termination true for what it records, and the receipts verify against the JWKS', async () => {
    const subject = newSubject();
    const keys = createLocalJWKSet(await consent().jwks());
    const terminations = async (receipt: string) => {
      const { payload } = await jwtVerify(receipt, keys, { algorithms: ['EdDSA'] });
      return (payload as unknown as { services: { purposes: { purpose: string; termination: string }[] }[] }).services[0]?.purposes.map((p) => [p.purpose, p.termination]);
    };
    const recorded = await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'refused' }], { mechanism: 'banner_save' }, actor);
    const givenAt = Date.parse(recorded.entries[0]?.at as string);
    const expiresAt = new Date(addMonths(givenAt, 13)).toISOString();
    assert.deepEqual(await terminations(recorded.receipt), [
      ['analytics.reporting', `Until withdrawn, or until it expires at ${expiresAt}`],
      ['personalize.profiling', 'The opt-out stands until the person gives consent; it does not expire'],
    ]);
    const gpc = await consent().recordGpc([subject], {}, actor);
    assert.ok(gpc);
    assert.ok((await terminations(gpc.receipt))?.every(([, t]) => t?.includes('Global Privacy Control')));

    const purpose = consent().purpose('personalize.content.profiling');
    assert.ok(purpose);
    await consent().setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, actor);
    try {
      const shown = await consent().recordOptOutNotice(subject, 'personalize.content.profiling', { jurisdiction: 'US-CA', noticeVersion: consent().currentNotice().version }, actor);
      assert.ok(shown.receipt);
      const [[, text] = []] = (await terminations(shown.receipt)) ?? [];
      assert.match(String(text), /opts out.*does not expire/);
    } finally {
      await consent().setPurpose(purpose, actor);
    }

    assert.ok((await consent().expireDue(new Date(Date.parse(expiresAt) + 60_000))) >= 1);
    const expiry = (await consent().history(subject)).find((e) => e.mechanism === 'expiry' && e.purpose === 'analytics.reporting');
    assert.ok(expiry?.receiptId);
    const stored = await consent().receipt(expiry.receiptId, [subject]);
    assert.deepEqual(await terminations(stored.receipt), [['analytics.reporting', 'Ended: the consent expired; processing needs consent given again']]);
  });

  it("reports at erasure the receipts kept that name the person among a signal's linked profiles too", async () => {
    const device = newSubject();
    const linked = newSubject();
    await consent().recordGpc([device, linked], {}, actor);
    const outcomes = await ctx.kernel.storage.raw.transaction((tx) => consent().subjectData().erase(tx, { profileId: linked, profileIds: [linked], identifiers: [] }));
    assert.equal(outcomes.find((o) => o.store === 'consent_receipts')?.kept?.count, 1);
  });
});
