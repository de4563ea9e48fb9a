// The tracking plan installed as version 1: an online shop, with Segment's e-commerce spec field names.
import type { AnnotationInput, EventDefinition, FieldSchema, PlanDocument } from './catalog.schemas.ts';

const REPORTING = 'analytics.reporting';
const CAMPAIGNS = 'analytics.reporting.campaign_insights';
const PROFILING = 'personalize.profiling';
const NEARBY = 'personalize.content.limited';
const OPERATIONS = 'essential.service.operations';
const EMAIL = 'marketing.communications.email';
const SMS = 'marketing.communications.sms';
const FAIRNESS = 'fairness_audit';

type Keywords = Omit<FieldSchema, 'x-candor' | 'type'>;

function leaf(type: string | string[], annotation: AnnotationInput, keywords: Keywords = {}): FieldSchema {
  return { type, ...keywords, 'x-candor': annotation };
}

function object(properties: Record<string, FieldSchema>, required?: string[]): FieldSchema {
  return { type: 'object', properties, ...(required ? { required } : {}) };
}

const note = (category: string, purposes: string[], retention: string, personal = false): AnnotationInput => ({ category, purposes, retention, personal });

const browsing = (personal = false) => note('user.behavior.browsing_history', [REPORTING, PROFILING], 'P13M', personal);
const purchase = (extra: string[] = []) => note('user.behavior.purchase_history', [REPORTING, PROFILING, ...extra], 'P7Y');
const uniqueId = (personal = false) => note('user.unique_id', [REPORTING, PROFILING], 'P3Y', personal);
const text = (maxLength: number): Keywords => ({ maxLength });
const money: Keywords = { minimum: 0 };
const currency: Keywords = { pattern: '^[A-Z]{3}$', description: 'ISO 4217 code, e.g. EUR' };

/** Product fields of Segment's e-commerce spec, annotated for browsing (viewed, added) or purchase (ordered). */
function productFields(annotate: () => AnnotationInput): Record<string, FieldSchema> {
  return {
    product_id: leaf('string', annotate(), text(100)),
    sku: leaf('string', annotate(), text(100)),
    category: leaf('string', annotate(), text(200)),
    name: leaf('string', annotate(), text(300)),
    brand: leaf('string', annotate(), text(200)),
    variant: leaf('string', annotate(), text(200)),
    price: leaf('number', annotate(), money),
  };
}

/** An event definition: `category` is what its occurrence (its name, its time, that the person did it) is. */
function event(description: string, category: string, purposes: string[], properties: FieldSchema): EventDefinition {
  return { description, category, purposes, properties };
}

const BROWSING_HISTORY = 'user.behavior.browsing_history';
const PURCHASE_HISTORY = 'user.behavior.purchase_history';

