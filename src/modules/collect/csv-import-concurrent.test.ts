import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';

// An import records consent "for each person who has no record yet": two imports of overlapping lists at once (two
// shells, or a shell and a cron job) must record it once per person, not once per import. Each import runs in its own
// process, as the CLI does (two SQLite kernels in one process would wait on each other's synchronous lock waits).
const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'candor.js');
describeEachDialect('CSV imports at once', (dialect) => {
  const ctx = useKernel(dialect);

  it('record the consent of a person both name once, with one receipt', { timeout: 120_000 }, async () => {
    const people = Array.from({ length: 200 }, (_, i) => `ci-${i}`);
    const text = ['user_id,email', ...people.map((id) => `${id},${id}@candor-shop.dev`)].join('\n');
    const file = join(ctx.env.dataDir, 'both.csv');
    writeFileSync(file, text);
    const global = ['--data-dir', ctx.env.dataDir, ...(ctx.env.databaseUrl ? ['--database-url', ctx.env.databaseUrl] : [])];
    const args = [BIN, ...global, 'import', 'customers', file, '--source', 'files', '--basis', 'consent', '--purposes', 'analytics.reporting,personalize.profiling', '--as-of', '2026-01-01T00:00:00Z'];
    const run = () => promisify(execFile)(process.execPath, args, { env: { ...process.env, CANDOR_LOG_LEVEL: 'silent' } });
    const runs = await Promise.all([run(), run()]);
    const recorded = runs.map((r) => Number(/consent recorded for (\d+) people/.exec(r.stderr)?.[1] ?? 0));
    assert.equal((recorded[0] ?? 0) + (recorded[1] ?? 0), people.length, runs.map((r) => r.stderr).join('\n'));
    for (const id of people) {
      const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: id }], source: 'files', at: new Date().toISOString() }]);
      assert.ok(profileId, id);
      const history = await ctx.kernel.consent.history(profileId);
      const given = history.filter((e) => e.mechanism === 'import');
      assert.deepEqual(given.map((e) => e.purpose).sort(), ['analytics.reporting', 'personalize.profiling'], `${id}: ${JSON.stringify(given)}`);
      assert.equal(new Set(given.map((e) => e.receiptId)).size, 1, `${id}: one receipt`);
    }
  });
});
