// Built-in taxonomy reference data for Candor: data categories, data uses,
// data subjects, GDPR legal bases and special categories of personal data.
//
// The keys (fides_key), parent keys and hierarchy of categories, uses and
// subjects come from the fideslang taxonomy (© Ethyca, CC BY 4.0). Every name
// and description below is Candor's own wording, written for marketers and
// privacy officers; none is copied from fideslang.

export const FIDESLANG_ATTRIBUTION =
  'Taxonomy keys from fideslang, © Ethyca, CC BY 4.0 (https://github.com/ethyca/fideslang). Names and descriptions are Candor\'s own.';

/** GDPR Art. 9(1) special categories, plus Art. 10 criminal convictions. */
export type SpecialCategoryKey =
  | 'racial_or_ethnic_origin'
  | 'political_opinions'
  | 'religious_or_philosophical_beliefs'
  | 'trade_union_membership'
  | 'genetic'
  | 'biometric'
  | 'health'
  | 'sex_life_or_sexual_orientation'
  | 'criminal_convictions';

export interface DataCategoryEntry {
  key: string;
  name: string;
  description: string;
  parentKey: string | null;
  /** GDPR Art. 9 special category (or Art. 10 criminal convictions), if any. */
  specialCategory: SpecialCategoryKey | null;
  /** Must never drive audience targeting (special categories and other protected traits). */
  protectedAttribute: boolean;
  /** CPRA "sensitive personal information". */
  sensitivePersonalInformation: boolean;
}

export interface DataUseEntry {
  key: string;
  name: string;
  description: string;
  parentKey: string | null;
}

export interface DataSubjectEntry {
  key: string;
  name: string;
  description: string;
}

export type LegalBasisKey =
  | 'consent'
  | 'contract'
  | 'legal_obligation'
  | 'vital_interests'
  | 'public_task'
  | 'legitimate_interests';

export interface LegalBasisEntry {
  key: LegalBasisKey;
  name: string;
  article: string;
  description: string;
  requiresConsentRecord: boolean;
}

export interface SpecialCategoryEntry {
  key: SpecialCategoryKey;
  name: string;
  article: string;
  description: string;
}

