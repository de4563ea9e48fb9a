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
