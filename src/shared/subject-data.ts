/**
 * What every module that holds data about a person registers with `rights` and `retention`, which never switch on
 * module names (DESIGN.md): a handler that exports and erases the module's data about one subject, and the
 * retention rules of its stores.
 */
import type { SqlExecutor } from '../storage/index.ts';

/** An identifier as stored: its type and keyed HMAC pseudonym, never the value. */
export interface IdentifierPseudonym {
  readonly type: string;
  readonly valueHash: string;
}

/** One person as rights requests see them: every profile merged into them and every identifier linked to them. */
export interface DataSubject {
  /** The canonical profile id. */
  readonly profileId: string;
  /** The canonical profile id and every profile merged into it. */
  readonly profileIds: readonly string[];
  /** Every identifier linked to any of those profiles. */
  readonly identifiers: readonly IdentifierPseudonym[];
}

/** The metadata of GDPR Art. 15(1) for one exported field. */
export interface FieldDisclosure {
  /** Path of the field inside the section's data, e.g. `traits.email` or `events[].properties.total`. */
  readonly field: string;
  /** Data category (fideslang key). */
  readonly category: string;
  /** Purposes (data uses) it serves. */
  readonly purposes: readonly string[];
  /** Where it came from: the source(s) that sent it, or `candor` for what Candor computed. */
  readonly source: string;
  /** Who it is disclosed to (recipients); empty when nobody outside the controller. */
  readonly recipients: readonly string[];
  /** How long it is kept (ISO-8601 duration), or null when kept until erasure. */
  readonly retention: string | null;
}

/** One module's part of an access/portability archive. */
export interface ExportSection {
  /** File stem in the archive: `<module>.json`. */
  readonly module: string;
  /** A heading for the readable summary. */
  readonly title: string;
  /** JSON-serializable data about the subject, decrypted. */
  readonly data: unknown;
  readonly fields: readonly FieldDisclosure[];
  /** A table also written as CSV (events). */
  readonly csv?: { readonly file: string; readonly header: readonly string[]; readonly rows: readonly (readonly (string | number | boolean | null)[])[] };
}

/** confirmed: gone (or reduced to what a legal obligation needs); forwarded: asked of a recipient; not_supported: could not be erased. */
export type StoreStatus = 'confirmed' | 'forwarded' | 'not_supported';

/** What an erasure did to one store (table, file, recipient). */
export interface EraseOutcome {
  readonly store: string;
  readonly status: StoreStatus;
  /** Rows (or items) deleted. */
  readonly deleted: number;
  /** Rows kept because a legal obligation requires them, with the reason. */
  readonly kept?: { readonly count: number; readonly reason: string };
  readonly detail?: string;
}

/** Registered by each module that holds data about a person. */
export interface SubjectDataHandler {
  readonly module: string;
  /** What the module holds about the subject, decrypted where the caller may see it, for access and portability. */
  export(subject: DataSubject): Promise<ExportSection>;
  /**
   * Deletes what the module holds about the subject (or reduces it to what a legal obligation needs, saying so), using
   * only `tx`. Running it twice is harmless: the second run deletes nothing and still confirms.
   */
  erase(tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]>;
}

/**
 * One line of the deletion ledger. The ledger lives in the database and, append-only, in
 * `<dataDir>/deletion-ledger.jsonl` outside it, so that a backup restored from before an erasure has the erasure
 * replayed before anything else runs. It holds only profile ids and pseudonyms.
 */
export interface DeletionLedgerEntry {
  readonly seq: number;
  readonly requestId: string;
  readonly at: string;
  readonly profileIds: readonly string[];
  readonly identifiers: readonly IdentifierPseudonym[];
  /** SHA-256 of the previous line (64 zeros for the first) and of this one: a chain like the audit log's. */
  readonly prevHash: string;
  readonly hash: string;
}
