import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel, useUpgradedKernel } from '../../../test/support/kernel.ts';
import { resolveItem, uniqueId } from '../../../test/support/subjects.ts';
import type { Kernel } from '../../kernel.ts';

const DAY = 86_400_000;
const YEAR = 365 * DAY;
const ago = (now: number, ms: number) => new Date(now - ms).toISOString();

/** Every value the admin history and the access export answer for a profile's e-mail address (decrypted). */
async function shown(kernel: Kernel, profileId: string): Promise<unknown[]> {
  const { changes } = await kernel.profiles.traitHistoryPage([profileId], 'email', { decrypt: true });
  const handler = kernel.subjectData.find((h) => h.module === 'profiles');
  assert.ok(handler);
  const section = await handler.export({ profileId, profileIds: [profileId], identifiers: [] });
  const exported = (section.data as { history: { value: unknown; previousValue: unknown }[] }).history;
  return [...changes, ...exported].flatMap((c) => [c.value, c.previousValue]);
}

// The default plan keeps traits.email P3Y after it was last set: the sweep must also clear the value a newer history
// entry replaced once that value is older, even though the entry itself is not.
describeEachDialect('trait retention clears replaced values past their period', (dialect) => {
  const ctx = useKernel(dialect);
  const profile = async () => {
    const { identity, storage } = ctx.kernel;
    const [resolved] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [resolveItem({ user_id: uniqueId('u') }, uniqueId('m'))]));
    return resolved?.profileId as string;
  };
  const setEmail = async (profileId: string, value: string, at: string) => {
    const { profiles, storage } = ctx.kernel;
    await profiles.prepare([profileId]);
    await storage.raw.transaction((tx) =>
      profiles.setTraitsBatch(tx, [{ profileId, traits: [{ key: 'email', value, category: 'user.contact.email', personal: true }], source: 'web', messageId: uniqueId('m'), at }]),
    );
  };
  const previousOf = async (profileId: string) =>
    (await sql<{ previous_value: string | null }>`SELECT previous_value FROM profiles_trait_history WHERE profile_id = ${profileId} AND key = 'email'`.execute(ctx.kernel.storage.db)).rows.map(
      (r) => r.previous_value,
    );
  const sweep = (now: number, dryRun = false) => ctx.kernel.retention.sweep({ now: new Date(now), batchSize: 100, dryRun });
  const cleared = (result: Awaited<ReturnType<typeof sweep>>) =>
    result.counts.filter((c) => c.rule === 'profiles.traits:email' && c.store === 'profiles_trait_history.previous_value').reduce((n, c) => n + c.count, 0);

  it('no longer answers a value last set four years ago that was replaced yesterday, in the history or the export', async () => {
    const now = Date.now();
    const id = await profile();
    await setEmail(id, 'expired.old@quillmail.org', ago(now, 4 * YEAR));
    await setEmail(id, 'current.new@quillmail.org', ago(now, DAY));
    assert.ok((await shown(ctx.kernel, id)).includes('expired.old@quillmail.org'));
    assert.equal(cleared(await sweep(now, true)), 1, 'a dry run counts the value it would clear');
    assert.equal((await previousOf(id)).filter((v) => v !== null).length, 1, 'a dry run clears nothing');
    assert.equal(cleared(await sweep(now)), 1);
    const values = await shown(ctx.kernel, id);
    assert.ok(!values.includes('expired.old@quillmail.org'), JSON.stringify(values));
    assert.ok(values.includes('current.new@quillmail.org'), 'the change of yesterday is still listed');
    assert.deepEqual(await previousOf(id), [null], 'nothing of the expired value is stored');
    assert.equal(cleared(await sweep(now)), 0, 'a second sweep has nothing left to clear');
  });

  it('keeps a replaced value until its period from when it was last set, a re-send included', async () => {
    const now = Date.now();
    const id = await profile();
    await setEmail(id, 'confirmed.old@quillmail.org', ago(now, 4 * YEAR));
    // The same value sent again two years ago: its time moves forward, without a history entry.
    await setEmail(id, 'confirmed.old@quillmail.org', ago(now, 2 * YEAR));
    await sweep(now);
    await setEmail(id, 'current.new@quillmail.org', ago(now, DAY));
    await sweep(now);
    assert.ok((await shown(ctx.kernel, id)).includes('confirmed.old@quillmail.org'), 'last set two years ago: within P3Y');
    // A year and a half later the re-sent value is past P3Y, the change that replaced it is not.
    await sweep(now + 1.5 * YEAR);
    const values = await shown(ctx.kernel, id);
    assert.ok(!values.includes('confirmed.old@quillmail.org'), JSON.stringify(values));
    assert.ok(values.includes('current.new@quillmail.org'));
  });
});

describeEachDialect('history entries stored before migration 0114 get the time of the value they replaced', (dialect) => {
  const now = Date.now();
  const entry = (id: string, profileId: string, changedAt: number, value: string, previous: string | null) =>
    sql`INSERT INTO profiles_trait_history (id, profile_id, key, changed_at, value, encrypted, previous_value, previous_encrypted, category, source, message_id)
      VALUES (${id}, ${profileId}, 'email', ${ago(now, changedAt)}, ${value}, 0, ${previous}, ${previous === null ? null : 0}, 'user.contact.email', 'web', NULL)`;
  const ctx = useUpgradedKernel(dialect, '0114', async (db) => {
    // Replaced yesterday; the entry that set the replaced value four years ago is still there.
    await entry('h-old-1', 'prf_old', 4 * YEAR, '"old.a@quillmail.org"', null).execute(db);
    await entry('h-old-2', 'prf_old', DAY, '"old.b@quillmail.org"', '"old.a@quillmail.org"').execute(db);
    // Replaced yesterday; the entry that set the replaced value was deleted by an earlier sweep (time unknown).
    await entry('h-gone-2', 'prf_gone', DAY, '"gone.b@quillmail.org"', '"gone.a@quillmail.org"').execute(db);
    // Replaced yesterday a value set a year ago.
    await entry('h-recent-1', 'prf_recent', YEAR, '"recent.a@quillmail.org"', null).execute(db);
    await entry('h-recent-2', 'prf_recent', DAY, '"recent.b@quillmail.org"', '"recent.a@quillmail.org"').execute(db);
  });
  const times = async () =>
    Object.fromEntries(
      (await sql<{ id: string; previous_updated_at: string | null }>`SELECT id, previous_updated_at FROM profiles_trait_history ORDER BY id`.execute(ctx.kernel.storage.db)).rows.map((r) => [
        r.id,
        r.previous_updated_at,
      ]),
    );

  it('takes the time of the next older entry, the empty text when none is left, and the sweep clears what expired', async () => {
    assert.deepEqual(await times(), {
      'h-gone-2': '',
      'h-old-1': null,
      'h-old-2': ago(now, 4 * YEAR),
      'h-recent-1': null,
      'h-recent-2': ago(now, YEAR),
    });
    await ctx.kernel.retention.sweep({ now: new Date(now), batchSize: 100 });
    const rows = (await sql<{ id: string; previous_value: string | null }>`SELECT id, previous_value FROM profiles_trait_history ORDER BY id`.execute(ctx.kernel.storage.db)).rows;
    assert.deepEqual(Object.fromEntries(rows.map((r) => [r.id, r.previous_value])), {
      'h-gone-2': null,
      'h-old-2': null,
      'h-recent-1': null,
      'h-recent-2': '"recent.a@quillmail.org"',
    });
  });
});
