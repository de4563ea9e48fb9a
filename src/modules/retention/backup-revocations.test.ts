import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { before, it } from 'node:test';
import { useCli } from '../../../test/support/cli.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { MIGRATIONS, openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { backupDatabase, RESTORE_PENDING_FILE, restoreDatabase } from './index.ts';

describeEachDialect('a restore stopped after its swap', (dialect) => {
  const cli = useCli(dialect);

  it('loses nothing it carries over: the next open applies it, also after the command is run again', { timeout: 60_000 }, async () => {
    const backupFile = cli.env.beside('stopped.backup');
    let leaked = '';
    const kernel = await openKernel(cli.env.config);
    try {
      await kernel.access.createToken('owner', 'owner', CLI_ACTOR);
      leaked = (await kernel.access.createWriteKey('web', 'leaked after the backup', CLI_ACTOR)).id;
      await backupDatabase(cli.env.config, backupFile, CLI_ACTOR);
      await kernel.access.revoke(leaked, CLI_ACTOR);
    } finally {
      await kernel.close();
    }
    // The database is swapped, then the command stops before its kernel opens (Ctrl-C, a crash).
    await restoreDatabase(cli.env.config, backupFile, CLI_ACTOR, MIGRATIONS);
    assert.ok(existsSync(join(cli.env.dataDir, RESTORE_PENDING_FILE)));
    assert.equal(statSync(join(cli.env.dataDir, RESTORE_PENDING_FILE)).mode & 0o777, 0o600);
    // The command is run again: the replaced database is now the backup itself, with the key active.
    const { code, out, err } = await cli.candor('restore', backupFile);
    const output = `${out}\n${err}`;
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`credentials revoked again \\(revoked in the replaced database, active in the backup\\): 1 \\(${leaked}\\)`));
    assert.ok(!existsSync(join(cli.env.dataDir, RESTORE_PENDING_FILE)), 'applied, then removed');
    const reopened = await openKernel(cli.env.config);
    try {
      assert.equal(reopened.restoreCarried, null);
      assert.notEqual((await reopened.access.list()).find((c) => c.id === leaked)?.revokedAt, null, 'the leaked key stays revoked');
    } finally {
      await reopened.close();
    }
  });
});

describeEachDialect('a restore and the credentials revoked since the backup', (dialect) => {
  const cli = useCli(dialect);
  let backupFile = '';
  const ids: Record<'leaked' | 'revokedBefore' | 'createdAfter' | 'firstOwner' | 'secondOwner' | 'kept', string> = { leaked: '', revokedBefore: '', createdAfter: '', firstOwner: '', secondOwner: '', kept: '' };

  before(async () => {
    const kernel = await openKernel(cli.env.config);
    try {
      ids.firstOwner = (await kernel.access.createToken('owner', 'the only owner at backup time', CLI_ACTOR)).id;
      ids.leaked = (await kernel.access.createWriteKey('web', 'leaked after the backup', CLI_ACTOR)).id;
      ids.revokedBefore = (await kernel.access.createWriteKey('app', 'revoked before the backup', CLI_ACTOR)).id;
      ids.kept = (await kernel.access.createWriteKey('pos', 'never revoked', CLI_ACTOR)).id;
      await kernel.access.revoke(ids.revokedBefore, CLI_ACTOR);
      backupFile = cli.env.beside('revocations.backup');
      await backupDatabase(cli.env.config, backupFile, CLI_ACTOR);
      await kernel.access.revoke(ids.leaked, CLI_ACTOR);
      ids.createdAfter = (await kernel.access.createWriteKey('web', 'created and revoked after the backup', CLI_ACTOR)).id;
      await kernel.access.revoke(ids.createdAfter, CLI_ACTOR);
      ids.secondOwner = (await kernel.access.createToken('owner', 'created after the backup', CLI_ACTOR)).id;
      await kernel.access.revoke(ids.firstOwner, CLI_ACTOR);
    } finally {
      await kernel.close();
    }
  });

  it('revokes again what the replaced database had revoked, audited, and keeps the last owner token with a notice', { timeout: 60_000 }, async () => {
    const { code, out, err } = await cli.candor('restore', backupFile);
    const output = `${out}\n${err}`;
    assert.equal(code, 3, `restored, with the last owner token to deal with by hand: exit 3\n${output}`);
    assert.match(output, new RegExp(`credentials revoked again \\(revoked in the replaced database, active in the backup\\): 1 \\(${ids.leaked}\\)`));
    assert.match(output, new RegExp(`owner token ${ids.firstOwner} was revoked in the replaced database but is the restored database's last active owner token`));

    const kernel = await openKernel(cli.env.config);
    try {
      const state = new Map((await kernel.access.list()).map((c) => [c.id, c.revokedAt === null ? 'active' : 'revoked']));
      assert.equal(state.get(ids.leaked), 'revoked', 'a key revoked after the backup does not work again');
      assert.equal(state.get(ids.revokedBefore), 'revoked');
      assert.equal(state.get(ids.kept), 'active');
      assert.equal(state.get(ids.firstOwner), 'active', 'the last owner token is kept');
      assert.equal(state.has(ids.createdAfter), false);
      assert.equal(state.has(ids.secondOwner), false);
      const entries = (await kernel.audit.list({ action: 'access.credential.revoke', limit: 1000 })).filter((e) => e.resource === `credential:${ids.leaked}`);
      assert.equal(entries.length, 1, 'the restored log lost the first revocation; the second is the one after the restore');
      assert.deepEqual(JSON.parse(entries[0]?.details ?? '{}'), { restoredFrom: backupFile.split('/').pop() });
      assert.equal(entries[0]?.actor, 'system', 'applied by the kernel when it opened after the restore');
      const restore = (await kernel.audit.list({ action: 'retention.restore', limit: 1000 })).at(-1);
      assert.deepEqual(JSON.parse(restore?.details ?? '{}').revokedInReplaced, [ids.createdAfter, ids.firstOwner, ids.leaked, ids.revokedBefore].sort());
    } finally {
      await kernel.close();
    }
  });
});
