// A rectification whose person is deleted while it runs (the inactivity rule, an erasure) writes nothing and leaves no
// data key behind (review reproduction: a trait, a history entry and a new key were left for the deleted profile).
import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import type { Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import type { TraitInput } from './index.ts';

const newEmail: TraitInput = { key: 'email', value: 'new.address@candor-shop.dev', category: 'user.contact.email', personal: true };

/** A person with an e-mail trait (so a data key), stored `monthsAgo` months ago; their profile id. */
async function personWithEmail(k: Kernel, userId: string, monthsAgo = 0): Promise<string> {
  if (monthsAgo > 0) mock.timers.enable({ apis: ['Date'], now: months(new Date(), -monthsAgo).getTime() });
  try {
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const [stored] = await k.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-1`, traits: { email: `${userId}@candor-shop.dev` } }, bytes: 100 }], undefined, { source: 'web', gpc: false, receivedAt: Date.now(), actor: CLI_ACTOR });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    return profileId;
  } finally {
    mock.timers.reset();
  }
}

/** What is left for a profile: trait rows, history rows and data keys. */
async function leftFor(k: Kernel, profileId: string): Promise<{ traits: number; history: number; keys: number }> {
  const count = async (query: ReturnType<typeof sql<{ n: number }>>) => Number((await query.execute(k.storage.db)).rows[0]?.n);
  return {
    traits: await count(sql<{ n: number }>`SELECT count(*) AS n FROM profiles_traits WHERE profile_id = ${profileId}`),
    history: await count(sql<{ n: number }>`SELECT count(*) AS n FROM profiles_trait_history WHERE profile_id = ${profileId}`),
    keys: await count(sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id = ${profileId}`),
  };
}

/**
 * Rectifies the person's e-mail, running `meanwhile` once after the rectification read the traits: before it prepares
 * the data keys, or after; its error, if any.
 */
async function rectifyWith(k: Kernel, profileId: string, requestId: string, meanwhile: () => Promise<void>, at: 'before prepare' | 'after prepare' = 'before prepare'): Promise<unknown> {
  const profiles = k.profiles as { prepare: Kernel['profiles']['prepare'] };
  const prepare = profiles.prepare.bind(k.profiles);
  profiles.prepare = async (ids) => {
    profiles.prepare = prepare;
    if (at === 'before prepare') await meanwhile();
    const made = await prepare(ids);
    if (at === 'after prepare') await meanwhile();
    return made;
  };
  try {
    await k.profiles.rectify([profileId], [newEmail], { requestId }, CLI_ACTOR);
    return undefined;
  } catch (error) {
    return error;
  } finally {
    profiles.prepare = prepare;
  }
}

