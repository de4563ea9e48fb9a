import type { Kernel } from '../../kernel.ts';
import type { Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';

type NamedIds = { userId?: string | undefined; anonymousId?: string | undefined };

/** The identity item of the ids a request names. */
function itemOf(ids: NamedIds, source: string) {
  const identifiers = [
    ...(ids.userId ? [{ type: 'user_id', value: ids.userId }] : []),
    ...(ids.anonymousId ? [{ type: 'anonymous_id', value: ids.anonymousId }] : []),
  ];
  return { identifiers, source, at: new Date().toISOString() };
}

/** The profile of the person the request names (created if new); erased people are refused. */
export async function subjectOf(kernel: Kernel, ids: NamedIds, source: string): Promise<string> {
  return (await resolveSubject(kernel, ids, source)).profileId;
}

/**
 * The person the request names (created if new): their canonical profile, and the profile holding the strongest id
 * named (the canonical one or one merged into it); erased people are refused.
 */
export async function resolveSubject(kernel: Kernel, ids: NamedIds, source: string): Promise<{ profileId: string; holder: string }> {
  if (!ids.userId && !ids.anonymousId) throw new CandorError('COLLECT_IDENTITY_MISSING');
  const { identity } = kernel;
  const resolution = await identity.resolveSubject(itemOf(ids, source));
  if (resolution.merges.length) await identity.notifyMerges(resolution.merges);
  if (!resolution.profileId) throw new CandorError('COLLECT_IDENTITY_MISSING');
  return { profileId: resolution.profileId, holder: resolution.holder ?? resolution.profileId };
}

/**
 * A GPC signal covers the device: records it also for every other profile an id of the request belongs to (the
 * subject's own profile has it recorded by the consent call itself).
 */
export async function recordGpcForDevice(kernel: Kernel, profileId: string, ids: NamedIds, source: string, meta: { source?: string | undefined; jurisdiction?: string | undefined }, actor: Actor): Promise<void> {
  const others = (await knownProfilesOf(kernel, ids, source)).filter((owner) => owner !== profileId);
  if (others.length > 0) await kernel.consent.recordGpc(others, { ...(meta.source ? { source: meta.source } : {}), ...(meta.jurisdiction ? { jurisdiction: meta.jurisdiction } : {}) }, actor);
}

/** Every profile an id of the request belongs to, creating none (the known people a refused request's GPC covers). */
export async function knownProfilesOf(kernel: Kernel, ids: NamedIds, source: string): Promise<string[]> {
  const [owners] = await kernel.identity.ownersOf(kernel.storage.raw, [itemOf(ids, source)]);
  return [...(owners ?? [])];
}
