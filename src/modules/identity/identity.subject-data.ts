import type { SqlExecutor } from '../../storage/index.ts';
import type { DataSubject, EraseOutcome, ExportSection, FieldDisclosure, FieldPlanLookup, IdentifierPseudonym, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { IdentityRepo } from './identity.repo.ts';

/** Keeping the graph serves operating the service; identifiers are kept until erasure. */
const GRAPH_PURPOSES = ['essential.service.operations'];
/** The data category of each identifier type; the value itself is stored only as a keyed pseudonym. */
const CATEGORY_OF: Readonly<Record<string, string>> = {
  user_id: 'user.unique_id',
  anonymous_id: 'user.device.cookie_id',
  email: 'user.contact.email',
  phone: 'user.contact.phone_number',
};
/** Traits whose purposes also apply to the identifier of the same type. */
const TRAIT_OF: Readonly<Record<string, string>> = { email: 'traits.email', phone: 'traits.phone' };

export interface IdentitySubjectDataDeps {
  repo: IdentityRepo;
  fields: FieldPlanLookup | undefined;
  /** Drops cached look-ups of the erased profiles. */
  forget(profileIds: readonly string[]): void;
  /** Drops the identifier values (raw and normalized) cached with the pseudonyms of the erased identifiers. */
  forgetValues(identifiers: readonly IdentifierPseudonym[]): void;
}

/** What the identity graph holds about a subject: profile rows, identifiers (as pseudonyms) and merges with provenance. */
export class IdentitySubjectData implements SubjectDataHandler {
  readonly module = 'identity';
  readonly #deps: IdentitySubjectDataDeps;

  constructor(deps: IdentitySubjectDataDeps) {
    this.#deps = deps;
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const { repo } = this.#deps;
    const profiles = await repo.profilesByIds(subject.profileIds);
    const identifiers = await repo.identifiersOfProfiles(subject.profileIds);
    const merges = await repo.mergesInvolving(subject.profileIds);
    const sources = (rows: readonly { source: string }[]) => [...new Set(rows.map((r) => r.source))].sort().join(', ') || 'candor';
    const fields: FieldDisclosure[] = [
      { field: 'profiles[].id', category: 'user.unique_id.pseudonymous', purposes: GRAPH_PURPOSES, source: 'candor', recipients: [], retention: null },
      { field: 'profiles[].createdAt', category: 'system.operations', purposes: GRAPH_PURPOSES, source: 'candor', recipients: [], retention: null },
      { field: 'profiles[].mergedInto', category: 'user.unique_id.pseudonymous', purposes: GRAPH_PURPOSES, source: 'candor', recipients: [], retention: null },
    ];
    for (const type of [...new Set(identifiers.map((i) => i.type))].sort()) {
      const planned = TRAIT_OF[type] ? this.#deps.fields?.plannedField('identify', null, TRAIT_OF[type]) : undefined;
      fields.push({
        field: `identifiers[type=${type}].valueHash`,
        category: CATEGORY_OF[type] ?? 'user.unique_id',
        purposes: [...new Set([...GRAPH_PURPOSES, ...(planned?.purposes ?? [])])],
        source: sources(identifiers.filter((i) => i.type === type)),
        recipients: [],
        retention: null,
      });
    }
    if (merges.length > 0) {
      fields.push({ field: 'merges[]', category: 'system.operations', purposes: GRAPH_PURPOSES, source: sources(merges), recipients: [], retention: null });
    }
    return {
      module: this.module,
      title: 'Identities',
      data: {
        note: 'Identifier values are never stored: only their keyed pseudonyms (valueHash) are.',
        profiles: profiles.map((p) => ({ id: p.id, createdAt: p.created_at, mergedInto: p.merged_into })),
        identifiers: identifiers.map((i) => ({ type: i.type, valueHash: i.value_hash, profileId: i.profile_id, firstSeenAt: i.first_seen_at, source: i.source })),
        merges: merges.map((m) => ({
          id: m.id,
          at: m.at,
          from: m.from_profile,
          into: m.into_profile,
          rule: m.rule,
          triggerType: m.trigger_type,
          source: m.source,
          undoneAt: m.undone_at,
        })),
      },
      fields,
    };
  }

  async erase(tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]> {
    // Forgotten now and again after the commit: no group resolves to these profiles from the cache meanwhile.
    this.#deps.forget(subject.profileIds);
    const deleted = await this.#deps.repo.deleteProfiles(tx, subject.profileIds);
    return [
      { store: 'identity_identifiers', status: 'confirmed', deleted: deleted.identifiers },
      { store: 'identity_merges', status: 'confirmed', deleted: deleted.merges },
      { store: 'identity_profiles', status: 'confirmed', deleted: deleted.profiles },
    ];
  }

  /** Lets go of the person's cached look-ups and of their identifier values, kept in clear by the preparation caches. */
  async afterErase(subject: DataSubject): Promise<void> {
    this.#deps.forget(subject.profileIds);
    this.#deps.forgetValues(subject.identifiers);
  }
}
