import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// When a purpose is flagged sale/sharing, Candor writes by itself a GPC refusal of it for every person whose GPC opt-out
// is in force (consent.gpc, actor system, details.purposeFlagged). That is no activity of the person's: it counted as
// one, so one configuration change restarted every GPC person's inactivity clock.
describeEachDialect('the inactivity rule and the GPC refusals Candor writes when a purpose is flagged', (dialect) => {
  const ctx = useKernel(dialect);

  it('deletes a person with no activity of their own for 30 months, whatever Candor wrote for them since', async () => {
    const k = ctx.kernel;
    // All of what follows, to the first sweep, happened 30 months ago (the ledger is append-only: the clock is moved).
    const longAgo = months(new Date(), -30).toISOString();
    mock.timers.enable({ apis: ['Date'], now: Date.parse(longAgo) });
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-gpc-old' }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    // The person's browser sends the GPC signal with their (last) event.
    const [stored] = await k.collect.ingest([{ raw: { type: 'track', userId: 'u-gpc-old', messageId: 'gpc-old-1', event: 'Product Viewed', properties: { product_id: 'p' } }, bytes: 100 }], undefined, { source: 'web', gpc: true, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    mock.timers.reset();
    const inactivePeople = async () => (await k.retention.sweep({ dryRun: true })).counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
    assert.equal(await inactivePeople(), 1, 'inactive before the configuration change');

    // Today an admin adds a purpose flagged sale/sharing: Candor writes the GPC refusal for every GPC person.
    await k.consent.setPurpose({ key: 'marketing.advertising.first_party', basis: 'consent', saleOrSharing: true, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: 'Our own ads, shared with an ad network.' }, CLI_ACTOR);
    const written = (await sql<{ mechanism: string; purpose: string; source: string | null }>`SELECT mechanism, purpose, source FROM consent_ledger WHERE subject = ${k.keyring.pseudonym('subject', profileId)} AND at > ${longAgo}`.execute(k.storage.db)).rows;
    assert.deepEqual(written.map((e) => ({ ...e })), [{ mechanism: 'gpc', purpose: 'marketing.advertising.first_party', source: 'purpose-flagged:marketing.advertising.first_party' }]);

    // Nothing the person did: as inactive as before.
    assert.equal(await inactivePeople(), 1, 'a change Candor made by itself is no activity of the person');
    await k.retention.sweep({});
    assert.equal(await k.identity.canonical(profileId), null, 'deleted');
  });
});
