/**
 * Catalog: the tracking plan. Event and trait schemas in JSON Schema with a data category, purposes, retention and
 * personal flag on every field, compiled once per version into validators and minimizers that keep only declared
 * fields; versioned, audited on publish, with per-source counts of what was accepted, refused and dropped.
 */
export { Catalog, MAX_PLAN_VERSION, planHash, planWarnings, type CatalogDeps, type ConfiguredPurpose, type PlanVersion, type PlanWarning, type PublishedPlan, type Declarations, type RetiredField, type RetiredSection, type WarningOptions } from './catalog.service.ts';
export { CATALOG_MIGRATIONS } from './catalog.repo.ts';
export { refreshConfiguration, type ConfigurationRefresh } from './configuration-refresh.ts';
export { type VersionFields } from './plan-fields.ts';
export { DEFAULT_PLAN } from './default-plan.ts';
export { isRetention, MAX_RETENTION, type PlanDocument, type EventDefinition, type FieldSchema, type AnnotationInput } from './catalog.schemas.ts';
export { type StatsRow } from './catalog.stats.ts';
export {
  DEFAULT_EVENT_CATEGORY,
  MAX_DROPPED_LISTED,
  MAX_VIOLATIONS_LISTED,
  MAX_PLAN_FIELDS,
  MESSAGE_KINDS,
  type MessageKind,
  type EventOccurrence,
  type FieldAnnotation,
  type KeptField,
  type Violation,
  type PlanResult,
  type PlanProblem,
  type RefusalCode,
  type OutlineSection,
} from './plan-compiler.ts';
