import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { useCli } from '../../test/support/cli.ts';
import { describeEachDialect } from '../../test/support/databases.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'candor.js');

describeEachDialect('candor retention sweep --now', (dialect) => {
  const cli = useCli(dialect);

  it('reads --now as ISO 8601, a time without a zone as UTC, whatever time zone the process runs in', async () => {
    // Its own process: the time zone is the process's (TZ), and Asia/Kolkata is UTC+05:30.
    const global = ['--data-dir', cli.env.dataDir, ...(cli.env.databaseUrl ? ['--database-url', cli.env.databaseUrl] : [])];
    assert.equal((await cli.candor('migrate')).code, 0);
    const env = { PATH: process.env.PATH ?? '', NODE_ENV: 'development', TZ: 'Asia/Kolkata' };
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, ...global, 'retention', 'sweep', '--dry-run', '--now', '2027-01-04T10:00:00'], { env });
    assert.match(stdout, /^retention sweep at 2027-01-04T10:00:00\.000Z \(dry run/);
  });

  it('takes a zone or a date alone in --now', async () => {
    for (const [now, at] of [['2027-01-04T10:00:00+05:30', '2027-01-04T04:30:00.000Z'], ['2027-01-04', '2027-01-04T00:00:00.000Z'], ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z']] as const) {
      const run = await cli.candor('retention', 'sweep', '--dry-run', '--now', now);
      assert.equal(run.code, 0, run.err);
      assert.ok(run.out.startsWith(`retention sweep at ${at} (dry run`), `${now}: ${run.out}`);
    }
  });

  it('refuses a --now that is not ISO 8601, is no calendar date or lies outside years 1 to 9999 with a usage error', async () => {
    for (const now of ['May 5 2027', 'Mon, 04 Jan 2027 10:00:00 GMT', '2027-02-30', '2027-01-04T25:00:00Z', '-000001-01-01T00:00:00Z', '+010000-01-01T00:00:00Z', '1798970400000']) {
      const run = await cli.candor('retention', 'sweep', '--dry-run', '--now', now);
      assert.equal(run.code, 2, `${now}: ${run.out}`);
      assert.match(run.err, /--now takes an ISO 8601 date-time between 0001-01-01 and 9999-12-31/, now);
      assert.equal(run.out, '', now);
    }
  });
});
