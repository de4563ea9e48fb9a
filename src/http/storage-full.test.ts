import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useKernel } from '../../test/support/kernel.ts';
import { useServer } from '../../test/support/server.ts';
import { STORAGE_FULL_RETRY_AFTER_S } from './problem.ts';

// A full disk made for real by the database itself (see src/storage/storage-full.test.ts): SQLite's max_page_count at
// the database's size, filled up; on PostgreSQL a trigger raising disk_full (SQLSTATE 53100) on the audit log.
describeEachDialect('HTTP on a full disk', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const lookup = () =>
    harness.server.app.inject({ method: 'POST', url: '/v1/admin/profiles/lookup', headers: harness.auth('privacy_officer'), payload: { type: 'user_id', value: 'full-disk-1' } });

  async function fill(): Promise<void> {
    const { storage } = ctx.kernel;
    if (dialect === 'sqlite') {
      await storage.raw.run('CREATE TABLE filler (b TEXT)');
      const [row] = await storage.raw.all<{ page_count: number }>('PRAGMA page_count');
      await storage.raw.all(`PRAGMA max_page_count = ${Number(row?.page_count)}`);
      // Every free page taken: only room left in pages that hold rows already.
      for (let i = 0; i < 10_000; i++) {
        if (!(await storage.raw.run("INSERT INTO filler (b) VALUES (printf('%.1000c', 'x'))").then(() => true, () => false))) break;
      }
    } else {
      await storage.raw.run(`CREATE FUNCTION disk_is_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`);
      await storage.raw.run('CREATE TRIGGER disk_is_full BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION disk_is_full()');
    }
  }

  async function free(): Promise<void> {
    if (dialect === 'sqlite') {
      await ctx.kernel.storage.raw.all('PRAGMA max_page_count = 1073741823');
      return;
    }
    // As an operator would, from outside: this server's own writes are what must show it that writes go through.
    const client = new pg.Client({ connectionString: ctx.env.databaseUrl });
    await client.connect();
    try {
      await client.query('DROP TRIGGER disk_is_full ON audit_log');
    } finally {
      await client.end();
    }
  }

  const problem = (response: LightMyRequestResponse) => response.json() as { code?: string; status?: number; details?: { reason?: string } };

  it('answers a read whose audit entry does not fit 503 STORAGE_FULL, and is not ready until a write goes through again', async () => {
    await ctx.kernel.storage.raw.transaction((tx) =>
      ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'full-disk-1' }], source: 'web', messageId: 'full-disk-1', at: new Date().toISOString() }]),
    );
    assert.equal((await harness.server.app.inject({ url: '/readyz' })).statusCode, 200);
    await fill();
    // The audit log's pages may still hold a few entries: a look-up goes through until they are full.
    let refused: LightMyRequestResponse | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const response = await lookup();
      if (response.statusCode !== 200) refused = response;
    }
    assert.ok(refused, 'no look-up was refused');
    assert.equal(refused.statusCode, 503, refused.body);
    assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
    assert.equal(problem(refused).code, 'STORAGE_FULL');
    assert.equal(refused.headers['retry-after'], String(STORAGE_FULL_RETRY_AFTER_S));

    const notReady = await harness.server.app.inject({ url: '/readyz' });
    assert.equal(notReady.statusCode, 503, notReady.body);
    assert.equal(problem(notReady).code, 'STORAGE_FULL');
    assert.match(problem(notReady).details?.reason ?? '', /full/);

    await free();
    // Space alone does not make the server ready: a write must go through first.
    assert.equal((await harness.server.app.inject({ url: '/readyz' })).statusCode, 503);
    assert.equal((await lookup()).statusCode, 200);
    assert.equal((await harness.server.app.inject({ url: '/readyz' })).statusCode, 200);
  });
});
