// What the inactivity index of computed traits costs ingestion: each event adds to its person's row of
// profiles_computed (one upsert per person and commit, as recordActivityBatch does), 800 events per commit
// (synchronous=FULL, the server's settings), with the index on last_seen_at as before migration 0091, on the day of
// it as now (plus the statement that moves the day when it changed), and without any, in one run.
// `node bench/support/computed-keys.ts [people] [events]`.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';

const PEOPLE = Number(process.argv[2] ?? 200_000);
const EVENTS = Number(process.argv[3] ?? 200_000);
const PER_COMMIT = 800;

type Layout = 'instant' | 'day' | 'none';
const LAYOUTS: { layout: Layout; name: string }[] = [
  { layout: 'instant', name: 'index (last_seen_at, profile_id), before' },
  { layout: 'day', name: 'index (last_seen_day, profile_id) and the day moved only when it changes, now' },
  { layout: 'none', name: 'no inactivity index' },
];

const SET = `first_seen_at = min(profiles_computed.first_seen_at, excluded.first_seen_at), last_seen_at = max(profiles_computed.last_seen_at, excluded.last_seen_at),
  event_count = profiles_computed.event_count + excluded.event_count, order_count = profiles_computed.order_count + excluded.order_count`;

function run(layout: Layout, people: string[], startAt: number, seenToday: boolean): number {
  const dir = mkdtempSync(join(tmpdir(), 'candor-computed-'));
  const db = new DatabaseSync(join(dir, 'computed.db'));
  try {
    for (const pragma of ['journal_mode = WAL', 'synchronous = FULL', 'secure_delete = ON', 'cache_size = -65536', 'wal_autocheckpoint = 20000', 'temp_store = MEMORY']) db.exec(`PRAGMA ${pragma}`);
    db.exec(`CREATE TABLE profiles_computed (profile_id TEXT PRIMARY KEY, first_seen_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, event_count INTEGER NOT NULL,
      order_count INTEGER NOT NULL, total_order_value REAL NOT NULL, currency TEXT, last_seen_day TEXT NOT NULL DEFAULT '')`);
    if (layout === 'instant') db.exec('CREATE INDEX computed_seen ON profiles_computed (last_seen_at, profile_id)');
    if (layout === 'day') db.exec('CREATE INDEX computed_seen ON profiles_computed (last_seen_day, profile_id)');
    // Everyone was seen once: earlier today (each event then leaves the day as it is), or in the previous days (the
    // first event of each person today moves the day).
    const fill = db.prepare('INSERT INTO profiles_computed VALUES (?, ?, ?, 1, 0, 0, NULL, ?)');
    const midnight = Math.floor(startAt / 86_400_000) * 86_400_000;
    db.exec('BEGIN');
    people.forEach((id, i) => {
      const at = new Date(seenToday ? midnight + (i % 1000) : startAt - 30 * 86_400_000 + i * 1000).toISOString();
      fill.run(id, at, at, at.slice(0, 10));
    });
    db.exec('COMMIT');
    const upserts = new Map<number, ReturnType<DatabaseSync['prepare']>>();
    const catchUps = new Map<number, ReturnType<DatabaseSync['prepare']>>();
    const upsert = (n: number) => {
      let stmt = upserts.get(n);
      if (!stmt) {
        stmt = db.prepare(`INSERT INTO profiles_computed VALUES ${Array.from({ length: n }, () => '(?, ?, ?, ?, 0, 0, NULL, ?)').join(', ')}
          ON CONFLICT (profile_id) DO UPDATE SET ${SET}`);
        upserts.set(n, stmt);
      }
      return stmt;
    };
    const catchUp = (n: number) => {
      let stmt = catchUps.get(n);
      if (!stmt) {
        stmt = db.prepare(`UPDATE profiles_computed SET last_seen_day = substr(last_seen_at, 1, 10) WHERE profile_id IN (${Array.from({ length: n }, () => '?').join(', ')}) AND last_seen_day <> substr(last_seen_at, 1, 10)`);
        catchUps.set(n, stmt);
      }
      return stmt;
    };
    let seq = 0;
    let ms = 0;
    for (let done = 0; done < EVENTS; done += PER_COMMIT) {
      // A commit's activity, aggregated per person (as recordActivityBatch does).
      const rows = new Map<string, { at: string; n: number }>();
      for (let i = 0; i < PER_COMMIT; i++) {
        const id = people[Math.floor(Math.random() * people.length)] as string;
        const at = new Date(startAt + seq++).toISOString();
        const row = rows.get(id);
        if (row) {
          row.at = at;
          row.n++;
        } else rows.set(id, { at, n: 1 });
      }
      const list = [...rows];
      const began = performance.now();
      db.exec('BEGIN IMMEDIATE');
      for (let i = 0; i < list.length; i += 256) {
        const part = list.slice(i, i + 256);
        const params: SQLInputValue[] = [];
        for (const [id, { at, n }] of part) params.push(id, at, at, n, at.slice(0, 10));
        upsert(part.length).run(...params);
        if (layout === 'day') catchUp(part.length).run(...part.map(([id]) => id));
      }
      db.exec('COMMIT');
      if (done >= EVENTS / 2) ms += performance.now() - began;
    }
    return (ms * 1000) / (EVENTS / 2);
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const people = Array.from({ length: PEOPLE }, () => `prf_${randomBytes(13).toString('hex')}`);
// Events from one second past midnight (UTC) on, one per millisecond: all on the same day.
const startAt = Math.floor(Date.now() / 86_400_000) * 86_400_000 + 1000;
console.log(`computed-trait keys — ${PEOPLE.toLocaleString('en-US')} people, ${EVENTS.toLocaleString('en-US')} events, ${PER_COMMIT} per commit; µs per event over the second half`);
for (const seenToday of [true, false]) {
  for (const { layout, name } of LAYOUTS) console.log(`${seenToday ? 'everyone seen earlier today' : 'nobody seen today yet'}, ${name}: ${run(layout, people, startAt, seenToday).toFixed(1)} µs/event`);
}
