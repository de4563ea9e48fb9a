import type { OrderByItemBuilder } from 'kysely';
import type { DialectName } from './storage.ts';

/** An ORDER BY item's modifiers, as Kysely's `orderBy(column, modifiers)` takes them. */
export type OrderModifiers = (item: OrderByItemBuilder) => OrderByItemBuilder;

/**
 * ORDER BY modifiers that order text by code point (its UTF-8 bytes) on both databases: SQLite's `BINARY` (its
 * default) and PostgreSQL's `"C"`, never the database's own collation, which on most PostgreSQL installs is
 * linguistic (en_US: case and punctuation weigh less than letters), so a list answers in the same order whatever the
 * database and its locale. `compareText` is the same order in memory. Timestamps and generated ids need none of this.
 */
export function textOrder(dialect: DialectName): { asc: OrderModifiers; desc: OrderModifiers } {
  const collation = dialect === 'postgres' ? 'C' : 'binary';
  return { asc: (item) => item.collate(collation), desc: (item) => item.desc().collate(collation) };
}

/** A code unit's place in code point order: surrogates (code points past U+FFFF) after U+E000–U+FFFF. */
const rank = (unit: number): number => (unit < 0xd800 ? unit : unit < 0xe000 ? unit + 0x2000 : unit - 0x800);

/** Compares two texts by code point, as `textOrder` orders them on the databases (not as `<` does, by UTF-16 code unit). */
export function compareText(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}
