import type { Kernel } from '../../kernel.ts';
import { CandorError } from '../../shared/errors.ts';

/** The profile of the person the request names (created if new); erased people are refused. */
export async function subjectOf(kernel: Kernel, ids: { userId?: string | undefined; anonymousId?: string | undefined }, source: string): Promise<string> {
  if (!ids.userId && !ids.anonymousId) throw new CandorError('COLLECT_IDENTITY_MISSING');
  const identifiers = [
    ...(ids.userId ? [{ type: 'user_id', value: ids.userId }] : []),
    ...(ids.anonymousId ? [{ type: 'anonymous_id', value: ids.anonymousId }] : []),
  ];
  const item = { identifiers, source, at: new Date().toISOString() };
  const { storage, identity } = kernel;
  const resolution = await storage.raw.transaction(async (tx) => {
    if ((await identity.isSuppressedBatch(tx, [item]))[0]) throw new CandorError('COLLECT_SUBJECT_SUPPRESSED');
    return (await identity.resolveBatch(tx, [item]))[0];
  });
  if (resolution?.merges.length) await identity.notifyMerges(resolution.merges);
  if (!resolution?.profileId) throw new CandorError('COLLECT_IDENTITY_MISSING');
  return resolution.profileId;
}
