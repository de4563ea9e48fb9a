// A rights request made for a person deleted while it is being made (the inactivity rule, an erasure) stores nothing
// about them and leaves no data key behind (review: a request row with sealed changes and a new key were left for the
// deleted profile).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it, mock } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { months } from '../../../test/support/months.ts';
import { rightsRequests } from '../../../test/support/rights.ts';
import type { Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { Mailer } from './mailer.ts';
import type { RightsRequests } from './requests.ts';

const PAYLOAD_CONTEXT = 'rights.requests.payload';
const EMAIL_CONTEXT = 'rights.requests.email';
const changes = [{ key: 'first_name', value: 'Adah' }];

/** A person with an e-mail (identifier and trait, so a data key), stored `monthsAgo` months ago; their profile id. */
async function personWithEmail(k: Kernel, userId: string, monthsAgo = 0): Promise<string> {
  if (monthsAgo > 0) mock.timers.enable({ apis: ['Date'], now: months(new Date(), -monthsAgo).getTime() });
  try {
    const [r] = await k.storage.raw.transaction((tx) => k.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'web', at: new Date().toISOString() }]));
    const profileId = r?.profileId as string;
    await k.consent.record(profileId, ['analytics.reporting', 'personalize.profiling'].map((purpose) => ({ purpose, state: 'given' as const })), { mechanism: 'banner_save' }, CLI_ACTOR);
    const [stored] = await k.collect.ingest([{ raw: { type: 'identify', userId, messageId: `${userId}-1`, traits: { email: emailOf(userId), first_name: 'Ada' } }, bytes: 100 }], undefined, {
      source: 'web',
      gpc: false,
      receivedAt: Date.now(),
      actor: CLI_ACTOR,
    });
    assert.equal(stored?.status, 'stored', JSON.stringify(stored));
    return profileId;
  } finally {
    mock.timers.reset();
  }
}

const emailOf = (userId: string) => `${userId}@candor-shop.dev`;

