import { sql, type Kysely } from 'kysely';
import type { DialectName } from './storage.ts';

/**
 * For a migration, PostgreSQL: keeps the values of these columns out of the planner statistics. ANALYZE (Candor's
 * own, autovacuum's) copies sample values of every column into pg_statistic, which any role allowed to read the table
 * reads through pg_stats, and where they stay after their rows are deleted. Columns holding key material or
 * ciphertexts get a statistics target of 0 (never sampled again), and the statistics already gathered are dropped:
 * ALTER COLUMN … TYPE to the column's own type and collation removes its pg_statistic row (SET STATISTICS 0 alone keeps
 * it), without rewriting the table or rebuilding an index (the type is unchanged), under a short ACCESS EXCLUSIVE lock.
 * The planner then estimates conditions on those columns with its defaults; Candor only filters them by IS NULL.
 * SQLite: nothing (its statistics, sqlite_stat1, hold row counts, no values).
 */
export async function keepOutOfStatistics(db: Kysely<object>, dialect: DialectName, table: string, columns: readonly string[]): Promise<void> {
  if (dialect !== 'postgres') return;
  const { rows } = await sql<{ name: string; type: string; collation: string | null }>`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
      CASE WHEN a.attcollation <> 0 THEN quote_ident(n.nspname) || '.' || quote_ident(c.collname) END AS collation
    FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation LEFT JOIN pg_namespace n ON n.oid = c.collnamespace
    WHERE a.attrelid = to_regclass(${table}) AND a.attname = ANY(${[...columns]}) AND a.attnum > 0 AND NOT a.attisdropped`.execute(db);
  const missing = columns.filter((column) => !rows.some((r) => r.name === column));
  if (missing.length > 0) throw new Error(`keepOutOfStatistics: ${table} has no column ${missing.join(', ')}`);
  const actions = rows.flatMap((r) => {
    const column = sql.ref(r.name);
    return [sql`ALTER COLUMN ${column} TYPE ${sql.raw(r.type)}${r.collation ? sql.raw(` COLLATE ${r.collation}`) : sql``}`, sql`ALTER COLUMN ${column} SET STATISTICS 0`];
  });
  await sql`ALTER TABLE ${sql.table(table)} ${sql.join(actions)}`.execute(db);
}