// The inactivity cases come first: consent's clock never goes back in a process, so a person made in the past after
// a consent was recorded today would count as active.
describeEachDialect('profiles: a rectification of a person deleted while it runs', (dialect) => {
  const ctx = useKernel(dialect);

  it('writes nothing and leaves no data key when the inactivity rule deletes the person after the traits were read', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-rectify-inactive', 30);
    let deleted = 0;
    const error = await rectifyWith(k, profileId, 'req-rectify-inactive', async () => {
      const { counts } = await k.retention.sweep({});
      deleted = counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
    });
    assert.equal(deleted, 1);
    assert.equal(await k.identity.canonical(profileId), null);
    // The key prepare made for the person (the sweep had destroyed theirs) went with the failed write.
    assert.deepEqual(await leftFor(k, profileId), { traits: 0, history: 0, keys: 0 });
    assert.ok(isCandorError(error, 'PROFILES_SUBJECT_DELETED'), String(error));
    const destroyed = (await k.audit.list({ action: 'crypto.data_key.destroy', limit: 1000 })).filter((e) => e.subject === k.keyring.pseudonym('subject', profileId) && e.outcome === 'success');
    assert.equal(destroyed.length, 2, 'the sweep\'s key and the one made since');
    assert.equal((await k.audit.list({ action: 'profiles.rectify', limit: 1000 })).filter((e) => e.resource === 'rights_request:req-rectify-inactive').length, 0);
  });

  it('keeps a deletion that starts once it has checked the person out until it commits; the deletion then takes what it wrote', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-rectify-writing', 30);
    const { identity, keyring } = k;
    const deletedIn = identity.deletedIn.bind(identity);
    // The sweep of another server, whose keyring is not this process's: a sweep here lets go of the person's data key
    // in memory before it waits, and the write then fails PROFILES_NOT_PREPARED (nothing written either).
    const forgetSubject = keyring.forgetSubject.bind(keyring);
    keyring.forgetSubject = () => undefined;
    let sweep: Promise<number> | undefined;
    let swept = false;
    identity.deletedIn = async (tx, ids) => {
      const gone = await deletedIn(tx, ids);
      sweep ??= k.retention.sweep({}).then(({ counts }) => {
        swept = true;
        return counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
      });
      // Time for the sweep to delete the person, were it not kept out.
      await Promise.race([sweep, new Promise((resolve) => setTimeout(resolve, 1000))]);
      return gone;
    };
    let sweptMeanwhile = true;
    try {
      assert.deepEqual(await k.profiles.rectify([profileId], [newEmail], { requestId: 'req-rectify-writing' }, CLI_ACTOR), { changed: ['email'] });
      sweptMeanwhile = swept;
    } finally {
      identity.deletedIn = deletedIn;
      await sweep?.catch(() => undefined);
      keyring.forgetSubject = forgetSubject;
      forgetSubject(profileId);
    }
    assert.equal(sweptMeanwhile, false, 'the sweep waited for the rectification');
    assert.equal(await sweep, 1);
    assert.deepEqual(await leftFor(k, profileId), { traits: 0, history: 0, keys: 0 });
  });

  it('writes nothing and leaves no data key when an erasure commits after the traits were read; the certificate counts the key it destroyed', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-rectify-erased');
    let erased: Awaited<ReturnType<Kernel['erasure']['erase']>> | undefined;
    const error = await rectifyWith(k, profileId, 'req-rectify-erased', async () => {
      const subject = await k.erasure.findSubject({ profileId });
      assert.ok(subject);
      erased = await k.erasure.erase(subject, { requestId: 'req-erase-meanwhile' }, CLI_ACTOR);
    });
    assert.deepEqual(await leftFor(k, profileId), { traits: 0, history: 0, keys: 0 });
    assert.ok(isCandorError(error, 'PROFILES_SUBJECT_DELETED'), String(error));
    assert.equal(erased?.stores.find((s) => s.store === 'crypto_subject_keys')?.deleted, 1);
  });

  it('leaves the key it found to the erasure that committed meanwhile, whose certificate counts it', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-rectify-erased-late');
    const subject = await k.erasure.findSubject({ profileId });
    assert.ok(subject);
    // The erasure commits once prepare has loaded the person's key, and destroys it only after the rectification
    // ended (an erasure destroys keys after its commit).
    const { keyring } = k;
    const destroyKey = keyring.destroySubjectKey.bind(keyring);
    let committed!: () => void;
    const erasureCommitted = new Promise<void>((resolve) => (committed = resolve));
    let rectified!: () => void;
    const rectificationEnded = new Promise<void>((resolve) => (rectified = resolve));
    keyring.destroySubjectKey = async (...args) => {
      committed();
      await rectificationEnded;
      return destroyKey(...args);
    };
    let erasure: ReturnType<Kernel['erasure']['erase']> | undefined;
    let error: unknown;
    let certificate: Awaited<typeof erasure>;
    try {
      error = await rectifyWith(k, profileId, 'req-rectify-late', async () => {
        erasure = k.erasure.erase(subject, { requestId: 'req-erase-late' }, CLI_ACTOR);
        await erasureCommitted;
      }, 'after prepare');
    } finally {
      rectified();
      certificate = await erasure;
      keyring.destroySubjectKey = destroyKey;
    }
    assert.deepEqual(await leftFor(k, profileId), { traits: 0, history: 0, keys: 0 });
    assert.ok(isCandorError(error, 'PROFILES_SUBJECT_DELETED'), String(error));
    assert.equal(certificate?.stores.find((s) => s.store === 'crypto_subject_keys')?.deleted, 1);
  });

  it('fails PROFILES_SUBJECT_DELETED, not PROFILES_TRAIT_UNKNOWN, for a person deleted before it ran', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-rectify-gone');
    const subject = await k.erasure.findSubject({ profileId });
    assert.ok(subject);
    await k.erasure.erase(subject, { requestId: 'req-erase-before' }, CLI_ACTOR);
    await assert.rejects(k.profiles.rectify([profileId], [newEmail], { requestId: 'req-rectify-gone' }, CLI_ACTOR), (e) => isCandorError(e, 'PROFILES_SUBJECT_DELETED'));
    assert.deepEqual(await leftFor(k, profileId), { traits: 0, history: 0, keys: 0 });
  });

});
