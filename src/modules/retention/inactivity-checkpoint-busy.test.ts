import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { describeSweep } from '../../cli/retention.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';

// SQLite cannot truncate its write-ahead log while another connection holds a read transaction (a `candor` command
// beside the server, Litestream, a sqlite3 shell: docs/rights.md, "A reader holds up the truncation"). A sweep that
// deleted people meanwhile reports what it deleted and leaves the truncation owed, for the next sweep or start.
describeEachDialect('an inactivity sweep while another connection reads', (dialect) => {
  const ctx = useKernel(dialect);
  const sqliteOnly = { skip: dialect !== 'sqlite' && 'a SQLite file matter' };

  /** A person last active 30 months ago whose plain trait `city` (kept P3Y: only the inactivity rule deletes it) is `city`. */
  const inactivePerson = async (k: Kernel, userId: string, city: string) => {
    mock.timers.enable({ apis: ['Date'], now: months(new Date(), -30).getTime() });
    try {
      const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
      await k.consent.record(r?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
      const [s] = await k.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-1`, traits: { city } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      assert.equal(s?.status, 'stored', JSON.stringify(s));
      return r?.profileId as string;
    } finally {
      mock.timers.reset();
    }
  };

  /** Sweeps while another connection holds a read transaction. */
  const sweepBesideAReader = async (k: Kernel) => {
    const reader = new DatabaseSync(join(ctx.env.dataDir, 'candor.db'));
    try {
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM audit_log').get();
      return await k.retention.sweep({});
    } finally {
      reader.exec('COMMIT');
      reader.close();
    }
  };

  const walHolds = (value: string) => {
    const wal = join(ctx.env.dataDir, 'candor.db-wal');
    return existsSync(wal) && readFileSync(wal).includes(value);
  };
  const owed = async (k: Kernel) => (await sql<{ state: string }>`SELECT state FROM retention_owed`.execute(k.storage.db)).rows.map((r) => r.state);

  it('reports what it deleted, and the next sweep truncates the log', sqliteOnly, async () => {
    const k = ctx.kernel;
    const profileId = await inactivePerson(k, 'u-wal-sweep', 'PLAINVALUE-4711-Town');
    const report = await sweepBesideAReader(k);
    assert.ok(report.counts.some((c) => c.rule === 'profiles.inactive' && c.store === 'people' && c.count === 1), JSON.stringify(report.counts));
    assert.ok(report.counts.some((c) => c.rule === 'profiles.inactive' && c.store === 'profiles_traits' && c.count === 1), JSON.stringify(report.counts));
    assert.equal(report.walHeld, true);
    assert.ok(describeSweep(report).some((line) => line.includes('the write-ahead log still holds')), describeSweep(report).join('\n'));
    assert.equal(await k.identity.canonical(profileId), null);
    const finished = (await k.audit.list({ action: 'retention.sweep', limit: 1000 })).at(-1);
    assert.equal(JSON.parse(finished?.details ?? 'null').phase, 'finished', 'the evidence was written before');
    assert.equal(walHolds('PLAINVALUE-4711-Town'), true, 'held by the reader');
    assert.deepEqual(await owed(k), ['truncation_pending']);

    // The reader is gone: the next sweep deletes no one and truncates the log all the same.
    const next = await k.retention.sweep({});
    assert.equal(next.walHeld, false);
    assert.equal(walHolds('PLAINVALUE-4711-Town'), false);
    assert.deepEqual(await owed(k), []);
  });

  it('leaves the truncation to the next start', sqliteOnly, async () => {
    const k = ctx.kernel;
    await inactivePerson(k, 'u-wal-start', 'PLAINVALUE-0815-Ville');
    assert.equal((await sweepBesideAReader(k)).walHeld, true);
    assert.equal(walHolds('PLAINVALUE-0815-Ville'), true);

    const again = await openKernel(ctx.env.config);
    await again.close();
    assert.equal(walHolds('PLAINVALUE-0815-Ville'), false);
    assert.deepEqual(await owed(k), []);
  });

  it('owes no truncation on PostgreSQL, whose dumps are logical', { skip: dialect !== 'postgres' && 'a PostgreSQL matter' }, async () => {
    const k = ctx.kernel;
    await inactivePerson(k, 'u-wal-pg', 'PLAINVALUE-4242-Stadt');
    const report = await k.retention.sweep({});
    assert.ok(report.counts.some((c) => c.rule === 'profiles.inactive' && c.store === 'people' && c.count === 1), JSON.stringify(report.counts));
    assert.equal(report.walHeld, false);
    assert.deepEqual(await owed(k), []);
  });
});