/** What is left for a profile: its rights requests (and their sealed fields) and its data keys. */
async function leftFor(k: Kernel, profileId: string): Promise<{ requests: number; sealed: number; keys: number }> {
  const count = async (query: ReturnType<typeof sql<{ n: number }>>) => Number((await query.execute(k.storage.db)).rows[0]?.n);
  return {
    requests: await count(sql<{ n: number }>`SELECT count(*) AS n FROM rights_requests WHERE profile_id = ${profileId}`),
    sealed: await count(sql<{ n: number }>`SELECT count(*) AS n FROM rights_requests WHERE profile_id = ${profileId} AND (email IS NOT NULL OR payload IS NOT NULL)`),
    keys: await count(sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id = ${profileId}`),
  };
}

/** The data keys of rights requests themselves (an erasure request's address is sealed with one). */
async function requestKeys(k: Kernel): Promise<number> {
  return Number((await sql<{ n: number }>`SELECT count(*) AS n FROM crypto_subject_keys WHERE subject_id LIKE ${'rights_request:%'}`.execute(k.storage.db)).rows[0]?.n);
}

/** Runs `meanwhile` once, the first time the keyring is asked for `subjectId`'s data key: before the request seals anything with it. */
function beforeSealing(k: Kernel, subjectId: string, meanwhile: () => Promise<void>): () => void {
  const keyring = k.keyring as { encrypt: Kernel['keyring']['encrypt']; prepare: Kernel['keyring']['prepare'] };
  const encrypt = keyring.encrypt.bind(k.keyring);
  const prepare = keyring.prepare.bind(k.keyring);
  const restore = () => {
    keyring.encrypt = encrypt;
    keyring.prepare = prepare;
  };
  keyring.encrypt = async (id, plaintext, context) => {
    if (id === subjectId) {
      restore();
      await meanwhile();
    }
    return encrypt(id, plaintext, context);
  };
  keyring.prepare = async (ids) => {
    const list = [...ids];
    if (list.includes(subjectId)) {
      restore();
      await meanwhile();
    }
    return prepare(list);
  };
  return restore;
}

/**
 * Runs `meanwhile` once, after the request sealed a value of `context` and before its next transaction (the one that
 * stores the request): between sealing and inserting.
 */
function afterSealing(k: Kernel, context: string, meanwhile: () => Promise<void>): () => void {
  const keyring = k.keyring as { encrypt: Kernel['keyring']['encrypt']; encryptPrepared: Kernel['keyring']['encryptPrepared'] };
  const raw = k.storage.raw;
  const encrypt = keyring.encrypt.bind(k.keyring);
  const encryptPrepared = keyring.encryptPrepared.bind(k.keyring);
  const transaction = raw.transaction.bind(raw);
  let sealed = false;
  const restore = () => {
    keyring.encrypt = encrypt;
    keyring.encryptPrepared = encryptPrepared;
    raw.transaction = transaction;
  };
  keyring.encrypt = async (id, plaintext, ctx) => {
    const ciphertext = await encrypt(id, plaintext, ctx);
    if (ctx === context) sealed = true;
    return ciphertext;
  };
  keyring.encryptPrepared = (id, plaintext, ctx) => {
    const ciphertext = encryptPrepared(id, plaintext, ctx);
    if (ctx === context) sealed = true;
    return ciphertext;
  };
  raw.transaction = async (fn) => {
    if (sealed) {
      restore();
      await meanwhile();
    }
    return transaction(fn);
  };
  return restore;
}

/** Erases the person now (as another request of theirs, or staff, would); the certificate. */
async function erase(k: Kernel, profileId: string, requestId: string) {
  const subject = await k.erasure.findSubject({ profileId });
  assert.ok(subject);
  return k.erasure.erase(subject, { requestId }, CLI_ACTOR);
}

/** How many people the inactivity rule deleted in a sweep now. */
async function sweepInactive(k: Kernel): Promise<number> {
  const { counts } = await k.retention.sweep({});
  return counts.filter((c) => c.rule === 'profiles.inactive' && c.store === 'people').reduce((n, c) => n + c.count, 0);
}

/** The error a promise fails with (undefined when it does not). */
async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error;
  }
}

// The inactivity cases come first: consent's clock never goes back in a process, so a person made in the past after
// a consent was recorded today would count as active.
describeEachDialect('rights: a request made for a person deleted meanwhile', (dialect) => {
  const ctx = useKernel(dialect);
  let outbox = '';
  let rights: RightsRequests;

  before(() => {
    outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    rights = rightsRequests(ctx.kernel, { mailer: new Mailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox }) });
  });
  after(async () => {
    await rights.close();
    rmSync(outbox, { recursive: true, force: true });
  });

  /** Whether a message about a request was mailed. */
  const mailed = (requestId: string) => readdirSync(outbox).some((file) => readFileSync(join(outbox, file), 'utf8').includes(requestId));

  it('stores no request and leaves no data key when the inactivity rule deletes the person before the changes are sealed', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-inactive', 30);
    let deleted = 0;
    const restore = beforeSealing(k, profileId, async () => {
      deleted = await sweepInactive(k);
    });
    let error: unknown;
    try {
      error = await errorOf(rights.startForSession(profileId, { type: 'rectification', email: emailOf('u-request-inactive'), changes }, CLI_ACTOR));
    } finally {
      restore();
    }
    assert.equal(deleted, 1);
    assert.equal(await k.identity.canonical(profileId), null);
    // The key the request made (the sweep had destroyed theirs) went with it, audited.
    assert.deepEqual(await leftFor(k, profileId), { requests: 0, sealed: 0, keys: 0 });
    assert.ok(isCandorError(error, 'RIGHTS_SUBJECT_ERASED'), String(error));
    const destroyed = (await k.audit.list({ action: 'crypto.data_key.destroy', limit: 1000 })).filter((e) => e.subject === k.keyring.pseudonym('subject', profileId) && e.outcome === 'success');
    assert.equal(destroyed.length, 2, "the sweep's key and the one made since");
  });

  it('stores no request when the inactivity rule deletes the person between sealing and storing', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-inactive-late', 30);
    let deleted = 0;
    const restore = afterSealing(k, PAYLOAD_CONTEXT, async () => {
      deleted = await sweepInactive(k);
    });
    let error: unknown;
    try {
      error = await errorOf(rights.startForSession(profileId, { type: 'rectification', email: emailOf('u-request-inactive-late'), changes }, CLI_ACTOR));
    } finally {
      restore();
    }
    assert.equal(deleted, 1);
    assert.deepEqual(await leftFor(k, profileId), { requests: 0, sealed: 0, keys: 0 });
    assert.ok(isCandorError(error, 'RIGHTS_SUBJECT_ERASED'), String(error));
  });

  it('stores no request and leaves no data key when an erasure commits between sealing and storing; the certificate counts the key', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-erased-late');
    let certificate: Awaited<ReturnType<typeof erase>> | undefined;
    const restore = afterSealing(k, PAYLOAD_CONTEXT, async () => {
      certificate = await erase(k, profileId, 'req-erase-late');
    });
    let error: unknown;
    try {
      error = await errorOf(rights.startForSession(profileId, { type: 'rectification', email: emailOf('u-request-erased-late'), changes }, CLI_ACTOR));
    } finally {
      restore();
    }
    assert.deepEqual(await leftFor(k, profileId), { requests: 0, sealed: 0, keys: 0 });
    assert.ok(isCandorError(error, 'RIGHTS_SUBJECT_ERASED'), String(error));
    assert.equal(certificate?.stores.find((s) => s.store === 'crypto_subject_keys')?.deleted, 1);
  });

  it('stores no request and leaves no data key when an erasure commits before the changes are sealed', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-erased');
    const restore = beforeSealing(k, profileId, async () => {
      await erase(k, profileId, 'req-erase-early');
    });
    let error: unknown;
    try {
      error = await errorOf(rights.startForSession(profileId, { type: 'rectification', email: emailOf('u-request-erased'), changes }, CLI_ACTOR));
    } finally {
      restore();
    }
    assert.deepEqual(await leftFor(k, profileId), { requests: 0, sealed: 0, keys: 0 });
    assert.ok(isCandorError(error, 'RIGHTS_SUBJECT_ERASED'), String(error));
  });

  it("leaves no erasure request and destroys the key made for its address when the person is erased before it is stored", async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-erasure');
    const keysBefore = await requestKeys(k);
    const restore = afterSealing(k, EMAIL_CONTEXT, async () => {
      await erase(k, profileId, 'req-erase-other');
    });
    let error: unknown;
    try {
      error = await errorOf(rights.startForSession(profileId, { type: 'erasure', email: emailOf('u-request-erasure') }, CLI_ACTOR));
    } finally {
      restore();
    }
    assert.deepEqual(await leftFor(k, profileId), { requests: 0, sealed: 0, keys: 0 });
    assert.ok(isCandorError(error, 'RIGHTS_SUBJECT_ERASED'), String(error));
    assert.equal(await requestKeys(k), keysBefore);
  });

  it('keeps an erasure that starts once the request has checked the person out until it is stored; the erasure then closes it', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-storing');
    const { identity } = k;
    const deletedIn = identity.deletedIn.bind(identity);
    let erasure: Promise<unknown> | undefined;
    let erased = false;
    identity.deletedIn = async (tx, ids) => {
      const gone = await deletedIn(tx, ids);
      erasure ??= erase(k, profileId, 'req-erase-storing').then(() => {
        erased = true;
      });
      // Time for the erasure to commit, were it not kept out.
      await Promise.race([erasure, new Promise((resolve) => setTimeout(resolve, 1000))]);
      erasedMeanwhile = erased;
      return gone;
    };
    let erasedMeanwhile = true;
    let started: Awaited<ReturnType<RightsRequests['startForSession']>>;
    try {
      started = await rights.startForSession(profileId, { type: 'rectification', email: emailOf('u-request-storing'), changes }, CLI_ACTOR);
    } finally {
      identity.deletedIn = deletedIn;
      await erasure?.catch(() => undefined);
    }
    assert.ok(erasure, 'the request checked the person in its transaction');
    assert.equal(erasedMeanwhile, false, 'the erasure waited for the request');
    await erasure;
    // Kept as the record of the answer, closed by the erasure with its sealed fields cleared; the key destroyed.
    const closed = await rights.get(started.request.id);
    assert.deepEqual([closed.state, closed.denialReason], ['denied', 'subject_erased']);
    assert.deepEqual(await leftFor(k, profileId), { requests: 1, sealed: 0, keys: 0 });
  });

  it('answers a start by address for a person erased right after the look-up as for an unknown address, and stores nothing about them', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-address');
    const erasure = k.erasure as { findSubject: Kernel['erasure']['findSubject'] };
    const findSubject = erasure.findSubject.bind(k.erasure);
    erasure.findSubject = async (by) => {
      erasure.findSubject = findSubject;
      const found = await findSubject(by);
      await erase(k, profileId, 'req-erase-address');
      return found;
    };
    let answer: Awaited<ReturnType<RightsRequests['start']>>;
    try {
      answer = await rights.start({ type: 'rectification', email: emailOf('u-request-address'), changes, client: '10.9.0.1' });
      await rights.settled();
    } finally {
      erasure.findSubject = findSubject;
    }
    assert.deepEqual([answer.verification, answer.next], ['code_and_identifier', 'verify']);
    assert.deepEqual(await leftFor(k, profileId), { requests: 0, sealed: 0, keys: 0 });
    assert.equal(mailed(answer.requestId), false, 'no code mailed');
    // Stored as for an unknown address: a request no code opens.
    const stored = await rights.get(answer.requestId);
    assert.deepEqual([stored.state, stored.subject], ['verifying', null]);
  });

  it('seals nothing and leaves no data key when the person is erased after a start by address was stored, before its address is sealed', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-background');
    const restore = beforeSealing(k, profileId, async () => {
      await erase(k, profileId, 'req-erase-background');
    });
    let answer: Awaited<ReturnType<RightsRequests['start']>>;
    try {
      answer = await rights.start({ type: 'rectification', email: emailOf('u-request-background'), changes, client: '10.9.0.2' });
      await rights.settled();
    } finally {
      restore();
    }
    // The erasure closed the request, which stays as the record of the answer, with nothing sealed in it.
    const closed = await rights.get(answer.requestId);
    assert.deepEqual([closed.state, closed.denialReason], ['denied', 'subject_erased']);
    assert.deepEqual(await leftFor(k, profileId), { requests: 1, sealed: 0, keys: 0 });
    assert.equal(mailed(answer.requestId), false, 'no code mailed for the closed request');
  });

  it('ends a start by address that needs no verification, denied subject_erased, when the person is erased before its address is sealed', async () => {
    const k = ctx.kernel;
    const profileId = await personWithEmail(k, 'u-request-optout');
    const restore = beforeSealing(k, profileId, async () => {
      await erase(k, profileId, 'req-erase-optout');
    });
    let answer: Awaited<ReturnType<RightsRequests['start']>>;
    try {
      answer = await rights.start({ type: 'opt_out_sale_sharing', email: emailOf('u-request-optout'), client: '10.9.0.3' });
      await rights.settled();
    } finally {
      restore();
    }
    assert.deepEqual([answer.verification, answer.next], ['none', 'none']);
    const ended = await rights.get(answer.requestId);
    assert.deepEqual([ended.state, ended.denialReason, ended.lastError], ['denied', 'subject_erased', null]);
    assert.deepEqual(await leftFor(k, profileId), { requests: 1, sealed: 0, keys: 0 });
    assert.equal(mailed(answer.requestId), false, 'no receipt mailed');
  });
});
