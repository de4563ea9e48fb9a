import { DEFAULT_PLAN, type PlanDocument } from '../../src/modules/catalog/index.ts';

/**
 * The default shop plan with one more track event, `name`, for `purposes`, whose `query` property serves analytics; the
 * event's occurrence is of `category` when given (else the plan declares none: read as `user.behavior`).
 */
export function planWithEvent(name: string, purposes: readonly string[] = ['analytics.reporting'], category?: string): PlanDocument {
  return {
    ...structuredClone(DEFAULT_PLAN),
    events: {
      ...structuredClone(DEFAULT_PLAN.events),
      [name]: {
        ...(category === undefined ? {} : { category }),
        purposes: [...purposes],
        properties: { type: 'object', properties: { query: { type: 'string', 'x-candor': { category: 'user.behavior.search_history', purposes: ['analytics.reporting'], retention: 'P13M', personal: false } } } },
      },
    },
  };
}

/** The default plan with e-mail and phone kept only for marketing by e-mail and by text message (consent-based purposes). */
export function planWithConsentOnlyContact(): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  const { email, phone } = (plan.traits as { properties: Record<string, { 'x-candor': { purposes: string[] } } | undefined> }).properties;
  if (!email || !phone) throw new Error('the default plan declares email and phone traits');
  email['x-candor'].purposes = ['marketing.communications.email'];
  phone['x-candor'].purposes = ['marketing.communications.sms'];
  return plan;
}