// Parents always come before their children.
export const DATA_CATEGORIES: readonly DataCategoryEntry[] = [
  {
    key: 'system',
    name: 'System data',
    description: 'Information that belongs to the platform itself rather than to any person, such as configuration and internal records.',
    parentKey: null,
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'system.authentication',
    name: 'System authentication data',
    description: 'Secrets and records the platform relies on to decide which services and operators may sign in, such as API keys and service tokens.',
    parentKey: 'system',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'system.operations',
    name: 'System operations data',
    description: 'Logs, metrics and other technical records needed to keep the platform running smoothly.',
    parentKey: 'system',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user',
    name: 'Personal data',
    description: 'Anything that relates to an individual person, whether they handed it to us themselves or we worked it out from how they use our products.',
    parentKey: null,
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.account',
    name: 'Account details',
    description: 'Information captured when someone signs up for, or later manages, an account with us.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.authorization',
    name: 'Access and permissions',
    description: 'Details that control what a person is allowed to see or do inside a product, including how they prove who they are.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.behavior',
    name: 'Behavioural data',
    description: 'What a person does when they interact with our sites, apps and channels, such as pages viewed, items bought or searches made.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.biometric',
    name: 'Biometric data',
    description: 'Measurements of physical or behavioural traits, such as fingerprints or face geometry, processed so that a person can be recognised. A GDPR special category.',
    parentKey: 'user',
    specialCategory: 'biometric', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.childrens',
    name: "Children's data",
    description: 'Any information about a person below the age of digital consent. Often needs a parent\'s permission and must never be used for targeting.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact',
    name: 'Contact details',
    description: 'Ways of reaching a person, such as a postal address, email address or phone number.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.content',
    name: 'User-generated content',
    description: 'Material a person writes, uploads or shares, or that is about them, such as messages, reviews or photos.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic',
    name: 'Demographic data',
    description: 'Traits that describe who a person is, such as age, gender, language or household situation.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.location',
    name: 'Location data',
    description: 'Where a person is or has been, whether read from a device or estimated from other signals.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.device',
    name: 'Device data',
    description: 'Technical details about the phone, computer or browser a person uses, including identifiers and settings.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.payment',
    name: 'Payment data',
    description: 'How a person pays us, such as the payment method on file and the transactions made with it.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.social',
    name: 'Social data',
    description: 'A person\'s activity on social networks, along with their connections and interactions with others.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.unique_id',
    name: 'Unique identifier',
    description: 'An ID our own systems give a person so that all of their records can be linked together.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.telemetry',
    name: 'Telemetry data',
    description: 'Technical measurements gathered while someone uses an app or device that can be traced back to that person.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.user_sensor',
    name: 'Surroundings sensor data',
    description: 'Readings about a person\'s surroundings picked up by sensors while they use a product, such as ambient light, noise or motion.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.workplace',
    name: 'Employer',
    description: 'The company or organisation a person works for.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.sensor',
    name: 'Sensor data',
    description: 'Readings produced by sensors or monitoring equipment that relate to a particular person.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.financial',
    name: 'Financial data',
    description: 'A person\'s money matters, such as bank details, cards, credit standing and past financial dealings.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.government_id',
    name: 'Government identifiers',
    description: 'Identity numbers and documents issued by a public authority, such as passports or national ID numbers. Sensitive under CPRA.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.health_and_medical',
    name: 'Health data',
    description: 'Anything about a person\'s physical or mental health, including diagnoses, treatment and the care they receive. A GDPR special category.',
    parentKey: 'user',
    specialCategory: 'health', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.name',
    name: 'Name',
    description: 'A person\'s real name, as opposed to a username or nickname.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.criminal_history',
    name: 'Criminal records',
    description: 'Offences, convictions or related security measures concerning a person. Covered by GDPR Art. 10 and only processed where the law allows it.',
    parentKey: 'user',
    specialCategory: 'criminal_convictions', protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.privacy_preferences',
    name: 'Privacy choices',
    description: 'The consents, opt-outs and other privacy settings a person has chosen.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.job_title',
    name: 'Job title',
    description: 'A person\'s role or position at work.',
    parentKey: 'user',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.account.settings',
    name: 'Account preferences',
    description: 'Choices a person has saved in their account, such as display language or notification settings.',
    parentKey: 'user.account',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.account.username',
    name: 'Username',
    description: 'The handle or login name a person picked for their account.',
    parentKey: 'user.account',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.authorization.credentials',
    name: 'Login credentials',
    description: 'Secrets that let a person sign in, such as passwords, security answers or access tokens. Sensitive under CPRA.',
    parentKey: 'user.authorization',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.authorization.biometric',
    name: 'Biometric login',
    description: 'Fingerprint, face or other biometric templates used to confirm who a person is when they sign in.',
    parentKey: 'user.authorization',
    specialCategory: 'biometric', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.authorization.password',
    name: 'Password',
    description: 'The secret phrase a person signs in with. It should only ever be stored as a salted hash.',
    parentKey: 'user.authorization',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.behavior.browsing_history',
    name: 'Browsing history',
    description: 'The pages and items a person has looked at on our sites or apps.',
    parentKey: 'user.behavior',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.behavior.media_consumption',
    name: 'Media consumption',
    description: 'What a person has watched, listened to or read, and for how long.',
    parentKey: 'user.behavior',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.behavior.purchase_history',
    name: 'Purchase history',
    description: 'Orders, returns and other past transactions a person has made with us.',
    parentKey: 'user.behavior',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.behavior.search_history',
    name: 'Search history',
    description: 'The search terms a person has typed into our sites or apps.',
    parentKey: 'user.behavior',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.biometric.fingerprint',
    name: 'Fingerprint',
    description: 'A scan of a person\'s fingerprint, or a template derived from one.',
    parentKey: 'user.biometric',
    specialCategory: 'biometric', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.biometric.retinal',
    name: 'Retina or iris scan',
    description: 'An image or template of a person\'s eye that can tell them apart from everyone else.',
    parentKey: 'user.biometric',
    specialCategory: 'biometric', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.biometric.voice',
    name: 'Voiceprint',
    description: 'Recordings or models of a person\'s voice that can be used to recognise them.',
    parentKey: 'user.biometric',
    specialCategory: 'biometric', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    // Readings such as heart rate reveal health rather than identity, so this
    // child is classed as health data instead of inheriting 'biometric'.
    key: 'user.biometric.health',
    name: 'Biometric health readings',
    description: 'Body measurements such as heart rate, blood pressure or sleep patterns captured by wearables or other sensors. Treated as health data.',
    parentKey: 'user.biometric',
    specialCategory: 'health', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.contact.address',
    name: 'Postal address',
    description: 'The physical address where a person lives or receives post.',
    parentKey: 'user.contact',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.email',
    name: 'Email address',
    description: 'An email address at which a person can be reached.',
    parentKey: 'user.contact',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.phone_number',
    name: 'Phone number',
    description: 'A mobile or landline number for reaching a person.',
    parentKey: 'user.contact',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.url',
    name: 'Website or profile link',
    description: 'Links to a person\'s own website or to their profiles on social networks.',
    parentKey: 'user.contact',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.fax_number',
    name: 'Fax number',
    description: 'A fax line on which a person can receive documents.',
    parentKey: 'user.contact',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.organization',
    name: 'Organisation',
    description: 'The company or body a contact represents when they deal with us.',
    parentKey: 'user.contact',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.address.city',
    name: 'City',
    description: 'The town or city part of a person\'s address.',
    parentKey: 'user.contact.address',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.address.country',
    name: 'Country',
    description: 'The country part of a person\'s address.',
    parentKey: 'user.contact.address',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.address.postal_code',
    name: 'Postcode',
    description: 'The postcode or ZIP code of a person\'s address.',
    parentKey: 'user.contact.address',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.address.state',
    name: 'State or region',
    description: 'The state, province, county or region part of a person\'s address.',
    parentKey: 'user.contact.address',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.contact.address.street',
    name: 'Street address',
    description: 'The house number, street and any flat or unit details of a person\'s address.',
    parentKey: 'user.contact.address',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.content.private',
    name: 'Private content',
    description: 'Messages, files and other material a person has not made public, such as emails or direct messages. Their contents are sensitive under CPRA.',
    parentKey: 'user.content',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.content.public',
    name: 'Public content',
    description: 'Posts, reviews and other material a person has chosen to publish openly.',
    parentKey: 'user.content',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.content.self_image',
    name: 'Photo of the person',
    description: 'A picture or video in which the person can be recognised, whether fully or in part.',
    parentKey: 'user.content',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.age_range',
    name: 'Age band',
    description: 'A broad age bracket such as 25 to 34, rather than an exact age. Must not decide who sees an offer.',
    parentKey: 'user.demographic',
    specialCategory: null, protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.date_of_birth',
    name: 'Date of birth',
    description: 'The exact day a person was born. It reveals their age and helps identify them, so it must not drive targeting.',
    parentKey: 'user.demographic',
    specialCategory: null, protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.gender',
    name: 'Gender',
    description: 'The gender a person identifies with or has told us about.',
    parentKey: 'user.demographic',
    specialCategory: null, protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.language',
    name: 'Language',
    description: 'The languages a person speaks or reads, or prefers to be contacted in.',
    parentKey: 'user.demographic',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.marital_status',
    name: 'Marital status',
    description: 'Whether a person is single, married, in a civil partnership, divorced or widowed.',
    parentKey: 'user.demographic',
    specialCategory: null, protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.political_opinion',
    name: 'Political views',
    description: 'A person\'s political opinions, party sympathies or voting intentions. A GDPR special category.',
    parentKey: 'user.demographic',
    specialCategory: 'political_opinions', protectedAttribute: true, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.profile',
    name: 'Profile and interests',
    description: 'Interests, tastes and other profile details a person has shared or that we have inferred about them.',
    parentKey: 'user.demographic',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.demographic.race_ethnicity',
    name: 'Racial or ethnic origin',
    description: 'A person\'s race, ethnicity or ethnic background. A GDPR special category and sensitive under CPRA.',
    parentKey: 'user.demographic',
    specialCategory: 'racial_or_ethnic_origin', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.demographic.religious_belief',
    name: 'Religious or philosophical beliefs',
    description: 'A person\'s faith, religion or deeply held philosophical convictions.',
    parentKey: 'user.demographic',
    specialCategory: 'religious_or_philosophical_beliefs', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.demographic.sexual_orientation',
    name: 'Sexual orientation',
    description: 'Who a person is attracted to, or details about their sex life.',
    parentKey: 'user.demographic',
    specialCategory: 'sex_life_or_sexual_orientation', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.device.cookie',
    name: 'Cookie contents',
    description: 'Values about a person that are kept in a browser cookie.',
    parentKey: 'user.device',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.device.cookie_id',
    name: 'Cookie identifier',
    description: 'The unique value a cookie carries so that a browser can be recognised when it comes back.',
    parentKey: 'user.device',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.device.device_id',
    name: 'Device identifier',
    description: 'A value that singles out one phone, tablet or computer, such as an advertising ID or hardware serial number.',
    parentKey: 'user.device',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.device.ip_address',
    name: 'IP address',
    description: 'The network address a device was using when it connected to us.',
    parentKey: 'user.device',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.financial.bank_account',
    name: 'Bank account details',
    description: 'Account numbers, sort codes, IBANs or similar details of a person\'s bank account. Sensitive under CPRA.',
    parentKey: 'user.financial',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.financial.credit_card',
    name: 'Payment card details',
    description: 'Credit or debit card numbers, expiry dates and related card data. Sensitive under CPRA.',
    parentKey: 'user.financial',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.government_id.birth_certificate',
    name: 'Birth certificate',
    description: 'A person\'s official record of birth, or its reference number.',
    parentKey: 'user.government_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.government_id.drivers_license_number',
    name: 'Driving licence number',
    description: 'The number printed on a person\'s driving licence.',
    parentKey: 'user.government_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.government_id.immigration',
    name: 'Immigration documents',
    description: 'Visa, residence permit or other details of a person\'s immigration status.',
    parentKey: 'user.government_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.government_id.national_identification_number',
    name: 'National ID number',
    description: 'A number such as a social security or national insurance number that a government uses to tell citizens and residents apart.',
    parentKey: 'user.government_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.government_id.passport_number',
    name: 'Passport number',
    description: 'The number and related details of a person\'s passport.',
    parentKey: 'user.government_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.government_id.vehicle_registration',
    name: 'Vehicle registration',
    description: 'The number plate or registration details of a vehicle linked to a person.',
    parentKey: 'user.government_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: true,
  },
  {
    key: 'user.health_and_medical.genetic',
    name: 'Genetic data',
    description: 'Information about a person\'s inherited or acquired genetic traits, such as DNA test results. A GDPR special category.',
    parentKey: 'user.health_and_medical',
    specialCategory: 'genetic', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.health_and_medical.insurance_beneficiary_id',
    name: 'Health insurance number',
    description: 'The membership or beneficiary number on a person\'s health insurance policy.',
    parentKey: 'user.health_and_medical',
    specialCategory: 'health', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.health_and_medical.record_id',
    name: 'Medical record number',
    description: 'An identifier that points to a person\'s file at a doctor, hospital or other care provider.',
    parentKey: 'user.health_and_medical',
    specialCategory: 'health', protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.location.imprecise',
    name: 'Approximate location',
    description: 'A coarse position, such as a city or region, that is accurate to no better than roughly 500 metres.',
    parentKey: 'user.location',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.location.precise',
    name: 'Precise location',
    description: 'A position accurate to within roughly 500 metres, typically from GPS or similar signals. Sensitive under CPRA and never used for targeting.',
    parentKey: 'user.location',
    specialCategory: null, protectedAttribute: true, sensitivePersonalInformation: true,
  },
  {
    key: 'user.name.first',
    name: 'First name',
    description: 'A person\'s given name.',
    parentKey: 'user.name',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.name.last',
    name: 'Last name',
    description: 'A person\'s surname.',
    parentKey: 'user.name',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
  {
    key: 'user.unique_id.pseudonymous',
    name: 'Pseudonymous identifier',
    description: 'An ID that does not name a person directly but can still link their records, for example a hashed email or a probabilistic cross-device match.',
    parentKey: 'user.unique_id',
    specialCategory: null, protectedAttribute: false, sensitivePersonalInformation: false,
  },
];

/**
 * Data categories that identify a person directly (names, contact details, government and account ids, online
 * identifiers such as IP addresses, device and cookie ids, photos of them) or are personal whatever the context
 * (credentials, financial accounts, biometrics, date of birth). A field of such a category, or of a category below
 * one, is personal data: a tracking plan must declare it `personal: true`, so that it is stored encrypted with the
 * person's data key. The nearest listed category decides, so `false` leaves out the parts of a postal address that
 * name an area rather than a person, and a contact's organisation. `user.unique_id` is not listed: it is an id the
 * business's own systems assign (a customer number, an order reference, the kind of an external id), a pseudonym
 * that names nobody outside them; a derived identifier such as a hashed e-mail is (`user.unique_id.pseudonymous`).
 * Special categories and precise location must be personal too, from their own flags.
 */
export const IDENTIFYING_CATEGORIES: ReadonlyMap<string, boolean> = new Map([
  ['user.name', true],
  ['user.contact', true],
  ['user.contact.address.city', false],
  ['user.contact.address.state', false],
  ['user.contact.address.country', false],
  ['user.contact.address.postal_code', false],
  ['user.contact.organization', false],
  ['user.government_id', true],
  ['user.account.username', true],
  ['user.authorization', true],
  ['user.financial', true],
  ['user.biometric', true],
  ['user.content.self_image', true],
  ['user.demographic.date_of_birth', true],
  ['user.device.ip_address', true],
  ['user.device.device_id', true],
  ['user.device.cookie_id', true],
  ['user.unique_id.pseudonymous', true],
]);

// Parents always come before their children.
export const DATA_USES: readonly DataUseEntry[] = [
  {
    key: 'analytics',
    name: 'Analytics',
    description: 'Measuring and understanding how products, campaigns and channels perform, through dashboards, insights and anomaly checks.',
    parentKey: null,
  },
  {
    key: 'analytics.reporting',
    name: 'Reporting',
    description: 'Producing regular reports and dashboards on how the business, its platforms and its campaigns are doing.',
    parentKey: 'analytics',
  },
  {
    key: 'analytics.reporting.ad_performance',
    name: 'Ad performance reporting',
    description: 'Measuring how ads do, for example impressions, clicks and conversions.',
    parentKey: 'analytics.reporting',
  },
  {
    key: 'analytics.reporting.content_performance',
    name: 'Content performance reporting',
    description: 'Measuring how articles, pages and other content land with their audience.',
    parentKey: 'analytics.reporting',
  },
  {
    key: 'analytics.reporting.campaign_insights',
    name: 'Campaign insights',
    description: 'Looking back at marketing and promotional campaigns to learn what worked and why.',
    parentKey: 'analytics.reporting',
  },
  {
    key: 'analytics.reporting.system',
    name: 'Platform usage reporting',
    description: 'Reporting on how people and connected services use the platform.',
    parentKey: 'analytics.reporting',
  },
  {
    key: 'analytics.reporting.system.performance',
    name: 'Platform performance reporting',
    description: 'Tracking the speed, uptime and error rates of the platform.',
    parentKey: 'analytics.reporting.system',
  },
  {
    key: 'collect',
    name: 'Collect for later use',
    description: 'Gathering or keeping data before a specific purpose has been decided. Best avoided, since GDPR expects the purpose to be known when data is collected.',
    parentKey: null,
  },
  {
    key: 'employment',
    name: 'Employment',
    description: 'Using data to hire, manage and look after staff, including day-to-day HR administration.',
    parentKey: null,
  },
  {
    key: 'employment.recruitment',
    name: 'Recruitment',
    description: 'Handling candidates\' details while filling a vacancy.',
    parentKey: 'employment',
  },
  {
    key: 'essential',
    name: 'Essential',
    description: 'Running the product or service itself, including customer support, security and meeting legal duties.',
    parentKey: null,
  },
  {
    key: 'essential.fraud_detection',
    name: 'Fraud prevention',
    description: 'Spotting and stopping fraud, abuse or other misuse of what we offer.',
    parentKey: 'essential',
  },
  {
    key: 'essential.legal_obligation',
    name: 'Legal compliance',
    description: 'Processing the law requires of us, such as keeping records of consent or answering regulators.',
    parentKey: 'essential',
  },
  {
    key: 'essential.service',
    name: 'Service delivery',
    description: 'Providing the core product or service a person asked for; it could not be offered without this processing.',
    parentKey: 'essential',
  },
  {
    key: 'essential.service.authentication',
    name: 'Sign-in',
    description: 'Checking that people are who they claim to be when they log in.',
    parentKey: 'essential.service',
  },
  {
    key: 'essential.service.notifications',
    name: 'Service notifications',
    description: 'Sending people messages they need about what they use, such as order confirmations or account alerts.',
    parentKey: 'essential.service',
  },
  {
    key: 'essential.service.operations',
    name: 'Service operations',
    description: 'Keeping the service up and running from day to day.',
    parentKey: 'essential.service',
  },
  {
    key: 'essential.service.payment_processing',
    name: 'Payment processing',
    description: 'Taking and settling payments for things a person buys.',
    parentKey: 'essential.service',
  },
  {
    key: 'essential.service.security',
    name: 'Security',
    description: 'Protecting our services, their users and their data against attacks and unauthorised access.',
    parentKey: 'essential.service',
  },
  {
    key: 'essential.service.upgrades',
    name: 'Upgrade notices',
    description: 'Telling people about new versions, changes or upgrades that are available to them.',
    parentKey: 'essential.service',
  },
  {
    key: 'essential.service.notifications.email',
    name: 'Service emails',
    description: 'Transactional emails such as receipts, password resets or account alerts.',
    parentKey: 'essential.service.notifications',
  },
  {
    key: 'essential.service.notifications.sms',
    name: 'Service text messages',
    description: 'Transactional text messages such as delivery updates or one-time codes.',
    parentKey: 'essential.service.notifications',
  },
  {
    key: 'essential.service.operations.support',
    name: 'Customer support',
    description: 'Helping people with their questions, problems and requests.',
    parentKey: 'essential.service.operations',
  },
  {
    key: 'essential.service.operations.improve',
    name: 'Support improvement',
    description: 'Reviewing past support conversations to make help faster and more useful.',
    parentKey: 'essential.service.operations',
  },
  {
    key: 'finance',
    name: 'Finance',
    description: 'Accounting, invoicing, audits, tax and other financial administration.',
    parentKey: null,
  },
  {
    key: 'functional',
    name: 'Functional',
    description: 'Features a person would reasonably expect and that serve a clear, specific purpose beyond the bare minimum of the service.',
    parentKey: null,
  },
  {
    key: 'functional.storage',
    name: 'Device storage',
    description: 'Saving or reading information on a person\'s device, such as cookies or local storage, when a feature needs it.',
    parentKey: 'functional',
  },
  {
    key: 'functional.service',
    name: 'Service features',
    description: 'Processing that makes particular features of a product work.',
    parentKey: 'functional',
  },
  {
    key: 'functional.service.improve',
    name: 'Product improvement',
    description: 'Using data to fix problems and make a product better.',
    parentKey: 'functional.service',
  },
  {
    key: 'marketing',
    name: 'Marketing',
    description: 'Promoting products and services to people, including advertising, campaigns and sales outreach.',
    parentKey: null,
  },
  {
    key: 'marketing.advertising',
    name: 'Advertising',
    description: 'Showing ads or promotions for what we sell.',
    parentKey: 'marketing',
  },
  {
    key: 'marketing.communications',
    name: 'Marketing messages',
    description: 'Sending promotional messages to customers and prospects over one or more channels.',
    parentKey: 'marketing',
  },
  {
    key: 'marketing.advertising.first_party',
    name: 'First-party advertising',
    description: 'Ads chosen using only data we collected or inferred ourselves.',
    parentKey: 'marketing.advertising',
  },
  {
    key: 'marketing.advertising.frequency_capping',
    name: 'Frequency capping',
    description: 'Limiting how often the same person is shown the same ad.',
    parentKey: 'marketing.advertising',
  },
  {
    key: 'marketing.advertising.negative_targeting',
    name: 'Audience exclusion',
    description: 'Making sure certain people or groups are left out of particular ads, for example existing customers or minors.',
    parentKey: 'marketing.advertising',
  },
  {
    key: 'marketing.advertising.profiling',
    name: 'Ad profiling',
    description: 'Building profiles or segments of people so that advertising can be aimed at them. Usually needs consent.',
    parentKey: 'marketing.advertising',
  },
  {
    key: 'marketing.advertising.serving',
    name: 'Ad delivery',
    description: 'The technical processing needed to get an ad or piece of content onto a device.',
    parentKey: 'marketing.advertising',
  },
  {
    key: 'marketing.advertising.third_party',
    name: 'Third-party advertising',
    description: 'Ads chosen using data that comes from, or is combined with, other companies.',
    parentKey: 'marketing.advertising',
  },
  {
    key: 'marketing.advertising.first_party.contextual',
    name: 'Contextual advertising',
    description: 'Ads picked to match the page a person is looking at right now, not their history.',
    parentKey: 'marketing.advertising.first_party',
  },
  {
    key: 'marketing.advertising.first_party.targeted',
    name: 'First-party targeted advertising',
    description: 'Ads tailored to a person based on what we know about them from their own use of our services.',
    parentKey: 'marketing.advertising.first_party',
  },
  {
    key: 'marketing.advertising.third_party.targeted',
    name: 'Third-party targeted advertising',
    description: 'Ads tailored to a person using data shared with, or enriched by, other companies.',
    parentKey: 'marketing.advertising.third_party',
  },
  {
    key: 'marketing.communications.email',
    name: 'Marketing emails',
    description: 'Newsletters, offers and other promotional email.',
    parentKey: 'marketing.communications',
  },
  {
    key: 'marketing.communications.sms',
    name: 'Marketing text messages',
    description: 'Promotional SMS and other text messages.',
    parentKey: 'marketing.communications',
  },
  {
    key: 'operations',
    name: 'Business operations',
    description: 'Running the internal processes the organisation needs in order to function.',
    parentKey: null,
  },
  {
    key: 'personalize',
    name: 'Personalisation',
    description: 'Tailoring what we offer to the individual using it.',
    parentKey: null,
  },
  {
    key: 'personalize.content',
    name: 'Content personalisation',
    description: 'Choosing which articles, products or offers a person sees.',
    parentKey: 'personalize',
  },
  {
    key: 'personalize.system',
    name: 'Experience personalisation',
    description: 'Adapting how the product itself looks or behaves for a person, such as remembering their layout.',
    parentKey: 'personalize',
  },
  {
    key: 'personalize.content.limited',
    name: 'Light-touch personalisation',
    description: 'Tailoring content with only a little data, such as the current session or stated preferences, without building a profile.',
    parentKey: 'personalize.content',
  },
  {
    key: 'personalize.content.profiling',
    name: 'Profiling for personalisation',
    description: 'Building profiles of people so that what they see can be tailored to them.',
    parentKey: 'personalize.content',
  },
  {
    key: 'personalize.content.profiled',
    name: 'Profile-based personalisation',
    description: 'Tailoring what a person sees using a profile that has already been built about them.',
    parentKey: 'personalize.content',
  },
  {
    key: 'sales',
    name: 'Sales',
    description: 'Sales work such as reaching out to leads and following up with prospects.',
    parentKey: null,
  },
  {
    key: 'third_party_sharing',
    name: 'Sharing with third parties',
    description: 'Passing data to another organisation beyond our own service.',
    parentKey: null,
  },
  {
    key: 'third_party_sharing.legal_obligation',
    name: 'Legally required sharing',
    description: 'Disclosing data because a law, court order, regulator or contract requires it.',
    parentKey: 'third_party_sharing',
  },
  {
    key: 'train_ai_system',
    name: 'AI training',
    description: 'Using data to train or fine-tune machine-learning or AI models.',
    parentKey: null,
  },
];

export const DATA_SUBJECTS: readonly DataSubjectEntry[] = [
  {
    key: 'anonymous_user',
    name: 'Anonymous visitor',
    description: 'Someone who cannot be identified, even by combining data. Only use this when re-identification is genuinely out of reach.',
  },
  {
    key: 'citizen_voter',
    name: 'Registered voter',
    description: 'A person on an electoral roll or otherwise registered to vote.',
  },
  {
    key: 'commuter',
    name: 'Commuter',
    description: 'A person whose journeys are tracked while they travel.',
  },
  {
    key: 'consultant',
    name: 'Contractor or consultant',
    description: 'A person who works for the organisation on a temporary or advisory basis rather than as an employee.',
  },
  {
    key: 'customer',
    name: 'Customer',
    description: 'A person or business that buys from us.',
  },
  {
    key: 'employee',
    name: 'Employee',
    description: 'A person on the organisation\'s payroll.',
  },
  {
    key: 'job_applicant',
    name: 'Job applicant',
    description: 'A person who has applied for, or been approached about, a role with us.',
  },
  {
    key: 'next_of_kin',
    name: 'Next of kin',
    description: 'A family member or emergency contact we hold on record for someone else.',
  },
  {
    key: 'passenger',
    name: 'Passenger',
    description: 'A person travelling on transport we run or arrange.',
  },
  {
    key: 'patient',
    name: 'Patient',
    description: 'A person receiving or seeking medical care.',
  },
  {
    key: 'prospect',
    name: 'Prospect',
    description: 'A person or business we hope to sell to but who has not bought yet.',
  },
  {
    key: 'shareholder',
    name: 'Shareholder',
    description: 'A person or entity that owns shares in the organisation.',
  },
  {
    key: 'supplier_vendor',
    name: 'Supplier',
    description: 'A person or business that sells goods or services to us.',
  },
  {
    key: 'trainee',
    name: 'Trainee',
    description: 'A person we are training, such as an intern or apprentice.',
  },
  {
    key: 'visitor',
    name: 'Site visitor',
    description: 'A person who comes to one of our physical premises, such as a shop or office.',
  },
];

export const LEGAL_BASES: readonly LegalBasisEntry[] = [
  {
    key: 'consent',
    name: 'Consent',
    article: 'GDPR Art. 6(1)(a)',
    description: 'The person has freely agreed to this specific use of their data. We must be able to prove it and honour withdrawal at any time.',
    requiresConsentRecord: true,
  },
  {
    key: 'contract',
    name: 'Contract',
    article: 'GDPR Art. 6(1)(b)',
    description: 'The processing is needed to fulfil a contract with the person, or to take steps they asked for before entering one.',
    requiresConsentRecord: false,
  },
  {
    key: 'legal_obligation',
    name: 'Legal obligation',
    article: 'GDPR Art. 6(1)(c)',
    description: 'A law we are subject to requires the processing, for example keeping invoices for tax purposes.',
    requiresConsentRecord: false,
  },
  {
    key: 'vital_interests',
    name: 'Vital interests',
    article: 'GDPR Art. 6(1)(d)',
    description: 'The processing is needed to protect someone\'s life or physical safety. Rarely relevant to marketing.',
    requiresConsentRecord: false,
  },
  {
    key: 'public_task',
    name: 'Public task',
    article: 'GDPR Art. 6(1)(e)',
    description: 'The processing is needed to carry out a task in the public interest or an official function set out in law.',
    requiresConsentRecord: false,
  },
  {
    key: 'legitimate_interests',
    name: 'Legitimate interests',
    article: 'GDPR Art. 6(1)(f)',
    description: 'We have a genuine business reason that is not outweighed by the person\'s rights and interests. Needs a documented balancing test.',
    requiresConsentRecord: false,
  },
];

export const SPECIAL_CATEGORIES: readonly SpecialCategoryEntry[] = [
  {
    key: 'racial_or_ethnic_origin',
    name: 'Racial or ethnic origin',
    article: 'GDPR Art. 9(1)',
    description: 'Data revealing a person\'s race or ethnic background.',
  },
  {
    key: 'political_opinions',
    name: 'Political opinions',
    article: 'GDPR Art. 9(1)',
    description: 'Data revealing a person\'s political views or affiliations.',
  },
  {
    key: 'religious_or_philosophical_beliefs',
    name: 'Religious or philosophical beliefs',
    article: 'GDPR Art. 9(1)',
    description: 'Data revealing a person\'s faith or core philosophical convictions.',
  },
  {
    key: 'trade_union_membership',
    name: 'Trade union membership',
    article: 'GDPR Art. 9(1)',
    description: 'Data revealing whether a person belongs to a trade union.',
  },
  {
    key: 'genetic',
    name: 'Genetic data',
    article: 'GDPR Art. 9(1)',
    description: 'Data about a person\'s inherited or acquired genetic characteristics.',
  },
  {
    key: 'biometric',
    name: 'Biometric data for identification',
    article: 'GDPR Art. 9(1)',
    description: 'Physical or behavioural measurements processed in order to uniquely identify a person.',
  },
  {
    key: 'health',
    name: 'Health data',
    article: 'GDPR Art. 9(1)',
    description: 'Data about a person\'s physical or mental health, including the care they receive.',
  },
  {
    key: 'sex_life_or_sexual_orientation',
    name: 'Sex life or sexual orientation',
    article: 'GDPR Art. 9(1)',
    description: 'Data about a person\'s sex life or sexual orientation.',
  },
  {
    key: 'criminal_convictions',
    name: 'Criminal convictions and offences',
    article: 'GDPR Art. 10',
    description: 'Data about criminal convictions, offences or related security measures. May only be processed under official authority or where the law allows.',
  },
];

/**
 * Data uses Candor adds to fideslang's list because its own features need a purpose of their own. They are
 * shipped like the built-in ones and cannot be removed.
 */
export const CANDOR_DATA_USES: readonly DataUseEntry[] = [
  {
    key: 'personalize.profiling',
    name: 'Profiling for personalization',
    description:
      'Building a picture of a customer from their behaviour (segments, personas, scores such as lifetime value or churn risk) to tailor what they are offered.',
    parentKey: 'personalize',
  },
  {
    key: 'fairness_audit',
    name: 'Fairness auditing',
    description:
      'Checking, only in aggregate, that segments, campaigns and scores do not treat groups of people differently; the data is never used to target anyone.',
    parentKey: null,
  },
];
