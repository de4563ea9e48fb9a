import type { NoticePurpose, PurposeConfig } from './consent.types.ts';

const purpose = (key: string, basis: PurposeConfig['basis'], description: string, flags: Partial<PurposeConfig> = {}): PurposeConfig => ({
  key,
  basis,
  saleOrSharing: false,
  targetedAdvertising: false,
  explicit: false,
  optOutJurisdictions: [],
  description,
  ...flags,
});

/** The purposes an online shop starts with; explicit opt-in everywhere until a deployment says otherwise. */
export const DEFAULT_PURPOSES: readonly PurposeConfig[] = [
  purpose('analytics.reporting', 'consent', 'Measuring how the shop is used, in reports and dashboards.'),
  purpose('personalize.profiling', 'consent', 'Building a picture of your interests and habits (segments, scores) to tailor what we offer you.'),
  purpose('personalize.content.profiling', 'consent', 'Choosing the products and content we show you from what you viewed and bought.'),
  purpose('marketing.communications.email', 'consent', 'Sending you marketing emails about products and offers.'),
  purpose('marketing.advertising.third_party.targeted', 'consent', 'Showing you our ads on other sites and apps, based on your activity here.', {
    saleOrSharing: true,
    targetedAdvertising: true,
  }),
  purpose('third_party_sharing', 'consent', 'Sharing your data with partners for their own purposes.', { saleOrSharing: true }),
  purpose('essential.service.operations', 'contract', 'Running your account and delivering what you ordered.'),
  purpose('essential.fraud_detection', 'legitimate_interests', 'Detecting and preventing fraud against you and the shop.'),
  purpose('essential.legal_obligation', 'legal_obligation', 'Keeping the records the law requires, such as invoices.'),
  purpose('marketing.communications.sms', 'consent', 'Sending you marketing text messages about products and offers.'),
  purpose('analytics.reporting.campaign_insights', 'consent', 'Measuring which campaigns and links brought you to the shop.'),
  purpose('personalize.content.limited', 'consent', 'Showing you shops and offers near where you are, from your precise location.', { explicit: true }),
  purpose('fairness_audit', 'consent', 'Checking, only in aggregate, that our offers treat groups of people fairly; never used to target you.', { explicit: true }),
];

/**
 * What notice version 1 describes: the data categories each default purpose uses. It covers every field the default
 * tracking plan declares for a consent-based purpose, and every event's occurrence category for the event's purposes
 * (`user.behavior` covers browsing and purchase history; `user.content.private` survey answers): the gate keeps a field
 * or an event for such a purpose only where the notice describes its category (Consent.describes).
 */
export const DEFAULT_NOTICE_PURPOSES: readonly NoticePurpose[] = [
  {
    purpose: 'analytics.reporting',
    categories: [
      'user.behavior',
      'user.content.private',
      'user.device',
      'user.location.imprecise',
      'user.contact.address.country',
      'user.contact.address.city',
      'user.demographic.language',
      'user.workplace',
      'user.account',
      'user.unique_id',
    ],
  },
  {
    purpose: 'personalize.profiling',
    categories: [
      'user.behavior',
      'user.contact.email',
      'user.contact.address.country',
      'user.contact.address.city',
      'user.location.imprecise',
      'user.demographic.language',
      'user.demographic.date_of_birth',
      'user.workplace',
      'user.account',
      'user.unique_id',
    ],
  },
  { purpose: 'personalize.content.profiling', categories: ['user.behavior.browsing_history', 'user.behavior.purchase_history', 'user.device.cookie_id'] },
  { purpose: 'marketing.communications.email', categories: ['user.contact.email', 'user.name', 'user.behavior', 'user.demographic.date_of_birth'] },
  { purpose: 'marketing.advertising.third_party.targeted', categories: ['user.device.cookie_id', 'user.device.device_id', 'user.behavior.browsing_history'] },
  { purpose: 'third_party_sharing', categories: ['user.contact.email', 'user.name', 'user.behavior.purchase_history'] },
  { purpose: 'essential.service.operations', categories: ['user.account', 'user.contact', 'user.name', 'user.behavior.purchase_history'] },
  { purpose: 'essential.fraud_detection', categories: ['user.device.ip_address', 'user.device.device_id', 'user.behavior.purchase_history'] },
  { purpose: 'essential.legal_obligation', categories: ['user.name', 'user.contact.address', 'user.behavior.purchase_history'] },
  { purpose: 'marketing.communications.sms', categories: ['user.contact.phone_number', 'user.name'] },
  { purpose: 'analytics.reporting.campaign_insights', categories: ['user.behavior.browsing_history'] },
  { purpose: 'personalize.content.limited', categories: ['user.location.precise'] },
  { purpose: 'fairness_audit', categories: ['user.demographic.age_range', 'user.demographic.gender', 'user.demographic.race_ethnicity', 'user.health_and_medical'] },
];

export const DEFAULT_NOTICE_TEXT = [
  'How this shop uses your data.',
  'We use your account, contact and order details to run your account and deliver your orders, to prevent fraud, and to keep the records the law requires.',
  'Only if you agree, we also: measure how the shop is used (from what you view and buy, your survey answers, your device, your town and country, your language, your account and company details); tailor products, content and offers to your interests (from what you view and buy, your e-mail address, town and country, language, date of birth, account, company details and the ids other systems know you by); send you marketing emails (with your name, what you viewed and bought, and a birthday greeting) or text messages; see which campaigns brought you here; show you shops near you from your precise location (only with your explicit consent); show you our ads on other sites; share your data with partners; and, if you tell us your age range, gender, ethnicity or health details in a survey, check in aggregate and only with your explicit consent that our offers treat everyone fairly.',
  'You can change or withdraw any of these choices at any time, as easily as you gave them. A Global Privacy Control signal from your browser is honoured as an opt-out of sale, sharing and targeted advertising.',
].join('\n\n');
