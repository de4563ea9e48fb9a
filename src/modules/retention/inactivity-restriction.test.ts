import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// A restriction of processing (GDPR Art. 18, the rights request `restriction`: consent.restrict, which writes only
// consent_restrictions) is what a person asks for to have their data kept (Art. 18(1)(b), (c)): while it is in force
// the inactivity rule does not delete them, whenever it began; once lifted, they go as anyone inactive.
describeEachDialect('the inactivity rule and a restriction of processing', (dialect) => {
  const ctx = useKernel(dialect);

  it('keeps a person while their restriction of processing is in force, and deletes them once it is lifted', async () => {
    const k = ctx.kernel;
    mock.timers.enable({ apis: ['Date'], now: months(new Date(), -30).getTime() });
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-restricts' }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const [stored] = await k.collect.ingest([{ raw: { type: 'identify', userId: 'u-restricts', messageId: 'rs-1', traits: { email: 'restricts@candor-shop.dev' } }, bytes: 100 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    mock.timers.reset();

    // Today: the person's restriction request runs (what RightsRequests runs for type `restriction`).
    await k.consent.restrict([profileId], { requestId: 'req-restrict-1' }, CLI_ACTOR);
    const restrictions = async () => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM consent_restrictions WHERE subject = ${k.keyring.pseudonym('subject', profileId)} AND lifted_at IS NULL`.execute(k.storage.db)).rows[0]?.n);
    assert.equal(await restrictions(), 1);
    const deleted = (report: Awaited<ReturnType<typeof k.retention.sweep>>) => report.counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);

    assert.equal(deleted(await k.retention.sweep({})), 0);
    assert.equal(await k.identity.canonical(profileId), profileId, 'the person who restricted processing today is still there');
    assert.equal(await restrictions(), 1, 'and so is their restriction');
    // Still in force 25 months on: still kept.
    assert.equal(deleted(await k.retention.sweep({ now: months(new Date(), 25) })), 0);
    assert.equal(await k.identity.canonical(profileId), profileId);

    // Lifting it is no activity of the person's: they go at the next sweep past the period.
    await k.consent.liftRestriction([profileId], { requestId: 'req-restrict-1' }, CLI_ACTOR);
    assert.equal(deleted(await k.retention.sweep({ now: months(new Date(), 25) })), 1);
    assert.equal(await k.identity.canonical(profileId), null);
  });
});
