import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useCli } from '../../test/support/cli.ts';
import { openKernel } from '../kernel.ts';
import { entryHash, type AuditEntry } from '../modules/audit/index.ts';

const event = (n: number) => ({ actor: 'cli', role: 'owner', action: `test.entry.${n}`, purpose: 'essential.service.security' });

describeEachDialect('candor audit verify', (dialect) => {
  const cli = useCli(dialect);
  const { candor } = cli;
  let exportFile = '';
  let lines: string[] = [];
  const entryAt = (line: number) => JSON.parse(lines[line - 1] as string) as AuditEntry;

  it('exports a log of 40 entries or more', async () => {
    const kernel = await openKernel(cli.env.config);
    try {
      await kernel.audit.appendBatch(Array.from({ length: 40 }, (_, i) => event(i)));
    } finally {
      await kernel.close();
    }
    exportFile = join(cli.env.dataDir, 'audit.jsonl');
    const exported = await candor('audit', 'export', '--out', exportFile);
    assert.equal(exported.code, 0, exported.err);
    lines = readFileSync(exportFile, 'utf8').trim().split('\n');
    assert.ok(lines.length >= 40);
    assert.equal((await candor('audit', 'verify', '--file', exportFile)).code, 0);
  });

  it('answers an export that does not exist or is a directory with a coded error, not an internal one', async () => {
    for (const path of [join(cli.env.dataDir, 'missing.jsonl'), cli.env.dataDir]) {
      const result = await candor('audit', 'verify', '--file', path);
      assert.equal(result.code, 1, result.err);
      assert.match(result.err, /AUDIT_EXPORT_UNREADABLE/);
    }
  });

  it('names the line of an export whose last line was cut off, and exits 3', async () => {
    const damaged = join(cli.env.dataDir, 'cut.jsonl');
    const last = lines.at(-1) as string;
    writeFileSync(damaged, [...lines.slice(0, -1), last.slice(0, last.length - 20)].join('\n'));
    const result = await candor('audit', 'verify', '--file', damaged);
    assert.equal(result.code, 3, result.err);
    const beforeLast = entryAt(lines.length - 2);
    assert.equal(result.out, `audit log BROKEN at line ${lines.length} of ${damaged}: cut off (last good entry ${beforeLast.seq}:${beforeLast.hash})`);
    assert.equal(result.err, '');
  });

  it('names a line in the middle that is not JSON, and exits 3 (also with an expected head)', async () => {
    const damaged = join(cli.env.dataDir, 'garbage.jsonl');
    writeFileSync(damaged, [...lines.slice(0, 9), 'this is not an audit entry', ...lines.slice(10)].join('\n') + '\n');
    const last = entryAt(lines.length);
    for (const extra of [[], ['--expect-head', `${last.seq}:${last.hash}`]]) {
      const result = await candor('audit', 'verify', '--file', damaged, ...extra);
      assert.equal(result.code, 3, result.err);
      assert.equal(result.out, `audit log BROKEN at line 10 of ${damaged}: not JSON (last good entry 8:${entryAt(8).hash})`);
    }
  });

  it('names a line that is JSON but no audit entry', async () => {
    const damaged = join(cli.env.dataDir, 'other.jsonl');
    writeFileSync(damaged, [...lines.slice(0, 4), '{"seq": 5}', ...lines.slice(5)].join('\n'));
    const result = await candor('audit', 'verify', '--file', damaged);
    assert.equal(result.code, 3, result.err);
    assert.match(result.out, /^audit log BROKEN at line 5 of .*: not an audit entry \(last good entry 3:/);
  });

  it('reports a break before the damaged line first', async () => {
    const damaged = join(cli.env.dataDir, 'both.jsonl');
    const third = { ...entryAt(3), actor: 'intruder' };
    writeFileSync(damaged, [...lines.slice(0, 2), JSON.stringify(third), ...lines.slice(3, 20), '{"seq": 21, "at": "20'].join('\n'));
    const result = await candor('audit', 'verify', '--file', damaged);
    assert.equal(result.code, 3);
    assert.equal(result.out, `audit log BROKEN at entry 3: altered (last good entry 2:${entryAt(2).hash})`);
  });

  it('does not call an entry altered with a recomputed hash the last good one, in the database or its export', async () => {
    const kernel = await openKernel(cli.env.config);
    try {
      const original = entryAt(30);
      const forged = { ...original, actor: 'forger' };
      const hash = entryHash(forged);
      // PostgreSQL: a superuser can switch the append-only triggers off for one transaction without dropping them.
      if (dialect === 'postgres') {
        await kernel.storage.db.transaction().execute(async (tx) => {
          await sql`SET LOCAL session_replication_role = replica`.execute(tx);
          await sql`UPDATE audit_log SET actor = 'forger', hash = ${hash} WHERE seq = 30`.execute(tx);
        });
      } else {
        await sql`DROP TRIGGER audit_log_no_update`.execute(kernel.storage.db);
        await sql`UPDATE audit_log SET actor = 'forger', hash = ${hash} WHERE seq = 30`.execute(kernel.storage.db);
      }
    } finally {
      await kernel.close();
    }
    const expected = `audit log BROKEN at entry 30: altered (last good entry 29:${entryAt(29).hash})`;
    const fromDatabase = await candor('audit', 'verify');
    assert.equal(fromDatabase.code, 3);
    assert.equal(fromDatabase.out, expected);
    const forgedExport = join(cli.env.dataDir, 'forged.jsonl');
    assert.equal((await candor('audit', 'export', '--out', forgedExport)).code, 0);
    const offline = await candor('audit', 'verify', '--file', forgedExport);
    assert.equal(offline.code, 3);
    assert.equal(offline.out, expected);
  });
});
