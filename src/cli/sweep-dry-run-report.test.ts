import assert from 'node:assert/strict';
import { it } from 'node:test';
import { useCli } from '../../test/support/cli.ts';
import { describeEachDialect } from '../../test/support/databases.ts';
import { months } from '../../test/support/months.ts';
import { openKernel } from '../kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';

/** The rows the header line of `candor retention sweep` announces. */
const announced = (out: string) => Number(/(?:would delete or reduce|deleted or reduced) (\d+) rows/.exec(out)?.[1]);

/** The rows the real run's table lists under the inactivity rule (the people aside). */
const inactivityRows = (out: string) =>
  out
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([rule, store]) => rule === 'profiles.inactive' && store !== 'people')
    .reduce((n, columns) => n + Number(columns.at(-1)), 0);

// A dry run counts the people the inactivity rule would delete, not their rows (other rules of the same sweep delete
// some of those first, which a dry run cannot tell): its line says so, and it announces the real run's rows less those.
describeEachDialect('retention sweep --dry-run against the real sweep (inactivity)', (dialect) => {
  const cli = useCli(dialect);

  it('says that it counts the inactive people only, and announces the real run\'s rows less theirs', async () => {
    assert.equal((await cli.candor('migrate')).code, 0);
    const k = await openKernel(cli.env.config);
    try {
      const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-dry' }], source: 'web', at: new Date().toISOString() }]));
      await k.consent.record(r?.profileId as string, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
      const [s] = await k.collect.ingest([{ raw: { type: 'identify', userId: 'u-dry', messageId: 'dry-1', traits: { email: 'dry@candor-shop.dev' } }, bytes: 100 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      assert.equal(s?.status, 'stored');
    } finally {
      await k.close();
    }
    // 25 months on the raw event has expired and the person is inactive.
    const now = months(new Date(), 25).toISOString();
    const dry = await cli.candor('retention', 'sweep', '--dry-run', '--now', now);
    const real = await cli.candor('retention', 'sweep', '--now', now);
    assert.equal(dry.code, 0, dry.err);
    assert.equal(real.code, 0, real.err);
    const header = dry.out.split('\n')[0] ?? '';
    assert.match(header, /and 1 inactive people \(their rows not counted: a dry run counts only the people/);
    assert.ok(inactivityRows(real.out) > 0, real.out);
    assert.equal(announced(dry.out), announced(real.out) - inactivityRows(real.out), `${dry.out}\n${real.out}`);
  });
});
