import { DEFAULT_PLAN, type PlanDocument } from '../../src/modules/catalog/index.ts';

/** The default shop plan with one more track event, `name`, for `purposes`, whose `query` property serves analytics. */
export function planWithEvent(name: string, purposes: readonly string[] = ['analytics.reporting']): PlanDocument {
  return {
    ...structuredClone(DEFAULT_PLAN),
    events: {
      ...structuredClone(DEFAULT_PLAN.events),
      [name]: {
        purposes: [...purposes],
        properties: { type: 'object', properties: { query: { type: 'string', 'x-candor': { category: 'user.behavior.search_history', purposes: ['analytics.reporting'], retention: 'P13M', personal: false } } } },
      },
    },
  };
}
