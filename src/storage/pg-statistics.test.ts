import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { coalesced } from './storage.ts';

describeEachDialect('planner statistics', (dialect) => {
  const ctx = useKernel(dialect);

  it('PostgreSQL: analyzes a table never analyzed once it holds rows, and leaves it until it changes again', { skip: dialect !== 'postgres' && 'SQLite plans need no statistics here' }, async () => {
    const { storage } = ctx.kernel;
    await storage.raw.run('CREATE TABLE stats_probe (id integer PRIMARY KEY, v text)');
    await storage.raw.run("INSERT INTO stats_probe SELECT g, 'x' FROM generate_series(1, 500) AS g");
    // The server's activity counters reach pg_stat_user_tables within a second or so of the commit.
    let refreshed: string[] = [];
    for (let i = 0; i < 50 && !refreshed.includes('stats_probe'); i++) {
      refreshed = [...refreshed, ...(await storage.refreshStatistics())];
      if (!refreshed.includes('stats_probe')) await sleep(100);
    }
    assert.ok(refreshed.includes('stats_probe'), JSON.stringify(refreshed));
    const [row] = await storage.raw.all<{ analyzed: boolean; tuples: number }>("SELECT last_analyze IS NOT NULL AS analyzed, (SELECT reltuples FROM pg_class WHERE relname = 'stats_probe') AS tuples FROM pg_stat_user_tables WHERE relname = 'stats_probe'");
    assert.deepEqual([row?.analyzed, Number(row?.tuples)], [true, 500]);
    await sleep(1200);
    assert.ok(!(await storage.refreshStatistics()).includes('stats_probe'), 'nothing changed since');
  });

  it('SQLite: nothing to do', { skip: dialect !== 'sqlite' && 'a SQLite matter' }, async () => {
    assert.deepEqual(await ctx.kernel.storage.refreshStatistics(), []);
    assert.deepEqual(await ctx.kernel.storage.renewStatistics(['collect_events']), [], 'no sqlite_stat4 table');
  });

  it('PostgreSQL: renews the statistics of the tables named, from the rows left, and skips names that are no table', { skip: dialect !== 'postgres' && 'SQLite: erasure-statistics.test.ts' }, async () => {
    const { storage } = ctx.kernel;
    await storage.raw.run('CREATE TABLE stats_renewed (id integer PRIMARY KEY, v text)');
    await storage.raw.run("INSERT INTO stats_renewed SELECT g, 'gone-' || g FROM generate_series(1, 50) AS g");
    await storage.raw.run('ANALYZE stats_renewed');
    await storage.raw.run("DELETE FROM stats_renewed WHERE v LIKE 'gone-%'");
    await storage.raw.run("INSERT INTO stats_renewed SELECT g, 'kept-' || g FROM generate_series(51, 60) AS g");
    const values = async () => (await storage.raw.all<{ v: string }>("SELECT histogram_bounds::text AS v FROM pg_stats WHERE tablename = 'stats_renewed' AND attname = 'v'"))[0]?.v ?? '';
    assert.match(await values(), /gone-/);
    assert.deepEqual(await storage.renewStatistics(['stats_renewed', 'people', 'profiles_traits, profiles_trait_history', 'stats_renewed']), ['stats_renewed']);
    assert.doesNotMatch(await values(), /gone-/);
    assert.match(await values(), /kept-/);
  });
});

describe('coalesced runs', () => {
  it('gives each call a run that starts after it, shared by the calls made while it waits to start', async () => {
    const started: string[] = [];
    let finish: (() => void)[] = [];
    const run = coalesced(async (key) => {
      started.push(key);
      await new Promise<void>((resolve) => finish.push(resolve));
    });
    const first = run('t');
    await sleep(5);
    assert.deepEqual(started, ['t'], 'the first call runs at once');
    // Made while the first run is in progress: it may have read before them, so they get the next one, together.
    const second = [run('t'), run('t'), run('t')];
    const other = run('u');
    await sleep(5);
    assert.deepEqual(started, ['t', 'u'], 'another key does not wait');
    const ends = finish;
    finish = [];
    for (const end of ends) end();
    await first;
    await sleep(5);
    assert.deepEqual(started, ['t', 'u', 't'], 'one more run for the three calls made meanwhile');
    for (const end of finish) end();
    await Promise.all([...second, other]);
    assert.equal(started.length, 3);
  });

  it('hands a failed run\'s error to its callers and runs again for the next call', async () => {
    let fail = true;
    const run = coalesced(async () => {
      if (fail) throw new Error('lock timeout');
    });
    await assert.rejects(run('t'), /lock timeout/);
    fail = false;
    await run('t');
  });
});
