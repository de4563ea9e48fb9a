import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import type { TraitInput } from './index.ts';

const plan = (value: string): TraitInput => ({ key: 'plan', value, category: 'user.account', personal: false });
const email = (value: string): TraitInput => ({ key: 'email', value, category: 'user.contact.email', personal: true });

describeEachDialect('profiles: a rectification audited in its own transaction', (dialect) => {
  const ctx = useKernel(dialect);
  const p = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');

  it('changes nothing when its audit entry cannot be written, and is audited with what it changed when it can', async () => {
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-rectify-audited' }], source: 'web', at: new Date().toISOString() }]));
    const id = resolved?.profileId as string;
    const profiles = ctx.kernel.profiles;
    await profiles.prepare([id]);
    await ctx.kernel.storage.raw.transaction((tx) => profiles.setTraitsBatch(tx, [{ profileId: id, traits: [plan('basic'), email('ada@shop.io')], source: 'web', at: new Date(Date.now() - 60_000).toISOString() }]));
    const values = async () => Object.fromEntries((await profiles.get([id], { decrypt: true })).traits.map((t) => [t.key, t.value]));
    const history = async () => (await ctx.kernel.storage.raw.all<{ n: number }>(`select count(*) as n from profiles_trait_history where profile_id = ${p(1)}`, [id]))[0]?.n;
    const historyBefore = await history();
    const meta = { requestId: 'rr_rectifyaudited' };
    await failsWhileAuditFails(ctx.kernel.audit, () => profiles.rectify([id], [plan('pro'), email('grace@shop.io')], meta, CLI_ACTOR));
    assert.deepEqual(await values(), { plan: 'basic', email: 'ada@shop.io' });
    assert.equal(await history(), historyBefore, 'no history entry');
    // The plan is already right: only the address changes.
    assert.deepEqual(await profiles.rectify([id], [plan('basic'), email('grace@shop.io')], meta, CLI_ACTOR), { changed: ['email'] });
    assert.deepEqual(await values(), { plan: 'basic', email: 'grace@shop.io' });
    const audited = (await ctx.kernel.audit.list({ action: 'profiles.rectify', limit: 1000 })).filter((e) => e.resource === `rights_request:${meta.requestId}`);
    assert.equal(audited.length, 1);
    assert.deepEqual(JSON.parse(audited[0]?.details ?? '{}'), { keys: ['plan', 'email'], changed: 1 });
  });
});
