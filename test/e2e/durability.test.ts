// An acknowledged event survives the server being killed in the middle of concurrent ingestion: group commits, the
// SQLite writer thread and the answers that wait for them are exercised by the real server, killed with SIGKILL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import { openKernel } from '../../src/kernel.ts';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../support/databases.ts';
import { seedIngestion, start, stop, type Running } from '../support/serve-process.ts';

const USERS = 40;

interface Sent {
  body: Record<string, unknown>;
  /** What the server answered for it: a status, or undefined when the answer never came. */
  status: string | undefined;
}

function message(i: number): Record<string, unknown> {
  const user = i % USERS;
  const base = { messageId: randomUUID(), userId: `user-${user}`, anonymousId: `anon-${user}`, timestamp: new Date().toISOString() };
  if (i % 10 === 0) return { ...base, type: 'identify', traits: { email: `user${user}@example.net`, first_name: 'Sam', country: 'NL' } };
  if (i % 3 === 0) return { ...base, type: 'page', name: 'Home', properties: { path: '/', url: 'https://shop.example/' } };
  return { ...base, type: 'track', event: 'Product Viewed', properties: { product_id: `p-${i % 50}`, price: 10 + (i % 7), currency: 'EUR' } };
}

describeEachDialect('ingestion durability: the server killed under load', (dialect) => {
  let env: TestEnvironment;
  let auth: { authorization: string };
  before(async () => {
    env = await createEnvironment(dialect);
    const people = Array.from({ length: USERS }, (_, i) => ({ userId: `user-${i}`, anonymousId: `anon-${i}` }));
    auth = await seedIngestion(env, people, ['analytics.reporting', 'personalize.profiling']);
  });
  after(async () => {
    await env.cleanup();
  });

  it('keeps every event answered `stored`, and a retry of everything stores each message once', async () => {
    const headers = { ...auth, 'content-type': 'application/json' };
    const sent: Sent[] = [];
    let next = 0;
    let killed = false;
    let stored = 0;
    const post = async (running: Running, path: string, body: unknown): Promise<{ results: { messageId: string; status: string }[] } | undefined> => {
      try {
        const response = await fetch(`${running.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
        if (response.status !== 200) return undefined;
        return (await response.json()) as { results: { messageId: string; status: string }[] };
      } catch {
        return undefined;
      }
    };
    const running = await start(env);
    // Batch clients (groups large enough for SQLite's writer thread) beside single-event clients, until the kill.
    const batchClient = async () => {
      while (!killed) {
        const own = Array.from({ length: 40 }, () => ({ body: message(next++), status: undefined as string | undefined }));
        sent.push(...own);
        const answer = await post(running, '/v1/batch', { batch: own.map((s) => s.body) });
        if (!answer) continue;
        answer.results.forEach((r, i) => ((own[i] as Sent).status = r.status));
        stored += answer.results.filter((r) => r.status === 'stored').length;
      }
    };
    const singleClient = async () => {
      while (!killed) {
        const one: Sent = { body: message(next++), status: undefined };
        sent.push(one);
        const { type, ...body } = one.body;
        const answer = await post(running, `/v1/${String(type)}`, body);
        if (!answer) continue;
        one.status = answer.results[0]?.status;
        if (one.status === 'stored') stored++;
      }
    };
    const clients = [...Array.from({ length: 6 }, batchClient), ...Array.from({ length: 6 }, singleClient)];
    const deadline = Date.now() + 20_000;
    while (stored < 1500 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await stop(running, 'SIGKILL');
    killed = true;
    await Promise.all(clients);

    const acknowledged = sent.filter((s) => s.status === 'stored').map((s) => s.body.messageId as string);
    const unanswered = sent.filter((s) => s.status === undefined);
    assert.ok(acknowledged.length >= 1500, `only ${acknowledged.length} events were stored before the kill`);
    assert.ok(unanswered.length > 0, 'the kill found no request in flight: the test did not test a crash');
    assert.equal(sent.filter((s) => s.status !== undefined && s.status !== 'stored').length, 0, 'every answered event was stored');

    const kernel = await openKernel(env.configWith({ NODE_ENV: 'development' }));
    try {
      const rows = await kernel.storage.raw.all<{ message_id: string }>('SELECT message_id FROM collect_events');
      const present = new Set(rows.map((r) => r.message_id));
      const lost = acknowledged.filter((id) => !present.has(id));
      assert.deepEqual(lost, [], `${lost.length} acknowledged events were lost`);
      // Whatever was stored is something that was sent, once.
      assert.equal(present.size, rows.length);
      const ids = new Set(sent.map((s) => s.body.messageId as string));
      assert.ok(rows.every((r) => ids.has(r.message_id)));
    } finally {
      await kernel.close();
    }

    // The client libraries retry what got no answer; here everything is sent again, the acknowledged events too.
    const again = await start(env);
    try {
      const statuses = new Map<string, string>();
      for (let i = 0; i < sent.length; i += 400) {
        const answer = await post(again, '/v1/batch', { batch: sent.slice(i, i + 400).map((s) => s.body) });
        assert.ok(answer, 'the retry was answered');
        for (const r of answer.results) statuses.set(r.messageId, r.status);
      }
      for (const id of acknowledged) assert.equal(statuses.get(id), 'duplicate', `acknowledged ${id} was not stored before`);
      assert.ok([...statuses.values()].every((s) => s === 'stored' || s === 'duplicate'));
    } finally {
      await stop(again);
    }
    const kernel2 = await openKernel(env.configWith({ NODE_ENV: 'development' }));
    try {
      const [row] = await kernel2.storage.raw.all<{ n: number; distinct_ids: number }>('SELECT COUNT(*) AS n, COUNT(DISTINCT message_id) AS distinct_ids FROM collect_events');
      assert.equal(Number(row?.n), sent.length);
      assert.equal(Number(row?.distinct_ids), sent.length);
    } finally {
      await kernel2.close();
    }
  });
});
