import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { resolveItem, uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { HISTORY_SCAN_FACTOR, Profiles, type TraitChange, type TraitInput, type TraitsBatchItem } from './index.ts';

const profileId = () => 'prf_' + Array.from(randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');
const email = (value: string): TraitInput => ({ key: 'email', value, category: 'user.contact.email', personal: true });
const at = (second: number) => new Date(Date.UTC(2025, 0, 1) + second * 1000).toISOString();
/** Rounds of A and B sending x and y alternately while merged: A's own history is one change and ROUNDS - 1 no-ops. */
const ROUNDS = 120;
const LIMIT = 5;

describeEachDialect('profiles trait history paging', (dialect) => {
  const ctx = useKernel(dialect);
  const [a, b] = [profileId(), profileId()];
  let server: CandorServer;
  let token = '';
  /** A Profiles reading the same tables with nothing remembered, as after a restart, and the decrypts it makes. */
  let fresh: Profiles;
  let decrypts = 0;

  before(async () => {
    const { profiles, storage, keyring, audit } = ctx.kernel;
    await profiles.prepare([a, b]);
    for (let i = 0; i < ROUNDS; i += 20) {
      const items: TraitsBatchItem[] = [];
      for (let j = i; j < i + 20; j++) {
        items.push({ profileId: a, traits: [email('x@shop.io')], source: 'web', at: at(2 * j), person: [a, b] });
        items.push({ profileId: b, traits: [email('y@shop.io')], source: 'web', at: at(2 * j + 1), person: [a, b] });
      }
      await storage.raw.transaction((tx) => profiles.setTraitsBatch(tx, items));
    }
    const counting = Object.create(keyring) as typeof keyring;
    counting.decrypt = (...args: Parameters<typeof keyring.decrypt>) => {
      decrypts++;
      return keyring.decrypt(...args);
    };
    fresh = await Profiles.open({ storage, audit, keyring: counting });
    server = await buildServer(ctx.kernel);
    token = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server?.app.close();
  });

  const pages = async (ids: string[], decrypt: boolean) => {
    const changes: TraitChange[] = [];
    const reads: number[] = [];
    let before: string | undefined;
    for (let page = 0; page < 1000; page++) {
      decrypts = 0;
      const answer = await fresh.traitHistoryPage(ids, 'email', { decrypt, limit: LIMIT, before });
      reads.push(decrypts);
      changes.push(...answer.changes);
      if (answer.next === null) return { changes, reads };
      before = answer.next;
    }
    throw new Error('the history never ended');
  };

  it('reads a bounded number of stored entries per call when most entries change nothing of the view', async () => {
    const bound = (HISTORY_SCAN_FACTOR + 1) * LIMIT;
    for (const decrypt of [false, true]) {
      decrypts = 0;
      const first = await fresh.traitHistory([a], 'email', { decrypt, limit: LIMIT });
      assert.ok(decrypts <= bound, `decrypt=${decrypt}: ${decrypts} decrypts for one page, at most ${bound}`);
      assert.ok(decrypts > 0, 'the comparisons decrypted (nothing was remembered)');
      assert.deepEqual(first, [], 'the first page scanned only no-op entries');
      const all = await pages([a], decrypt);
      assert.deepEqual(all.changes.map((c) => [c.value, c.previousValue, c.changedAt]), [[decrypt ? 'x@shop.io' : '••••', undefined, at(0)]]);
      assert.ok(Math.max(...all.reads) <= bound, `decrypt=${decrypt}: every page at most ${bound} decrypts (${all.reads.join(', ')})`);
      assert.ok(all.reads.length >= ROUNDS / (HISTORY_SCAN_FACTOR * LIMIT), 'the history came in several short pages');
    }
  });

  it("pages the merged person's history across page boundaries with the view's previous values", async () => {
    const all = await pages([a, b], true);
    assert.equal(all.changes.length, 2 * ROUNDS);
    const expected = Array.from({ length: 2 * ROUNDS }, (_, k) => {
      const n = 2 * ROUNDS - 1 - k;
      const value = n % 2 === 0 ? 'x@shop.io' : 'y@shop.io';
      return [value, n === 0 ? undefined : n % 2 === 0 ? 'y@shop.io' : 'x@shop.io', at(n)];
    });
    assert.deepEqual(all.changes.map((c) => [c.value, c.previousValue, c.changedAt]), expected);
    assert.ok(Math.max(...all.reads) <= (HISTORY_SCAN_FACTOR + 1) * LIMIT);
  });

  it('answers the next cursor over HTTP and refuses one it did not give', async () => {
    const user = uniqueId('user');
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [resolveItem({ user_id: user }, 'h-1')]));
    const id = resolved?.profileId as string;
    await ctx.kernel.profiles.prepare([id]);
    const plan = (value: string): TraitInput => ({ key: 'plan', value, category: 'user.account', personal: false });
    await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.profiles.setTraitsBatch(tx, ['free', 'basic', 'pro'].map((value, i) => ({ profileId: id, traits: [plan(value)], source: 'web', at: at(i) }))),
    );
    const headers = { authorization: `Bearer ${token}` };
    const seen: unknown[] = [];
    let url = `/v1/admin/profiles/${id}/history?key=plan&limit=2`;
    for (;;) {
      const response = await server.app.inject({ url, headers });
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as { changes: { value: unknown }[]; next: string | null };
      seen.push(...body.changes.map((c) => c.value));
      if (body.next === null) break;
      url = `/v1/admin/profiles/${id}/history?key=plan&limit=2&before=${encodeURIComponent(body.next)}`;
    }
    assert.deepEqual(seen, ['pro', 'basic', 'free']);
    const bad = await server.app.inject({ url: `/v1/admin/profiles/${id}/history?before=nonsense`, headers });
    assert.equal(bad.statusCode, 400);
    assert.equal((bad.json() as { code: string }).code, 'PROFILES_HISTORY_CURSOR_INVALID');
  });
});
