import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';
import { isCandorError } from '../../shared/errors.ts';

const secret = (id: string) => `${id.padEnd(43, 'x')}`;
const token = (id: string) => `css_${id}_${secret(id)}`;
const digest = (id: string) => createHash('sha256').update(secret(id)).digest('hex');

describeEachDialect('subject sessions a write key obtained before the upgrade (migration 0108)', (dialect) => {
  const inAnHour = new Date(Date.now() + 3_000_000).toISOString();
  const created = new Date(Date.now() - 600_000).toISOString();
  const expired = new Date(Date.now() - 60_000).toISOString();
  const revokedBefore = new Date(Date.now() - 120_000).toISOString();
  // Sessions as the release before 99fac95 issued them: to a write key (via write_key:SOURCE), or by verification.
  const ctx = useUpgradedKernel(dialect, '0108', async (db) => {
    const rows: [string, string, string, string | null][] = [
      ['a000000000000001', 'write_key:web', inAnHour, null],
      ['a000000000000002', 'write_key:web', expired, null],
      ['a000000000000003', 'write_key:app', inAnHour, revokedBefore],
      ['a000000000000004', 'token:0123456789abcdef', inAnHour, null],
      ['a000000000000005', 'rights_verification', inAnHour, null],
    ];
    for (const [id, via, expiresAt, revokedAt] of rows) {
      await sql`INSERT INTO access_subject_sessions (id, digest, profile_id, issued_by, via, created_at, expires_at, revoked_at)
        VALUES (${id}, ${digest(id)}, 'prf_someone', 'issuer', ${via}, ${created}, ${expiresAt}, ${revokedAt})`.execute(db);
    }
  });

  it('revokes the unexpired sessions a write key obtained, and no other', async () => {
    assert.ok(ctx.kernel.migrationsApplied.includes('0108_access_subject_sessions_revoke_write_key'));
    await assert.rejects(ctx.kernel.subjectSessions.authenticate(token('a000000000000001')), (e) => isCandorError(e, 'AUTH_SUBJECT_SESSION_INVALID'));
    assert.equal((await ctx.kernel.subjectSessions.authenticate(token('a000000000000004'))).profileId, 'prf_someone');
    assert.equal((await ctx.kernel.subjectSessions.authenticate(token('a000000000000005'))).profileId, 'prf_someone');
    const rows = (await sql<{ id: string; revoked_at: string | null }>`SELECT id, revoked_at FROM access_subject_sessions ORDER BY id`.execute(ctx.kernel.storage.db)).rows;
    const revoked = Object.fromEntries(rows.map((r) => [r.id, r.revoked_at]));
    assert.ok(revoked.a000000000000001 !== null);
    // An expired session stays as it ended, and one revoked before keeps the time it was revoked.
    assert.equal(revoked.a000000000000002, null);
    assert.equal(revoked.a000000000000003, revokedBefore);
    assert.equal(revoked.a000000000000004, null);
    assert.equal(revoked.a000000000000005, null);
  });
});
