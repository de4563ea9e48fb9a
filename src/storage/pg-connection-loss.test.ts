// PostgreSQL connections lost or stalled while a statement or a transaction holds them: the process survives, the call
// fails with STORAGE_UNAVAILABLE (never hangs), the broken connection is discarded, and the next call works. SQLite has
// no connection to lose: these run on PostgreSQL only.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { createEnvironment, DIALECTS, type TestEnvironment } from '../../test/support/databases.ts';
import { startTcpProxy, type TcpProxy } from '../../test/support/tcp-proxy.ts';
import { isCandorError } from '../shared/errors.ts';
import { openStorage, type Storage } from './index.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const unavailable = (error: unknown) => isCandorError(error, 'STORAGE_UNAVAILABLE');
/** Each test fails instead of hanging for ever when a call never settles. */
const LIMIT = { timeout: 30_000 };

describe('PostgreSQL connection lost or stalled', { skip: !DIALECTS.includes('postgres') }, () => {
  let env: TestEnvironment;
  let admin: pg.Client;

  before(async () => {
    env = await createEnvironment('postgres');
    admin = new pg.Client({ connectionString: env.databaseUrl });
    await admin.connect();
  });
  after(async () => {
    await admin.end();
    await env.cleanup();
  });

  /** Ends the session `pid` (of this test's database only), as an administrator would, and waits until it is gone. */
  async function terminate(pid: number): Promise<void> {
    await admin.query('SELECT pg_terminate_backend($1) FROM pg_stat_activity WHERE pid = $1 AND datname = current_database()', [pid]);
    for (;;) {
      const { rows } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rows.length === 0) break;
      await sleep(20);
    }
    // The client hears its connection end a moment later (its 'error' event, with the transaction still holding it).
    await sleep(200);
  }

  async function withStorage(url: string, run: (storage: Storage) => Promise<void>, postgresTimeoutMs?: number) {
    const storage = await openStorage({ databaseUrl: url, dataDir: env.dataDir, sqliteSynchronous: 'FULL', postgresTimeoutMs });
    try {
      await run(storage);
    } finally {
      await storage.close();
    }
  }

  it('survives a session ended by pg_terminate_backend while raw.transaction holds it, rejects coded, and works on', LIMIT, () =>
    withStorage(env.databaseUrl, async (storage) => {
      await assert.rejects(
        storage.raw.transaction(async (tx) => {
          const [row] = await tx.all<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await terminate(Number(row?.pid));
          await tx.all('SELECT 1');
        }),
        unavailable,
      );
      assert.equal(await storage.raw.transaction(async (tx) => (await tx.all<{ one: number }>('SELECT 1 AS one'))[0]?.one), 1);
    }));

  it('survives a session ended by pg_terminate_backend while a Kysely transaction holds it, rejects coded, and works on', LIMIT, () =>
    withStorage(env.databaseUrl, async (storage) => {
      await assert.rejects(
        storage.db.transaction().execute(async (trx) => {
          const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
          await terminate(Number(rows[0]?.pid));
          await sql`SELECT 1`.execute(trx);
        }),
        unavailable,
      );
      const { rows } = await storage.db.transaction().execute((trx) => sql<{ one: number }>`SELECT 1 AS one`.execute(trx));
      assert.equal(rows[0]?.one, 1);
    }));

  it('answers a statement outside a transaction whose session was ended STORAGE_UNAVAILABLE, and works on', LIMIT, () =>
    withStorage(env.databaseUrl, async (storage) => {
      // Held by a transaction that ends before the session does: then idle in the pool, the next statement's.
      let pid = 0;
      await storage.raw.transaction(async (tx) => {
        pid = Number((await tx.all<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid);
      });
      const rejected = assert.rejects(storage.raw.all('SELECT pg_sleep(20)'), unavailable);
      for (;;) {
        const { rows } = await admin.query<{ state: string }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid]);
        if (rows[0]?.state === 'active') break;
        await sleep(20);
      }
      await terminate(pid);
      await rejected;
      await storage.ping();
    }));

  describe('through a proxy that stalls', () => {
    let proxy: TcpProxy;
    before(async () => {
      proxy = await startTcpProxy(env.databaseUrl);
    });
    after(() => proxy.close());

    it('survives a connection reset during a statement of raw.transaction, rejects coded, and works on', LIMIT, () =>
      withStorage(proxy.url, async (storage) => {
        await assert.rejects(
          storage.raw.transaction(async (tx) => {
            const sleeping = tx.all('SELECT pg_sleep(20)');
            await sleep(200);
            proxy.cut();
            await sleeping;
          }),
          unavailable,
        );
        await sleep(200);
        assert.equal(await storage.raw.transaction(async (tx) => (await tx.all<{ one: number }>('SELECT 1 AS one'))[0]?.one), 1);
      }));

    it('survives a connection reset during a statement of a Kysely transaction, rejects coded, and works on', LIMIT, () =>
      withStorage(proxy.url, async (storage) => {
        await assert.rejects(
          storage.db.transaction().execute(async (trx) => {
            const sleeping = sql`SELECT pg_sleep(20)`.execute(trx);
            await sleep(200);
            proxy.cut();
            await sleeping;
          }),
          unavailable,
        );
        await sleep(200);
        const { rows } = await storage.db.transaction().execute((trx) => sql<{ one: number }>`SELECT 1 AS one`.execute(trx));
        assert.equal(rows[0]?.one, 1);
      }));

    it('gives up on a transaction whose connection stopped answering (STORAGE_UNAVAILABLE), and works on', LIMIT, () =>
      withStorage(
        proxy.url,
        async (storage) => {
          await assert.rejects(
            storage.raw.transaction(async (tx) => {
              await tx.all('SELECT 1');
              proxy.stall();
              await tx.all('SELECT 2');
            }),
            unavailable,
          );
          proxy.resume();
          // The stalled connection is not handed out again: this one answers.
          assert.equal(await storage.raw.transaction(async (tx) => (await tx.all<{ two: number }>('SELECT 2 AS two'))[0]?.two), 2);
        },
        500,
      ));

    it('gives up on a Kysely transaction whose connection stopped answering, and works on', LIMIT, () =>
      withStorage(
        proxy.url,
        async (storage) => {
          await assert.rejects(
            storage.db.transaction().execute(async (trx) => {
              await sql`SELECT 1`.execute(trx);
              proxy.stall();
              await sql`SELECT 2`.execute(trx);
            }),
            unavailable,
          );
          proxy.resume();
          const { rows } = await storage.db.transaction().execute((trx) => sql<{ two: number }>`SELECT 2 AS two`.execute(trx));
          assert.equal(rows[0]?.two, 2);
        },
        500,
      ));

    it('answers STORAGE_UNAVAILABLE when PostgreSQL refuses connections', LIMIT, async () => {
      const closing = await startTcpProxy(env.databaseUrl);
      await withStorage(closing.url, async (storage) => {
        await closing.close();
        await assert.rejects(storage.raw.all('SELECT 1'), unavailable);
        await assert.rejects(storage.raw.transaction(async (tx) => tx.all('SELECT 1')), unavailable);
        await assert.rejects(sql`SELECT 1`.execute(storage.db), unavailable);
      });
    });
  });
});
