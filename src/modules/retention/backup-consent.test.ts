import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { before, it } from 'node:test';
import { useCli } from '../../../test/support/cli.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { backupDatabase } from './index.ts';

const PEOPLE = ['withdrew', 'gpc', 'restricted', 'objected', 'refusedBefore', 'consentedAfter', 'createdAfter'] as const;
type Person = (typeof PEOPLE)[number];

describeEachDialect('a restore and the consent states recorded since the backup', (dialect) => {
  const cli = useCli(dialect);
  let backupFile = '';
  const ids = {} as Record<Person, string>;
  /** The marketing purposes an objection withdraws (on consent or legitimate interests). */
  let marketing: string[] = [];
  /** The purposes a GPC signal opts out of. */
  let gpcPurposes: string[] = [];

  const profile = async (kernel: Kernel, userId: string): Promise<string> =>
    (await kernel.identity.resolveSubject({ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() })).profileId as string;
  const meta = { mechanism: 'privacy_center' as const };

  before(async () => {
    const kernel = await openKernel(cli.env.config);
    try {
      for (const person of PEOPLE.filter((p) => p !== 'createdAfter')) ids[person] = await profile(kernel, `u-${person}`);
      marketing = kernel.consent.purposes().filter((p) => p.key.startsWith('marketing.') && (p.basis === 'consent' || p.basis === 'legitimate_interests')).map((p) => p.key);
      gpcPurposes = kernel.consent.purposes().filter((p) => (p.saleOrSharing || p.targetedAdvertising) && p.basis === 'consent').map((p) => p.key);
      await kernel.consent.record(ids.withdrew, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], meta, CLI_ACTOR);
      await kernel.consent.record(ids.gpc, gpcPurposes.map((purpose) => ({ purpose, state: 'given' as const })), meta, CLI_ACTOR);
      await kernel.consent.record(ids.restricted, [{ purpose: 'analytics.reporting', state: 'given' }], meta, CLI_ACTOR);
      await kernel.consent.record(ids.objected, [{ purpose: 'marketing.communications.email', state: 'given' }], meta, CLI_ACTOR);
      await kernel.consent.record(ids.refusedBefore, [{ purpose: 'analytics.reporting', state: 'refused' }], meta, CLI_ACTOR);
      backupFile = cli.env.beside('consent.backup');
      await backupDatabase(cli.env.config, backupFile, CLI_ACTOR);

      // After the backup: what the restore must not undo, and what it must not bring back.
      await kernel.consent.record(ids.withdrew, [{ purpose: 'analytics.reporting', state: 'withdrawn' }, { purpose: 'essential.fraud_detection', state: 'refused' }], meta, CLI_ACTOR);
      await kernel.consent.recordGpc([ids.gpc], {}, CLI_ACTOR);
      await kernel.consent.restrict([ids.restricted], {}, CLI_ACTOR);
      await kernel.consent.objectToMarketing([ids.objected], {}, CLI_ACTOR);
      await kernel.consent.record(ids.consentedAfter, [{ purpose: 'analytics.reporting', state: 'given' }], meta, CLI_ACTOR);
      ids.createdAfter = await profile(kernel, 'u-createdAfter');
      await kernel.consent.record(ids.createdAfter, [{ purpose: 'analytics.reporting', state: 'refused' }], meta, CLI_ACTOR);
    } finally {
      await kernel.close();
    }
  });

  it('writes again the withdrawals, refusals, GPC opt-outs, restrictions and objections the backup lacks, audited, and nothing else', { timeout: 60_000 }, async () => {
    const { code, out, err } = await cli.candor('restore', backupFile);
    const output = `${out}\n${err}`;
    assert.equal(code, 0, output);
    // The withdrawal and the objection to fraud detection, and the objection's withdrawals of every marketing purpose.
    assert.match(output, new RegExp(`refusals and withdrawals written again \\(in force in the replaced database, not in the backup\\): ${2 + marketing.length}\\n`));
    assert.match(output, new RegExp(`GPC opt-outs written again: ${gpcPurposes.length}\\n`));
    assert.match(output, /restrictions of processing put in force again: 1\n/);
    assert.match(output, /objections to direct marketing put in force again: 1\n/);
    assert.match(output, /people with restrictive consent states the restored database does not know \(profiles created after the backup, or erased\): 1/);
    assert.doesNotMatch(output, /left as restored/);

    const kernel = await openKernel(cli.env.config);
    try {
      const { consent } = kernel;
      await consent.load(Object.values(ids));
      assert.equal(consent.decide(ids.withdrew, 'analytics.reporting').reason, 'withdrawn', 'a withdrawal since the backup stays in force');
      assert.equal(consent.decide(ids.withdrew, 'personalize.profiling').reason, 'given', 'what was not withdrawn is left as it was');
      assert.equal(consent.decide(ids.withdrew, 'essential.fraud_detection').reason, 'objected');
      const gpcState = await consent.state(ids.gpc);
      for (const purpose of gpcPurposes) assert.deepEqual([gpcState[purpose]?.allowed, gpcState[purpose]?.gpc], [false, true], purpose);
      assert.equal(consent.decide(ids.restricted, 'analytics.reporting').reason, 'restricted');
      assert.equal(consent.decide(ids.objected, 'marketing.communications.email').reason, 'objected');
      assert.equal((await consent.restrictions(ids.objected)).objectedMarketing, true);
      assert.equal((await consent.state(ids.consentedAfter))['analytics.reporting']?.state, 'none', 'a consent given after the backup is not brought back');

      // Nothing written where the backup is as restrictive already.
      assert.deepEqual((await consent.history(ids.refusedBefore)).map((e) => e.state), ['refused']);
      assert.equal(consent.decide(ids.refusedBefore, 'analytics.reporting').reason, 'refused');

      // Written as a change like any other: an entry with its receipt, audited, saying where it comes from.
      const entries = (await consent.history(ids.withdrew)).filter((e) => e.source === `restore:${basename(backupFile)}`);
      assert.deepEqual(entries.map((e) => [e.purpose, e.state, e.mechanism]).sort(), [['analytics.reporting', 'withdrawn', 'import'], ['essential.fraud_detection', 'refused', 'import']]);
      const receiptId = entries[0]?.receiptId as string;
      const receipt = await consent.receipt(receiptId, [ids.withdrew]);
      await consent.verifyReceipt(receipt.receipt);
      const recorded = (await kernel.audit.list({ action: 'consent.record', limit: 1000 })).filter((e) => e.subject === consent.pseudonym(ids.withdrew));
      assert.deepEqual(JSON.parse(recorded.at(-1)?.details ?? '{}'), { receiptId, entries: 2, mechanism: 'import', restoredFrom: basename(backupFile) });
      const gpcAudit = (await kernel.audit.list({ action: 'consent.gpc', limit: 1000 })).filter((e) => e.subject === consent.pseudonym(ids.gpc));
      assert.equal(JSON.parse(gpcAudit.at(-1)?.details ?? '{}').restoredFrom, basename(backupFile));
      const restrictAudit = (await kernel.audit.list({ action: 'consent.restrict', limit: 1000 })).filter((e) => e.subject === consent.pseudonym(ids.restricted));
      assert.equal(restrictAudit.length, 1, 'the restored log lost the first restriction; this one is the restore\'s');
      assert.equal(JSON.parse(restrictAudit[0]?.details ?? '{}').restoredFrom, basename(backupFile));
      assert.equal((await kernel.audit.list({ action: 'consent.record', limit: 1000 })).filter((e) => e.subject === consent.pseudonym(ids.refusedBefore)).length, 1);

      const restore = (await kernel.audit.list({ action: 'retention.restore', limit: 1000 })).at(-1);
      const details = JSON.parse(restore?.details ?? '{}');
      assert.deepEqual(
        [details.consentInReplaced, details.optOutsInReplaced, details.gpcOptOutsInReplaced, details.restrictionsInReplaced, details.objectionsInReplaced],
        // refusedBefore's refusal and createdAfter's are in the replaced database too.
        ['read', 2 + marketing.length + 2, gpcPurposes.length, 1, 1],
      );
    } finally {
      await kernel.close();
    }
  });
});
