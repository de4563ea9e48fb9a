import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it, mock } from 'node:test';
import { getHeapSnapshot } from 'node:v8';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// Identity's preparation caches hold identifier values in clear (raw value → pseudonym, normalized value → pseudonym).
// An erasure drops the erased person's as it suppresses their identifiers; the inactivity rule suppresses nothing, and
// drops them through identity's afterErase.

/** Tags are kept reversed: the address (tag@domain) exists only where Candor made or kept it, until the snapshot. */
const reverse = (s: string) => [...s].reverse().join('');
const address = (reversedTag: string) => `${reverse(reversedTag)}@candor-shop.dev`;

/** Whether the process's heap holds each tag's address. */
async function heapHolds(reversedTags: readonly string[]): Promise<boolean[]> {
  const chunks: string[] = [];
  for await (const chunk of getHeapSnapshot()) chunks.push(String(chunk));
  const text = chunks.join('');
  return reversedTags.map((t) => text.includes(address(t)));
}

describeEachDialect('what the process holds of a person deleted for inactivity', (dialect) => {
  const ctx = useKernel(dialect);

  it('holds the e-mail address of neither an erased person nor one deleted for inactivity', async () => {
    const k = ctx.kernel;
    // Addresses made here and not kept: only what Candor holds can hold them afterwards.
    const tag = () => randomBytes(6).toString('hex');
    const erasedTag = tag();
    const inactiveTag = tag();
    const person = async (userId: string, mailTag: string) => {
      const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      await k.consent.record(r?.profileId as string, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
      const [s] = await k.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-1`, traits: { email: address(mailTag) } }, bytes: 100 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      assert.equal(s?.status, 'stored', JSON.stringify(s));
      return r?.profileId as string;
    };
    mock.timers.enable({ apis: ['Date'], now: months(new Date(), -30).getTime() });
    const inactive = await person('u-mem-inactive', inactiveTag);
    mock.timers.reset();
    const erased = await person('u-mem-erased', erasedTag);
    const subject = await k.erasure.findSubject({ profileId: erased });
    assert.ok(subject);
    await k.erasure.erase(subject, { requestId: 'req-mem-1' }, CLI_ACTOR);

    await k.retention.sweep({});
    assert.equal(await k.identity.canonical(inactive), null, 'deleted for inactivity');
    const [erasedHeld, inactiveHeld] = await heapHolds([erasedTag, inactiveTag]);
    assert.equal(erasedHeld, false, 'the erased person\'s address is not held');
    assert.equal(inactiveHeld, false, 'the inactive person\'s address is not held');
  });
});
