import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import type { Kernel } from '../../kernel.ts';

const banner = { mechanism: 'banner_save', noticeVersion: 1 } as const;
const named = (identifiers: { type: string; value: string }[]) => ({ identifiers, source: 'web', at: new Date().toISOString() });

/**
 * A device's profile and an account's, each with analytics consented (and what `beforeMerge` records), then the device
 * merged into the account.
 */
async function mergedDevice(kernel: Kernel, beforeMerge?: (device: string, person: string) => Promise<unknown>): Promise<{ device: string; person: string; mergeId: string; anonymousId: string }> {
  const { identity, consent } = kernel;
  const deviceId = `anon-${randomUUID()}`;
  const account = `user-${randomUUID()}`;
  const device = (await identity.resolveSubject(named([{ type: 'anonymous_id', value: deviceId }]))).profileId as string;
  const person = (await identity.resolveSubject(named([{ type: 'user_id', value: account }]))).profileId as string;
  for (const id of [device, person]) await consent.record(id, [{ purpose: 'analytics.reporting', state: 'given' }], banner, CLI_ACTOR);
  await beforeMerge?.(device, person);
  const merging = await identity.resolveSubject(named([{ type: 'user_id', value: account }, { type: 'anonymous_id', value: deviceId }]));
  await identity.notifyMerges(merging.merges);
  assert.equal(await identity.canonical(device), person);
  return { device, person, mergeId: (merging.merges[0] as { mergeId: string }).mergeId, anonymousId: deviceId };
}

