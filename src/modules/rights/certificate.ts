import type { EraseOutcome, StoreStatus } from '../../shared/subject-data.ts';

/** One recipient (processor, destination) of the subject's data and what became of the erasure there. */
export interface RecipientOutcome {
  readonly name: string;
  readonly status: StoreStatus;
  readonly detail?: string;
}

/** The proof of one erasure: every store and every recipient with its status, and the ledger line that records it. */
export interface ErasureCertificate {
  readonly requestId: string;
  /** The subject's pseudonym. */
  readonly subject: string;
  readonly startedAt: string;
  readonly completedAt: string;
  readonly status: 'complete' | 'incomplete';
  readonly stores: readonly (EraseOutcome & { module: string })[];
  readonly recipients: readonly RecipientOutcome[];
  readonly ledger: { readonly seq: number; readonly hash: string };
}

/** What the certificate says when no recipient is configured: stated, not left out. */
export const NO_RECIPIENTS: RecipientOutcome = {
  name: 'no recipients',
  status: 'confirmed',
  detail: 'No recipients (processors or destinations) are configured, so the data was disclosed to nobody outside the controller.',
};

/** Complete only when every store and every recipient is confirmed; forwarded or not supported keeps it incomplete. */
export function certificateStatus(stores: readonly { status: StoreStatus }[], recipients: readonly { status: StoreStatus }[]): 'complete' | 'incomplete' {
  return [...stores, ...recipients].every((s) => s.status === 'confirmed') ? 'complete' : 'incomplete';
}
