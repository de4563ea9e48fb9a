import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../config/index.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { createKeyFile, parseEnvelope } from './index.ts';

describeEachDialect('keyring', (dialect) => {
  const ctx = useKernel(dialect);

  it('round-trips a field and never stores the plaintext in the ciphertext', async () => {
    const ciphertext = await ctx.kernel.keyring.encrypt('subject-1', 'ada@example.com', 'profiles.traits.email');
    assert.ok(!ciphertext.includes('ada@example.com'));
    const header = parseEnvelope(ciphertext);
    assert.match(header.keyId, /^[0-9a-f]{32}$/);
    assert.equal(header.keyVersion, 1);
    assert.equal(await ctx.kernel.keyring.decrypt(ciphertext, 'profiles.traits.email'), 'ada@example.com');
  });

  it('uses one data key per subject and different ciphertexts each time', async () => {
    const a1 = parseEnvelope(await ctx.kernel.keyring.encrypt('subject-a', 'x', 'f'));
    const a2 = parseEnvelope(await ctx.kernel.keyring.encrypt('subject-a', 'x', 'f'));
    const b = parseEnvelope(await ctx.kernel.keyring.encrypt('subject-b', 'x', 'f'));
    assert.equal(a1.keyId, a2.keyId);
    assert.notEqual(a1.keyId, b.keyId);
    assert.notDeepEqual(a1.sealed, a2.sealed);
  });

  it('refuses a ciphertext moved to another field or altered', async () => {
    const ciphertext = await ctx.kernel.keyring.encrypt('subject-2', '555-0100', 'profiles.traits.phone');
    await assert.rejects(ctx.kernel.keyring.decrypt(ciphertext, 'profiles.traits.email'), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
    const tampered = ciphertext.slice(0, -4) + (ciphertext.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await assert.rejects(ctx.kernel.keyring.decrypt(tampered, 'profiles.traits.phone'), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
    await assert.rejects(ctx.kernel.keyring.decrypt('not-a-ciphertext', 'x'), (e) => isCandorError(e, 'CRYPTO_CIPHERTEXT_INVALID'));
  });

  it('gives stable keyed pseudonyms that differ by kind and reveal nothing', () => {
    const p1 = ctx.kernel.keyring.pseudonym('email', 'ada@example.com');
    assert.equal(p1, ctx.kernel.keyring.pseudonym('email', 'ada@example.com'));
    assert.notEqual(p1, ctx.kernel.keyring.pseudonym('user_id', 'ada@example.com'));
    assert.match(p1, /^[A-Za-z0-9_-]{43}$/);
  });

  it('makes every ciphertext of a subject unreadable once its data key is destroyed', async () => {
    const keyring = ctx.kernel.keyring;
    const texts = await Promise.all(['a', 'b', 'c'].map((v) => keyring.encrypt('subject-erased', v, 'f')));
    const other = await keyring.encrypt('subject-kept', 'kept', 'f');
    assert.equal(await keyring.destroySubjectKey('subject-erased', CLI_ACTOR, 'essential.legal_obligation'), true);
    for (const text of texts) {
      await assert.rejects(keyring.decrypt(text, 'f'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
    }
    // A fresh process (no cache) cannot read them either.
    const second = await openKernel(ctx.env.config);
    try {
      await assert.rejects(second.keyring.decrypt(texts[0] as string, 'f'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
      assert.equal(await second.keyring.decrypt(other, 'f'), 'kept');
    } finally {
      await second.close();
    }
    const entries = await ctx.kernel.audit.list({ action: 'crypto.data_key.destroy', limit: 10 });
    assert.equal(entries.at(-1)?.subject, keyring.pseudonym('subject', 'subject-erased'));
  });

  it('rotates the master key: data keys re-wrapped, old ciphertexts still readable', async () => {
    const keyring = ctx.kernel.keyring;
    const before = await keyring.encrypt('subject-r', 'before rotation', 'f');
    const { version, rewrapped } = await keyring.rotateMasterKey(CLI_ACTOR);
    assert.equal(version, 2);
    assert.ok(rewrapped >= 3);
    assert.deepEqual(Object.keys(await keyring.dataKeysByMasterVersion()), ['2']);
    const second = await openKernel(ctx.env.config);
    try {
      assert.equal(second.keyring.activeMasterVersion, 2);
      assert.equal(await second.keyring.decrypt(before, 'f'), 'before rotation');
      const after = await second.keyring.encrypt('subject-new', 'after rotation', 'f');
      assert.equal(await keyring.decrypt(after, 'f'), 'after rotation');
    } finally {
      await second.close();
    }
  });

  it('wraps new data keys with the version another process rotated to, from its next key on', async () => {
    const keyring = ctx.kernel.keyring;
    await keyring.encrypt('subject-before-cli-rotation', 'x', 'f');
    const cli = await openKernel(ctx.env.config);
    let version: number;
    try {
      ({ version } = await cli.keyring.rotateMasterKey(CLI_ACTOR));
    } finally {
      await cli.close();
    }
    // PostgreSQL's notice arrives a moment after the commit.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await keyring.encrypt('subject-after-cli-rotation', 'y', 'f');
    assert.deepEqual(Object.keys(await keyring.dataKeysByMasterVersion()), [String(version)]);
    assert.equal(keyring.activeMasterVersion, version);
  });

  it('prepares the keys of many subjects at once for encryption without I/O', async () => {
    const keyring = ctx.kernel.keyring;
    const subjects = Array.from({ length: 300 }, (_, i) => `prep-${i}`);
    await keyring.encrypt('prep-0', 'existing', 'f');
    assert.throws(() => keyring.encryptPrepared('prep-never', 'x', 'f'), /not prepared/);
    await keyring.prepare(subjects);
    const texts = subjects.map((id) => keyring.encryptPrepared(id, `value of ${id}`, 'f'));
    assert.equal(await keyring.decrypt(texts[150] as string, 'f'), 'value of prep-150');
    // A second keyring (another process) sees the same keys.
    const second = await openKernel(ctx.env.config);
    try {
      await second.keyring.prepare(subjects.slice(0, 10));
      assert.equal(await second.keyring.decrypt(second.keyring.encryptPrepared('prep-3', 'again', 'f'), 'f'), 'again');
      assert.equal(await second.keyring.decrypt(texts[3] as string, 'f'), 'value of prep-3');
    } finally {
      await second.close();
    }
  });

  it('seals ahead of a transaction only with a held key, and tells whether a ciphertext was sealed with the key held now', async () => {
    const keyring = ctx.kernel.keyring;
    assert.equal(keyring.holds('ahead-1'), false);
    await keyring.prepare(['ahead-1', 'ahead-2']);
    assert.equal(keyring.holds('ahead-1'), true);
    const text = keyring.encryptPrepared('ahead-1', 'early', 'f');
    assert.equal(await keyring.decrypt(text, 'f'), 'early');
    assert.equal(keyring.sealedWithHeldKey('ahead-1', text, 'f'), true);
    assert.equal(keyring.sealedWithHeldKey('ahead-2', text, 'f'), false);
    // The key destroyed (an erasure) after sealing: the early ciphertext may no longer be stored.
    await keyring.destroySubjectKey('ahead-1', CLI_ACTOR, 'test');
    assert.equal(keyring.sealedWithHeldKey('ahead-1', text, 'f'), false);
    assert.equal(keyring.holds('ahead-1'), false);
    await keyring.prepare(['ahead-1']);
    assert.equal(keyring.sealedWithHeldKey('ahead-1', text, 'f'), false, 'a new key for the subject is another key');
  });

  it('creates the keys of new people together, and two keyrings creating the same ones at once agree on one key each', async () => {
    const subjects = Array.from({ length: 250 }, (_, i) => `new-${i}`);
    const second = await openKernel(ctx.env.config);
    try {
      // Overlapping sets prepared by two keyrings (two processes): one key per subject is stored. On PostgreSQL at the
      // same moment (the second's inserts conflict with the first's); two SQLite connections on one thread would wait
      // on each other's lock synchronously, so there one follows the other and finds the first's keys.
      const first = ctx.kernel.keyring.prepare(subjects.slice(0, 200));
      if (dialect === 'sqlite') await first;
      await Promise.all([first, second.keyring.prepare(subjects.slice(50))]);
      const stored = await ctx.kernel.storage.raw.all<{ n: number }>("SELECT COUNT(*) AS n FROM crypto_subject_keys WHERE subject_id LIKE 'new-%'");
      assert.equal(Number(stored[0]?.n), 250);
      for (const id of ['new-0', 'new-60', 'new-199']) {
        const mine = ctx.kernel.keyring.encryptPrepared(id, `mine ${id}`, 'f');
        assert.equal(await second.keyring.decrypt(mine, 'f'), `mine ${id}`);
      }
      for (const id of ['new-60', 'new-120', 'new-249']) {
        const theirs = second.keyring.encryptPrepared(id, `theirs ${id}`, 'f');
        assert.equal(await ctx.kernel.keyring.decrypt(theirs, 'f'), `theirs ${id}`);
      }
    } finally {
      await second.close();
    }
  });

  it('refuses a second rotation while one holds the key file lock', async () => {
    const [first, second] = await Promise.allSettled([ctx.kernel.keyring.rotateMasterKey(CLI_ACTOR), ctx.kernel.keyring.rotateMasterKey(CLI_ACTOR)]);
    assert.equal(first.status, 'fulfilled');
    assert.ok(second.status === 'rejected' && isCandorError(second.reason, 'CRYPTO_ROTATION_IN_PROGRESS'));
  });

  it('creates a private key file on request and never overwrites one', () => {
    const path = join(ctx.env.dataDir, 'production.key');
    createKeyFile(path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.throws(() => createKeyFile(path), (e) => isCandorError(e, 'CRYPTO_KEYFILE_EXISTS'));
  });

  it('refuses to start with a tampered, unreadable, exposed or missing key file', async () => {
    const path = ctx.env.config.keyFile;
    const original = readFileSync(path, 'utf8');
    const restore = () => {
      writeFileSync(path, original, { mode: 0o600 });
      chmodSync(path, 0o600);
    };
    try {
      const parsed = JSON.parse(original) as { masterKeys: { key: string }[] };
      (parsed.masterKeys[0] as { key: string }).key = Buffer.alloc(32, 7).toString('base64');
      writeFileSync(path, JSON.stringify(parsed));
      await assert.rejects(openKernel(ctx.env.config), (e) => isCandorError(e, 'CRYPTO_KEYFILE_TAMPERED'));
      writeFileSync(path, original.slice(0, 40));
      await assert.rejects(openKernel(ctx.env.config), (e) => isCandorError(e, 'CRYPTO_KEYFILE_INVALID'));
      restore();
      chmodSync(path, 0o644);
      await assert.rejects(openKernel(ctx.env.config), (e) => isCandorError(e, 'CRYPTO_KEYFILE_PERMISSIONS'));
      rmSync(path);
      // Never silently generate a new key over a database that has data keys: that would lose the data.
      await assert.rejects(openKernel(ctx.env.config), (e) => isCandorError(e, 'CRYPTO_KEYFILE_MISSING'));
    } finally {
      restore();
    }
    const reopened = await openKernel(ctx.env.config);
    await reopened.close();
  });
});

describe('keyring in production', () => {
  it('refuses a missing key file before the database is created or migrated', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'candor-prod-key-'));
    try {
      const config = loadConfig({ environment: { NODE_ENV: 'production', CANDOR_DATA_DIR: dataDir, CANDOR_KEY_FILE: join(dataDir, 'absent.key'), CANDOR_LOG_LEVEL: 'silent' } });
      await assert.rejects(openKernel(config), (e) => isCandorError(e, 'CRYPTO_KEYFILE_MISSING'));
      assert.deepEqual(readdirSync(dataDir), []);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
