/** Whether a value is a plain JSON object (not null, not an array): one a message's member may be read from. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
