import assert from 'node:assert/strict';
import type { AuditLog } from '../../src/modules/audit/index.ts';

/**
 * Calls `change` while the audit log's in-transaction append fails (as a full disk or a lost connection would make
 * it), and asserts that the call failed with that error: the change must then not have been made.
 */
export async function failsWhileAuditFails(audit: AuditLog, change: () => Promise<unknown>): Promise<void> {
  const appendIn = audit.appendIn.bind(audit);
  audit.appendIn = () => Promise.reject(new Error('audit log unavailable'));
  try {
    await assert.rejects(change(), /audit log unavailable/);
  } finally {
    audit.appendIn = appendIn;
  }
}
