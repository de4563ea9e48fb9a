import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'node:test';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';

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
  });
});
