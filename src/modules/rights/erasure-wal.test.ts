import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it } from 'node:test';
import pg from 'pg';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { rightsRequests } from '../../../test/support/rights.ts';
import { ingestPerson, person, type TestPerson } from '../../../test/support/subjects.ts';
import type { Kernel } from '../../kernel.ts';
import type { Actor } from '../../shared/actor.ts';
import { SQLITE_FILE } from '../../storage/index.ts';
import { LEDGER_FILE } from './deletion-ledger.ts';
import { ErasureEngine, type ErasureCertificate } from './erasure.ts';
import { Mailer } from './mailer.ts';
import type { RequestsTables } from './requests.repo.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The certificate's line for the database file (SQLite) or database (PostgreSQL). */
const storageLine = (certificate: ErasureCertificate | null) => certificate?.stores.find((s) => s.module === 'storage');

/**
 * Another connection to the database holding a read transaction open, as a CLI command, a backup, Litestream or a
 * sqlite3 shell does: node:sqlite on the same file, or a PostgreSQL client. `release` ends it.
 */
async function openReader(kernel: Kernel, dataDir: string, databaseUrl: string): Promise<{ release(): Promise<void> }> {
  if (kernel.storage.dialect === 'sqlite') {
    const db = new DatabaseSync(join(dataDir, SQLITE_FILE));
    db.exec('BEGIN');
    db.prepare('SELECT count(*) AS n FROM collect_events').get();
    return {
      async release() {
        db.exec('COMMIT');
        db.close();
      },
    };
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query('BEGIN');
  await client.query('SELECT count(*) AS n FROM collect_events');
  return {
    async release() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

describeEachDialect('erasure while another connection reads the database', (dialect) => {
  const ctx = useKernel(dialect);
  const walPath = () => join(ctx.env.dataDir, `${SQLITE_FILE}-wal`);
  const walBytes = () => (existsSync(walPath()) ? readFileSync(walPath()) : Buffer.alloc(0));
  const outboxDir = () => join(ctx.env.dataDir, 'outbox-wal-test');
  const erasedNotices = (requestId: string) =>
    existsSync(outboxDir())
      ? readdirSync(outboxDir())
          .map((f) => readFileSync(join(outboxDir(), f), 'utf8'))
          .filter((text) => text.includes(requestId) && text.includes('Subject: Your data was erased')).length
      : 0;
  /** Whether a value is anywhere in SQLite's database file or its WAL. */
  const onDisk = (value: string) => Buffer.concat([readFileSync(join(ctx.env.dataDir, SQLITE_FILE)), walBytes()]).includes(Buffer.from(value));
  const requestRow = (id: string) => ctx.kernel.storage.db.withTables<RequestsTables>().selectFrom('rights_requests').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const erasureState = async (id: string) =>
    (await ctx.kernel.storage.db.withTables<{ rights_erasures: { request_id: string; state: string } }>().selectFrom('rights_erasures').select('state').where('request_id', '=', id).executeTakeFirst())?.state;

  /** An erasure engine and request workflow that give up on a held WAL quickly and retry it soon (the kernel's wait 5 s and 30 s). */
  const workflow = (walRetryMs: number) => {
    const k = ctx.kernel;
    const erasure = new ErasureEngine({ storage: k.storage, audit: k.audit, keyring: k.keyring, identity: k.identity, handlers: k.subjectData, ledgerPath: join(ctx.env.dataDir, LEDGER_FILE), checkpointWaitMs: 50 });
    const rights = rightsRequests(k, { erasure, mailer: new Mailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outboxDir() }), walRetryMs });
    return { erasure, rights };
  };

  /** A person with plain values in their events (a product id, stored in the clear), signed in; their profile id. */
  const signedIn = async (p: TestPerson): Promise<{ profileId: string; actor: Actor }> => {
    const results = await ingestPerson(ctx.kernel, p, 3);
    assert.ok(results.every((r) => r.status === 'stored'), JSON.stringify(results));
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type: 'user_id', value: p.userId } });
    assert.ok(subject);
    return { profileId: subject.profileId, actor: { id: `subject:${ctx.kernel.keyring.pseudonym('subject', subject.profileId)}`, role: 'subject' } };
  };

  it('confirms the database file when nobody else reads it', async () => {
    const p = person(`walnormal${dialect}`);
    const { profileId, actor } = await signedIn(p);
    const { rights } = workflow(60_000);
    try {
      const { request } = await rights.startForSession(profileId, { type: 'erasure', email: p.email }, actor);
      assert.deepEqual([request.state, request.lastError], ['completed', null]);
      const certificate = await rights.certificate(request.id);
      assert.equal(certificate.status, 'complete');
      const line = storageLine(certificate);
      if (dialect === 'sqlite') {
        assert.deepEqual([line?.store, line?.status], ['sqlite database file', 'confirmed']);
        assert.match(line?.detail ?? '', /checkpointed and truncated/);
        assert.ok(!onDisk(p.productId));
      } else {
        assert.deepEqual([line?.store, line?.status], ['postgresql database', 'confirmed']);
      }
      assert.equal(erasedNotices(request.id), 1);
    } finally {
      await rights.close();
    }
  });

  it('does not confirm the database file while another connection reads it, and completes truthfully once it lets go', async () => {
    const p = person(`walreader${dialect}`);
    const { profileId, actor } = await signedIn(p);
    const { rights } = workflow(10);
    const reader = await openReader(ctx.kernel, ctx.env.dataDir, ctx.env.databaseUrl);
    let released = false;
    try {
      const { request } = await rights.startForSession(profileId, { type: 'erasure', email: p.email }, actor);
      if (dialect === 'postgres') {
        // Nothing to truncate on PostgreSQL: a reader holds nothing up.
        assert.deepEqual([request.state, request.lastError], ['completed', null]);
        assert.deepEqual([storageLine(await rights.certificate(request.id))?.status, (await rights.certificate(request.id)).status], ['confirmed', 'complete']);
        return;
      }
      // The person is erased and their keys are destroyed, but the WAL still holds their plain values: not confirmed.
      assert.deepEqual([request.state, request.lastError], ['in_progress', 'STORAGE_CHECKPOINT_BUSY']);
      await assert.rejects(ctx.kernel.erasure.findSubject({ profileId }));
      const pending = await rights.certificate(request.id);
      assert.equal(pending.status, 'incomplete');
      assert.deepEqual([storageLine(pending)?.store, storageLine(pending)?.status], ['sqlite database file', 'not_supported']);
      assert.match(storageLine(pending)?.detail ?? '', /read transaction/);
      assert.deepEqual(pending.stores.find((s) => s.store === 'crypto_subject_keys')?.deleted, 1);
      assert.equal(await erasureState(request.id), 'keys_pending');
      assert.ok(walBytes().includes(Buffer.from(p.productId)), 'the WAL still holds the plain value while the reader holds it');
      assert.equal(erasedNotices(request.id), 0);
      // Retried by itself while the reader holds: still not confirmed.
      for (let i = 0; i < 5; i++) {
        await sleep(20);
        await rights.settled();
      }
      assert.notEqual(storageLine(await rights.certificate(request.id))?.status, 'confirmed');
      assert.equal((await requestRow(request.id)).state, 'in_progress');

      await reader.release();
      released = true;
      // The next retry (its wait doubles with each attempt) finds the WAL free.
      for (let i = 0; i < 500 && (await requestRow(request.id)).state === 'in_progress'; i++) {
        await sleep(20);
        await rights.settled();
      }
      const done = await requestRow(request.id);
      assert.deepEqual([done.state, done.last_error, done.email], ['completed', null, null]);
      const certificate = await rights.certificate(request.id);
      assert.equal(certificate.status, 'complete');
      assert.deepEqual([storageLine(certificate)?.status, storageLine(certificate)?.detail], ['confirmed', 'secure_delete overwrote the deleted content; the write-ahead log was checkpointed and truncated']);
      // Every line once; the keys destroyed by the first attempt still counted.
      assert.equal(new Set(certificate.stores.map((s) => `${s.module}/${s.store}`)).size, certificate.stores.length);
      assert.equal(certificate.stores.find((s) => s.store === 'crypto_subject_keys')?.deleted, 1);
      assert.equal(await erasureState(request.id), 'done');
      assert.ok(!onDisk(p.productId), 'no plain value left in the database file or its WAL');
      assert.equal(erasedNotices(request.id), 1);
    } finally {
      if (!released) await reader.release();
      await rights.close();
    }
  });

  it('runs an erasure left waiting for the WAL again at a server start, and a kernel start is not held up by it', async () => {
    const p = person(`walstart${dialect}`);
    const { profileId, actor } = await signedIn(p);
    const first = workflow(60_000);
    const reader = await openReader(ctx.kernel, ctx.env.dataDir, ctx.env.databaseUrl);
    let released = false;
    let requestId = '';
    try {
      requestId = (await first.rights.startForSession(profileId, { type: 'erasure' }, actor)).request.id;
      // The server stops before its retry (its timer goes with it).
      await first.rights.close();
      if (dialect === 'sqlite') {
        assert.equal((await requestRow(requestId)).last_error, 'STORAGE_CHECKPOINT_BUSY');
        // What every kernel start does (replayMissing) leaves the erasure pending rather than failing the start.
        assert.equal(await first.erasure.replayMissing(), 0);
        assert.equal(await erasureState(requestId), 'keys_pending');
      }
      await reader.release();
      released = true;
      const next = workflow(60_000);
      try {
        await next.rights.resumeInterrupted();
      } finally {
        await next.rights.close();
      }
    } finally {
      if (!released) await reader.release();
      await first.rights.close();
    }
    const done = await requestRow(requestId);
    assert.deepEqual([done.state, done.last_error], ['completed', null]);
    assert.equal(await erasureState(requestId), 'done');
    assert.equal(storageLine(await ctx.kernel.erasure.certificate(requestId))?.status, 'confirmed');
    if (dialect === 'sqlite') {
      const events = (await ctx.kernel.rights.get(requestId)).events;
      assert.ok(events.some((e) => (e.detail as { after?: string }).after === 'STORAGE_CHECKPOINT_BUSY'));
    }
  });

});
