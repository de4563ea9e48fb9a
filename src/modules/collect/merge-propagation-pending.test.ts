import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, it, mock } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

// A merge or an unmerge commits before its consent propagation runs (consent.mergeSubjects, after the commit). While
// that propagation is pending — it failed once, or has not run yet — the profile decided on is gated as it will be
// once it ran: the most restrictive state of both, never the survivor's own consent alone.
describeEachDialect('merge and unmerge whose consent propagation is pending', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  const send = (url: string, payload: unknown) =>
    server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const given = { 'analytics.reporting': 'given', 'personalize.profiling': 'given' };
  const lookUp = (kernel: Kernel, ids: Record<string, string>) =>
    kernel.identity.lookupBatch(kernel.storage.raw, [{ identifiers: Object.entries(ids).map(([type, value]) => ({ type, value })), source: 'web', at: new Date().toISOString() }]);
  /** A track call from the device alone: its result (status, purposes). */
  const deviceEvent = async (device: string, tag: string) => {
    const response = await send('/v1/track', { anonymousId: device, event: 'Product Viewed', messageId: `${device}-${tag}`, properties: { product_id: 'p1' } });
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { results: { status: string; purposes?: string[] }[] }).results[0];
  };
  /** consent.mergeSubjects fails `times` times (a busy database, a dropped connection), then works again. */
  const failMergeSubjects = (kernel: Kernel, times: number) => {
    const original = kernel.consent.mergeSubjects.bind(kernel.consent);
    let failures = times;
    return mock.method(kernel.consent, 'mergeSubjects', async (...args: Parameters<typeof original>) => {
      if (failures-- > 0) throw Object.assign(new Error('transient'), { code: 'STORAGE_BUSY' });
      return original(...args);
    });
  };
  /** A device that refused profiling, and an account that allows it. */
  const deviceAndAccount = async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'banner_save', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'refused' } })).statusCode, 200);
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'banner_save', purposes: given })).statusCode, 200);
    return { device, user };
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });

  it("gates the survivor of a merge whose consent step failed with the merged-away device's refusals until it is retried", async () => {
    const { device, user } = await deviceAndAccount();
    const [account] = await lookUp(ctx.kernel, { user_id: user });
    const failing = failMergeSubjects(ctx.kernel, 1);
    const link = await send('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link` });
    failing.mock.restore();
    assert.equal(link.statusCode, 500, 'the merging message is answered with the failure');
    assert.equal(await ctx.kernel.identity.canonical((await lookUp(ctx.kernel, { anonymous_id: device }))[0] as string), account, 'the merge itself is committed');
    assert.equal((await ctx.kernel.consent.state(account as string))['personalize.profiling']?.state, 'given', 'its consent step has not run');

    // The device's ordinary traffic, and the account's own, resolve to the account: not processed for profiling.
    const result = await deviceEvent(device, 'after');
    assert.equal(result?.status, 'stored');
    assert.deepEqual(result?.purposes, ['analytics.reporting'], 'the device refused profiling');
    const response = await send('/v1/track', { userId: user, event: 'Product Viewed', messageId: `${user}-after`, properties: { product_id: 'p1' } });
    assert.deepEqual((response.json() as { results: { purposes?: string[] }[] }).results[0]?.purposes, ['analytics.reporting']);
    assert.deepEqual(ctx.kernel.consent.allowedPurposes(account as string, ['analytics.reporting', 'personalize.profiling']), ['analytics.reporting'], 'every purpose-bound read too');

    // The retry (a running server's every second) writes the refusal on the account; nothing is pending after it.
    assert.deepEqual(await ctx.kernel.identity.retryPending({ graceMs: 0 }), { applied: 1, failed: [] });
    assert.equal((await ctx.kernel.consent.state(account as string))['personalize.profiling']?.state, 'refused');
    assert.equal(ctx.kernel.identity.pendingSourcesOf(account as string), undefined);
    assert.deepEqual((await deviceEvent(device, 'retried'))?.purposes, ['analytics.reporting']);
  });

  it('gates the survivor while the consent step of its merge runs, before it failed or succeeded', async () => {
    const { device, user } = await deviceAndAccount();
    const [account] = await lookUp(ctx.kernel, { user_id: user });
    const original = ctx.kernel.consent.mergeSubjects.bind(ctx.kernel.consent);
    let during: string[] | undefined;
    const slow = mock.method(ctx.kernel.consent, 'mergeSubjects', async (...args: Parameters<typeof original>) => {
      // Another request of the same moment, gated while the merge's consent step runs.
      await ctx.kernel.consent.load([account as string]);
      during = ctx.kernel.consent.allowedPurposes(account as string, ['analytics.reporting', 'personalize.profiling']);
      return original(...args);
    });
    try {
      assert.equal((await send('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link` })).statusCode, 200);
    } finally {
      slow.mock.restore();
    }
    assert.deepEqual(during, ['analytics.reporting']);
    assert.equal(ctx.kernel.identity.pendingSourcesOf(account as string), undefined, 'applied: nothing pending');
  });

  it("gates by another process's pending merge", async () => {
    const { device, user } = await deviceAndAccount();
    const [account] = await lookUp(ctx.kernel, { user_id: user });
    const other = await openKernel(ctx.env.config);
    try {
      const failing = failMergeSubjects(other, 100);
      const resolved = await other.storage.raw.transaction((tx) => other.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: user }, { type: 'anonymous_id', value: device }], source: 'web', at: new Date().toISOString() }]));
      await assert.rejects(other.identity.notifyMerges(resolved[0]?.merges ?? []), /transient/);
      failing.mock.restore();
      // This process hears of the merge (PostgreSQL: by a commit notice, a moment later).
      for (let waited = 0; (await lookUp(ctx.kernel, { anonymous_id: device }))[0] !== account; waited += 20) {
        assert.ok(waited < 5000, 'the merge was not heard of');
        await delay(20);
      }
      assert.deepEqual((await deviceEvent(device, 'elsewhere'))?.purposes, ['analytics.reporting']);
      // The other process applies it (at its next retry, or start): the refusal is then the account's own.
      assert.deepEqual(await other.identity.retryPending({ graceMs: 0 }), { applied: 1, failed: [] });
    } finally {
      await other.close();
    }
    assert.equal((await ctx.kernel.consent.state(account as string))['personalize.profiling']?.state, 'refused');
    for (let waited = 0; ; waited += 20) {
      await ctx.kernel.consent.load([account as string]);
      if (ctx.kernel.identity.pendingSourcesOf(account as string) === undefined) break;
      assert.ok(waited < 5000, 'still pending here');
      await delay(20);
    }
  });

  it('gates the split-out device by what the person withdrew while merged until the split ran, and a repeated unmerge runs it', async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    for (const ids of [{ anonymousId: device }, { userId: user }]) assert.equal((await send('/v1/consent', { ...ids, mechanism: 'banner_save', purposes: given })).statusCode, 200);
    assert.equal((await send('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link` })).statusCode, 200);
    // While merged, the person (from the device) withdraws analytics.
    assert.equal((await send('/v1/consent', { anonymousId: device, mechanism: 'privacy_center', purposes: { 'analytics.reporting': 'withdrawn' } })).statusCode, 200);
    const [account] = await lookUp(ctx.kernel, { user_id: user });
    const [merge] = await ctx.kernel.identity.merges(account as string);
    const failing = failMergeSubjects(ctx.kernel, 1);
    await assert.rejects(ctx.kernel.identity.unmerge(account as string, merge?.mergeId as string, CLI_ACTOR), /transient/);
    failing.mock.restore();
    const [deviceProfile] = await lookUp(ctx.kernel, { anonymous_id: device });
    assert.equal(deviceProfile, merge?.from, 'the unmerge itself is committed');
    assert.equal((await ctx.kernel.consent.state(deviceProfile as string))['analytics.reporting']?.state, 'given', 'its split has not run');

    // Later merges and ordinary traffic of this process: the device is gated by the withdrawal all the same.
    const u2 = uniqueId('user2');
    assert.equal((await send('/v1/identify', { userId: u2, anonymousId: uniqueId('anon-other'), messageId: `${u2}-link` })).statusCode, 200);
    assert.deepEqual((await deviceEvent(device, 'split'))?.purposes, ['personalize.profiling']);

    // The unmerge sent again runs the split instead of answering that the merge is undone; a third time it is.
    assert.deepEqual(await ctx.kernel.identity.unmerge(account as string, merge?.mergeId as string, CLI_ACTOR), { restored: deviceProfile, identifiersMoved: 0 });
    assert.equal((await ctx.kernel.consent.state(deviceProfile as string))['analytics.reporting']?.state, 'withdrawn');
    assert.equal(ctx.kernel.identity.pendingSourcesOf(deviceProfile as string), undefined);
    assert.deepEqual((await deviceEvent(device, 'after'))?.purposes, ['personalize.profiling']);
    await assert.rejects(ctx.kernel.identity.unmerge(account as string, merge?.mergeId as string, CLI_ACTOR), (e) => isCandorError(e, 'IDENTITY_MERGE_ALREADY_UNDONE'));
  });

  it('retries a failed split in the running process', async () => {
    const device = uniqueId('anon-device');
    const user = uniqueId('user');
    for (const ids of [{ anonymousId: device }, { userId: user }]) assert.equal((await send('/v1/consent', { ...ids, mechanism: 'banner_save', purposes: given })).statusCode, 200);
    assert.equal((await send('/v1/identify', { userId: user, anonymousId: device, messageId: `${user}-link` })).statusCode, 200);
    assert.equal((await send('/v1/consent', { userId: user, mechanism: 'privacy_center', purposes: { 'personalize.profiling': 'withdrawn' } })).statusCode, 200);
    const [account] = await lookUp(ctx.kernel, { user_id: user });
    const [merge] = await ctx.kernel.identity.merges(account as string);
    const failing = failMergeSubjects(ctx.kernel, 1);
    await assert.rejects(ctx.kernel.identity.unmerge(account as string, merge?.mergeId as string, CLI_ACTOR), /transient/);
    failing.mock.restore();
    assert.deepEqual((await deviceEvent(device, 'split'))?.purposes, ['analytics.reporting']);
    assert.deepEqual(await ctx.kernel.identity.retryPending({ graceMs: 0 }), { applied: 1, failed: [] });
    assert.equal((await ctx.kernel.consent.state(merge?.from as string))['personalize.profiling']?.state, 'withdrawn');
    assert.equal(ctx.kernel.identity.pendingSourcesOf(merge?.from as string), undefined);
  });
});
