import assert from 'node:assert/strict';
import type { Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';

/**
 * A person the identity graph knows by `identifiers`, with the consent `states` recorded for them (none: no record of
 * any purpose). Returns their profile id.
 */
export async function knownPerson(kernel: Kernel, identifiers: { type: string; value: string }[], states: Record<string, 'given' | 'refused'> = {}): Promise<string> {
  const { storage, identity, consent } = kernel;
  const [resolution] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [{ identifiers, source: 'setup', at: new Date().toISOString() }]));
  const profileId = resolution?.profileId;
  assert.ok(typeof profileId === 'string');
  const changes = Object.entries(states).map(([purpose, state]) => ({ purpose, state }));
  if (changes.length > 0) await consent.record(profileId, changes, { mechanism: 'api', noticeVersion: 1, jurisdiction: 'NL', source: 'setup' }, CLI_ACTOR);
  return profileId;
}

/** The canonical profile of the person `profileId` belongs to now (another one once it was merged into it). */
export async function personOf(kernel: Kernel, profileId: string): Promise<string | undefined> {
  return (await kernel.identity.canonicalsIn(kernel.storage.raw, [profileId])).get(profileId);
}
