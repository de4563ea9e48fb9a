/**
 * Taxonomy: data categories, data uses (purposes) and data subjects with fideslang keys and Candor's own
 * descriptions, GDPR Art. 6 legal bases and Art. 9 special categories; deployments may add custom entries.
 */
export { Taxonomy, TAXONOMY_KINDS, EXTENSIBLE_KINDS, type TaxonomyKind, type ExtensibleKind, type CustomEntryInput } from './taxonomy.service.ts';
export { TAXONOMY_MIGRATIONS } from './taxonomy.repo.ts';
export { isDataUseUnder, type DataUseLookup } from './data-use-ancestry.ts';
export {
  DATA_CATEGORIES,
  FIDESLANG_ATTRIBUTION,
  IDENTIFYING_CATEGORIES,
  type DataCategoryEntry,
  type DataUseEntry,
  type DataSubjectEntry,
  type LegalBasisKey,
  type SpecialCategoryKey,
} from './taxonomy.data.ts';
