import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { restrictiveConsentStates, type RestrictiveConsentStates } from './index.ts';

const EARLIER = '2000-01-01T00:00:00.000Z';
const BACKUP = 'candor-2026-12-01.db';

describeEachDialect('consent states written again after a restore', (dialect) => {
  const ctx = useKernel(dialect);
  const meta = { mechanism: 'privacy_center' as const };
  const now = () => new Date().toISOString();
  const optOut = (id: string, purpose: string, state: 'refused' | 'withdrawn', gpc: boolean, at = now()) => ({ subject: ctx.kernel.consent.pseudonym(id), purpose, state, gpc, at });
  const reapply = (states: RestrictiveConsentStates, known: readonly string[]) => ctx.kernel.consent.reapplyAfterRestore(states, [known.map((profileId) => ({ profileId, members: [] }))], BACKUP, CLI_ACTOR);
  const targeted = 'marketing.advertising.third_party.targeted';

  it('reads the refusals, withdrawals (GPC flag kept) and the restrictions in force with plain SQL, nothing else', async () => {
    const { consent } = ctx.kernel;
    await consent.record('read-1', [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'refused' }], meta, CLI_ACTOR);
    await consent.recordGpc(['read-1'], {}, CLI_ACTOR);
    await consent.restrict(['read-1'], {}, CLI_ACTOR);
    await consent.restrict(['read-2'], {}, CLI_ACTOR);
    await consent.liftRestriction(['read-2'], {}, CLI_ACTOR);
    const states = await restrictiveConsentStates((sql) => ctx.kernel.storage.raw.all(sql));
    const mine = (s: string) => s === consent.pseudonym('read-1') || s === consent.pseudonym('read-2');
    assert.deepEqual(
      states.optOuts.filter((o) => mine(o.subject)).map((o) => [o.purpose, o.state, o.gpc]).sort(),
      [['marketing.advertising.third_party.targeted', 'refused', true], ['personalize.profiling', 'refused', false], ['third_party_sharing', 'refused', true]],
    );
    assert.deepEqual(states.restrictions.filter((r) => mine(r.subject)).map((r) => [r.subject, r.kind]), [[consent.pseudonym('read-1'), 'restriction']]);
  });

  it('writes nothing where the restored state binds as much, and leaves a later entry or lifting as restored', async () => {
    const { consent } = ctx.kernel;
    await consent.record('same-1', [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'given' }], meta, CLI_ACTOR);
    await consent.recordGpc(['same-1'], {}, CLI_ACTOR);
    await consent.restrict(['same-1'], {}, CLI_ACTOR);
    await consent.objectToMarketing(['same-1'], {}, CLI_ACTOR);
    await consent.liftObjection(['same-1'], {}, CLI_ACTOR);
    const ledger = (await consent.history('same-1')).length;
    const audited = (await ctx.kernel.audit.list({ limit: 100_000 })).length;
    const changed: string[] = [];
    consent.onChange((ids) => changed.push(...ids));

    const result = await reapply({
      optOuts: [
        optOut('same-1', 'analytics.reporting', 'withdrawn', false), // a refusal binds as much as a withdrawal
        optOut('same-1', targeted, 'refused', false), // a GPC opt-out binds more than a plain one
        optOut('same-1', 'personalize.profiling', 'withdrawn', false, EARLIER), // the restored consent is the later entry
      ],
      restrictions: [
        { subject: consent.pseudonym('same-1'), kind: 'restriction', since: EARLIER },
        { subject: consent.pseudonym('same-1'), kind: 'objection_marketing', since: EARLIER }, // lifted later in the restored database
      ],
    }, ['other', 'same-1']);

    assert.deepEqual({ ...result, failed: result.failed.length }, { optOuts: 0, gpcOptOuts: 0, restrictions: 0, objections: 0, people: 0, keptLater: 2, purposeNotConfigured: 0, notInRestored: 0, failed: 0 });
    assert.equal((await consent.history('same-1')).length, ledger);
    assert.equal((await ctx.kernel.audit.list({ limit: 100_000 })).length, audited);
    assert.deepEqual(changed, []);
    await consent.load(['same-1']);
    assert.equal(consent.decide('same-1', 'personalize.profiling').reason, 'restricted');
    assert.equal((await consent.restrictions('same-1')).objectedMarketing, false);
  });

  it('makes a plain refusal a GPC opt-out, and opts out over a consent once confirmed over GPC', async () => {
    const { consent } = ctx.kernel;
    await consent.record('gpc-1', [{ purpose: targeted, state: 'refused' }], meta, CLI_ACTOR);
    await consent.recordGpc(['gpc-2'], {}, CLI_ACTOR);
    await consent.record('gpc-2', [{ purpose: targeted, state: 'given' }], { ...meta, confirmOverGpc: true }, CLI_ACTOR);
    // A GPC signal leaves a confirmed opt-in standing: the restore writes the opt-out the replaced database held all the same.
    assert.equal(await consent.recordGpc(['gpc-2'], {}, CLI_ACTOR), undefined);

    const result = await reapply({ optOuts: [optOut('gpc-1', targeted, 'refused', true), optOut('gpc-2', targeted, 'refused', true)], restrictions: [] }, ['gpc-1', 'gpc-2']);
    assert.deepEqual([result.gpcOptOuts, result.optOuts, result.people], [2, 0, 2]);
    for (const id of ['gpc-1', 'gpc-2']) {
      const state = (await consent.state(id))[targeted];
      assert.deepEqual([state?.state, state?.allowed, state?.gpc, state?.mechanism], ['refused', false, true, 'import'], id);
    }
    const [entry] = (await consent.history('gpc-2')).slice(-1);
    assert.equal(entry?.source, `restore:${BACKUP}`);
    const receipt = await consent.receipt(entry?.receiptId as string, ['gpc-2']);
    const payload = await consent.verifyReceipt(receipt.receipt);
    assert.equal(payload.collectionMethod, 'import');
  });

  it('puts restrictions and objections in force again, and counts people and purposes it cannot find', async () => {
    const { consent } = ctx.kernel;
    await consent.record('flag-1', [{ purpose: 'marketing.communications.email', state: 'given' }, { purpose: 'analytics.reporting', state: 'given' }], meta, CLI_ACTOR);
    const result = await reapply({
      optOuts: [
        optOut('flag-1', 'marketing.communications.email', 'withdrawn', false),
        optOut('flag-1', 'essential.service.operations', 'refused', false), // on contract now
        optOut('flag-1', 'no.such.purpose', 'refused', false),
        optOut('gone-1', 'analytics.reporting', 'withdrawn', false), // not in the restored database
      ],
      restrictions: [
        { subject: consent.pseudonym('flag-1'), kind: 'restriction', since: now() },
        { subject: consent.pseudonym('flag-1'), kind: 'objection_marketing', since: now() },
        { subject: consent.pseudonym('gone-2'), kind: 'restriction', since: now() },
      ],
    }, ['flag-1']);
    assert.deepEqual({ ...result, failed: result.failed.length }, { optOuts: 1, gpcOptOuts: 0, restrictions: 1, objections: 1, people: 1, keptLater: 0, purposeNotConfigured: 2, notInRestored: 2, failed: 0 });
    await consent.load(['flag-1']);
    assert.equal(consent.decide('flag-1', 'analytics.reporting').reason, 'restricted');
    const flags = await consent.restrictions('flag-1');
    assert.deepEqual([flags.restricted, flags.objectedMarketing], [true, true]);
    const actions = (await ctx.kernel.audit.list({ limit: 100_000 })).filter((e) => e.subject === consent.pseudonym('flag-1')).slice(-3);
    assert.deepEqual(actions.map((e) => [e.action, JSON.parse(e.details ?? '{}').restoredFrom]), [['consent.record', BACKUP], ['consent.restrict', BACKUP], ['consent.object', BACKUP]]);
    assert.deepEqual((await consent.history('flag-1')).at(-1)?.state, 'withdrawn');
  });
  it('writes a state the replaced database held on a profile merged away in the restored one on the person\'s canonical profile', async () => {
    const { consent } = ctx.kernel;
    await consent.record('canon-1', [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], meta, CLI_ACTOR);
    const result = await ctx.kernel.consent.reapplyAfterRestore(
      {
        optOuts: [optOut('member-1', 'analytics.reporting', 'withdrawn', false), optOut('canon-1', 'analytics.reporting', 'refused', false, EARLIER)],
        restrictions: [{ subject: consent.pseudonym('member-1'), kind: 'restriction', since: now() }],
      },
      [[{ profileId: 'canon-1', members: ['member-1'] }]],
      BACKUP,
      CLI_ACTOR,
    );
    assert.deepEqual([result.people, result.optOuts, result.restrictions, result.notInRestored], [1, 1, 1, 0]);
    assert.equal((await consent.state('canon-1'))['analytics.reporting']?.state, 'withdrawn', 'one entry, the later of the two');
    assert.equal((await consent.state('canon-1'))['personalize.profiling']?.state, 'given');
    assert.equal((await consent.restrictions('canon-1')).restricted, true);
    assert.deepEqual(await consent.history('member-1'), [], 'nothing on the merged-away profile, which decisions do not read');
  });
});
