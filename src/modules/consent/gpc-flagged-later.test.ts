import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

const actor = CLI_ACTOR;
const rejectsWith = (code: string) => (error: unknown) => isCandorError(error) && error.code === code;

// A GPC signal opts out of the purposes flagged sale/sharing or targeted advertising when it is recorded; a purpose the
// operator flags later must be opted out too for every person whose GPC opt-out is in force, consents given before
// included, and a later opt-in to it needs the explicit confirmation.
describeEachDialect('a purpose flagged sale/sharing after a GPC signal', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const newSubject = () => `user-${randomUUID()}`;
  const flag = async (purpose: string, flags: { saleOrSharing?: boolean; targetedAdvertising?: boolean }) => {
    const before = consent().purpose(purpose);
    assert.ok(before && !before.saleOrSharing && !before.targetedAdvertising, `${purpose} starts unflagged`);
    await consent().setPurpose({ ...before, ...flags }, actor);
  };

  it('refuses it, by GPC and with a receipt, for a person who gave consent before the signal; others keep their consent', async () => {
    const PURPOSE = 'analytics.reporting.campaign_insights';
    const [gpc, plain] = [newSubject(), newSubject()];
    for (const subject of [gpc, plain]) await consent().record(subject, [{ purpose: PURPOSE, state: 'given' }], { mechanism: 'banner_accept', jurisdiction: 'US-CA' }, actor);
    await consent().recordGpc([gpc], { jurisdiction: 'US-CA' }, actor);
    await consent().load([gpc, plain]);
    assert.equal(consent().decide(gpc, PURPOSE).allowed, true, 'not flagged yet: the signal did not cover it');

    await flag(PURPOSE, { saleOrSharing: true });
    await consent().load([gpc, plain]);
    assert.equal(consent().decide(gpc, PURPOSE).reason, 'refused');
    assert.equal(consent().decide(plain, PURPOSE).allowed, true, 'no GPC opt-out: the consent stands');
    assert.equal((await consent().state(gpc))[PURPOSE]?.gpc, true);

    const entry = (await consent().history(gpc)).at(-1);
    // Candor's own entry, told from a signal by its source (retention counts it as no activity of the person's).
    assert.deepEqual([entry?.purpose, entry?.state, entry?.mechanism, entry?.gpc, entry?.jurisdiction, entry?.source], [PURPOSE, 'refused', 'gpc', true, 'US-CA', `purpose-flagged:${PURPOSE}`]);
    const stored = await consent().receipt(entry?.receiptId as string, [gpc]);
    const payload = (await consent().verifyReceipt(stored.receipt)) as unknown as { jurisdiction: string; source: string | null; services: { purposes: { entryId: string; gpc: boolean }[] }[] };
    assert.deepEqual([stored.mechanism, payload.jurisdiction, payload.source, payload.services[0]?.purposes.map((p) => [p.entryId, p.gpc])], ['gpc', 'US-CA', `purpose-flagged:${PURPOSE}`, [[entry?.id, true]]]);
    const audited = await ctx.kernel.audit.list({ subject: consent().pseudonym(gpc), action: 'consent.gpc', limit: 10 });
    assert.ok(audited.some((e) => e.resource === `consent_receipt:${entry?.receiptId}` && JSON.parse(e.details ?? '{}').purposeFlagged === PURPOSE));

    // Setting the purpose again writes nothing more.
    await consent().setPurpose(consent().purpose(PURPOSE)!, actor);
    assert.equal((await consent().history(gpc)).filter((e) => e.purpose === PURPOSE).length, 2);
  });

  it('records a later opt-in to it only as an explicit, separate confirmation', async () => {
    const PURPOSE = 'personalize.content.profiling';
    const subject = newSubject();
    await consent().recordGpc([subject], {}, actor);
    await flag(PURPOSE, { targetedAdvertising: true });

    await assert.rejects(consent().record(subject, [{ purpose: PURPOSE, state: 'given' }], { mechanism: 'banner_accept' }, actor), rejectsWith('CONSENT_GPC_CONFLICT'));
    const confirmed = await consent().record(subject, [{ purpose: PURPOSE, state: 'given' }], { mechanism: 'privacy_center', confirmOverGpc: true }, actor);
    assert.equal(confirmed.entries[0]?.gpcOverride, true);
    await consent().load([subject]);
    assert.equal(consent().decide(subject, PURPOSE).allowed, true);
  });

  it('carries over to the survivor of a merge, before and after the purpose is flagged', async () => {
    const PURPOSE = 'marketing.communications.sms';
    const [device, account, later, laterAccount] = [newSubject(), newSubject(), newSubject(), newSubject()];
    for (const subject of [account, laterAccount]) await consent().record(subject, [{ purpose: PURPOSE, state: 'given' }], { mechanism: 'banner_save' }, actor);
    await consent().recordGpc([device, later], {}, actor);
    // Merged before the purpose is flagged: the survivor holds the GPC opt-out the merge spread.
    await consent().mergeSubjects(device, account, actor);
    await flag(PURPOSE, { saleOrSharing: true });
    // Merged after: the merge spreads the GPC opt-out to the purpose flagged now.
    await consent().mergeSubjects(later, laterAccount, actor);
    await consent().load([account, laterAccount]);
    assert.equal(consent().decide(account, PURPOSE).reason, 'refused');
    assert.equal(consent().decide(laterAccount, PURPOSE).reason, 'refused');
    for (const subject of [account, laterAccount]) assert.equal((await consent().state(subject))[PURPOSE]?.gpc, true);
  });
});
