import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { followMerge } from './subject.ts';

const banner = { mechanism: 'banner_save', noticeVersion: 1 } as const;
const named = (identifiers: { type: string; value: string }[]) => ({ identifiers, source: 'web', at: new Date().toISOString() });

// A consent change sent from a device is recorded for the profile its ids resolved to. If another request merges that
// profile into an account after that resolution but before the change's write, the merge carried over only what the
// profile held before the change: POST /v1/consent then carries the change's opt-outs over itself (followMerge), so a
// withdrawal answered 200 is in force for the person.
describeEachDialect('a consent change recorded for a profile merged away meanwhile', (dialect) => {
  const ctx = useKernel(dialect);

  it('has its opt-outs carried over to the person the profile was merged into', async () => {
    const { identity, consent } = ctx.kernel;
    const device = `anon-${randomUUID()}`;
    const account = `user-${randomUUID()}`;
    const fromDevice = (await identity.resolveSubject(named([{ type: 'anonymous_id', value: device }]))).profileId as string;
    const person = (await identity.resolveSubject(named([{ type: 'user_id', value: account }]))).profileId as string;
    for (const id of [fromDevice, person]) await consent.record(id, [{ purpose: 'analytics.reporting', state: 'given' }], banner, CLI_ACTOR);
    // The device's withdrawal was resolved to its own profile; then another request merges the device into the account.
    const merging = await identity.resolveSubject(named([{ type: 'user_id', value: account }, { type: 'anonymous_id', value: device }]));
    await identity.notifyMerges(merging.merges);
    assert.equal(await identity.canonical(fromDevice), person);
    await consent.record(fromDevice, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR);
    assert.equal(consent.decide(person, 'analytics.reporting').allowed, true, 'the merge carried over nothing of the later withdrawal');
    await followMerge(ctx.kernel, fromDevice);
    assert.equal(consent.decide(person, 'analytics.reporting').reason, 'withdrawn');
    // Nothing to carry over for a profile that was not merged, and nothing written twice.
    const before = (await consent.history(person)).length;
    await followMerge(ctx.kernel, person);
    await followMerge(ctx.kernel, fromDevice);
    assert.equal((await consent.history(person)).length, before);
  });
});
