// The tracking plan document: its TypeScript shape and the meta-schema every plan is checked against before its
// annotations are resolved against the taxonomy and its schemas are compiled.
import { compareDurations, parseDuration } from '../../shared/duration.ts';

/** The per-field annotation as written in a plan (`x-candor`). */
export interface AnnotationInput {
  /** A data category key of the taxonomy, e.g. `user.contact.email`. */
  category: string;
  /** Data use keys of the taxonomy this field may serve. */
  purposes: string[];
  /** ISO-8601 duration, e.g. `P13M`. */
  retention: string;
  /** Whether the value is personal data in its own right (to be encrypted per subject). */
  personal: boolean;
  /** Derived from the category; may be written out but must agree with it. */
  special?: boolean;
  /** Derived from the category; may be written out but must agree with it. */
  preciseLocation?: boolean;
  /** Derived from the category; may be written out but must agree with it. */
  protectedAttribute?: boolean;
  description?: string;
}

/** A JSON Schema of one field: an object with declared properties, an array, or an annotated leaf. */
export interface FieldSchema {
  type?: string | string[];
  properties?: Record<string, FieldSchema>;
  required?: string[];
  items?: FieldSchema;
  'x-candor'?: AnnotationInput;
  /** Further JSON Schema validation keywords (enum, format, minimum, maxLength, …). */
  [keyword: string]: unknown;
}

/** A track event, or the page and screen calls. */
export interface EventDefinition {
  description?: string;
  /**
   * The data category of the event's occurrence: its name, its time, that the person did it (a page view is
   * `user.behavior.browsing_history`). The consent gate keeps the event for a purpose of `purposes` resting on consent
   * only where the notice describes this category for it. Read as `user.behavior` when left out (DEFAULT_EVENT_CATEGORY).
   */
  category?: string;
  /** The purposes the event as a whole serves. */
  purposes: string[];
  /** Schema of `properties`. */
  properties: FieldSchema;
}

/** A tracking plan. */
export interface PlanDocument {
  name: string;
  description?: string;
  /** Track events by name. */
  events: Record<string, EventDefinition>;
  pages?: EventDefinition;
  screens?: EventDefinition;
  /** Schema of identify traits. */
  traits?: FieldSchema;
  /** Schema of group traits. */
  groupTraits?: FieldSchema;
  /** Schema of the context kept on every call. */
  context?: FieldSchema;
}

/** The JSON types a field may declare. */
export const SCALAR_TYPES = ['string', 'number', 'integer', 'boolean', 'null'] as const;
const JSON_TYPES = [...SCALAR_TYPES, 'object', 'array'];

/** Names that must never become keys of a copy. */
export const FORBIDDEN_NAMES: readonly string[] = ['__proto__', 'constructor', 'prototype'];

const text = (max: number) => ({ type: 'string', maxLength: max });
const count = { type: 'integer', minimum: 0 };

/**
 * The deepest a plan document nests, counting every object and array (values of `const`, `enum` and `examples`
 * included). Checked before the meta-schema, whose validator, like the canonical JSON of a version, recurses.
 */
export const MAX_DOCUMENT_DEPTH = 64;

/** Meta-schema of a plan document (JSON Schema draft-07 as Ajv runs it). */
export const PLAN_META_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'events'],
  properties: {
    $schema: text(500),
    $comment: text(2000),
    // Stored in a text column too: no control character (PostgreSQL refuses NUL) and no unpaired surrogate.
    name: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\p{Cc}\\p{Cs}]*$' },
    description: text(2000),
    events: {
      type: 'object',
      maxProperties: 2000,
      propertyNames: { minLength: 1, maxLength: 200, not: { enum: FORBIDDEN_NAMES } },
      additionalProperties: { $ref: '#/$defs/event' },
    },
    pages: { $ref: '#/$defs/event' },
    screens: { $ref: '#/$defs/event' },
    traits: { $ref: '#/$defs/field' },
    groupTraits: { $ref: '#/$defs/field' },
    context: { $ref: '#/$defs/field' },
  },
  $defs: {
    purposes: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      uniqueItems: true,
      items: { type: 'string', minLength: 1, maxLength: 200 },
    },
    event: {
      type: 'object',
      additionalProperties: false,
      required: ['purposes', 'properties'],
      properties: {
        description: text(2000),
        category: { type: 'string', minLength: 1, maxLength: 200 },
        purposes: { $ref: '#/$defs/purposes' },
        properties: { $ref: '#/$defs/field' },
      },
    },
    annotation: {
      type: 'object',
      additionalProperties: false,
      required: ['category', 'purposes', 'retention', 'personal'],
      properties: {
        category: { type: 'string', minLength: 1, maxLength: 200 },
        purposes: { $ref: '#/$defs/purposes' },
        retention: { type: 'string', minLength: 2, maxLength: 40 },
        personal: { type: 'boolean' },
        special: { type: 'boolean' },
        preciseLocation: { type: 'boolean' },
        protectedAttribute: { type: 'boolean' },
        description: text(2000),
      },
    },
    field: {
      type: 'object',
      additionalProperties: false,
      properties: {
        type: {
          anyOf: [
            { enum: JSON_TYPES },
            { type: 'array', minItems: 1, uniqueItems: true, items: { enum: JSON_TYPES } },
          ],
        },
        properties: {
          type: 'object',
          maxProperties: 500,
          // Dots and brackets would make field paths ambiguous; prototype names must never become keys.
          propertyNames: { minLength: 1, maxLength: 100, pattern: '^[^.\\[\\]]+$', not: { enum: FORBIDDEN_NAMES } },
          additionalProperties: { $ref: '#/$defs/field' },
        },
        required: { type: 'array', uniqueItems: true, items: { type: 'string' } },
        items: { $ref: '#/$defs/field' },
        'x-candor': { $ref: '#/$defs/annotation' },
        title: text(200),
        description: text(2000),
        $comment: text(2000),
        // Bounded: checking a schema compares every pair of an enum's items (uniqueItems), which holds the server up.
        examples: { type: 'array', maxItems: 100 },
        enum: { type: 'array', minItems: 1, maxItems: 1000 },
        const: true,
        format: { type: 'string', maxLength: 50 },
        // Checked further by the compiler: it must run in linear time (linearPattern).
        pattern: { type: 'string', maxLength: 500 },
        minLength: count,
        maxLength: count,
        minItems: count,
        maxItems: count,
        uniqueItems: { type: 'boolean' },
        minimum: { type: 'number' },
        maximum: { type: 'number' },
        exclusiveMinimum: { type: 'number' },
        exclusiveMaximum: { type: 'number' },
        multipleOf: { type: 'number', exclusiveMinimum: 0 },
      },
    },
  },
} as const;

/**
 * The longest retention a plan may declare: 100 years, as counted on the calendar (`P1200M`, `P36524D` reach as far
 * back). A longer one keeps data for good in effect, and far longer (`P300000Y`) lies beyond the calendar.
 */
export const MAX_RETENTION = 'P100Y';

/** Whether a retention is an ISO-8601 duration longer than zero and at most MAX_RETENTION, such as `P13M`, `P7Y` or `P30D`. */
export function isRetention(value: string): boolean {
  return parseDuration(value) !== undefined && compareDurations(value, MAX_RETENTION) <= 0;
}