/** The default plan of an online shop. */
export const DEFAULT_PLAN: PlanDocument = {
  name: 'Online shop',
  description: 'The default tracking plan of Candor: page and screen views, product views, carts, orders, newsletter sign-ups and surveys.',
  events: {
    'Product Viewed': event(
      'A visitor looked at a product page.',
      BROWSING_HISTORY,
      [REPORTING, PROFILING],
      object({
        ...productFields(() => browsing()),
        currency: leaf('string', browsing(), currency),
        // Personal, as a page's url: an address's query string often carries an e-mail, a user id or a position.
        url: leaf('string', browsing(true), text(2000)),
      }),
    ),
    'Product Added': event(
      'A visitor added a product to the cart.',
      PURCHASE_HISTORY,
      [REPORTING, PROFILING],
      object({
        cart_id: leaf('string', browsing(), text(100)),
        ...productFields(() => browsing()),
        quantity: leaf('integer', browsing(), { minimum: 1 }),
        currency: leaf('string', browsing(), currency),
      }),
    ),
    'Order Completed': event(
      'A customer placed an order; products lists its line items.',
      PURCHASE_HISTORY,
      [REPORTING, PROFILING],
      object(
        {
          order_id: leaf('string', purchase([OPERATIONS]), text(100)),
          checkout_id: leaf('string', purchase(), text(100)),
          affiliation: leaf('string', purchase(), text(200)),
          total: leaf('number', purchase([OPERATIONS]), money),
          subtotal: leaf('number', purchase(), money),
          revenue: leaf('number', purchase([OPERATIONS]), money),
          shipping: leaf('number', purchase(), money),
          tax: leaf('number', purchase(), money),
          discount: leaf('number', purchase(), money),
          coupon: leaf('string', purchase(), text(100)),
          currency: leaf('string', purchase([OPERATIONS]), currency),
          products: {
            type: 'array',
            maxItems: 500,
            items: object({
              ...productFields(() => purchase()),
              quantity: leaf('integer', purchase(), { minimum: 1 }),
            }),
          },
        },
        ['order_id'],
      ),
    ),
    'Email Signed Up': event(
      'A visitor subscribed to the newsletter.',
      // That someone subscribed, and when: what they did, as the list they chose (list_id, list_name).
      'user.behavior',
      [EMAIL],
      object({
        email: leaf('string', note('user.contact.email', [EMAIL], 'P3Y', true), { format: 'email', maxLength: 320 }),
        list_id: leaf('string', note('user.behavior', [EMAIL, REPORTING], 'P3Y'), text(100)),
        list_name: leaf('string', note('user.behavior', [EMAIL, REPORTING], 'P3Y'), text(200)),
      }),
    ),
    'Survey Answered': event(
      'A customer answered a product survey. allergies is health data: a special category, kept only with explicit consent and used only in aggregate.',
      // That someone answered a survey, and when: private content they gave, as their answers (a special category only
      // in the allergies field, which is kept only with explicit consent).
      'user.content.private',
      [REPORTING],
      object({
        survey_id: leaf('string', note('user.content.private', [REPORTING], 'P1Y'), text(100)),
        question_id: leaf('string', note('user.content.private', [REPORTING], 'P1Y'), text(100)),
        rating: leaf('integer', note('user.content.private', [REPORTING], 'P1Y'), { minimum: 0, maximum: 10 }),
        allergies: leaf('array', note('user.health_and_medical', [REPORTING, FAIRNESS], 'P6M', true), {
          items: { type: 'string', maxLength: 100 },
          maxItems: 20,
          description: 'Special category (health): needs explicit consent; never drives targeting.',
        }),
      }),
    ),
  },
  pages: event(
    'A page view on the web.',
    BROWSING_HISTORY,
    [REPORTING, PROFILING],
    object({
      name: leaf('string', browsing(), text(300)),
      category: leaf('string', browsing(), text(200)),
      path: leaf('string', browsing(), text(2000)),
      referrer: leaf('string', browsing(true), text(2000)),
      title: leaf('string', browsing(), text(500)),
      url: leaf('string', browsing(true), text(2000)),
    }),
  ),
  screens: event('A screen view in a mobile app.', BROWSING_HISTORY, [REPORTING, PROFILING], object({ name: leaf('string', browsing(), text(300)) })),
  traits: object({
    email: leaf('string', note('user.contact.email', [OPERATIONS, EMAIL, PROFILING], 'P3Y', true), { format: 'email', maxLength: 320 }),
    first_name: leaf('string', note('user.name.first', [OPERATIONS, EMAIL], 'P3Y', true), text(200)),
    last_name: leaf('string', note('user.name.last', [OPERATIONS, EMAIL], 'P3Y', true), text(200)),
    phone: leaf('string', note('user.contact.phone_number', [OPERATIONS, SMS], 'P3Y', true), text(50)),
    country: leaf('string', note('user.contact.address.country', [REPORTING, PROFILING], 'P3Y'), text(100)),
    city: leaf('string', note('user.contact.address.city', [REPORTING, PROFILING], 'P3Y'), text(200)),
    // Asked only in an optional survey, kept only with explicit consent for fairness audits, never a feature or rule.
    age_range: leaf('string', note('user.demographic.age_range', [FAIRNESS], 'P3Y', true), { enum: ['18-24', '25-34', '35-44', '45-54', '55-64', '65+'] }),
    gender: leaf('string', note('user.demographic.gender', [FAIRNESS], 'P3Y', true), text(50)),
    birthday: leaf('string', note('user.demographic.date_of_birth', [PROFILING, EMAIL], 'P3Y', true), {
      pattern: '^\\d{4}-\\d{2}-\\d{2}',
      maxLength: 40,
      description: 'ISO 8601 date (a date-time is accepted too).',
    }),
  }),
  groupTraits: object({
    name: leaf('string', note('user.workplace', [REPORTING, PROFILING], 'P3Y'), text(300)),
    industry: leaf('string', note('user.workplace', [REPORTING, PROFILING], 'P3Y'), text(200)),
    employees: leaf('integer', note('user.workplace', [REPORTING, PROFILING], 'P3Y'), { minimum: 0 }),
    plan: leaf('string', note('user.account', [REPORTING, PROFILING], 'P3Y'), text(100)),
  }),
  context: object({
    page: object({
      url: leaf('string', browsing(true), text(2000)),
      path: leaf('string', browsing(), text(2000)),
      referrer: leaf('string', browsing(true), text(2000)),
      title: leaf('string', browsing(), text(500)),
    }),
    // Ids other systems give the person (Segment's externalIds): linked in the identity graph as custom:<type> only
    // when kept for this person; the id itself is personal, its type and collection name only a kind of id.
    externalIds: {
      type: 'array',
      maxItems: 20,
      items: object({
        id: leaf(['string', 'number'], uniqueId(true), text(200)),
        type: leaf('string', uniqueId(), text(100)),
        collection: leaf('string', uniqueId(), text(100)),
        encoding: leaf('string', uniqueId(), text(50)),
      }),
    },
    locale: leaf('string', note('user.demographic.language', [REPORTING, PROFILING], 'P13M'), text(35)),
    userAgent: leaf('string', note('user.device', [REPORTING], 'P13M'), text(1000)),
    timezone: leaf('string', note('user.location.imprecise', [REPORTING, PROFILING], 'P13M'), text(100)),
    campaign: object({
      name: leaf('string', note('user.behavior.browsing_history', [REPORTING, CAMPAIGNS], 'P13M'), text(300)),
      source: leaf('string', note('user.behavior.browsing_history', [REPORTING, CAMPAIGNS], 'P13M'), text(300)),
      medium: leaf('string', note('user.behavior.browsing_history', [REPORTING, CAMPAIGNS], 'P13M'), text(300)),
      term: leaf('string', note('user.behavior.browsing_history', [REPORTING, CAMPAIGNS], 'P13M'), text(300)),
      content: leaf('string', note('user.behavior.browsing_history', [REPORTING, CAMPAIGNS], 'P13M'), text(300)),
    }),
    library: object({
      name: leaf('string', note('system.operations', [REPORTING], 'P13M'), text(100)),
      version: leaf('string', note('system.operations', [REPORTING], 'P13M'), text(50)),
    }),
    app: object({
      name: leaf('string', note('system.operations', [REPORTING], 'P13M'), text(200)),
      version: leaf('string', note('system.operations', [REPORTING], 'P13M'), text(50)),
      build: leaf('string', note('system.operations', [REPORTING], 'P13M'), text(50)),
    }),
    device: object({
      type: leaf('string', note('user.device', [REPORTING], 'P13M'), text(50)),
      manufacturer: leaf('string', note('user.device', [REPORTING], 'P13M'), text(100)),
      model: leaf('string', note('user.device', [REPORTING], 'P13M'), text(100)),
    }),
    os: object({
      name: leaf('string', note('user.device', [REPORTING], 'P13M'), text(100)),
      version: leaf('string', note('user.device', [REPORTING], 'P13M'), text(50)),
    }),
    location: object({
      city: leaf('string', note('user.location.imprecise', [REPORTING, PROFILING], 'P13M'), text(200)),
      country: leaf('string', note('user.location.imprecise', [REPORTING, PROFILING], 'P13M'), text(100)),
      latitude: leaf('number', note('user.location.precise', [NEARBY], 'P30D', true), {
        minimum: -90,
        maximum: 90,
        description: 'Precise location: refused unless the subject consented to a purpose that declares it.',
      }),
      longitude: leaf('number', note('user.location.precise', [NEARBY], 'P30D', true), { minimum: -180, maximum: 180 }),
    }),
  }),
};
