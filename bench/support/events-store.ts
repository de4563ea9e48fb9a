// The events table every store of bench:ingest writes: Candor's `collect_events` exactly as Candor's own migrations
// make it (COLLECT_MIGRATIONS and COLLECT_RETENTION_MIGRATIONS, applied alone): primary key on the time-sortable id,
// the duplicate key (source, sender's time, messageId), the per-person index (profile_id, occurred_at), the time
// index (occurred_at, id), and the duplicate-detection triggers that keep a day's messageIds in collect_recent_ids
// (on PostgreSQL also the statement-level commit-notice trigger every table gets). None of these is a privacy step, so
// the privacy-off server and the raw inserts pay for them as Candor does.
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { COLLECT_MIGRATIONS, COLLECT_RETENTION_MIGRATIONS } from '../../src/modules/collect/index.ts';
import { sortableId } from '../../src/shared/random.ts';
import { migrateToLatest, SQLITE_FILE, type SqlExecutor, type Storage } from '../../src/storage/index.ts';

/** Creates collect_events and collect_recent_ids (with their indexes and triggers) as Candor's migrations do. */
export async function createEventsStore(storage: Storage): Promise<void> {
  const migrations = [...COLLECT_MIGRATIONS, ...COLLECT_RETENTION_MIGRATIONS].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  await migrateToLatest(storage, migrations);
}

/** A row of collect_events in column order (id, source, message_id, profile_id, kind, event, occurred_at, received_at, purposes, data, data_enc, plan_version, dedup_at). */
export type PlainRow = [string, string, string, string, string, string | null, string, string, string, string, null, number, string];

/**
 * A message stored with no privacy step: the sender's own user id (else anonymous id) in place of a profile, the whole
 * message's properties, traits and context as plain JSON, no envelope, no purposes.
 */
export function plainRow(m: Record<string, unknown>, receivedAt: string): PlainRow {
  const person = typeof m.userId === 'string' ? m.userId : typeof m.anonymousId === 'string' ? m.anonymousId : '';
  const at = typeof m.timestamp === 'string' ? m.timestamp : '';
  return [sortableId('evt_'), 'web', String(m.messageId), person, String(m.type ?? 'track'), typeof m.event === 'string' ? m.event : null, at || receivedAt, receivedAt, '[]', JSON.stringify({ properties: m.properties, traits: m.traits, context: m.context }), null, 0, at];
}

type EventsTable = { collect_events: { id: string; source: string; message_id: string; profile_id: string; kind: string; event: string | null; occurred_at: string; received_at: string; purposes: string; data: string; data_enc: string | null; plan_version: number; dedup_at: string } };
const BLANK = { id: '', source: '', message_id: '', profile_id: '', kind: '', event: null, occurred_at: '', received_at: '', purposes: '', data: '', data_enc: null, plan_version: 0, dedup_at: '' };

/**
 * Inserts rows into collect_events 100 a statement, each statement skipping a stored duplicate, as Candor's
 * CollectRepo writes them (the same compiled text); `tx` is Storage.raw.transaction's executor.
 */
export function eventsInserter(storage: Storage): (tx: SqlExecutor, rows: readonly PlainRow[]) => Promise<void> {
  const db = storage.db.withTables<EventsTable>();
  const texts = new Map<number, string>();
  const textFor = (n: number) => {
    let text = texts.get(n);
    if (!text) {
      text = db.insertInto('collect_events').values(Array.from({ length: n }, () => BLANK)).onConflict((oc) => oc.columns(['source', 'dedup_at', 'message_id']).doNothing()).compile().sql;
      texts.set(n, text);
    }
    return text;
  };
  return async (tx, rows) => {
    for (let i = 0; i < rows.length; i += 100) {
      const part = rows.slice(i, i + 100);
      await tx.run(textFor(part.length), part.flat());
    }
  };
}

/**
 * The B-trees and triggers of collect_events and collect_recent_ids in a SQLite data directory: `names` to print, `sql`
 * (every statement that made them, table names aside) to compare stores.
 */
export function sqliteEventsSchema(dataDir: string): { names: string; sql: string } {
  const db = new DatabaseSync(join(dataDir, SQLITE_FILE), { readOnly: true });
  try {
    const rows = db.prepare(`SELECT type, name, tbl_name AS tbl, sql FROM sqlite_master WHERE tbl_name IN ('collect_events', 'collect_recent_ids') ORDER BY tbl_name, type, name`).all() as { type: string; name: string; tbl: string; sql: string | null }[];
    const of = (tbl: string, type: string) => rows.filter((r) => r.tbl === tbl && r.type === type).map((r) => r.name);
    const names = ['collect_events', 'collect_recent_ids']
      .map((tbl) => `${tbl} (indexes ${of(tbl, 'index').join(', ') || 'none'}${of(tbl, 'trigger').length > 0 ? `; triggers ${of(tbl, 'trigger').join(', ')}` : ''})`)
      .join(', ');
    return { names, sql: rows.map((r) => `${r.type} ${r.name} ${r.sql ?? ''}`).join('\n') };
  } finally {
    db.close();
  }
}
