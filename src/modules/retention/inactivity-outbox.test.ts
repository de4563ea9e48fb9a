import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// Deleting an inactive person deletes what an erasure deletes after its commit: the mails about them in the outbox
// (<dataDir>/outbox, written when no SMTP server is set: the address in clear, the request, the code; the engine's
// fileStores) and the rate limit's counts under their address's pseudonym (the rights handler's afterErase, which
// needs the person's data key to read the address: it runs before the key is destroyed).
describeEachDialect('what an inactive person\'s deletion leaves of their mails and rate-limit counts', (dialect) => {
  const ctx = useKernel(dialect);

  it('leaves no outbox mail naming the person\'s address and no rate-limit count under it', async () => {
    const k = ctx.kernel;
    const email = `outbox.${dialect}@candor-example.dev`;
    mock.timers.enable({ apis: ['Date'], now: months(new Date(), -30).getTime() });
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-outbox' }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const [s] = await k.collect.ingest([{ raw: { type: 'identify', userId: 'u-outbox', messageId: 'ob-1', traits: { email } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(s?.status, 'stored', JSON.stringify(s));
    // The person asked for their data then too (the code mailed to the outbox), verified, and got their download link:
    // a request within the period would be activity that keeps them. The mails' files are written now, so the outbox's
    // own expiry (by a file's age) leaves them: only the deletion removes them.
    const { requestId } = await k.rights.start({ type: 'access', email, client: '10.79.0.1' });
    await k.rights.settled();
    const outbox = join(ctx.env.dataDir, 'outbox');
    const naming = () => (existsSync(outbox) ? readdirSync(outbox).filter((f) => readFileSync(join(outbox, f), 'utf8').includes(email)) : []);
    const code = readdirSync(outbox)
      .map((f) => readFileSync(join(outbox, f), 'utf8'))
      .filter((t) => t.includes(requestId))
      .map((t) => /Your code is (\d{6})/.exec(t)?.[1])
      .find(Boolean) as string;
    await k.rights.verify(requestId, code, { secondIdentifier: { type: 'user_id', value: 'u-outbox' } });
    await k.rights.settled();
    const rateKey = `id:${k.keyring.pseudonym('rights.rate', email)}`;
    const rateRows = async () => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM rights_rate_events WHERE key = ${rateKey}`.execute(k.storage.db)).rows[0]?.n);
    const mails = naming().length;
    assert.ok(mails >= 1);
    assert.equal(await rateRows(), 1);
    mock.timers.reset();

    const report = await k.retention.sweep({});
    assert.ok(report.counts.some((c) => c.rule === 'profiles.inactive' && c.store === 'people' && c.count === 1), JSON.stringify(report.counts));
    assert.equal(await k.identity.canonical(profileId), null);
    assert.deepEqual(naming(), [], 'nothing in the outbox names the deleted person');
    assert.equal(await rateRows(), 0, 'no rate-limit count under their address\'s pseudonym');
    // Counted with the person's rows, as at an erasure.
    const outboxCount = report.counts.find((c) => c.rule === 'profiles.inactive' && c.store.startsWith('mail outbox'));
    assert.ok((outboxCount?.count ?? 0) >= mails, JSON.stringify(report.counts));
  });
});
