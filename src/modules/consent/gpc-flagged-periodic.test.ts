import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { ConsentRepo } from './consent.repo.ts';

const actor = CLI_ACTOR;

// The sweep setPurpose runs when it flags a purpose sale/sharing or targeted advertising cannot see a GPC signal that
// another server, still on the flags of the second before, commits after the sweep read; the periodic run
// (applyGpcToFlaggedPurposes, hourly in `candor serve`) must write that person's GPC refusal of the purpose.
describeEachDialect('GPC opt-outs of flagged purposes, written again periodically', (dialect) => {
  const ctx = useKernel(dialect);
  const newSubject = () => `user-${randomUUID()}`;

  /** A person who consented to `purpose` and whose GPC signal a second server recorded after `purpose` was flagged here, with the flags it had before. */
  const signalMissedByTheSweep = async (purpose: string, other: Kernel): Promise<string> => {
    const a = ctx.kernel.consent;
    const subject = newSubject();
    await a.record(subject, [{ purpose, state: 'given' }], { mechanism: 'banner_accept', jurisdiction: 'US-CA' }, actor);
    const before = a.purpose(purpose);
    assert.ok(before && !before.saleOrSharing && !before.targetedAdvertising, `${purpose} starts unflagged`);
    await a.setPurpose({ ...before, saleOrSharing: true }, actor);
    await other.consent.recordGpc([subject], { jurisdiction: 'US-CA' }, actor);
    await a.load([subject]);
    assert.equal(a.decide(subject, purpose).allowed, true, 'the signal was recorded without the flag, after the sweep');
    return subject;
  };

  const refusedByGpc = async (subject: string, purpose: string) => {
    const a = ctx.kernel.consent;
    await a.load([subject]);
    assert.equal(a.decide(subject, purpose).reason, 'refused');
    const entry = (await a.history(subject)).at(-1);
    assert.deepEqual([entry?.purpose, entry?.state, entry?.mechanism, entry?.gpc, entry?.jurisdiction], [purpose, 'refused', 'gpc', true, 'US-CA']);
    const audited = await ctx.kernel.audit.list({ subject: a.pseudonym(subject), action: 'consent.gpc', limit: 10 });
    assert.ok(audited.some((e) => e.resource === `consent_receipt:${entry?.receiptId}` && JSON.parse(e.details ?? '{}').purposeFlagged === purpose));
  };

  it('opts a person whose signal another server recorded with the flags of the second before out of the flagged purpose at the next run, once', async () => {
    const PURPOSE = 'analytics.reporting.campaign_insights';
    const b = await openKernel(ctx.env.config);
    try {
      const subject = await signalMissedByTheSweep(PURPOSE, b);
      const missing = () => new ConsentRepo(ctx.kernel.storage).gpcSubjectsWithout(PURPOSE, undefined, 500);
      assert.deepEqual(await missing(), [ctx.kernel.consent.pseudonym(subject)]);
      assert.equal(await ctx.kernel.consent.applyGpcToFlaggedPurposes(), 1);
      await refusedByGpc(subject, PURPOSE);
      assert.deepEqual(await missing(), [], 'the next run reads no one who has the refusal');
      assert.equal(await ctx.kernel.consent.applyGpcToFlaggedPurposes(), 0, 'nothing more to write');
      assert.equal((await ctx.kernel.consent.history(subject)).filter((e) => e.purpose === PURPOSE).length, 2);
    } finally {
      await b.close();
    }
  });

  it('leaves a change of a flagged purpose that keeps its flags (its description) to the periodic run: the request writes no GPC refusal', async () => {
    const PURPOSE = 'marketing.communications.sms';
    const a = ctx.kernel.consent;
    const b = await openKernel(ctx.env.config);
    try {
      const subject = await signalMissedByTheSweep(PURPOSE, b);
      await a.setPurpose({ ...a.purpose(PURPOSE)!, description: `Text messages about offers (${randomUUID()})` }, actor);
      await a.load([subject]);
      assert.equal(a.decide(subject, PURPOSE).allowed, true, 'no sweep on a change that keeps the flags');
      assert.equal((await a.history(subject)).filter((e) => e.purpose === PURPOSE).length, 1);

      assert.equal(await a.applyGpcToFlaggedPurposes(), 1);
      await refusedByGpc(subject, PURPOSE);
    } finally {
      await b.close();
    }
  });
  it('does not read again, run after run, a person who confirmed an opt-in to the purpose over their GPC opt-out', async () => {
    const PURPOSE = 'third_party_sharing';
    const a = ctx.kernel.consent;
    const subject = newSubject();
    await a.recordGpc([subject], { jurisdiction: 'US-CA' }, actor);
    const confirmed = await a.record(subject, [{ purpose: PURPOSE, state: 'given' }], { mechanism: 'privacy_center', confirmOverGpc: true }, actor);
    assert.equal(confirmed.entries[0]?.gpcOverride, true);
    const read = await new ConsentRepo(ctx.kernel.storage).gpcSubjectsWithout(PURPOSE, undefined, 500);
    assert.ok(!read.includes(a.pseudonym(subject)), 'their confirmation stands: nothing to write for them');
    await a.applyGpcToFlaggedPurposes();
    await a.load([subject]);
    assert.equal(a.decide(subject, PURPOSE).allowed, true);
  });
});
