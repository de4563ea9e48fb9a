import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// An erasure commits first and is audited (`rights.erasure`) after its keys, files and WAL: the erasure stays
// `keys_pending` until the entry is written, and a pending erasure is finished, with its entry, by the next start.
describeEachDialect('rights: an erasure whose audit entry could not be written', (dialect) => {
  const ctx = useKernel(dialect);

  it('stays pending, and is audited once when the next start finishes it', async () => {
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: uniqueId('erased') }], source: 'web', at: new Date().toISOString() }]));
    const subject = await ctx.kernel.erasure.findSubject({ profileId: resolved?.profileId as string });
    assert.ok(subject);
    const requestId = uniqueId('req-erasure');
    const entries = async () => (await ctx.kernel.audit.list({ action: 'rights.erasure', limit: 1000 })).filter((e) => e.resource === `erasure:${requestId}`);

    await failsWhileAuditFails(ctx.kernel.audit, () => ctx.kernel.erasure.erase(subject, { requestId }, CLI_ACTOR), 'rights.erasure');
    assert.equal((await ctx.kernel.erasure.certificate(requestId))?.status, 'incomplete');
    assert.deepEqual(await entries(), []);

    await ctx.kernel.erasure.replayMissing();
    assert.equal((await ctx.kernel.erasure.certificate(requestId))?.status, 'complete');
    const [entry, ...more] = await entries();
    assert.equal(more.length, 0);
    assert.equal(JSON.parse(entry?.details ?? 'null').resumed, true);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });
});
