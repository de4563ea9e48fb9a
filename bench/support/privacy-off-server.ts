// The baseline of bench:ingest: the same HTTP framework, body parsing, storage and group commit as Candor, but
// no privacy step at all — no tracking plan, consent gate, identity, pseudonyms or encryption. Parse and store, with
// the same keys as Candor's events table: time-sortable ids and duplicates recognised by (source, the sender's
// timestamp, messageId), so both servers pay the same for their B-trees but for Candor's per-person index.
import Fastify from 'fastify';
import { sql } from 'kysely';
import { GroupCommit } from '../../src/shared/group-commit.ts';
import { openStorage } from '../../src/storage/index.ts';
import { sortableId } from '../../src/shared/random.ts';

const [dataDir = '', databaseUrl = ''] = process.argv.slice(2);
const storage = await openStorage({ dataDir, databaseUrl, sqliteSynchronous: 'FULL' });
await sql`CREATE TABLE IF NOT EXISTS plain_events (id TEXT PRIMARY KEY, source TEXT NOT NULL, message_id TEXT NOT NULL, user_id TEXT, kind TEXT NOT NULL, event TEXT, occurred_at TEXT NOT NULL, received_at TEXT NOT NULL, data TEXT NOT NULL, dedup_at TEXT NOT NULL, UNIQUE (source, dedup_at, message_id))`.execute(storage.db);
type Row = [string, string, string, string | null, string, string | null, string, string, string, string];
const db = storage.db.withTables<{ plain_events: { id: string; source: string; message_id: string; user_id: string | null; kind: string; event: string | null; occurred_at: string; received_at: string; data: string; dedup_at: string } }>();
const insertText = new Map<number, string>();
const textFor = (n: number) => {
  let text = insertText.get(n);
  if (!text) {
    const blank = { id: '', source: '', message_id: '', user_id: null, kind: '', event: null, occurred_at: '', received_at: '', data: '', dedup_at: '' };
    text = db.insertInto('plain_events').values(Array.from({ length: n }, () => blank)).onConflict((oc) => oc.columns(['source', 'dedup_at', 'message_id']).doNothing()).compile().sql;
    insertText.set(n, text);
  }
  return text;
};
const commit = new GroupCommit<Row, boolean>(async (rows) => {
  await storage.raw.transaction(async (tx) => {
    for (let i = 0; i < rows.length; i += 100) {
      const part = rows.slice(i, i + 100);
      await tx.run(textFor(part.length), part.flat());
    }
  });
  return rows.map(() => true);
});

const app = Fastify({ bodyLimit: 500 * 1024 });
const rowOf = (m: Record<string, unknown>, receivedAt: string): Row => [
  sortableId('evt_'),
  'web',
  String(m.messageId),
  typeof m.userId === 'string' ? m.userId : null,
  String(m.type ?? 'track'),
  typeof m.event === 'string' ? m.event : null,
  typeof m.timestamp === 'string' ? m.timestamp : receivedAt,
  receivedAt,
  JSON.stringify({ properties: m.properties, traits: m.traits, context: m.context }),
  typeof m.timestamp === 'string' ? m.timestamp : '',
];
app.post('/v1/track', async (request) => {
  await commit.submit([rowOf(request.body as Record<string, unknown>, new Date().toISOString())]);
  return { success: true, results: [{ index: 0, status: 'stored' }] };
});
app.post('/v1/batch', async (request) => {
  const { batch } = request.body as { batch: Record<string, unknown>[] };
  const receivedAt = new Date().toISOString();
  const rows = batch.map((m) => rowOf(m, receivedAt));
  await commit.submit(rows);
  return { success: true, results: rows.map((_, index) => ({ index, status: 'stored' })) };
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });
console.log(`listening on ${address}`);
process.on('SIGTERM', () => void app.close().then(() => storage.close()).then(() => process.exit(0)));
