import assert from 'node:assert/strict';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { main } from '../../cli/main.ts';
import { MIGRATIONS, openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { backupDatabase, claimDataDir, restoreDatabase } from './index.ts';

async function seed(kernel: Kernel, userId: string, n: number): Promise<string> {
  const [r] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
  const profileId = r?.profileId as string;
  await kernel.consent.record(profileId, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
  const messages = Array.from({ length: n }, (_, i) => ({ type: 'track', userId, messageId: `${userId}-${i}`, event: 'Product Viewed', properties: { product_id: `p${i}` }, context: { page: { url: `https://shop.example/${userId}` } } }));
  messages.push({ type: 'identify', userId, messageId: `${userId}-id`, traits: { email: `${userId}@example.com` } } as never);
  const results = await kernel.collect.ingest(messages.map((raw) => ({ raw, bytes: 300 })), undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
  assert.ok(results.every((x) => x.status === 'stored'), JSON.stringify(results.find((x) => x.status !== 'stored')));
  return profileId;
}

const eventsOf = async (kernel: Kernel, profileId: string) => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE profile_id = ${profileId}`.execute(kernel.storage.db)).rows[0]?.n);

describeEachDialect('backup and restore', (dialect) => {
  let env: TestEnvironment;
  let erased = '';
  let kept = '';
  let backupFile = '';

  before(async () => {
    env = await createEnvironment(dialect);
    const kernel = await openKernel(env.config);
    try {
      erased = await seed(kernel, 'gone-user', 20);
      kept = await seed(kernel, 'kept-user', 5);
      backupFile = join(env.dataDir, '..', `${env.dataDir.split('/').pop()}.backup`);
      await backupDatabase(env.config, backupFile, CLI_ACTOR);
      const subject = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: 'gone-user' } });
      assert.ok(subject);
      await kernel.erasure.erase(subject, { requestId: 'req-backup-1' }, CLI_ACTOR);
      assert.equal(await eventsOf(kernel, erased), 0);
    } finally {
      await kernel.close();
    }
  });
  after(async () => {
    await env?.cleanup();
  });

  it('removes what a killed backup to the same file left beside it, and nothing a live one is writing', async () => {
    const file = `${backupFile}.again`;
    const stem = join(env.dataDir, '..', `.${file.split('/').pop()}`);
    const killed = [`${stem}.0a1b2c3d.partial`, `${stem}.0a1b2c3d.partial-journal`];
    const live = `${stem}.4e5f6a7b.partial`;
    for (const path of [...killed, live]) writeFileSync(path, 'pages of the database');
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const path of killed) utimesSync(path, hourAgo, hourAgo);
    await backupDatabase(env.config, file, CLI_ACTOR);
    assert.deepEqual(killed.map((path) => existsSync(path)), [false, false]);
    assert.ok(existsSync(live), 'a partial copy written to just now is left alone');
  });

  it('refuses to overwrite an existing file', async () => {
    await assert.rejects(backupDatabase(env.config, backupFile, CLI_ACTOR), (e) => isCandorError(e, 'BACKUP_FILE_EXISTS'));
  });

  it('refuses a directory that does not exist or is a file, coded, and writes nothing', async () => {
    const missing = join(env.dataDir, 'no-such-directory', 'candor.backup');
    await assert.rejects(backupDatabase(env.config, missing, CLI_ACTOR), (e) => isCandorError(e, 'BACKUP_DIRECTORY_UNUSABLE') && e.details?.reason === 'ENOENT');
    assert.ok(!existsSync(join(env.dataDir, 'no-such-directory')));
    const notADirectory = join(env.dataDir, 'plain-file');
    writeFileSync(notADirectory, '');
    await assert.rejects(backupDatabase(env.config, join(notADirectory, 'candor.backup'), CLI_ACTOR), (e) => isCandorError(e, 'BACKUP_DIRECTORY_UNUSABLE') && e.details?.reason === 'ENOTDIR');
  });

  it('refuses a corrupt backup with a specific code and leaves the database as it was', async () => {
    const corrupt = `${backupFile}.corrupt`;
    const bytes = readFileSync(backupFile);
    // Damage the middle of the file (SQLite: pages; pg_dump: the compressed data).
    bytes.fill(0x5a, Math.floor(bytes.length / 3), Math.floor(bytes.length / 3) + 4096);
    writeFileSync(corrupt, dialect === 'sqlite' ? bytes : bytes.subarray(0, Math.floor(bytes.length / 2)));
    const notADatabase = `${backupFile}.txt`;
    writeFileSync(notADatabase, 'hello, this is not a backup');
    for (const file of [corrupt, notADatabase]) {
      await assert.rejects(restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'BACKUP_CORRUPT') || isCandorError(e, 'BACKUP_FAILED'), file);
    }
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'restore', notADatabase], (l) => lines.push(l), (l) => lines.push(l));
    assert.equal(code, 1);
    assert.match(lines.join('\n'), /BACKUP_CORRUPT/);
    const kernel = await openKernel(env.config);
    try {
      assert.equal(await eventsOf(kernel, kept), 6);
      assert.equal(await eventsOf(kernel, erased), 0);
      assert.equal(kernel.erasuresReplayed, 0);
    } finally {
      await kernel.close();
    }
  });

  it('refuses to restore while a server holds the data directory', async () => {
    const release = claimDataDir(env.dataDir);
    try {
      await assert.rejects(restoreDatabase(env.config, backupFile, CLI_ACTOR, MIGRATIONS), (e) => isCandorError(e, 'BACKUP_SERVER_RUNNING'));
    } finally {
      release();
    }
  });

  it('restores a backup taken before an erasure and the erasure is replayed: the subject does not come back', { timeout: 60_000 }, async () => {
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'restore', backupFile], (l) => lines.push(l), (l) => lines.push(l));
    assert.equal(code, 0, lines.join('\n'));
    assert.match(lines.join('\n'), /erasures replayed from the deletion ledger: 1/);
    if (dialect === 'sqlite') {
      assert.ok(!existsSync(join(env.dataDir, 'candor.db.restore')));
      // Checking the backup leaves nothing beside it (a backup in WAL mode opened read-only got a -wal and a -shm).
      for (const suffix of ['-wal', '-shm']) assert.ok(!existsSync(`${backupFile}${suffix}`), `${backupFile}${suffix}`);
    }
    const kernel = await openKernel(env.config);
    try {
      assert.equal(kernel.erasuresReplayed, 0, 'replayed once only');
      assert.equal(await eventsOf(kernel, erased), 0);
      assert.equal(await eventsOf(kernel, kept), 6);
      const traits = (await sql<{ n: number }>`SELECT count(*) AS n FROM profiles_traits WHERE profile_id = ${erased}`.execute(kernel.storage.db)).rows[0];
      assert.equal(Number(traits?.n), 0);
      const keys = (await sql<{ subject_id: string }>`SELECT subject_id FROM crypto_subject_keys`.execute(kernel.storage.db)).rows.map((r) => r.subject_id);
      assert.ok(!keys.includes(erased));
      assert.ok(keys.includes(kept));
      const suppressed = await kernel.identity.isSuppressedBatch(kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'gone-user' }], source: 'web', at: new Date().toISOString() }]);
      assert.deepEqual(suppressed, [true]);
      const [again] = await kernel.collect.ingest([{ raw: { type: 'track', userId: 'gone-user', messageId: 'after-restore', event: 'Product Viewed', properties: { product_id: 'p1' } }, bytes: 200 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
      assert.equal(again?.status, 'suppressed');
    } finally {
      await kernel.close();
    }
  });
});
