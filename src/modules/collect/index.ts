/**
 * Collect: ingestion. Segment-compatible messages go through the tracking plan (validate, minimize), the consent
 * gate (default deny, field by field, explicit consent for special categories and precise location), the
 * suppression list, identity resolution and per-person encryption before they are stored — durably, in group
 * commits, with one result per message.
 */
export { Collector, type CollectDeps, type IngestContext, type ItemResult, type ItemStatus, type OutcomeObserver, type StoredEventView } from './collect.service.ts';
export { COLLECT_MIGRATIONS } from './collect.repo.ts';
export { CsvImporter, MAX_ORDER_LINES, coerceCell, productKey, type CsvImportDeps, type CsvImportOptions, type ImportBasis, type ImportCounts, type ImportHooks, type ImportKind, type ImportSummary, type RowReport } from './csv-import.ts';
export { MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_BATCH_TAKEN_BYTES, MAX_DEPTH, MAX_EVENT_BYTES, MAX_ID_LENGTH, MESSAGE_KINDS, OVER_BATCH_BUDGET, TOO_DEEP, parseMessage, type MessageKind, type ParsedMessage } from './segment.ts';
export { CollectSubjectData, mergeParts } from './collect.subject-data.ts';
export { COLLECT_RETENTION_MIGRATIONS, CollectRetention, removePath, LEGAL_OBLIGATION, ORDER_EVENT, type EventRetentionPolicy } from './collect.retention.ts';
