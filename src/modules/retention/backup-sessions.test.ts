import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { it } from 'node:test';
import { useCli } from '../../../test/support/cli.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { backupDatabase } from './index.ts';

// A privacy-center session ended after the backup was taken (the customer signed out, an unmerge ended it) is active
// in the backup: restoring it must not let that session work again. Every session the restored database holds is
// ended (each was issued before the backup; customers sign in again).
describeEachDialect('a restore and privacy-center sessions', (dialect) => {
  const cli = useCli(dialect);

  it('ends every session the restored database holds, the one signed out after the backup included', { timeout: 60_000 }, async () => {
    const backupFile = cli.env.beside('sessions.backup');
    const tokens: Record<'signedOut' | 'active', string> = { signedOut: '', active: '' };
    const kernel = await openKernel(cli.env.config);
    try {
      await kernel.access.createToken('owner', 'owner', CLI_ACTOR);
      const named = (value: string) => ({ identifiers: [{ type: 'user_id', value }], source: 'web', at: new Date().toISOString() });
      for (const key of ['signedOut', 'active'] as const) {
        const profileId = (await kernel.identity.resolveSubject(named(`customer-${key}`))).profileId as string;
        tokens[key] = (await kernel.subjectSessions.issue(profileId, kernel.consent.pseudonym(profileId), { ttlSeconds: 3600, via: 'test' }, CLI_ACTOR)).token;
      }
      await backupDatabase(cli.env.config, backupFile, CLI_ACTOR);
      const signedOut = await kernel.subjectSessions.authenticate(tokens.signedOut);
      await kernel.subjectSessions.revoke(signedOut.sessionId);
    } finally {
      await kernel.close();
    }
    const { code, out, err } = await cli.candor('restore', backupFile);
    const output = `${out}\n${err}`;
    assert.equal(code, 0, output);
    assert.match(output, /privacy-center sessions ended \(issued before the backup; customers sign in again\): 2/);
    const reopened = await openKernel(cli.env.config);
    try {
      for (const token of Object.values(tokens)) {
        await assert.rejects(reopened.subjectSessions.authenticate(token), (error) => isCandorError(error) && error.code === 'AUTH_SUBJECT_SESSION_INVALID');
      }
      const entries = await reopened.audit.list({ action: 'access.subject_session.revoke', limit: 10 });
      assert.equal(entries.length, 1);
      assert.deepEqual(JSON.parse(entries[0]?.details ?? '{}'), { sessions: 2, restoredFrom: basename(backupFile) });
      assert.equal(entries[0]?.actor, 'system');
      // Applied once: a session issued after the restore works, also after the next start.
      const profileId = (await reopened.identity.resolveSubject({ identifiers: [{ type: 'user_id', value: 'customer-active' }], source: 'web', at: new Date().toISOString() })).profileId as string;
      tokens.active = (await reopened.subjectSessions.issue(profileId, reopened.consent.pseudonym(profileId), { ttlSeconds: 3600, via: 'test' }, CLI_ACTOR)).token;
    } finally {
      await reopened.close();
    }
    const again = await openKernel(cli.env.config);
    try {
      assert.equal(again.restoreCarried, null);
      assert.ok(await again.subjectSessions.authenticate(tokens.active));
    } finally {
      await again.close();
    }
  });
});
