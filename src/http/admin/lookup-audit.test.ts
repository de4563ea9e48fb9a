import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';

describeEachDialect('admin API: profile look-up audit', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const lookup = (value: string) =>
    harness.server.app.inject({ method: 'POST', url: '/v1/admin/profiles/lookup', headers: harness.auth('marketer'), payload: { type: 'user_id', value } });
  const reads = () => ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 1000 });

  it('audits a hit and a miss with one entry each, neither holding the identifier', async () => {
    const known = `known-${randomBytes(4).toString('hex')}`;
    const unknown = `unknown-${randomBytes(4).toString('hex')}`;
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: known }], source: 'web', messageId: 'lookup-audit-1', at: new Date().toISOString() }]),
    );
    const profileId = resolved?.profileId as string;

    const before = (await reads()).length;
    const hit = await lookup(known);
    assert.equal(hit.statusCode, 200, hit.body);
    assert.equal((hit.json() as { id: string }).id, profileId);
    const afterHit = (await reads()).slice(before);
    assert.equal(afterHit.length, 1);
    assert.equal(afterHit[0]?.subject, ctx.kernel.keyring.pseudonym('subject', profileId));
    assert.equal(afterHit[0]?.outcome, 'success');

    const miss = await lookup(unknown);
    assert.equal(miss.statusCode, 404);
    assert.equal((miss.json() as { code: string }).code, 'IDENTITY_PROFILE_NOT_FOUND');
    const afterMiss = (await reads()).slice(before + 1);
    assert.equal(afterMiss.length, 1, 'a miss tells whether someone is a customer: it is audited too');
    const entry = afterMiss[0];
    assert.equal(entry?.role, 'marketer');
    assert.equal(entry?.purpose, 'essential.service.operations.support');
    assert.equal(entry?.resource, 'POST /v1/admin/profiles/lookup');
    assert.equal(entry?.outcome, 'failure');
    assert.equal(entry?.subject, null);
    assert.deepEqual(JSON.parse(entry?.details ?? 'null'), { found: false });

    const text = JSON.stringify([...afterHit, ...afterMiss]);
    for (const value of [known, unknown]) assert.ok(!text.includes(value), 'no looked-up value in the audit log');
  });

  it('audits nothing for a look-up refused before it ran', async () => {
    const before = (await reads()).length;
    const invalid = await harness.server.app.inject({ method: 'POST', url: '/v1/admin/profiles/lookup', headers: harness.auth('marketer'), payload: { type: 'user_id' } });
    assert.equal(invalid.statusCode, 400);
    assert.equal((await reads()).length, before);
  });
});
