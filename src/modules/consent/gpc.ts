/**
 * The date Candor's handling of Global Privacy Control last changed, published as `lastUpdate` in
 * `/.well-known/gpc.json` (GPC specification, section 4). Change it whenever the GPC behaviour changes.
 */
export const GPC_LAST_UPDATE = '2026-12-05';
