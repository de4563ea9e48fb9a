import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { useCli } from '../../test/support/cli.ts';
import { describeEachDialect } from '../../test/support/databases.ts';
import { mountSmallDisk, type SmallDisk } from '../../test/support/full-disk.ts';

describeEachDialect('candor import with its report on a full disk', (dialect) => {
  const cli = useCli(dialect);
  let disk: SmallDisk | null = null;

  before(() => {
    disk = mountSmallDisk(256);
  });
  after(() => disk?.unmount());

  /** A customer list of `rows` rows whose e-mail addresses are all invalid: each is a line of the report. */
  function invalidCustomers(name: string, rows: number): string {
    const file = join(cli.env.dataDir, name);
    writeFileSync(file, ['user_id,email', ...Array.from({ length: rows }, (_, i) => `full-${i},not-an-email`)].join('\n') + '\n');
    return file;
  }

  it('leaves no empty report when not even its header can be written, and fails coded', async (t) => {
    if (!disk) return t.skip('needs a small tmpfs of its own: root and mount');
    const file = invalidCustomers('none.csv', 3);
    const report = join(disk.dir, 'none.report.csv');
    disk.fill(0);
    try {
      const result = await cli.candor('import', 'customers', file, '--source', 'crm', '--basis', 'contract', '--report', report);
      assert.equal(result.code, 1);
      assert.match(result.err, /IMPORT_REPORT_WRITE_FAILED/);
      assert.equal(existsSync(report), false, 'no empty report is left');
    } finally {
      disk.free();
    }
  });

  it('stops coded when the report fills the disk, and keeps whole lines only in an owner-only report', async (t) => {
    if (!disk) return t.skip('needs a small tmpfs of its own: root and mount');
    // About 9 KB of report lines, written 50 rows at a time, on one free 4 KB page: a write is cut short part-way.
    const file = invalidCustomers('many.csv', 200);
    const report = join(disk.dir, 'many.report.csv');
    disk.fill(1);
    try {
      const result = await cli.candor('import', 'customers', file, '--source', 'crm', '--basis', 'contract', '--report', report, '--batch-size', '50');
      assert.equal(result.code, 1);
      assert.match(result.err, /IMPORT_REPORT_WRITE_FAILED/);
      assert.equal(statSync(report).mode & 0o777, 0o600);
      const text = readFileSync(report, 'utf8');
      assert.ok(text.endsWith('\n'), 'the report ends with a whole line');
      const lines = text.trimEnd().split('\n');
      assert.equal(lines[0], 'row,status,code,detail');
      assert.ok(lines.length > 1 && lines.length < 201);
      for (const [i, line] of lines.slice(1).entries()) assert.equal(line, `${i + 2},invalid,CATALOG_EVENT_INVALID,traits.email: format`);
    } finally {
      disk.free();
    }
  });
});
