import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useCli } from '../../test/support/cli.ts';
import { openKernel } from '../kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';

describeEachDialect('candor CLI', (dialect) => {
  const cli = useCli(dialect);
  const { candor } = cli;

  it('migrates, then reports the database up to date', async () => {
    const first = await candor('migrate');
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /applied 0001_crypto_keyring, 0002_audit_log/);
    assert.equal((await candor('migrate')).out, 'database is up to date');
    assert.equal(statSync(join(cli.env.dataDir, 'master.key')).mode & 0o777, 0o600);
  });

  it('creates, lists and revokes credentials, printing the secret once', async () => {
    const token = await candor('keys', 'create', '--role', 'analyst', '--label', 'weekly report');
    assert.equal(token.code, 0, token.err);
    const secret = /secret \(shown once, store it now\): (cnd_\S+)/.exec(token.out)?.[1];
    const id = /\(id ([0-9a-f]{16})\)/.exec(token.out)?.[1];
    assert.ok(secret && id);
    const key = await candor('keys', 'create', '--write-key', '--source', 'web');
    assert.match(key.out, /write key for source web/);
    assert.match(key.out, /cwk_/);
    const listed = await candor('keys', 'list');
    assert.match(listed.out, new RegExp(`${id}\\s+api\\s+analyst\\s+active\\s+weekly report`));
    assert.ok(!listed.out.includes(secret.slice(21)));
    assert.equal((await candor('keys', 'revoke', id)).code, 0);
    assert.match((await candor('keys', 'list')).out, new RegExp(`${id}.*revoked`));
    const again = await candor('keys', 'revoke', id);
    assert.equal(again.code, 1);
    assert.match(again.err, /error ACCESS_TOKEN_ALREADY_REVOKED/);
  });

  it('explains wrong usage instead of guessing', async () => {
    const both = await candor('keys', 'create', '--role', 'owner', '--write-key', '--source', 'x');
    assert.equal(both.code, 2);
    assert.match(both.err, /either --role ROLE or --write-key --source NAME/);
    assert.notEqual((await candor('keys', 'create', '--role', 'root')).code, 0);
  });

  it('rotates the master key', async () => {
    const result = await candor('keys', 'rotate');
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /master key version 2 is active/);
    const file = JSON.parse(readFileSync(join(cli.env.dataDir, 'master.key'), 'utf8')) as { masterKeys: unknown[] };
    assert.equal(file.masterKeys.length, 2);
  });

  it('prunes the retired master key version, refuses the active one, and records the prune in the audit log', async () => {
    const active = await candor('keys', 'prune', '--version', '2');
    assert.equal(active.code, 1);
    assert.match(active.err, /error CRYPTO_MASTER_KEY_IN_USE: .*"active":true/);
    const pruned = await candor('keys', 'prune');
    assert.equal(pruned.code, 0, pruned.err);
    assert.match(pruned.out, /removed master key version 1 from the key file; version 2 is active/);
    const file = JSON.parse(readFileSync(join(cli.env.dataDir, 'master.key'), 'utf8')) as { masterKeys: { version: number }[] };
    assert.deepEqual(file.masterKeys.map((k) => k.version), [2]);
    assert.match((await candor('keys', 'prune')).out, /nothing to prune: the key file holds master key version 2 only/);
    const exportFile = join(cli.env.dataDir, 'prune-audit.jsonl');
    assert.equal((await candor('audit', 'export', '--out', exportFile)).code, 0);
    const entries = readFileSync(exportFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; actor: string; details: string });
    assert.deepEqual(entries.filter((e) => e.action === 'crypto.master_key.prune').map((e) => [e.actor, JSON.parse(e.details).versions]), [['cli', ['1']]]);
  });

  it('rotates past a data key that cannot be unwrapped, naming it, and every command still starts', async () => {
    const kernel = await openKernel(cli.env.config);
    let keyId: string;
    try {
      await kernel.keyring.encrypt('cli-damaged', 'x', 'f');
      const row = (await sql<{ key_id: string; wrapped_key: string }>`SELECT key_id, wrapped_key FROM crypto_subject_keys WHERE subject_id = 'cli-damaged'`.execute(kernel.storage.db)).rows[0];
      keyId = row?.key_id as string;
      const damaged = Buffer.from(row?.wrapped_key as string, 'base64').reverse().toString('base64');
      await sql`UPDATE crypto_subject_keys SET wrapped_key = ${damaged} WHERE subject_id = 'cli-damaged'`.execute(kernel.storage.db);
    } finally {
      await kernel.close();
    }
    const rotated = await candor('keys', 'rotate');
    assert.equal(rotated.code, 0, rotated.err);
    assert.match(rotated.out, /master key version 3 is active/);
    assert.match(rotated.out, new RegExp(`1 data key could not be unwrapped[^\\n]*\\n\\s+data key ${keyId} \\(master key version 2\\)`));
    assert.equal((await candor('keys', 'list')).code, 0);
    const refused = await candor('keys', 'prune');
    assert.equal(refused.code, 1);
    assert.match(refused.err, /error CRYPTO_MASTER_KEY_IN_USE: .*"version":2,"dataKeys":1/);
    // Its person erased, the warning at every start ends with the key.
    const cleanup = await openKernel(cli.env.config);
    try {
      assert.equal(await cleanup.keyring.destroySubjectKey('cli-damaged', CLI_ACTOR, 'essential.legal_obligation'), true);
    } finally {
      await cleanup.close();
    }
  });

  it('verifies the audit log, exports it, verifies the export offline, and fails with exit 3 after tampering', async () => {
    const verified = await candor('audit', 'verify');
    assert.equal(verified.code, 0, verified.err);
    const head = /head (\d+:[0-9a-f]{64})/.exec(verified.out)?.[1] as string;
    assert.ok(head);
    const exportFile = join(cli.env.dataDir, 'audit.jsonl');
    assert.equal((await candor('audit', 'export', '--out', exportFile)).code, 0);
    const offline = await candor('audit', 'verify', '--file', exportFile, '--expect-head', head);
    assert.equal(offline.code, 0, offline.out);
    const lines = readFileSync(exportFile, 'utf8').trim().split('\n');
    assert.equal((await candor('audit', 'verify', '--file', exportFile, '--expect-head', `${lines.length + 5}:${'a'.repeat(64)}`)).code, 3);

    const kernel = await openKernel(cli.env.config);
    try {
      if (kernel.storage.dialect === 'sqlite') await sql`DROP TRIGGER audit_log_no_update`.execute(kernel.storage.db);
      else await sql`DROP TRIGGER audit_log_no_update_delete ON audit_log`.execute(kernel.storage.db);
      await sql`UPDATE audit_log SET outcome = 'failure' WHERE seq = 2`.execute(kernel.storage.db);
    } finally {
      await kernel.close();
    }
    const broken = await candor('audit', 'verify');
    assert.equal(broken.code, 3);
    assert.match(broken.out, /BROKEN at entry 2: altered/);
  });

  it('shows the configuration with the database password masked', async () => {
    const shown = await candor('config', 'show', '--json');
    const lines = JSON.parse(shown.out) as { key: string; value: string; source: string }[];
    assert.equal(lines.find((l) => l.key === 'dataDir')?.source, 'flag');
    if (cli.env.databaseUrl) {
      assert.equal(lines.find((l) => l.key === 'databaseUrl')?.value, '********');
      assert.ok(!shown.out.includes(cli.env.databaseUrl));
    }
  });
});
