import type { SqlExecutor } from '../../storage/index.ts';
import type { DataSubject, EraseOutcome, ExportSection, FieldDisclosure, FieldPlanLookup, RetiredFieldLookup, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { ProfilesRepo } from './profiles.repo.ts';
import { unusableKey } from './profiles.retention.ts';
import type { ComputedTraits, ProfileView, TraitChange } from './profiles.service.ts';

/** Every change of a subject's traits fits in one archive; the limit only guards against a runaway profile. */
const HISTORY_LIMIT = 1_000_000;
/** Computed traits are Candor's own summary of a person's activity. */
const COMPUTED_FIELDS: readonly (keyof ComputedTraits)[] = ['firstSeenAt', 'lastSeenAt', 'eventCount', 'orderCount', 'totalOrderValue', 'averageOrderValue', 'currency'];

export interface ProfilesSubjectDataDeps {
  repo: ProfilesRepo;
  fields: FieldPlanLookup | undefined;
  /** The fields the plan in force no longer declares: a stored trait of one is kept by its latest declaration. */
  retired: RetiredFieldLookup | undefined;
  get(profileIds: readonly string[]): Promise<ProfileView>;
  history(profileIds: readonly string[], limit: number): Promise<TraitChange[]>;
}

/** Traits (decrypted), their whole history and computed traits of a subject's profiles. */
export class ProfilesSubjectData implements SubjectDataHandler {
  readonly module = 'profiles';
  readonly #deps: ProfilesSubjectDataDeps;

  constructor(deps: ProfilesSubjectDataDeps) {
    this.#deps = deps;
  }

  async export(subject: DataSubject): Promise<ExportSection> {
    const view = await this.#deps.get(subject.profileIds);
    const history = await this.#deps.history(subject.profileIds, HISTORY_LIMIT);
    const keys = new Map<string, { category: string; sources: Set<string> }>();
    const note = (key: string, category: string, source: string) => {
      const seen = keys.get(key) ?? { category, sources: new Set<string>() };
      seen.sources.add(source);
      keys.set(key, seen);
    };
    for (const t of view.traits) note(t.key, t.category, t.source);
    for (const h of history) note(h.key, h.category, h.source);
    const retired = this.#deps.retired === undefined || keys.size === 0 ? undefined : await this.#deps.retired.retiredFields();
    const fields: FieldDisclosure[] = [...keys].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, { category, sources }]) => {
      const path = `traits.${key}`;
      const planned = this.#deps.fields?.plannedField('identify', null, path);
      // A trait the plan in force no longer declares serves no purpose now and is kept by the retention sweeper for the
      // period of the latest version that declared it; one no version declared goes at the next sweep.
      const old = planned === undefined ? retired?.field('identify', null, path) : undefined;
      // A key no version is known to declare goes at the next sweep, unless one may have been read without it (unusableKey).
      const retention = planned?.retention ?? old?.retention ?? (this.#deps.fields !== undefined && retired?.complete === true && !unusableKey(key) ? 'PT0S' : null);
      return {
        field: path,
        category: planned?.category ?? old?.category ?? category,
        purposes: planned?.purposes ?? [],
        source: [...sources].sort().join(', '),
        recipients: [],
        retention,
      };
    });
    for (const key of COMPUTED_FIELDS) {
      fields.push({
        field: `computed.${key}`,
        category: 'user.behavior.purchase_history',
        purposes: ['analytics.reporting', 'personalize.profiling'],
        source: 'candor',
        recipients: [],
        retention: null,
      });
    }
    return {
      module: this.module,
      title: 'Profile and traits',
      data: {
        traits: Object.fromEntries(view.traits.map((t) => [t.key, t.value])),
        traitDetails: view.traits.map((t) => ({ key: t.key, value: t.value, state: t.state, category: t.category, updatedAt: t.updatedAt, source: t.source, profileId: t.profileId })),
        history: history.map((h) => ({
          key: h.key,
          changedAt: h.changedAt,
          value: h.value,
          valueState: h.valueState,
          previousValue: h.previousValue ?? null,
          previousState: h.previousState,
          category: h.category,
          source: h.source,
          profileId: h.profileId,
        })),
        computed: view.computed,
      },
      fields,
    };
  }

  async erase(tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]> {
    const deleted = await this.#deps.repo.deleteProfiles(tx, subject.profileIds);
    return [
      { store: 'profiles_traits', status: 'confirmed', deleted: deleted.traits },
      { store: 'profiles_trait_history', status: 'confirmed', deleted: deleted.history },
      { store: 'profiles_computed', status: 'confirmed', deleted: deleted.computed },
    ];
  }
}
