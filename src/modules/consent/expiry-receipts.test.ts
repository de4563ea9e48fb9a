import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { addMonths } from './decide.ts';

const actor = CLI_ACTOR;
type Payload = { jurisdiction: string; notice: { version: number; hash: string } | null; services: { purposes: { purpose: string; noticeVersion: number | null; entryId: string }[] }[] };

// One sweep expires a person's consents given under different notice versions and in different jurisdictions: each
// receipt it signs is true of every entry it lists.
describeEachDialect('expiry receipts', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;

  it('signs one receipt per notice version and jurisdiction of the expired consents, each header true of its entries', async () => {
    const subject = `user-${randomUUID()}`;
    const v1 = consent().currentNotice();
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'marketing.communications.email', state: 'given' }], { mechanism: 'banner_save', jurisdiction: 'DE' }, actor);
    const widened = v1.purposes.map((p) => (p.purpose === 'personalize.profiling' ? { ...p, categories: [...p.categories, 'user.name'] } : p));
    const v2 = await consent().publishNotice({ text: `${v1.text}\n\nProfiling uses names.`, purposes: widened }, actor);
    assert.equal(v2.material, true);
    await consent().record(subject, [{ purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_save', jurisdiction: 'FR' }, actor);
    await consent().record(subject, [{ purpose: 'personalize.content.profiling', state: 'given' }], { mechanism: 'banner_save' }, actor);

    const later = new Date(addMonths(Date.now(), 14));
    assert.equal(await consent().expireDue(later), 4);
    const expired = (await consent().history(subject)).filter((e) => e.state === 'expired');
    assert.equal(expired.length, 4);
    const groups = new Map<string, typeof expired>();
    for (const entry of expired) groups.set(entry.receiptId as string, [...(groups.get(entry.receiptId as string) ?? []), entry]);
    assert.deepEqual([...groups.values()].map((list) => list.map((e) => e.purpose).sort()).sort(), [
      ['analytics.reporting', 'marketing.communications.email'],
      ['personalize.content.profiling'],
      ['personalize.profiling'],
    ]);
    for (const [receiptId, list] of groups) {
      const stored = await consent().receipt(receiptId, [subject]);
      assert.equal(stored.mechanism, 'expiry');
      const payload = (await consent().verifyReceipt(stored.receipt)) as unknown as Payload;
      const items = payload.services[0]?.purposes ?? [];
      assert.deepEqual(items.map((i) => i.entryId).sort(), list.map((e) => e.id).sort());
      for (const entry of list) {
        assert.equal(payload.notice?.version, entry.noticeVersion, entry.purpose);
        assert.equal(payload.notice?.hash, entry.noticeHash, entry.purpose);
        // No jurisdiction was named for one of the consents: Kantara asks for a non-empty string all the same.
        assert.equal(payload.jurisdiction, entry.jurisdiction ?? 'unspecified', entry.purpose);
      }
    }
    const audited = await ctx.kernel.audit.list({ subject: consent().pseudonym(subject), action: 'consent.expire', limit: 10 });
    assert.deepEqual(audited.map((e) => e.details), [JSON.stringify({ entries: 4, expiryMonths: 13 })], 'one audit entry for the person');
  });
});
