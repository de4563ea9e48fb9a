// What each B-tree of the events table costs an insert: rows shaped like stored events, 800 per commit
// (synchronous=FULL, the server's settings), into a table with one layout of keys each, in one run.
// `node bench/support/event-keys.ts [rows]` (docs/adr/0004-duplicate-key-by-sender-time.md).
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';

const ROWS = Number(process.argv[2] ?? 200_000);
const PROFILES = 2000;

interface Layout {
  name: string;
  /** The duplicate key: none, (source, message_id) or (source, dedup_at, message_id). */
  unique: 'none' | 'message' | 'time';
  /** The per-person index (profile_id, occurred_at). */
  perPerson: boolean;
}

const LAYOUTS: Layout[] = [
  { name: 'every index as before (source, message_id)', unique: 'message', perPerson: true },
  { name: 'without the duplicate key', unique: 'none', perPerson: true },
  { name: '(source, dedup_at, message_id) instead', unique: 'time', perPerson: true },
  { name: '(source, dedup_at, message_id), no per-person index', unique: 'time', perPerson: false },
];

function run(layout: Layout): { insert: number; commit: number } {
  const dir = mkdtempSync(join(tmpdir(), 'candor-keys-'));
  const db = new DatabaseSync(join(dir, 'events.db'));
  try {
    for (const pragma of ['journal_mode = WAL', 'synchronous = FULL', 'secure_delete = ON', 'cache_size = -65536', 'wal_autocheckpoint = 20000']) db.exec(`PRAGMA ${pragma}`);
    const unique = layout.unique === 'message' ? ', UNIQUE (source, message_id)' : layout.unique === 'time' ? ', UNIQUE (source, dedup_at, message_id)' : '';
    db.exec(`CREATE TABLE ev (id TEXT PRIMARY KEY, source TEXT NOT NULL, message_id TEXT NOT NULL, profile_id TEXT NOT NULL, kind TEXT NOT NULL, event TEXT,
      occurred_at TEXT NOT NULL, received_at TEXT NOT NULL, purposes TEXT NOT NULL, data TEXT NOT NULL, data_enc TEXT, plan_version INTEGER NOT NULL, dedup_at TEXT NOT NULL${unique})`);
    if (layout.perPerson) db.exec('CREATE INDEX ev_profile ON ev (profile_id, occurred_at)');
    db.exec('CREATE INDEX ev_occurred ON ev (occurred_at, id)');
    const conflict = layout.unique === 'message' ? ' ON CONFLICT (source, message_id) DO NOTHING' : layout.unique === 'time' ? ' ON CONFLICT (source, dedup_at, message_id) DO NOTHING' : '';
    const insert = db.prepare(`INSERT INTO ev VALUES ${Array.from({ length: 100 }, () => '(?,?,?,?,?,?,?,?,?,?,?,?,?)').join(',')}${conflict}`);
    const profiles = Array.from({ length: PROFILES }, () => `prf_${randomBytes(10).toString('hex')}`);
    const data = JSON.stringify({ properties: { product_id: 'p-12', sku: 'SKU-12', category: 'Shoes', name: 'Product 12', brand: 'Acme', price: 22, currency: 'EUR' }, context: { library: { name: 'analytics.js', version: '5.2.0' }, locale: 'en-GB', page: { path: '/products/12', title: 'Product 12' } } });
    const sealed = randomBytes(165).toString('base64');
    const start = Date.now();
    let seq = 0;
    let insertMs = 0;
    let commitMs = 0;
    for (let done = 0; done < ROWS; done += 800) {
      const began = performance.now();
      db.exec('BEGIN IMMEDIATE');
      for (let b = 0; b < 8; b++) {
        const params: SQLInputValue[] = [];
        for (let i = 0; i < 100; i++) {
          seq++;
          const at = new Date(start + seq).toISOString();
          const id = `evt_${String(seq).padStart(29, '0')}`;
          params.push(id, 'web', randomUUID(), profiles[Math.floor(Math.random() * PROFILES)] as string, 'track', 'Product Viewed', at, at, '["analytics.reporting"]', data, sealed, 1, at);
        }
        insert.run(...params);
      }
      const inserted = performance.now();
      db.exec('COMMIT');
      // The second half only: the table has grown past what one commit touches.
      if (done >= ROWS / 2) {
        insertMs += inserted - began;
        commitMs += performance.now() - inserted;
      }
    }
    return { insert: (insertMs * 1000) / (ROWS / 2), commit: (commitMs * 1000) / (ROWS / 2) };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`event keys — ${ROWS.toLocaleString('en-US')} rows, 800 per commit; µs per event over the second half`);
for (const layout of LAYOUTS) {
  const { insert, commit } = run(layout);
  console.log(`${layout.name}: insert ${insert.toFixed(1)} µs, commit ${commit.toFixed(1)} µs, together ${(insert + commit).toFixed(1)} µs/event`);
}
