import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { Storage } from '../../storage/index.ts';

/** What an attacker with database access would do first: remove the append-only triggers. */
async function dropAppendOnlyTriggers(storage: Storage): Promise<void> {
  if (storage.dialect === 'sqlite') {
    await sql`DROP TRIGGER audit_log_no_update`.execute(storage.db);
    await sql`DROP TRIGGER audit_log_no_delete`.execute(storage.db);
  } else {
    await sql`DROP TRIGGER audit_log_no_update_delete ON audit_log`.execute(storage.db);
  }
}

const event = (n: number) => ({ actor: 'tok', role: 'owner', action: `test.${n}`, purpose: 'essential.service.security', subject: `pseudo${n % 3}` });

describeEachDialect('audit log', (dialect) => {
  const ctx = useKernel(dialect);

  it('chains concurrent appends in order and verifies them', async () => {
    const before = (await ctx.kernel.audit.verify()).entries;
    const entries = await Promise.all(Array.from({ length: 50 }, (_, i) => ctx.kernel.audit.append(event(i))));
    const seqs = entries.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, 50);
    const batch = await ctx.kernel.audit.appendBatch(Array.from({ length: 250 }, (_, i) => event(i)));
    assert.equal(batch.length, 250);
    const result = await ctx.kernel.audit.verify();
    assert.equal(result.ok, true);
    assert.equal(result.entries, before + 300);
  });

  it('filters entries by subject pseudonym and action', async () => {
    const bySubject = await ctx.kernel.audit.list({ subject: 'pseudo1', limit: 1000 });
    assert.ok(bySubject.length > 0 && bySubject.every((e) => e.subject === 'pseudo1'));
    const byAction = await ctx.kernel.audit.list({ action: 'test.7', limit: 1000 });
    assert.ok(byAction.every((e) => e.action === 'test.7'));
  });

  it('refuses updates and deletes at the database', async () => {
    await assert.rejects(sql`UPDATE audit_log SET actor = 'x' WHERE seq = 1`.execute(ctx.kernel.storage.db), /append-only/);
    await assert.rejects(sql`DELETE FROM audit_log WHERE seq = 1`.execute(ctx.kernel.storage.db), /append-only/);
  });

  it('continues the chain from another process that appended meanwhile', async () => {
    const head = (await ctx.kernel.audit.verify()).head;
    // A second writer (another API node or the CLI) takes the next sequence number behind our back.
    const { AuditLog } = await import('../audit/index.ts');
    await new AuditLog(ctx.kernel.storage).append(event(1000));
    const next = await ctx.kernel.audit.append(event(1001));
    assert.equal(next.seq, head.seq + 2);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('names the first edited, removed or reordered row after tampering', async () => {
    const storage = ctx.kernel.storage;
    await dropAppendOnlyTriggers(storage);
    await sql`UPDATE audit_log SET actor = 'intruder' WHERE seq = 7`.execute(storage.db);
    assert.deepEqual((await ctx.kernel.audit.verify()).firstBad, { seq: 7, problem: 'altered' });
    await sql`DELETE FROM audit_log WHERE seq = 7`.execute(storage.db);
    assert.deepEqual((await ctx.kernel.audit.verify()).firstBad, { seq: 7, problem: 'removed' });
    await sql`UPDATE audit_log SET seq = -1 WHERE seq = 4`.execute(storage.db);
    await sql`UPDATE audit_log SET seq = 4 WHERE seq = 5`.execute(storage.db);
    await sql`UPDATE audit_log SET seq = 5 WHERE seq = -1`.execute(storage.db);
    assert.deepEqual((await ctx.kernel.audit.verify()).firstBad, { seq: 4, problem: 'reordered' });
  });
});
