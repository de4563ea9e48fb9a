import type { Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import { compareText, Freshness, isUniqueViolation, type Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import {
  DATA_CATEGORIES,
  DATA_SUBJECTS,
  CANDOR_DATA_USES,
  DATA_USES,
  LEGAL_BASES,
  SPECIAL_CATEGORIES,
  type DataCategoryEntry,
  type DataSubjectEntry,
  type DataUseEntry,
  type SpecialCategoryKey,
} from './taxonomy.data.ts';
import { TaxonomyRepo, type CustomEntryRow } from './taxonomy.repo.ts';

/** The lists a deployment can extend. */
export const EXTENSIBLE_KINDS = ['data-categories', 'data-uses', 'data-subjects'] as const;
export type ExtensibleKind = (typeof EXTENSIBLE_KINDS)[number];
export const TAXONOMY_KINDS = [...EXTENSIBLE_KINDS, 'legal-bases', 'special-categories'] as const;
export type TaxonomyKind = (typeof TAXONOMY_KINDS)[number];

const KEY_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;

/** Custom entries by list and key, in code point order: as TaxonomyRepo.all reads them on both databases. */
const byKindAndKey = (a: CustomEntryRow, b: CustomEntryRow): number => compareText(a.kind, b.kind) || compareText(a.key, b.key);

/**
 * A list's entries by key (the first of a key, as a search of the list finds it), per set of custom entries held: that
 * array is replaced, never changed in place, when entries are read or added, so a new one makes a new index. The
 * ingestion gate asks for categories many times per event (their parent chains).
 */
const indexes = new WeakMap<readonly CustomEntryRow[], Map<string, Map<string, object>>>();

function byKey<E extends { key: string }>(custom: readonly CustomEntryRow[], kind: string, list: () => readonly E[]): Map<string, E> {
  let forCustom = indexes.get(custom);
  if (forCustom === undefined) indexes.set(custom, (forCustom = new Map()));
  let index = forCustom.get(kind) as Map<string, E> | undefined;
  if (index === undefined) {
    index = new Map();
    for (const entry of list()) if (!index.has(entry.key)) index.set(entry.key, entry);
    forCustom.set(kind, index);
  }
  return index;
}

export interface CustomEntryInput {
  key: string;
  name: string;
  description: string;
  parentKey?: string | null | undefined;
  specialCategory?: SpecialCategoryKey | null | undefined;
  protectedAttribute?: boolean | undefined;
  sensitivePersonalInformation?: boolean | undefined;
}

type Entry = (DataCategoryEntry | DataUseEntry | DataSubjectEntry) & { custom?: boolean };

/** The deepest entry of `entries` whose key prefixes `key` (its key and a dot), if any. */
function keyPrefixIn(key: string, entries: readonly Entry[]): string | undefined {
  const keys = new Set(entries.map((e) => e.key));
  for (let dot = key.lastIndexOf('.'); dot > 0; dot = key.lastIndexOf('.', dot - 1)) {
    if (keys.has(key.slice(0, dot))) return key.slice(0, dot);
  }
  return undefined;
}

/** An entry's key and those of the entries above it by parent, itself first (bounded, in case of a cycle). */
function lineageOf(key: string | null, entries: readonly Entry[]): string[] {
  const parents = new Map(entries.map((e) => [e.key, 'parentKey' in e ? e.parentKey : null]));
  const out: string[] = [];
  for (let at: string | null | undefined = key; at !== null && at !== undefined && out.length < 32; at = parents.get(at)) out.push(at);
  return out;
}

function isKind(kind: string): kind is TaxonomyKind {
  return (TAXONOMY_KINDS as readonly string[]).includes(kind);
}

/**
 * The taxonomy: the built-in data categories, data uses (purposes) and data subjects (fideslang keys, Candor's
 * own descriptions), GDPR legal bases and special categories, plus custom entries added per deployment.
 */
export class Taxonomy {
  readonly #storage: Storage;
  readonly #repo: TaxonomyRepo;
  readonly #audit: AuditLog;
  #custom: CustomEntryRow[] = [];
  /** Whether another process wrote since the custom entries were last read (refreshIfChanged). */
  readonly #freshness: Freshness;
  /** Moved by every entry added here: a reload that read before it reads again. */
  #epoch = 0;

  private constructor(repo: TaxonomyRepo, audit: AuditLog, storage: Storage) {
    this.#storage = storage;
    this.#repo = repo;
    this.#audit = audit;
    this.#freshness = new Freshness(storage, ['taxonomy_custom_entries']);
  }

  /** Loads the custom entries of this deployment. */
  static async open(storage: Storage, audit: AuditLog): Promise<Taxonomy> {
    const taxonomy = new Taxonomy(new TaxonomyRepo(storage), audit, storage);
    taxonomy.#custom = await taxonomy.#repo.all();
    return taxonomy;
  }

  /**
   * Reads the custom entries again when another process may have added some since the last look (the database tells;
   * when it cannot, at every call). A running server calls it every second, through `refreshConfiguration`, which
   * tells what was derived from the taxonomy when this answers true: entries were read that this process did not hold.
   */
  async refreshIfChanged(): Promise<boolean> {
    if (!this.#freshness.lookAgain()) return false;
    for (let attempt = 0; ; attempt++) {
      const epoch = this.#epoch;
      const rows = await this.#repo.all();
      if (epoch !== this.#epoch && attempt < 5) continue;
      const held = new Set(this.#custom.map((row) => `${row.kind}\u0000${row.key}`));
      const added = rows.some((row) => !held.has(`${row.kind}\u0000${row.key}`));
      this.#custom = rows;
      return added;
    }
  }

  /** How many custom entries this process holds (entries are only ever added: a new count means new entries). */
  customCount(): number {
    return this.#custom.length;
  }

  #customOf(kind: ExtensibleKind): Entry[] {
    return this.#custom
      .filter((row) => row.kind === kind)
      .map((row) => {
        const attributes = JSON.parse(row.attributes) as Record<string, unknown>;
        const base = { key: row.key, name: row.name, description: row.description, custom: true };
        if (kind === 'data-subjects') return base;
        if (kind === 'data-uses') return { ...base, parentKey: row.parent_key };
        return {
          ...base,
          parentKey: row.parent_key,
          specialCategory: (attributes.specialCategory ?? null) as SpecialCategoryKey | null,
          protectedAttribute: attributes.protectedAttribute === true,
          sensitivePersonalInformation: attributes.sensitivePersonalInformation === true,
        };
      });
  }

  /** One list of the taxonomy: built-in entries first, then custom ones by key in code point order. */
  list(kind: string): readonly object[] {
    if (!isKind(kind)) throw new CandorError('TAXONOMY_KIND_UNKNOWN', { kind });
    switch (kind) {
      case 'data-categories':
        return [...DATA_CATEGORIES, ...this.#customOf(kind)];
      case 'data-uses':
        return [...DATA_USES, ...CANDOR_DATA_USES, ...this.#customOf(kind)];
      case 'data-subjects':
        return [...DATA_SUBJECTS, ...this.#customOf(kind)];
      case 'legal-bases':
        return LEGAL_BASES;
      case 'special-categories':
        return SPECIAL_CATEGORIES;
    }
  }

  /** A data category by key, built-in or custom. */
  dataCategory(key: string): DataCategoryEntry | undefined {
    return byKey(this.#custom, 'data-categories', () => this.list('data-categories') as DataCategoryEntry[]).get(key);
  }

  /** A data use (purpose) by key, built-in or custom. */
  dataUse(key: string): DataUseEntry | undefined {
    return byKey(this.#custom, 'data-uses', () => this.list('data-uses') as DataUseEntry[]).get(key);
  }

  /** Adds a custom entry to an extensible list; audited as a configuration change. */
  async addCustom(kind: string, input: CustomEntryInput, actor: Actor): Promise<object> {
    if (!isKind(kind)) throw new CandorError('TAXONOMY_KIND_UNKNOWN', { kind });
    if (!(EXTENSIBLE_KINDS as readonly string[]).includes(kind)) throw new CandorError('TAXONOMY_KIND_UNKNOWN', { kind, reason: 'read-only' });
    const extensible = kind as ExtensibleKind;
    if (!KEY_PATTERN.test(input.key)) throw new CandorError('TAXONOMY_KEY_INVALID', { key: input.key });
    const entries = this.list(extensible) as Entry[];
    if (entries.some((e) => e.key === input.key)) throw new CandorError('TAXONOMY_KEY_EXISTS', { key: input.key });
    // The deepest entry whose key prefixes this one (`user.health_and_medical` for `user.health_and_medical.genome`):
    // the key says the entry is one of its kind, so it is the parent when none is given, and must be the parent or
    // above it otherwise. What is derived from the parent (a special category, precise location, marketing) then
    // agrees with what the key says.
    const above = extensible === 'data-subjects' ? undefined : keyPrefixIn(input.key, entries);
    const parentKey = extensible === 'data-subjects' ? null : (input.parentKey ?? above ?? null);
    if (parentKey !== null && !entries.some((e) => e.key === parentKey)) {
      throw new CandorError('TAXONOMY_PARENT_UNKNOWN', { parentKey });
    }
    if (above !== undefined && !lineageOf(parentKey, entries).includes(above)) {
      throw new CandorError('TAXONOMY_PARENT_MISMATCH', { key: input.key, parentKey, under: above });
    }
    const parent = parentKey ? this.dataCategory(parentKey) : undefined;
    const specialCategory = input.specialCategory ?? parent?.specialCategory ?? null;
    const attributes =
      extensible === 'data-categories'
        ? {
            specialCategory,
            // A special category is always protected; a child inherits its parent's flags.
            protectedAttribute: specialCategory !== null || input.protectedAttribute === true || parent?.protectedAttribute === true,
            sensitivePersonalInformation: input.sensitivePersonalInformation === true || parent?.sensitivePersonalInformation === true,
          }
        : {};
    const row: CustomEntryRow = {
      kind: extensible,
      key: input.key,
      name: input.name,
      description: input.description,
      parent_key: parentKey,
      attributes: JSON.stringify(attributes),
      created_at: new Date().toISOString(),
      created_by: actor.id,
    };
    try {
      // Audited in the entry's own transaction, last: an entry that is stored always has its audit entry.
      await this.#storage.raw.transaction(async (tx) => {
        await this.#repo.insert(tx, row);
        await this.#audit.appendIn(tx, [
          { actor: actor.id, role: actor.role, action: 'config.taxonomy.add', purpose: 'essential.service.operations', resource: `taxonomy:${extensible}:${input.key}` },
        ]);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new CandorError('TAXONOMY_KEY_EXISTS', { key: input.key });
      throw error;
    }
    // Known here only once committed; a reload that read meanwhile may hold it already.
    this.#epoch++;
    if (!this.#custom.some((r) => r.kind === row.kind && r.key === row.key)) this.#custom = [...this.#custom, row].sort(byKindAndKey);
    return (this.list(extensible) as Entry[]).find((e) => e.key === input.key) as object;
  }
}
