import type { PlanFields, PlannedField, RetiredFields, RetiredPlannedField } from '../../shared/subject-data.ts';
import type { EventOccurrence, OutlineSection } from './plan-compiler.ts';

/** A look-up key: the section, the event for track events only, the path. */
const slot = (section: string, event: string | null | undefined, path: string) => `${section}\u0000${section === 'track' ? (event ?? '') : ''}\u0000${path}`;

/** The fields of one plan version and the occurrences of its events, as Catalog.fieldsInForce() and fieldsOf() answer them. */
export interface VersionFields extends PlanFields {
  readonly version: number;
  /** The occurrence of a track event (by name), or of page or screen calls (`event` ignored); undefined where the version declares none. */
  occurrence(section: string, event: string | null): EventOccurrence | undefined;
}

/** The occurrences each index holds, by section and event (kept beside the class: see docs/dev/conventions.md). */
const OCCURRENCES = new WeakMap<PlanFieldIndex, ReadonlyMap<string, EventOccurrence>>();

/**
 * The declared fields of one plan version, indexed by section, event and path: each leaf with its annotation, and every
 * path that holds leaves (parts, objects, arrays of objects and their items); and the occurrence of each event. Built
 * once per version, never changed.
 */
export class PlanFieldIndex implements VersionFields {
  readonly version: number;
  readonly #fields = new Map<string, PlannedField>();
  readonly #inside = new Set<string>();

  constructor(version: number, sections: readonly OutlineSection[]) {
    this.version = version;
    const occurrences = new Map<string, EventOccurrence>();
    OCCURRENCES.set(this, occurrences);
    for (const s of sections) {
      if (s.occurrence) occurrences.set(slot(s.section, s.event, ''), s.occurrence);
      for (const f of s.fields) {
        this.#fields.set(slot(s.section, s.event, f.path), { category: f.category, purposes: f.purposes, retention: f.retention, personal: f.personal });
        // `properties.products[].name` is inside `properties`, `properties.products` and `properties.products[]`.
        for (let i = 0; i < f.path.length; i++) {
          const c = f.path[i];
          if (c === '.' || c === '[') this.#inside.add(slot(s.section, s.event, f.path.slice(0, i)));
        }
      }
    }
  }

  plannedField(section: string, event: string | null, path: string): PlannedField | undefined {
    return this.#fields.get(slot(section, event, path));
  }

  declaresInside(section: string, event: string | null, path: string): boolean {
    return this.#inside.has(slot(section, event, path));
  }

  occurrence(section: string, event: string | null): EventOccurrence | undefined {
    return OCCURRENCES.get(this)?.get(slot(section, event, ''));
  }
}

/** The fields stored versions declared and the plan in force does not (Catalog.retiredFields), indexed as above. */
export class RetiredFieldIndex implements RetiredFields {
  readonly complete: boolean;
  readonly #fields = new Map<string, RetiredPlannedField>();

  constructor(sections: readonly { section: string; event?: string; fields: readonly (PlannedField & { path: string; version: number })[] }[], complete: boolean) {
    this.complete = complete;
    for (const s of sections) {
      for (const f of s.fields) this.#fields.set(slot(s.section, s.event, f.path), { category: f.category, purposes: f.purposes, retention: f.retention, personal: f.personal, version: f.version });
    }
  }

  field(section: string, event: string | null, path: string): RetiredPlannedField | undefined {
    return this.#fields.get(slot(section, event, path));
  }
}
