/**
 * Profiles: what Candor knows about a person. Traits (current value per key, personal values encrypted with the
 * profile's data key) with an append-only history of every change, and computed traits (first and last seen, event
 * and order counts, total and average order value), read as one view over a profile's merge members.
 */
export {
  Profiles,
  MASKED,
  shownMessageId,
  ORDER_EVENT,
  HISTORY_SCAN_FACTOR,
  type TraitInput,
  type ActivityInput,
  type ActivityRevision,
  type StoredActivity,
  type TraitsBatchItem,
  type TraitView,
  type TraitChange,
  type TraitHistoryPage,
  type ComputedTraits,
  type ComputedTraitsView,
  type OrderFigure,
  type ProfileView,
  type ValueState,
  type ProfilesDeps,
} from './profiles.service.ts';
export { PROFILES_MIGRATIONS } from './profiles.repo.ts';
export { ProfilesSubjectData } from './profiles.subject-data.ts';
export { PROFILES_RETENTION_MIGRATIONS, ProfilesRetention, type PlannedTrait, type ProfileRetentionPolicy, type ProfilesRetentionDeps, type RetiredTrait, type TraitDeclarations } from './profiles.retention.ts';