// A change is recorded for the profile its request resolved to. When that profile was merged into another person
// meanwhile (a request of the same moment merged the device into an account, after the change's subject was resolved
// and before its write: the merge carried over only what the profile held before the change), or long before (a
// device's own profile an ingestion or an import names), the change's opt-outs are carried over to the person by the
// consent service itself, whichever caller made the change: a withdrawal answered 200 is in force for the person.
describeEachDialect('an opt-out recorded for a profile merged into another person', (dialect) => {
  const ctx = useKernel(dialect);

  it('is carried over to that person, once', async () => {
    const { consent } = ctx.kernel;
    const { device, person } = await mergedDevice(ctx.kernel);
    await consent.record(device, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR);
    assert.equal(consent.decide(person, 'analytics.reporting').reason, 'withdrawn');
    const carried = (await consent.history(person)).filter((e) => e.mechanism === 'merge');
    assert.deepEqual(carried.map((e) => [e.purpose, e.state]), [['analytics.reporting', 'withdrawn']]);
    // The same withdrawal again writes nothing more on either profile.
    const before = (await consent.history(person)).length;
    await consent.record(device, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR);
    assert.equal((await consent.history(person)).length, before);
  });

  it('carries over only the new change, not the profile’s older choices over the person’s later ones', async () => {
    const { consent, identity } = ctx.kernel;
    const deviceId = `anon-${randomUUID()}`;
    const account = `user-${randomUUID()}`;
    const device = (await identity.resolveSubject(named([{ type: 'anonymous_id', value: deviceId }]))).profileId as string;
    const person = (await identity.resolveSubject(named([{ type: 'user_id', value: account }]))).profileId as string;
    await consent.record(device, [{ purpose: 'marketing.communications.email', state: 'refused' }], banner, CLI_ACTOR);
    const merging = await identity.resolveSubject(named([{ type: 'user_id', value: account }, { type: 'anonymous_id', value: deviceId }]));
    await identity.notifyMerges(merging.merges);
    assert.equal(consent.decide(person, 'marketing.communications.email').reason, 'refused', 'the merge carried the refusal over');
    // Later the person, signed in, subscribes; then a change reaches the device's old profile.
    await consent.record(person, [{ purpose: 'marketing.communications.email', state: 'given' }], banner, CLI_ACTOR);
    await consent.record(device, [{ purpose: 'analytics.reporting', state: 'refused' }], banner, CLI_ACTOR);
    assert.equal(consent.decide(person, 'analytics.reporting').reason, 'refused');
    assert.equal(consent.decide(person, 'marketing.communications.email').allowed, true, 'the person’s later subscription stands');
  });

  it('carries GPC opt-outs and restrictions, and never a consent', async () => {
    const { consent } = ctx.kernel;
    const { device, person } = await mergedDevice(ctx.kernel);
    await consent.record(device, [{ purpose: 'personalize.profiling', state: 'given' }], banner, CLI_ACTOR);
    assert.equal(consent.decide(person, 'personalize.profiling').allowed, false, 'a consent on the old profile creates none on the person');
    await consent.record(person, [{ purpose: 'marketing.advertising.third_party.targeted', state: 'given' }], banner, CLI_ACTOR);
    const gpc = await consent.recordGpc([device], { source: 'web' }, CLI_ACTOR);
    assert.ok(gpc);
    const decision = consent.decide(person, 'marketing.advertising.third_party.targeted');
    assert.equal(decision.allowed, false);
    await consent.restrict([device], {}, CLI_ACTOR);
    assert.equal((await consent.restrictions(person)).restricted, true);
  });

  it('is carried over a choice the person made between the change and its carry-over: the race fails closed', async () => {
    const { consent, identity } = ctx.kernel;
    const { device, person } = await mergedDevice(ctx.kernel);
    try {
      // Between the device's withdrawal and its carry-over, the signed-in person consents again (and so for GPC).
      let once = false;
      consent.followMergesWith(async (profileId) => {
        if (!once) {
          once = true;
          await new Promise((resolve) => setTimeout(resolve, 2));
          await consent.record(person, [{ purpose: 'analytics.reporting', state: 'given' }], banner, CLI_ACTOR);
          await consent.record(person, [{ purpose: 'third_party_sharing', state: 'given' }], banner, CLI_ACTOR);
        }
        return identity.canonical(profileId);
      });
      await consent.record(device, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { ...banner, gpc: true }, CLI_ACTOR);
    } finally {
      consent.followMergesWith((profileId) => identity.canonical(profileId));
    }
    // Which of two moments of a race came later is not told by the times of several nodes' clocks: the opt-out wins,
    // as a merge writes the more restrictive state.
    assert.equal(consent.decide(person, 'analytics.reporting').reason, 'withdrawn');
    assert.equal(consent.decide(person, 'third_party_sharing').allowed, false);
    assert.equal(consent.decide(person, 'marketing.advertising.third_party.targeted').allowed, false);
    // The person can give it again.
    await consent.record(person, [{ purpose: 'analytics.reporting', state: 'given' }], banner, CLI_ACTOR);
    assert.equal(consent.decide(person, 'analytics.reporting').allowed, true);
  });

  it('is carried over an opt-out notice recorded for the person meanwhile (a notice never stands over an opt-out)', async () => {
    const { consent, identity } = ctx.kernel;
    const profiling = consent.purpose('personalize.profiling');
    assert.ok(profiling);
    await consent.setPurpose({ ...profiling, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    try {
      const { device, person } = await mergedDevice(ctx.kernel);
      const noticeVersion = consent.currentNotice().version;
      let once = false;
      consent.followMergesWith(async (profileId) => {
        if (!once) {
          once = true;
          // A later millisecond than the refusal's entry.
          await new Promise((resolve) => setTimeout(resolve, 2));
          await consent.recordOptOutNotice(person, 'personalize.profiling', { jurisdiction: 'US-CA', noticeVersion }, CLI_ACTOR);
        }
        return identity.canonical(profileId);
      });
      await consent.record(device, [{ purpose: 'personalize.profiling', state: 'refused' }], banner, CLI_ACTOR);
      consent.followMergesWith((profileId) => identity.canonical(profileId));
      assert.equal(consent.decide(person, 'personalize.profiling').allowed, false);
      assert.equal(consent.decide(person, 'personalize.profiling').reason, 'refused');
    } finally {
      consent.followMergesWith((profileId) => identity.canonical(profileId));
      await consent.setPurpose(profiling, CLI_ACTOR);
    }
  });

  it('tries a failed carry-over again, and says so when it keeps failing', async () => {
    const { consent, identity } = ctx.kernel;
    const { device, person } = await mergedDevice(ctx.kernel);
    let calls = 0;
    try {
      consent.followMergesWith(async (profileId) => {
        calls++;
        if (calls === 1) throw new Error('the database went away for a moment');
        return identity.canonical(profileId);
      });
      await consent.record(device, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR);
      assert.equal(consent.decide(person, 'analytics.reporting').reason, 'withdrawn', 'carried over at the second attempt');
      consent.followMergesWith(() => Promise.reject(new Error('the database is gone')));
      await assert.rejects(
        consent.record(device, [{ purpose: 'personalize.profiling', state: 'refused' }], banner, CLI_ACTOR),
        (error) => isCandorError(error) && error.code === 'CONSENT_MERGE_NOT_FOLLOWED',
      );
    } finally {
      consent.followMergesWith((profileId) => identity.canonical(profileId));
    }
    // The change itself was recorded; sending it again for the person (as a resolved request does) reaches them.
    assert.equal(consent.decide(device, 'personalize.profiling').reason, 'refused');
  });

  it('follows the device that made it when an unmerge split the device off after its request was resolved to the person', async () => {
    const { consent, identity } = ctx.kernel;
    const { device, person, mergeId } = await mergedDevice(ctx.kernel);
    await consent.record(device, [{ purpose: 'marketing.advertising.third_party.targeted', state: 'given' }], banner, CLI_ACTOR);
    // The device's withdrawal was resolved to the person; the unmerge commits, and copies the person's opt-outs of the
    // merged time to the device, before the withdrawal is written.
    await identity.unmerge(person, mergeId, CLI_ACTOR);
    assert.equal(await identity.canonical(device), device);
    await consent.record(person, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { ...banner, holder: device }, CLI_ACTOR);
    assert.equal(consent.decide(person, 'analytics.reporting').reason, 'withdrawn');
    assert.equal(consent.decide(device, 'analytics.reporting').reason, 'withdrawn', 'the device that sent it has it too');
    // A GPC signal of the device's message, recorded for the person its message was resolved to.
    await consent.recordGpc([person], { source: 'web', holders: new Map([[person, [device]]]) }, CLI_ACTOR);
    assert.equal(consent.decide(device, 'marketing.advertising.third_party.targeted').allowed, false);
  });

  it('records a GPC signal for the split-off device also when the person had it in force already', async () => {
    const { consent, identity } = ctx.kernel;
    const { device, person, mergeId } = await mergedDevice(ctx.kernel, async (device, person) => {
      await consent.record(device, [{ purpose: 'marketing.advertising.third_party.targeted', state: 'given' }], banner, CLI_ACTOR);
      // The person's GPC opt-out predates the merge: the unmerge does not copy it to the device.
      await consent.recordGpc([person], { source: 'web' }, CLI_ACTOR);
    });
    await identity.unmerge(person, mergeId, CLI_ACTOR);
    assert.equal(consent.decide(device, 'marketing.advertising.third_party.targeted').allowed, true);
    // The device's request, resolved to the person before the unmerge, carried the signal.
    const result = await consent.record(person, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { ...banner, gpc: true, holder: device }, CLI_ACTOR);
    assert.equal(result.gpcHonoured, true);
    assert.equal(consent.decide(device, 'marketing.advertising.third_party.targeted').allowed, false, 'the signal reached the device that sent it');
    assert.equal(consent.decide(device, 'analytics.reporting').reason, 'withdrawn');
  });

  it('records a GPC signal for a device an unmerge splits off just after its holder was looked up', async () => {
    const { consent, identity } = ctx.kernel;
    const { device, person, mergeId } = await mergedDevice(ctx.kernel, async (device, person) => {
      await consent.record(device, [{ purpose: 'marketing.advertising.third_party.targeted', state: 'given' }], banner, CLI_ACTOR);
      await consent.recordGpc([person], { source: 'web' }, CLI_ACTOR);
    });
    let split = false;
    try {
      consent.followMergesWith(async (profileId) => {
        const canonical = await identity.canonical(profileId);
        // The look-up still finds the device merged; the unmerge commits right after it.
        if (profileId === device && !split) {
          split = true;
          await identity.unmerge(person, mergeId, CLI_ACTOR);
        }
        return canonical;
      });
      await consent.recordGpc([person], { source: 'web', holders: new Map([[person, [device]]]) }, CLI_ACTOR);
    } finally {
      consent.followMergesWith((profileId) => identity.canonical(profileId));
    }
    assert.equal(split, true);
    assert.equal(await identity.canonical(device), device);
    assert.equal(consent.decide(device, 'marketing.advertising.third_party.targeted').allowed, false, 'the signal reached the device that sent it');
  });

  it('records the GPC signal of a refused message for its device, when an unmerge splits the device off meanwhile', async () => {
    const { consent, identity, collect } = ctx.kernel;
    const { device, person, mergeId, anonymousId } = await mergedDevice(ctx.kernel, async (device) => {
      await consent.record(device, [{ purpose: 'marketing.advertising.third_party.targeted', state: 'given' }], banner, CLI_ACTOR);
    });
    // The person refuses what a page view serves: the device's page view is refused at the gate.
    await consent.record(person, [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'refused' }], banner, CLI_ACTOR);
    let split = false;
    try {
      consent.followMergesWith(async (profileId) => {
        // The unmerge commits after the message was resolved to the person, before its GPC signal is written.
        if (profileId === device && !split) {
          split = true;
          await identity.unmerge(person, mergeId, CLI_ACTOR);
        }
        return identity.canonical(profileId);
      });
      const [result] = await collect.ingest([{ raw: { type: 'page', anonymousId, messageId: `gpc-${randomUUID()}`, name: 'Home', properties: { path: '/' }, context: { gpc: true } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      assert.equal(result?.status, 'refused');
      assert.equal(result?.gpcHonoured, true);
    } finally {
      consent.followMergesWith((profileId) => identity.canonical(profileId));
    }
    assert.equal(split, true);
    assert.equal(consent.decide(device, 'marketing.advertising.third_party.targeted').allowed, false, 'the device that sent the signal has it');
  });

  it('writes nothing more on a device that is still merged into the person it names as holder', async () => {
    const { consent } = ctx.kernel;
    const { device, person } = await mergedDevice(ctx.kernel);
    const before = (await consent.history(device)).length;
    await consent.record(person, [{ purpose: 'personalize.profiling', state: 'refused' }], { ...banner, gpc: true, holder: device }, CLI_ACTOR);
    await consent.recordGpc([person], { source: 'web', holders: new Map([[person, [device, device]]]) }, CLI_ACTOR);
    assert.equal((await consent.history(device)).length, before);
    assert.equal(consent.decide(person, 'personalize.profiling').reason, 'refused');
  });

  it('writes nothing more for a profile that was not merged', async () => {
    const { consent, identity } = ctx.kernel;
    const alone = (await identity.resolveSubject(named([{ type: 'anonymous_id', value: `anon-${randomUUID()}` }]))).profileId as string;
    await consent.record(alone, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR);
    assert.deepEqual((await consent.history(alone)).map((e) => [e.purpose, e.state, e.mechanism]), [['analytics.reporting', 'withdrawn', 'banner_save']]);
  });
});
