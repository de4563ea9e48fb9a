import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

const actor = CLI_ACTOR;
type Payload = { piiPrincipalId: string; linkedPiiPrincipalIds?: string[]; notice: { version: number; hash: string } | null; services: { purposes: { purpose: string; piiPrincipalId: string; noticeVersion: number | null; gpc: boolean; entryId: string }[] }[] };

// A receipt's header is true of every entry it lists, and it names only the people its change concerns.
describeEachDialect('GPC receipts', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const payloadOf = async (jws: string) => (await consent().verifyReceipt(jws)) as unknown as Payload;

  it('records the GPC signal of a change under the notice version shown, as its receipt says (record and withdrawAll)', async () => {
    const v1 = consent().currentNotice();
    const v2 = await consent().publishNotice({ text: `${v1.text} (reworded ${randomUUID()})`, purposes: v1.purposes }, actor);
    assert.equal(v2.material, false);
    const banner = `user-${randomUUID()}`;
    const saved = await consent().record(banner, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save', noticeVersion: v1.version, gpc: true }, actor);
    const withdrawing = `user-${randomUUID()}`;
    const withdrawn = await consent().withdrawAll(withdrawing, { mechanism: 'privacy_center', noticeVersion: v1.version, gpc: true }, actor);
    for (const { receipt, entries } of [saved, withdrawn]) {
      const payload = await payloadOf(receipt);
      assert.equal(payload.notice?.version, v1.version);
      const items = payload.services[0]?.purposes ?? [];
      assert.ok(items.some((i) => i.gpc) && items.some((i) => !i.gpc), JSON.stringify(items));
      assert.deepEqual(items.map((i) => [i.purpose, i.noticeVersion]), items.map((i) => [i.purpose, v1.version]));
      assert.deepEqual(entries.map((e) => [e.noticeVersion, e.noticeHash]), entries.map(() => [v1.version, v1.hash]));
    }
  });

  it('recordGpcEach signs one receipt per device, its first profile the principal and only its own profiles linked', async () => {
    const [alice, aliceTablet, bob, carol] = ['alice', 'tablet', 'bob', 'carol'].map((tag) => `${tag}-${randomUUID()}`) as [string, string, string, string];
    // Carol's opt-out is in force already: her device writes nothing and signs nothing.
    await consent().recordGpc([carol], {}, actor);
    const receipts = await consent().recordGpcEach([[alice, aliceTablet], [bob, aliceTablet], [carol]], {}, actor);
    assert.equal(receipts.length, 2);
    const [first, second] = (await Promise.all(receipts.map((r) => payloadOf(r.receipt)))) as [Payload, Payload];
    assert.deepEqual([first.piiPrincipalId, first.linkedPiiPrincipalIds], [consent().pseudonym(alice), [consent().pseudonym(aliceTablet)]]);
    // The tablet's opt-out was written with Alice's device: Bob's receipt lists his own entries only.
    assert.deepEqual([second.piiPrincipalId, second.linkedPiiPrincipalIds], [consent().pseudonym(bob), undefined]);
    assert.deepEqual([...new Set(second.services[0]?.purposes.map((p) => p.piiPrincipalId))], [consent().pseudonym(bob)]);
    await assert.rejects(consent().receipt(receipts[1]?.receiptId as string, [alice]), { code: 'CONSENT_RECEIPT_NOT_FOUND' });
    await assert.rejects(consent().receipt(receipts[0]?.receiptId as string, [bob]), { code: 'CONSENT_RECEIPT_NOT_FOUND' });
    for (const id of [alice, aliceTablet, bob]) assert.equal((await consent().state(id))['third_party_sharing']?.gpc, true, id);
  });

  it("recordGpcEach writes a device's own person before the other profiles of any device, so each person present signs their own", async () => {
    const [dana, evan] = [`dana-${randomUUID()}`, `evan-${randomUUID()}`];
    // Evan's message came from Dana's device, listed first; Dana's own message follows.
    const receipts = await consent().recordGpcEach([[evan, dana], [dana]], {}, actor);
    const payloads = await Promise.all(receipts.map((r) => payloadOf(r.receipt)));
    assert.deepEqual(payloads.map((p) => [p.piiPrincipalId, p.linkedPiiPrincipalIds]), [[consent().pseudonym(evan), undefined], [consent().pseudonym(dana), undefined]]);
  });
});
