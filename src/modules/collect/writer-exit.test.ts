import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { buildServer } from '../../http/server.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { createLogger } from '../../shared/logger.ts';
import { Catalog } from '../catalog/index.ts';
import { captureLog } from '../../../test/support/log-capture.ts';

// SQLite's writer thread ends in the middle of a group's write: the thread is terminated where the test says, as a
// crash of the thread (not of the process) would end it.
type End = 'exec' | 'commit' | 'reply';
/** Where the writer thread is ended next: instead of its first write or its commit, or once it has committed but before its answer is seen. */
let end: End | undefined;
/** The id of the commit whose answer is dropped. */
let commitId: number | undefined;
const post = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (this: Worker, message: { op?: string; id?: number }, transfer?: Parameters<Worker['postMessage']>[1]) {
  if (end !== undefined && end !== 'reply' && message.op === end) {
    end = undefined;
    void this.terminate();
    return;
  }
  if (end === 'reply' && message.op === 'commit') {
    end = undefined;
    commitId = message.id;
  }
  post.call(this, message, transfer);
};
const emit = Worker.prototype.emit;
Worker.prototype.emit = function (this: Worker, event: string | symbol, ...args: unknown[]) {
  if (event === 'message' && commitId !== undefined && (args[0] as { id?: number }).id === commitId) {
    commitId = undefined;
    void this.terminate();
    return true;
  }
  return emit.call(this, event, ...args);
};

interface Harness {
  /** POST /v1/batch with the write key of the `web` source. */
  send(payload: unknown): Promise<{ statusCode: number; body: string; json(): unknown }>;
  kernel: Kernel;
  /** The lines logged at level warn or above. */
  lines: string[];
}

describeEachDialect("SQLite's writer thread ends during a group commit", (dialect) => {
  /** A kernel of its own (the writer thread does not come back once ended), with its server and log. */
  const withServer = async (run: (harness: Harness) => Promise<void>) => {
    const env = await createEnvironment(dialect);
    const { lines, stream } = captureLog();
    const kernel = await openKernel(env.config, { logger: createLogger('warn', stream) });
    const server = await buildServer(kernel);
    try {
      const { secret } = await kernel.access.createWriteKey('web', null, CLI_ACTOR);
      const send = (url: string, payload: unknown) =>
        server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${secret}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
      const consented = await send('/v1/consent', { mechanism: 'banner_save', userId: 'u-1', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } });
      assert.equal(consented.statusCode, 200, consented.body);
      await run({ send: (payload) => send('/v1/batch', payload), kernel, lines });
    } finally {
      await server.app.close();
      await kernel.close();
      await env.cleanup();
    }
  };

  if (dialect !== 'sqlite') {
    it('is SQLite only', () =>
      withServer(async ({ kernel }) => {
        assert.equal(kernel.storage.deferred, undefined);
      }));
    return;
  }

  /** 70 events of a consenting person (enough for the writer thread) and one of somebody unknown, refused and counted. */
  const batch = (prefix: string) => ({
    batch: [
      ...Array.from({ length: 70 }, (_, i) => ({ type: 'track', userId: 'u-1', messageId: `${prefix}-${i}`, timestamp: '2026-01-01T00:00:00.000Z', event: 'Product Viewed', properties: { product_id: 'p1' } })),
      { type: 'track', userId: 'u-nobody', messageId: `${prefix}-nobody`, event: 'Product Viewed', properties: { product_id: 'p1' } },
    ],
  });
  const statuses = (response: { json(): unknown }) => new Set((response.json() as { results: { status: string }[] }).results.map((r) => r.status));

  for (const [where, answered] of [
    ['exec', 'stored'],
    ['commit', 'stored'],
    ['reply', 'duplicate'],
  ] as const) {
    it(`at the ${where === 'reply' ? "commit's answer (committed)" : `group's ${where} (nothing committed)`}: the group is written on the main connection (answered ${answered}), its events and counts stored once; one warning`, () =>
      withServer(async ({ send, kernel, lines }) => {
        const db = kernel.storage.db;
        const events = async (prefix: string) => Number((await sql<{ n: number }>`SELECT count(*) AS n FROM collect_events WHERE message_id LIKE ${`${prefix}-%`}`.execute(db)).rows[0]?.n);
        const refused = async () => Number((await sql<{ n: number }>`SELECT coalesce(sum(count), 0) AS n FROM collect_refusals WHERE source = 'web'`.execute(db)).rows[0]?.n);
        const accepted = async () => {
          const reader = await Catalog.open({ storage: kernel.storage, audit: kernel.audit, taxonomy: kernel.taxonomy });
          return (await reader.stats({ source: 'web', event: 'Product Viewed' }))[0]?.accepted ?? 0;
        };
        const warm = await send(batch('warm'));
        assert.equal(warm.statusCode, 200, warm.body);
        assert.equal(kernel.storage.deferred?.usable, true);
        // The tracking plan counts every message it checked; the refusal is counted per purpose.
        const perBatch = { accepted: await accepted(), refused: await refused() };
        assert.equal(perBatch.accepted, 71);
        assert.ok(perBatch.refused > 0);

        end = where;
        const dying = await send(batch('dying'));
        assert.equal(end, undefined, 'the writer thread was ended');
        assert.equal(dying.statusCode, 200, dying.body);
        assert.deepEqual(statuses(dying), new Set([answered, 'refused']));
        assert.equal(await events('dying'), 70);
        assert.equal(kernel.storage.deferred?.usable, false);
        assert.equal(await accepted(), 2 * perBatch.accepted);
        assert.equal(await refused(), 2 * perBatch.refused);

        const after = await send(batch('after'));
        assert.equal(after.statusCode, 200, after.body);
        assert.deepEqual(statuses(after), new Set(['stored', 'refused']));
        assert.equal(await events('after'), 70);
        assert.equal(await accepted(), 3 * perBatch.accepted);
        assert.equal(await refused(), 3 * perBatch.refused);

        const warnings = lines.filter((line) => line.includes("SQLite's writer thread exited"));
        assert.equal(warnings.length, 1, lines.join(''));
        assert.equal(JSON.parse(warnings[0] as string).level, 40);
      }));
  }
});
