import assert from 'node:assert/strict';
import type { AuditEvent, AuditLog } from '../../src/modules/audit/index.ts';

/**
 * Calls `change` while the audit log's in-transaction append fails (as a full disk or a lost connection would make
 * it), and asserts that the call failed with that error: the change must then not have been made. With `action`, only
 * entries of that action fail, whether appended in a transaction or queued (`append`); the others are written.
 */
export async function failsWhileAuditFails(audit: AuditLog, change: () => Promise<unknown>, action?: string): Promise<void> {
  const appendIn = audit.appendIn.bind(audit);
  const append = audit.append.bind(audit);
  const unavailable = () => Promise.reject(new Error('audit log unavailable'));
  const fails = (events: readonly AuditEvent[]) => action === undefined || events.some((e) => e.action === action);
  audit.appendIn = (tx, events) => (fails(events) ? unavailable() : appendIn(tx, events));
  if (action !== undefined) audit.append = (event) => (fails([event]) ? unavailable() : append(event));
  try {
    await assert.rejects(change(), /audit log unavailable/);
  } finally {
    audit.appendIn = appendIn;
    audit.append = append;
  }
}
