// The baseline of bench:ingest: the same HTTP framework, body parsing, storage and group commit as Candor, but
// no privacy step at all — no tracking plan, consent gate, identity, pseudonyms or encryption. Parse and store into
// the very table Candor stores events in: collect_events made by Candor's own migrations (support/events-store.ts),
// so both servers pay for the same B-trees (time-sortable id, duplicate key, per-person and time indexes) and the same
// duplicate-detection triggers; the per-person index is keyed by the sender's user id here, by a profile in Candor.
// `node bench/support/privacy-off-server.ts DATA_DIR [DATABASE_URL] [FULL|NORMAL]`; start it with `npm start`'s Node
// flags (support/start-flags.ts) to compare it with Candor's server.
import Fastify from 'fastify';
import { GroupCommit } from '../../src/shared/group-commit.ts';
import { openStorage } from '../../src/storage/index.ts';
import { createEventsStore, eventsInserter, plainRow, type PlainRow } from './events-store.ts';

const [dataDir = '', databaseUrl = '', synchronous = 'FULL'] = process.argv.slice(2);
const storage = await openStorage({ dataDir, databaseUrl, sqliteSynchronous: synchronous === 'NORMAL' ? 'NORMAL' : 'FULL' });
await createEventsStore(storage);
const insert = eventsInserter(storage);
const commit = new GroupCommit<PlainRow, boolean>(async (rows) => {
  await storage.raw.transaction((tx) => insert(tx, rows));
  return rows.map(() => true);
});

const app = Fastify({ bodyLimit: 500 * 1024 });
// Every message is answered stored (a duplicate is skipped by the table's key or trigger, unseen: the load has none).
app.post('/v1/track', async (request) => {
  await commit.submit([plainRow(request.body as Record<string, unknown>, new Date().toISOString())]);
  return { success: true, results: [{ index: 0, status: 'stored' }] };
});
app.post('/v1/batch', async (request) => {
  const { batch } = request.body as { batch: Record<string, unknown>[] };
  const receivedAt = new Date().toISOString();
  const rows = batch.map((m) => plainRow(m, receivedAt));
  await commit.submit(rows);
  return { success: true, results: rows.map((_, index) => ({ index, status: 'stored' })) };
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });
console.log(`listening on ${address}`);
process.on('SIGTERM', () => void app.close().then(() => storage.close()).then(() => process.exit(0)));
