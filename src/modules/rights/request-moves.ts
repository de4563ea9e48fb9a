// How a rights request moves, written in one place for every writer of its records (the request workflow, and the
// closing of a deleted person's other requests): the change of its row, its event row and its audit entry.
import type { Actor } from '../../shared/actor.ts';
import { sortableId } from '../../shared/random.ts';
import type { SqlExecutor } from '../../storage/index.ts';
import type { AuditEvent } from '../audit/index.ts';
import type { RequestEventRow, RequestRow, RequestsRepo } from './requests.repo.ts';

const PURPOSE = 'essential.legal_obligation';

/** The event of a request's move from `from` to `to` (the same state for a change within it), by `actor` at `at`. */
export function requestEvent(requestId: string, from: string | null, to: string, actor: Actor, at: string, detail: Record<string, unknown> = {}): RequestEventRow {
  return { id: sortableId('rre_'), request_id: requestId, at, from_state: from, to_state: to, actor: actor.id, role: actor.role, detail: JSON.stringify(detail) };
}

/** The audit entry of `action` on a request (`rights_request:<id>`), with the request's type first in its details. */
export function requestAudit(actor: Actor, action: string, row: RequestRow, details: Record<string, unknown>): AuditEvent {
  return { actor: actor.id, role: actor.role, action, purpose: PURPOSE, subject: row.subject, resource: `rights_request:${row.id}`, details: { type: row.type, ...details } };
}

/** A move of a request: where to, the other changes, who, when, and the detail its event and audit entry record. */
export interface RequestMove {
  readonly to: string;
  readonly changes: Partial<RequestRow>;
  readonly actor: Actor;
  readonly at: string;
  readonly detail: Record<string, unknown>;
  /** Only while it still has this many run attempts (see RequestsRepo.updateIn). */
  readonly attempts?: number | undefined;
  /** Counting the verification attempt it ends, only while fewer were counted (see RequestsRepo.updateIn). */
  readonly maxCodeAttempts?: number | undefined;
}

/**
 * Moves a request inside the caller's transaction, only if it is still in the state it was read in (compare-and-set),
 * with its event; returns the request as moved and its audit entry `rights.request.<to>` (details: type, from and the
 * event's detail), for the caller to append last in the transaction, or null when the request moved meanwhile. The
 * state machine is the caller's to check (assertTransition).
 */
export async function moveRequestIn(repo: RequestsRepo, tx: SqlExecutor, row: RequestRow, move: RequestMove): Promise<{ row: RequestRow; audit: AuditEvent } | null> {
  const from = row.state;
  const changes: Partial<RequestRow> = { ...move.changes, state: move.to, updated_at: move.at };
  const event = requestEvent(row.id, from, move.to, move.actor, move.at, move.detail);
  if (!(await repo.updateIn(tx, row.id, from, changes, event, move.attempts, move.maxCodeAttempts))) return null;
  const moved: RequestRow = { ...row, ...changes };
  return { row: moved, audit: requestAudit(move.actor, `rights.request.${move.to}`, moved, { from, ...move.detail }) };
}
