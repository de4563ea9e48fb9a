import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

const actor = CLI_ACTOR;
type Payload = { jurisdiction: string; notice: { version: number; hash: string } | null; services: { purposes: { entryId: string }[] }[] };

// A merge copies the merged-away profile's opt-outs with the notice version and jurisdiction each was given under:
// each receipt it signs is true of every entry it lists.
describeEachDialect('merge receipts', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;

  it('signs one receipt per notice version and jurisdiction of the entries it copies, each header true of its entries', async () => {
    const [from, into] = [`user-${randomUUID()}`, `user-${randomUUID()}`];
    await consent().record(from, [{ purpose: 'analytics.reporting', state: 'refused' }], { mechanism: 'banner_reject', jurisdiction: 'DE' }, actor);
    const v1 = consent().currentNotice();
    await consent().publishNotice({ text: `${v1.text} (reworded ${randomUUID()})`, purposes: v1.purposes }, actor);
    await consent().record(from, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center', jurisdiction: 'FR' }, actor);
    await consent().recordGpc([from], {}, actor);

    const merged = await consent().mergeSubjects(from, into, actor);
    const groups = new Map<string, typeof merged.entries>();
    for (const entry of merged.entries) groups.set(entry.receiptId as string, [...(groups.get(entry.receiptId as string) ?? []), entry]);
    assert.equal(groups.size, 3, 'DE under v1, FR under v2, the GPC opt-outs under v2 with no jurisdiction');
    for (const [receiptId, list] of groups) {
      const stored = await consent().receipt(receiptId, [into]);
      assert.equal(stored.mechanism, 'merge');
      const payload = (await consent().verifyReceipt(stored.receipt)) as unknown as Payload;
      assert.deepEqual(payload.services[0]?.purposes.map((p) => p.entryId).sort(), list.map((e) => e.id).sort());
      for (const entry of list) {
        assert.deepEqual([payload.notice?.version, payload.notice?.hash], [entry.noticeVersion, entry.noticeHash], entry.purpose);
        // No jurisdiction was named for the GPC opt-outs: Kantara asks for a non-empty string all the same.
        assert.equal(payload.jurisdiction, entry.jurisdiction ?? 'unspecified', entry.purpose);
      }
    }
    // The answer lists every receipt as stored, the first (covering the first entry) also as `receipt` and `receiptId`.
    assert.deepEqual(merged.receipts.map((r) => r.receiptId), [...groups.keys()]);
    for (const { receiptId, receipt } of merged.receipts) assert.equal((await consent().receipt(receiptId, [into])).receipt, receipt);
    assert.deepEqual([merged.receiptId, merged.receipt], [merged.receipts[0]?.receiptId, merged.receipts[0]?.receipt]);
    const audited = await ctx.kernel.audit.list({ subject: consent().pseudonym(into), action: 'consent.merge', limit: 10 });
    assert.deepEqual(audited.map((e) => e.resource).sort(), merged.receipts.map((r) => `consent_receipt:${r.receiptId}`).sort(), 'one audit entry per receipt');
  });
});
