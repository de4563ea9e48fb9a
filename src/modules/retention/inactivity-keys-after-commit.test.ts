import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// The person's data key and the keys sealing the addresses of their erasure requests (`rights_request:<id>`) are
// destroyed after the commit of an inactive person's deletion (RightsSubjectData.destroyKeys). The deleting transaction
// records those steps as owed: should one fail, or the process stop right after the commit, the next sweep or start
// runs them (the person is gone, so no sweep would find them again), as an erasure's `keys_pending` is finished.
describeEachDialect('the keys an inactive person\'s deletion destroys after its commit', (dialect) => {
  const ctx = useKernel(dialect);

  /** A person last active 30 months ago, with an erasure request of then, never verified, whose address is sealed with its own key. */
  const sealedRequest = async (k: Kernel, userId: string) => {
    const email = `${userId}.${dialect}@candor-example.dev`;
    let requestId = '';
    mock.timers.enable({ apis: ['Date'], now: months(new Date(), -30).getTime() });
    try {
      const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      await k.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
      const [s] = await k.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-1`, traits: { email } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      assert.equal(s?.status, 'stored', JSON.stringify(s));
      // Asked then too, never verified: a request received within the period would be activity that keeps the person.
      const started = await k.rights.start({ type: 'erasure', email, client: '10.81.0.1' });
      await k.rights.settled();
      requestId = started.requestId;
    } finally {
      mock.timers.reset();
    }
    const profileId = (await k.identity.linked({ profileIds: [], identifiers: [{ type: 'user_id', valueHash: k.identity.hash({ type: 'user_id', value: userId }) }] }))?.profileId as string;
    return { requestId, profileId };
  };

  /** Sweeps while every key destruction after the commit fails (a lost connection). */
  const sweepLosingTheConnection = async (k: Kernel) => {
    const keyring = k.keyring as { destroySubjectKey: Kernel['keyring']['destroySubjectKey'] };
    const destroy = keyring.destroySubjectKey;
    keyring.destroySubjectKey = async () => {
      throw new Error('connection lost');
    };
    try {
      await assert.rejects(k.retention.sweep({}), /connection lost/);
    } finally {
      keyring.destroySubjectKey = destroy;
    }
  };

  const state = async (k: Kernel, { requestId, profileId }: { requestId: string; profileId: string }) => {
    const db = k.storage.db;
    const row = (await sql<{ email: string | null }>`SELECT email FROM rights_requests WHERE id = ${requestId}`.execute(db)).rows[0];
    const keys = Number((await sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id IN (${`rights_request:${requestId}`}, ${profileId})`.execute(db)).rows[0]?.n);
    const owed = Number((await sql<{ n: number }>`SELECT count(*) AS n FROM retention_owed`.execute(db)).rows[0]?.n);
    return { keys, address: row?.email ?? null, owed };
  };

  it('are destroyed by the next sweep when that step failed after the commit', async () => {
    const k = ctx.kernel;
    const request = await sealedRequest(k, 'u-sealed-sweep');
    await sweepLosingTheConnection(k);
    assert.equal(await k.identity.canonical(request.profileId), null, 'the person is gone');
    const before = await state(k, request);
    assert.equal(before.keys, 2, 'the person\'s key and the request\'s');
    assert.notEqual(before.address, null);
    assert.equal(before.owed, 1, 'the steps are owed');

    await k.retention.sweep({});
    assert.deepEqual(await state(k, request), { keys: 0, address: null, owed: 0 });
  });

  it('are destroyed at the next start when that step failed after the commit', async () => {
    const k = ctx.kernel;
    const request = await sealedRequest(k, 'u-sealed-start');
    await sweepLosingTheConnection(k);
    assert.equal((await state(k, request)).owed, 1);

    const again = await openKernel(ctx.env.config);
    await again.close();
    assert.deepEqual(await state(k, request), { keys: 0, address: null, owed: 0 });
  });
});
