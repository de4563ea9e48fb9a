import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../support/databases.ts';
import { useKernel } from '../support/kernel.ts';
import { ingestPerson, messagesOf, person, sendMessages, type TestPerson } from '../support/subjects.ts';
import { openKernel, type Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { isCandorError } from '../../src/shared/errors.ts';
import { LEDGER_FILE, verifyLedgerLines } from '../../src/modules/rights/index.ts';
import { SQLITE_FILE } from '../../src/storage/index.ts';

/** Every identifying value of the person, plus the control value that is stored in the clear before erasure. */
const needles = (p: TestPerson) => [p.email, p.userId, p.anonymousId, p.phone, p.firstName, p.lastName, p.productId];

/** The raw bytes a copy of the database would hold: SQLite's main file and WAL, or a plain pg_dump. */
async function rawBytes(kernel: Kernel, env: TestEnvironment): Promise<Buffer> {
  if (kernel.storage.dialect === 'sqlite') {
    await kernel.storage.checkpoint();
    const main = readFileSync(join(env.dataDir, SQLITE_FILE));
    const walPath = join(env.dataDir, `${SQLITE_FILE}-wal`);
    return Buffer.concat([main, existsSync(walPath) ? readFileSync(walPath) : Buffer.alloc(0)]);
  }
  return execFileSync('/usr/bin/pg_dump', ['--format=plain', '--no-owner', env.databaseUrl], { maxBuffer: 256 * 1024 * 1024 });
}

const found = (bytes: Buffer, values: readonly string[]) => values.filter((v) => bytes.includes(Buffer.from(v, 'utf8')));

describeEachDialect('erasure you can prove', (dialect) => {
  const ctx = useKernel(dialect);
  const ada = person(`proof${dialect}`);
  const bystander = person(`bystander${dialect}`);
  let oldEnvelope = '';
  let oldTrait = '';

  before(async () => {
    const results = await ingestPerson(ctx.kernel, ada, 20);
    assert.ok(results.every((r) => r.status === 'stored'), JSON.stringify(results.filter((r) => r.status !== 'stored')));
    const other = await ingestPerson(ctx.kernel, bystander, 3, 'b');
    assert.ok(other.every((r) => r.status === 'stored'));
    const db = ctx.kernel.storage.db;
    const row = (await sql<{ data_enc: string }>`SELECT data_enc FROM collect_events WHERE message_id = ${`m-${ada.userId}-identify`}`.execute(db)).rows[0];
    oldEnvelope = row?.data_enc ?? '';
    const trait = (await sql<{ value: string }>`SELECT value FROM profiles_traits WHERE key = 'email' AND encrypted = 1`.execute(db)).rows;
    oldTrait = trait[0]?.value ?? '';
    assert.ok(oldEnvelope && oldTrait);
  });

  it('finds the control value in the raw database before the erasure (the scan can see)', async () => {
    const bytes = await rawBytes(ctx.kernel, ctx.env);
    assert.deepEqual(found(bytes, [ada.productId]), [ada.productId]);
  });

  it('erases by e-mail every linked profile and identifier, with a complete certificate', async () => {
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'email', value: ada.email } });
    assert.ok(subject);
    assert.deepEqual(new Set(subject.identifiers.map((i) => i.type)), new Set(['user_id', 'anonymous_id', 'email', 'phone']));
    const certificate = await ctx.kernel.erasure.erase(subject, { requestId: `req-proof-${dialect}` }, CLI_ACTOR);
    assert.equal(certificate.status, 'complete');
    assert.ok(certificate.stores.every((s) => s.status === 'confirmed'), JSON.stringify(certificate.stores));
    const stores = new Set(certificate.stores.map((s) => s.store));
    for (const store of ['identity_identifiers', 'identity_profiles', 'profiles_traits', 'profiles_trait_history', 'collect_events', 'consent_current', 'consent_ledger', 'access_subject_sessions', 'crypto_subject_keys', 'identity_suppressed']) {
      assert.ok(stores.has(store), store);
    }
    assert.equal(certificate.stores.find((s) => s.store === 'collect_events')?.deleted, 21);
    assert.equal(certificate.stores.find((s) => s.store === 'crypto_subject_keys')?.deleted, 1);
    assert.match(certificate.stores.find((s) => s.store === 'consent_ledger')?.kept?.reason ?? '', /Art\. 7\(1\)/);
    assert.deepEqual(certificate.recipients.map((r) => [r.name, r.status]), [['no recipients', 'confirmed']]);
    assert.deepEqual(await ctx.kernel.erasure.certificate(`req-proof-${dialect}`), certificate);
    const audit = await sql<{ action: string; details: string }>`SELECT action, details FROM audit_log WHERE action = 'rights.erasure'`.execute(ctx.kernel.storage.db);
    assert.equal(audit.rows.length, 1);
  });

  it('leaves none of the identifiers in the raw database (SQLite file and WAL, or pg_dump)', async () => {
    const bytes = await rawBytes(ctx.kernel, ctx.env);
    assert.deepEqual(found(bytes, needles(ada)), []);
    // The other customer is untouched.
    assert.deepEqual(found(bytes, [bystander.productId]), [bystander.productId]);
  });

  it('makes old ciphertexts unreadable: the data key is destroyed', async () => {
    await assert.rejects(ctx.kernel.keyring.decrypt(oldEnvelope, 'collect.events.data'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
    await assert.rejects(ctx.kernel.keyring.decrypt(oldTrait, 'profiles.traits.email'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
  });

  it('stores nothing when the old events are sent again (suppressed)', async () => {
    const count = async () => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events`.execute(ctx.kernel.storage.db)).rows[0]?.n);
    const before = await count();
    const results = await sendMessages(ctx.kernel, messagesOf(ada, 5, 'again'));
    assert.deepEqual([...new Set(results.map((r) => r.status))], ['suppressed']);
    assert.equal(await count(), before);
    assert.deepEqual(found(await rawBytes(ctx.kernel, ctx.env), needles(ada)), []);
  });

  it('answers a second erasure with RIGHTS_SUBJECT_ERASED and does nothing', async () => {
    const ledgerBefore = (await ctx.kernel.erasure.ledger()).length;
    await assert.rejects(ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: ada.userId } }), (e) => isCandorError(e, 'RIGHTS_SUBJECT_ERASED'));
    const certificate = await ctx.kernel.erasure.certificate(`req-proof-${dialect}`);
    assert.ok(certificate);
    const [profileId] = (await ctx.kernel.erasure.ledger()).at(-1)?.profileIds ?? [];
    assert.ok(profileId);
    await assert.rejects(ctx.kernel.erasure.findSubject({ profileId }), (e) => isCandorError(e, 'RIGHTS_SUBJECT_ERASED'));
    await assert.rejects(
      ctx.kernel.erasure.erase({ profileId, profileIds: [profileId], identifiers: [] }, { requestId: `req-again-${dialect}` }, CLI_ACTOR),
      (e) => isCandorError(e, 'RIGHTS_SUBJECT_ERASED'),
    );
    assert.equal((await ctx.kernel.erasure.ledger()).length, ledgerBefore);
    assert.equal(await ctx.kernel.erasure.certificate(`req-again-${dialect}`), null);
  });

  it('leaves nothing for any registered handler to export', async () => {
    const entry = (await ctx.kernel.erasure.ledger()).at(-1);
    assert.ok(entry);
    const subject = { profileId: entry.profileIds[0] as string, profileIds: entry.profileIds, identifiers: entry.identifiers };
    for (const handler of ctx.kernel.subjectData) {
      const section = await handler.export(subject);
      const data = section.data as Record<string, unknown>;
      for (const key of ['profiles', 'identifiers', 'merges', 'history', 'sessions', 'dataKeys', 'events', 'traitDetails']) {
        if (key in data && key !== 'history') assert.deepEqual(data[key], [], `${handler.module}.${key}`);
      }
      if (handler.module === 'profiles') assert.deepEqual(data.traits, {});
    }
  });

  it('keeps the two copies of the deletion ledger in step and verifiable', async () => {
    const verdict = await ctx.kernel.erasure.verifyLedger();
    assert.deepEqual(verdict, { ok: true, entries: 1 });
    const lines = readFileSync(join(ctx.env.dataDir, LEDGER_FILE), 'utf8').trim().split('\n');
    assert.equal(lines.length, 1);
    assert.ok(!found(Buffer.from(lines.join('\n')), needles(ada)).length);
  });
});

describe('a backup restored from before an erasure [sqlite]', () => {
  let env: TestEnvironment;
  let kernel: Kernel;
  const zed = person('restore');

  before(async () => {
    env = await createEnvironment('sqlite');
    kernel = await openKernel(env.config);
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
  });

  it('has the erasure replayed at open: the subject does not come back and the ledger is in step', async () => {
    await ingestPerson(kernel, zed, 5);
    await kernel.storage.checkpoint();
    const dbPath = join(env.dataDir, SQLITE_FILE);
    const backup = join(env.dataDir, 'backup.db');
    copyFileSync(dbPath, backup);
    const subject = await kernel.erasure.findSubject({ identifier: { type: 'phone', value: zed.phone } });
    assert.ok(subject);
    await kernel.erasure.erase(subject, { requestId: 'req-restore' }, CLI_ACTOR);
    await kernel.close();

    // Restore: the old file back in place, the ledger file still there.
    for (const suffix of ['-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
    copyFileSync(backup, dbPath);
    rmSync(backup);
    const restoredBytes = readFileSync(dbPath);
    assert.ok(restoredBytes.includes(Buffer.from(zed.productId)), 'the backup holds the subject');

    kernel = await openKernel(env.config);
    assert.equal(Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events`.execute(kernel.storage.db)).rows[0]?.n), 0);
    assert.equal(Number((await sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id NOT LIKE 'system:%'`.execute(kernel.storage.db)).rows[0]?.n), 0);
    await assert.rejects(kernel.erasure.findSubject({ identifier: { type: 'email', value: zed.email } }), (e) => isCandorError(e, 'RIGHTS_SUBJECT_ERASED'));
    const db = await kernel.erasure.ledger();
    assert.equal(db.length, 1);
    assert.ok(verifyLedgerLines(db).ok);
    assert.deepEqual(await kernel.erasure.verifyLedger(), { ok: true, entries: 1 });
    const replays = await sql<{ n: number }>`SELECT count(*) AS n FROM audit_log WHERE action = 'rights.erasure.replay'`.execute(kernel.storage.db);
    assert.equal(Number(replays.rows[0]?.n), 1);
    assert.equal((await kernel.erasure.certificate('req-restore'))?.status, 'complete');
    const results = await sendMessages(kernel, messagesOf(zed, 2, 'late'));
    assert.deepEqual([...new Set(results.map((r) => r.status))], ['suppressed']);
    assert.deepEqual(found(await rawBytes(kernel, env), needles(zed)), []);
    // A second start replays nothing more.
    await kernel.close();
    kernel = await openKernel(env.config);
    assert.equal(await kernel.erasure.replayMissing(), 0);
  });
});
