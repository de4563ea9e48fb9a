import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { main } from '../../cli/main.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import type { AuditEntry } from '../audit/index.ts';

const event = (n: number) => ({ actor: 'cli', role: 'owner', action: `test.entry.${n}`, purpose: 'essential.service.security' });

describeEachDialect('backup and restore in the audit log', (dialect) => {
  let env: TestEnvironment;
  let backupFile = '';
  let exportFile = '';
  const candor = async (...args: string[]) => {
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), ...args], (l) => lines.push(l), (l) => lines.push(l));
    return { code, out: lines.join('\n') };
  };
  const withKernel = async <T>(run: (kernel: Kernel) => Promise<T>): Promise<T> => {
    const kernel = await openKernel(env.config);
    try {
      return await run(kernel);
    } finally {
      await kernel.close();
    }
  };
  const only = async (action: string): Promise<AuditEntry> => {
    const entries = await withKernel((kernel) => kernel.audit.list({ action, limit: 10 }));
    assert.equal(entries.length, 1, action);
    return entries[0] as AuditEntry;
  };
  let backupHead = { seq: 0, hash: '' };
  let discardedHead = { seq: 0, hash: '' };

  before(async () => {
    env = await createEnvironment(dialect);
    await withKernel((kernel) => kernel.audit.appendBatch(Array.from({ length: 5 }, (_, i) => event(i))));
    backupFile = join(env.dataDir, '..', `${basename(env.dataDir)}.audit-backup`);
    exportFile = join(env.dataDir, 'kept-export.jsonl');
  });
  after(async () => {
    await env?.cleanup();
  });

  it('records a backup: file name only, size, SHA-256 and the audit head the backup holds', async () => {
    backupHead = await withKernel(async (kernel) => (await kernel.audit.verify()).head);
    const backup = await candor('backup', backupFile);
    assert.equal(backup.code, 0, backup.out);
    assert.match(backup.out, new RegExp(`audit head in the backup: ${backupHead.seq}:${backupHead.hash}`));
    const entry = await only('retention.backup');
    assert.equal(entry.seq, backupHead.seq + 1, 'written after the copy, so not in it');
    assert.equal(entry.actor, 'cli');
    assert.equal(entry.outcome, 'success');
    assert.equal(entry.resource, `backup:${basename(backupFile)}`);
    assert.ok(!String(entry.resource).includes('/') && !String(entry.details).includes(env.dataDir), 'no directory');
    assert.deepEqual(JSON.parse(entry.details as string), {
      dialect,
      bytes: statSync(backupFile).size,
      sha256: createHash('sha256').update(readFileSync(backupFile)).digest('hex'),
      auditHead: `${backupHead.seq}:${backupHead.hash}`,
    });
  });

  it('records a restore with the head it discarded, the restored head and the backup time; the rollback is on record', { timeout: 60_000 }, async () => {
    // Entries written after the backup, then an export kept aside, as an operator would.
    await withKernel((kernel) => kernel.audit.appendBatch(Array.from({ length: 7 }, (_, i) => event(100 + i))));
    assert.equal((await candor('audit', 'export', '--out', exportFile)).code, 0);
    const verified = await candor('audit', 'verify');
    discardedHead = { seq: Number(/head (\d+):/.exec(verified.out)?.[1]), hash: /head \d+:([0-9a-f]{64})/.exec(verified.out)?.[1] as string };
    assert.ok(discardedHead.seq > backupHead.seq + 7);

    const restore = await candor('restore', backupFile);
    assert.equal(restore.code, 0, restore.out);
    assert.match(restore.out, new RegExp(`audit log rolled back from ${discardedHead.seq}:${discardedHead.hash} .* to ${backupHead.seq}:${backupHead.hash}`));

    const entry = await only('retention.restore');
    assert.equal(entry.seq, backupHead.seq + 1, 'right after the restored head');
    assert.equal(entry.prevHash, backupHead.hash);
    assert.equal(entry.resource, `backup:${basename(backupFile)}`);
    const details = JSON.parse(entry.details as string) as Record<string, unknown>;
    assert.equal(details.discardedHead, `${discardedHead.seq}:${discardedHead.hash}`);
    assert.equal(details.restoredHead, `${backupHead.seq}:${backupHead.hash}`);
    assert.equal(details.sha256, createHash('sha256').update(readFileSync(backupFile)).digest('hex'));
    assert.ok(typeof details.backupTakenAt === 'string' && !Number.isNaN(Date.parse(details.backupTakenAt)));
    assert.ok(typeof details.discardedHeadAt === 'string' && typeof details.restoredHeadAt === 'string');
    // The backup's own entry was written after the copy: the restore took it away with the rest.
    assert.equal((await withKernel((kernel) => kernel.audit.list({ action: 'retention.backup', limit: 10 }))).length, 0);

    // The restored log is intact as a chain, the recorded head is not reached any more, and the export kept earlier
    // proves what the discarded head covered.
    assert.equal((await candor('audit', 'verify')).code, 0);
    assert.equal((await candor('audit', 'verify', '--expect-head', details.discardedHead as string)).code, 3);
    // (`audit export` appends its own entry after the file: the discarded head is that entry, one past the file.)
    const kept = await candor('audit', 'verify', '--file', exportFile);
    assert.equal(kept.code, 0, kept.out);
    assert.match(kept.out, new RegExp(`head ${discardedHead.seq - 1}:`));
    const exportEntry = JSON.parse(readFileSync(exportFile, 'utf8').trim().split('\n').at(-1) as string) as AuditEntry;
    assert.equal(exportEntry.seq, discardedHead.seq - 1);
  });
});
