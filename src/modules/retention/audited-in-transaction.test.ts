import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';

const DAY = 86_400_000;

describeEachDialect('retention: deletions audited before or with the change', (dialect) => {
  const ctx = useKernel(dialect);
  const longAgo = new Date(Date.now() - 30 * 30 * DAY).toISOString();

  /** A person whose only activity reached Candor 30 months ago (inactive for the 24-month rule), with a stored key. */
  const idle = async () => {
    const [r] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: uniqueId('idle') }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.profiles.recordActivityBatch(tx, [{ profileId, at: longAgo, receivedAt: longAgo, kind: 'track' }]));
    await ctx.kernel.keyring.encrypt(profileId, 'x', 'test.field');
    return profileId;
  };
  const entries = async (action: string, subject?: string) => (await ctx.kernel.audit.list({ action, limit: 1000 })).filter((e) => subject === undefined || e.subject === subject);
  const keyRows = async (profileId: string) => (await sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id = ${profileId}`.execute(ctx.kernel.storage.db)).rows[0]?.n;

  it('deletes nothing in a sweep whose started entry cannot be written', async () => {
    const profileId = await idle();
    const subject = ctx.kernel.keyring.pseudonym('subject', profileId);
    const sweeps = (await entries('retention.sweep')).length;

    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.retention.sweep({ batchSize: 2 }), 'retention.sweep');
    assert.equal(await ctx.kernel.identity.canonical(profileId), profileId, 'the person is still there');
    assert.equal(Number(await keyRows(profileId)), 1, 'their key too');
    assert.equal((await entries('crypto.data_key.destroy', subject)).length, 0);
    assert.equal((await entries('retention.sweep')).length, sweeps);

    const report = await ctx.kernel.retention.sweep({ batchSize: 2 });
    assert.equal(await ctx.kernel.identity.canonical(profileId), null);
    const [started, finished, ...more] = (await entries('retention.sweep')).slice(sweeps).map((e) => JSON.parse(e.details ?? 'null') as Record<string, unknown>);
    assert.equal(more.length, 0);
    assert.deepEqual(started, { phase: 'started', at: report.at, batchSize: 2 });
    assert.equal(finished?.phase, 'finished');
    assert.equal(finished?.at, report.at);
    assert.equal(finished?.people, 1);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('keeps an inactive person whose deletion cannot be audited, and audits the deletion once when it is made', async () => {
    const profileId = await idle();
    const subject = ctx.kernel.keyring.pseudonym('subject', profileId);

    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.retention.sweep({ batchSize: 2 }), 'retention.subject.delete');
    assert.equal(await ctx.kernel.identity.canonical(profileId), profileId, 'nothing of the person deleted');
    assert.equal((await entries('retention.subject.delete', subject)).length, 0);
    // The key is destroyed once the deletion has committed: it stays with the person, readable, without an entry.
    assert.equal(Number(await keyRows(profileId)), 1);
    assert.equal((await entries('crypto.data_key.destroy', subject)).length, 0);

    await ctx.kernel.retention.sweep({ batchSize: 2 });
    assert.equal(await ctx.kernel.identity.canonical(profileId), null);
    assert.equal(Number(await keyRows(profileId)), 0);
    assert.equal((await entries('crypto.data_key.destroy', subject)).filter((e) => e.outcome === 'success').length, 1);
    const [deleted, ...more] = await entries('retention.subject.delete', subject);
    assert.equal(more.length, 0);
    assert.equal(JSON.parse(deleted?.details ?? 'null').profiles, 1);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });
});
