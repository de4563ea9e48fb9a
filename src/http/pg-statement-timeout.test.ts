// A server on PostgreSQL whose events table another session holds locked (maintenance, another process's long
// transaction): the ingestion writes that wait on the lock are ended by statement_timeout (SQLSTATE 57014) and their
// requests answered 503 STORAGE_UNAVAILABLE once, each within a few timeouts (not 500 INTERNAL_ERROR after the failed
// group was written again one request at a time, each waiting the whole timeout again), /readyz says not ready, nothing
// is stored, and once the lock is released ingestion works again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { buildServer, type CandorServer } from './server.ts';
import { openKernel, type Kernel } from '../kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { createEnvironment, DIALECTS, type TestEnvironment } from '../../test/support/databases.ts';

const TIMEOUT_MS = 300;
/** Concurrent requests while the table is locked: written again one by one, they would take (n + 1) timeouts. */
const REQUESTS = 32;

describe('a server whose PostgreSQL events table another session holds locked', { skip: !DIALECTS.includes('postgres'), timeout: 120_000 }, () => {
  let env: TestEnvironment;
  let kernel: Kernel;
  let server: CandorServer;
  let locker: pg.Client;
  let auth = '';

  before(async () => {
    env = await createEnvironment('postgres');
    kernel = await openKernel(env.configWith({ CANDOR_POSTGRES_TIMEOUT_MS: String(TIMEOUT_MS) }));
    server = await buildServer(kernel);
    auth = `Basic ${Buffer.from(`${(await kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret}:`).toString('base64')}`;
    locker = new pg.Client({ connectionString: env.databaseUrl });
    await locker.connect();
  });
  after(async () => {
    await locker?.end();
    await server?.app.close();
    await kernel?.close();
    await env?.cleanup();
  });

  const post = (url: string, payload: unknown) => server.app.inject({ method: 'POST', url, headers: { authorization: auth, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  const batch = (i: number) => post('/v1/batch', { batch: [{ type: 'track', userId: `u-${i}`, event: 'Product Viewed', messageId: `lk-${i}` }] });
  const stored = async () => Number((await locker.query<{ n: string }>('SELECT count(*) AS n FROM collect_events')).rows[0]?.n);

  it('answers 503 STORAGE_UNAVAILABLE within a few timeouts, stores nothing, is not ready, and ingests again once the lock is gone', async () => {
    for (let i = 0; i < REQUESTS; i++) {
      const consent = await post('/v1/consent', { userId: `u-${i}`, purposes: { 'analytics.reporting': 'given' }, mechanism: 'api', noticeVersion: 1 });
      assert.equal(consent.statusCode, 200, consent.body);
    }

    await locker.query('BEGIN');
    await locker.query('LOCK TABLE collect_events IN ACCESS EXCLUSIVE MODE');
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const response = await batch(i);
        return { status: response.statusCode, body: response.json() as { code?: string; details?: { reason?: string } }, ms: performance.now() - started };
      }),
    );
    for (const answer of answers) {
      assert.equal(answer.status, 503, JSON.stringify(answer.body));
      assert.equal(answer.body.code, 'STORAGE_UNAVAILABLE');
    }
    assert.ok(answers.some((a) => a.body.details?.reason === 'statement_timeout'), JSON.stringify(answers.map((a) => a.body.details)));
    // A correctness bound, not a speed one: the failed group is not written again request by request.
    const slowest = Math.max(...answers.map((a) => a.ms));
    assert.ok(slowest < 20 * TIMEOUT_MS, `the slowest request took ${slowest.toFixed(0)} ms (statement timeout ${TIMEOUT_MS} ms)`);
    const ready = await server.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503, ready.body);
    assert.equal((ready.json() as { code: string }).code, 'STORAGE_UNAVAILABLE');

    await locker.query('COMMIT');
    assert.equal(await stored(), 0, 'nothing of the refused requests was stored');
    const again = await batch(0);
    assert.equal(again.statusCode, 200, again.body);
    assert.equal((again.json() as { results: { status: string }[] }).results[0]?.status, 'stored');
    assert.equal(await stored(), 1);
    assert.equal((await server.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  });
});
