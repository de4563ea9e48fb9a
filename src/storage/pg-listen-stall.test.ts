// The connection that listens for other processes' commit notices (pg-commit-notices.ts) can go silent without ending
// (a network that dropped the flow sends no reset): the heartbeat finds it, so that caches stop trusting the notices
// and refresh by age, and a new connection is made once the network answers again; a busy process (a long synchronous
// step) is not taken for a silent connection. PostgreSQL only (SQLite reads data_version, with no connection to lose).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createEnvironment, DIALECTS, type TestEnvironment } from '../../test/support/databases.ts';
import { startTcpProxy, type TcpProxy } from '../../test/support/tcp-proxy.ts';
import { openStorage, type Storage } from './index.ts';
import { CommitListener, HEARTBEAT_TIMEOUT_MS, sessionName } from './pg-commit-notices.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * How long a change by another process may go unnoticed when the notices cannot be heard: the heartbeat's 1.5 s and
 * the caches' 1 s refresh (docs/architecture.md), with a wide margin for a loaded machine. A correctness bound: without
 * the heartbeat the change is never noticed this way.
 */
const BOUND_MS = 10_000;

/** Waits until `ok` holds, failing after BOUND_MS. */
async function within(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${BOUND_MS} ms`);
    await sleep(50);
  }
}

describe('commit notices over a listening connection that goes silent', { skip: !DIALECTS.includes('postgres') }, () => {
  let env: TestEnvironment;
  let admin: pg.Client;
  let proxy: TcpProxy;
  let storage: Storage;

  before(async () => {
    env = await createEnvironment('postgres');
    admin = new pg.Client({ connectionString: env.databaseUrl });
    await admin.connect();
    await admin.query('CREATE TABLE watched (id integer)');
    proxy = await startTcpProxy(env.databaseUrl);
    storage = await openStorage({ databaseUrl: proxy.url, dataDir: env.dataDir, sqliteSynchronous: 'FULL' });
    await storage.afterMigrations();
  });
  after(async () => {
    await storage.close();
    await proxy.close();
    await admin.end();
    await env.cleanup();
  });

  it('hears another session commit while the connection answers', async () => {
    await within('tracked from the start', () => storage.externalWrites(['watched']) !== undefined);
    const before = storage.externalWrites(['watched']);
    await admin.query('INSERT INTO watched VALUES (1)');
    await within('the notice heard', () => storage.externalWrites(['watched']) !== before);
  });

  it('stops counting on the notices once the listening connection is silent, and counts again once it answers', async () => {
    const before = storage.externalWrites(['watched']);
    assert.notEqual(before, undefined);
    // Only the listening connection (application_name …-listen) stops forwarding; the pool's connections go on.
    proxy.stall('-listen');
    await admin.query('INSERT INTO watched VALUES (2)');
    // The commit cannot be heard: the count must not stay as it was (caches would keep what they read before it).
    await within('the silent connection given up', () => storage.externalWrites(['watched']) === undefined);
    await storage.ping();
    proxy.resume();
    await within('a new listening connection', () => storage.externalWrites(['watched']) !== undefined);
    assert.notEqual(storage.externalWrites(['watched']), before, 'what was missed counts as a change');
  });
});

describe('commit notices over a listening connection while this process is busy', { skip: !DIALECTS.includes('postgres') }, () => {
  let env: TestEnvironment;

  before(async () => {
    env = await createEnvironment('postgres');
  });
  after(async () => {
    await env.cleanup();
  });

  it('keeps a connection whose heartbeat was answered during a synchronous step longer than the heartbeat timeout', async () => {
    let connects = 0;
    let blocked = false;
    let answeredSince = 0;
    let untrackedSince = false;
    const listener: CommitListener = new CommitListener({ connectionString: env.databaseUrl }, sessionName(), (config) => {
      connects++;
      // A real client; only its heartbeats are watched, and the first one still unanswered is followed by the block.
      const client = new pg.Client(config);
      const query = client.query.bind(client) as unknown as (text: string) => Promise<unknown>;
      client.query = ((text: string) => {
        const answer = query(text);
        if (text !== 'SELECT 1') return answer;
        let read = false;
        void answer.then(
          () => {
            read = true;
            if (!blocked) return;
            answeredSince++;
            if (!listener.tracked) untrackedSince = true;
          },
          () => undefined,
        );
        // After the step, timers run before the socket is read: the answer, come long before, is not read yet.
        setImmediate(() => {
          if (read || blocked) return;
          blocked = true;
          const until = Date.now() + HEARTBEAT_TIMEOUT_MS * 1.5;
          while (Date.now() < until) {
            // a long synchronous step: a large request, a long garbage collection
          }
        });
        return answer;
      }) as unknown as typeof client.query;
      return client;
    });
    try {
      await listener.start();
      const before = listener.countFor(['watched']);
      assert.equal(listener.tracked, true);
      // The blocked heartbeat's answer and two more.
      await within('heartbeats answered after the block', () => answeredSince >= 3);
      assert.equal(connects, 1, 'the listening connection was kept');
      assert.equal(untrackedSince, false, 'tracking stayed on');
      assert.equal(listener.tracked, true);
      assert.equal(listener.countFor(['watched']), before, 'no reconnection counted as a change of every table');
    } finally {
      await listener.close();
    }
  });
});
