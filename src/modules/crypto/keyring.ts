import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { SYSTEM_ACTOR, type Actor } from '../../shared/actor.ts';
import { CandorError, isCandorError } from '../../shared/errors.ts';
import { makeRoom } from '../../shared/make-room.ts';
import type { Logger } from '../../shared/logger.ts';
import { Freshness, type SqlExecutor, type Storage } from '../../storage/index.ts';
import type { AuditEvent, AuditLog } from '../audit/index.ts';
import type { SubjectDataHandler } from '../../shared/subject-data.ts';
import { CryptoSubjectData } from './crypto.subject-data.ts';
import { CryptoRepo, type CryptoTables, type FirstRegistration, type SubjectKeyRow } from './crypto.repo.ts';
import { decryptField, encryptField, fieldFrame, keyCheckValue, open, parseEnvelope, seal, type FieldFrame } from './envelope.ts';
import { createKeyFile, generatedMarkerPath, markGenerated, newKey, readKeyFile, temporaryKeyFiles, withKeyFileLock, writeKeyFile, type KeyFile, type StoredKey } from './key-file.ts';

interface DataKey {
  subjectId: string;
  keyId: string;
  keyVersion: number;
  /** The key as a KeyObject, made once: building it per call costs more than the encryption of a short field. */
  key: KeyObject;
  /** When this process last saw the key in the database (another process may destroy it). */
  checkedAt: number;
  /** Associated data and prefix of its ciphertexts per field context, made once (an event's envelope per event). */
  frames: Map<string, FieldFrame>;
}

/** A data key's frame for a field context, made on first use (a handful of contexts per key). */
function frameOf(dk: DataKey, context: string): FieldFrame {
  let frame = dk.frames.get(context);
  if (frame === undefined) dk.frames.set(context, (frame = fieldFrame(dk, context)));
  return frame;
}

export interface KeyringOptions {
  keyFile: string;
  /** Generate a key file when there is none and the database has no keys yet (never in production). */
  allowGenerate: boolean;
  /** Where a start reports data keys it could not re-wrap (ids only). */
  logger?: Pick<Logger, 'warn'>;
  /** How many data keys stay in memory (100,000; tests set fewer). */
  cacheLimit?: number;
}

/** A data key that a re-wrap left on its master key version because it could not be unwrapped (damaged). */
export interface SkippedKey {
  keyId: string;
  masterVersion: number;
}

/** What a re-wrap did: keys moved to the active version, and keys left behind. */
export interface RewrapReport {
  rewrapped: number;
  skipped: SkippedKey[];
}

/** A master key registration as the database holds it: the key check value of one key of the file. */
export interface RegisteredKey {
  purpose: string;
  version: number;
  check_value: string;
}

/** The errors a data key that cannot be unwrapped fails with (its row damaged, or naming a version not in the file). */
const UNWRAP_FAILURES = ['CRYPTO_DECRYPT_FAILED', 'CRYPTO_CIPHERTEXT_INVALID', 'CRYPTO_MASTER_KEY_MISSING'] as const;
/** How many skipped key ids an audit entry or log line names (the count is always complete). */
const SKIPPED_LISTED = 100;

const CACHE_LIMIT = 100_000;
const ROTATE_PAGE = 500;
/** How long a cached data key is trusted before its row is checked again (erasure by another process). */
const KEY_RECHECK_MS = 10_000;
const KEY_RECHECK_MAX_MS = 300_000;
/** How often key creation checks whether another process rotated the master key. */
const ROTATION_CHECK_MS = 5_000;

/** Keys from the key file as KeyObjects, made once each: HMAC and AES with a raw Buffer key build one per call. */
const keyObjects = new WeakMap<Buffer, KeyObject>();
function keyObjectOf(key: Buffer): KeyObject {
  let object = keyObjects.get(key);
  if (object === undefined) {
    object = createSecretKey(key);
    keyObjects.set(key, object);
  }
  return object;
}

function wrapAad(row: Pick<SubjectKeyRow, 'subject_id' | 'key_id' | 'key_version'>, masterVersion: number): Buffer {
  return Buffer.from(`candor dk v1|${row.subject_id}|${row.key_id}|${row.key_version}|${masterVersion}`, 'utf8');
}

/** Unwraps a stored data key with a master key; fails with CRYPTO_DECRYPT_FAILED for any other key or altered row. */
export function unwrapDataKey(masterKey: Buffer | KeyObject, row: Pick<SubjectKeyRow, 'subject_id' | 'key_id' | 'key_version' | 'master_version' | 'wrapped_key'>): Buffer {
  return open(masterKey, Buffer.from(row.wrapped_key, 'base64'), wrapAad(row, row.master_version));
}

/**
 * Checks a key file against the key check values a database registered: every registered key must be in the file
 * with the same check value (CRYPTO_KEYFILE_TAMPERED, CRYPTO_MASTER_KEY_MISSING). The one exception is a wrap
 * version below the file's newest that no data key uses (`usedWrapVersions`, asked only then): `keys prune` removed
 * it, and it is returned. Keyring.open runs it, and `candor restore` against a backup before swapping it in.
 */
export async function checkKeyFile(keys: KeyFile, registered: readonly RegisteredKey[], usedWrapVersions: () => Promise<ReadonlySet<number>>): Promise<number[]> {
  const inFile = new Map(keys.masterKeys.map((k) => [`wrap:${k.version}`, k.key]));
  inFile.set(`pseudonym:${keys.pseudonymKey.version}`, keys.pseudonymKey.key);
  const newest = Math.max(...keys.masterKeys.map((k) => k.version));
  const pruned: number[] = [];
  let used: ReadonlySet<number> | undefined;
  for (const row of registered) {
    const key = inFile.get(`${row.purpose}:${row.version}`);
    if (key) {
      if (keyCheckValue(key) !== row.check_value) throw new CandorError('CRYPTO_KEYFILE_TAMPERED', { purpose: row.purpose, version: row.version });
      continue;
    }
    if (row.purpose === 'wrap' && row.version < newest) {
      used ??= await usedWrapVersions();
      if (!used.has(row.version)) {
        pruned.push(row.version);
        continue;
      }
    }
    throw new CandorError('CRYPTO_MASTER_KEY_MISSING', { purpose: row.purpose, version: row.version });
  }
  return pruned;
}

/** The keys of a key file as a first start registers them: the wrap versions below the active one (the last) retired. */
function firstRegistrations(keys: KeyFile): FirstRegistration[] {
  const active = (keys.masterKeys.at(-1) as { version: number }).version;
  return [
    ...keys.masterKeys.map((k) => ({ purpose: 'wrap' as const, version: k.version, checkValue: keyCheckValue(k.key), retired: k.version < active })),
    { purpose: 'pseudonym' as const, version: keys.pseudonymKey.version, checkValue: keyCheckValue(keys.pseudonymKey.key), retired: false },
  ];
}

/** The wrap versions data keys use, for checkKeyFile. */
async function usedWrapVersions(repo: CryptoRepo): Promise<ReadonlySet<number>> {
  return new Set(Object.keys(await repo.countByMasterVersion()).map(Number));
}

/**
 * The keyring: versioned master keys from the key file, per-subject data keys wrapped by them, field encryption
 * (AES-256-GCM) and keyed HMAC pseudonyms. Destroying a subject's data key makes all its ciphertexts unreadable.
 */
export class Keyring {
  readonly #repo: CryptoRepo;
  readonly #audit: AuditLog;
  readonly #keyFilePath: string;
  #keys: KeyFile;
  readonly #bySubject = new Map<string, DataKey>();
  readonly #byKeyId = new Map<string, DataKey>();
  #rotationCheckedAt = 0;
  /** Whether another connection wrote since a key was checked: if not, its row cannot have been destroyed. */
  readonly #freshness: Freshness;
  readonly #cacheLimit: number;

  private constructor(repo: CryptoRepo, audit: AuditLog, keyFilePath: string, keys: KeyFile, freshness: Freshness, cacheLimit: number) {
    this.#cacheLimit = cacheLimit;
    this.#repo = repo;
    this.#freshness = freshness;
    this.#audit = audit;
    this.#keyFilePath = keyFilePath;
    this.#keys = keys;
  }

  /**
   * Loads the key file and checks it against the key check values in the database. On a first start (no file and
   * no keys registered) it generates the file when allowed. A rotation cut short (by a crash, a kill) is completed
   * under the key file lock, unless another process holds the lock (a rotation, a prune or a start, each of which
   * completes it). Returns whether a key file was generated (by this open or an earlier one) and no server has printed
   * the notice to back it up yet (`generatedNoticeShown`).
   */
  static async open(storage: Storage, audit: AuditLog, options: KeyringOptions): Promise<{ keyring: Keyring; generated: boolean }> {
    const repo = new CryptoRepo(storage);
    let registered = await repo.registeredKeys();
    if (!existsSync(options.keyFile) && registered.length === 0 && options.allowGenerate) {
      markGenerated(options.keyFile);
      try {
        createKeyFile(options.keyFile);
      } catch (error) {
        // No key file was made: a key file put in its place later is the operator's own, not one to announce.
        rmSync(generatedMarkerPath(options.keyFile), { force: true });
        throw error;
      }
    }
    const generated = existsSync(generatedMarkerPath(options.keyFile));
    const keys = readKeyFile(options.keyFile);
    let firstStart = false;
    if (registered.length === 0) {
      // A first start: the keys of the file are registered, older versions retired; there is no rotation to complete.
      firstStart = await repo.registerFirstKeys(firstRegistrations(keys));
      // Another start registered its key file first (servers starting at once on a new database): checked as at any start.
      if (!firstStart) registered = await repo.registeredKeys();
    }
    const pruned = await checkKeyFile(keys, registered, () => usedWrapVersions(repo));
    const keyring = new Keyring(repo, audit, options.keyFile, keys, new Freshness(storage, ['crypto_subject_keys', 'crypto_destroyed_keys', 'crypto_master_keys']), options.cacheLimit ?? CACHE_LIMIT);
    if (firstStart) return { keyring, generated };
    if (pruned.length > 0 || temporaryKeyFiles(options.keyFile).length > 0 || (await keyring.#rotationUnfinished(registered))) {
      try {
        const { skipped } = await withKeyFileLock(options.keyFile, () => keyring.#finishRotation());
        if (skipped.length > 0) {
          options.logger?.warn({ skipped: skipped.length, keyIds: skipped.slice(0, SKIPPED_LISTED).map((k) => k.keyId) }, 'data keys that cannot be unwrapped stay on their master key version');
        }
      } catch (error) {
        if (!isCandorError(error, 'CRYPTO_ROTATION_IN_PROGRESS')) throw error;
      }
    }
    return { keyring, generated };
  }

  /** The keys of the key file with their purpose, as the database registers them. */
  #keysInFile(): (StoredKey & { purpose: 'wrap' | 'pseudonym' })[] {
    return [...this.#keys.masterKeys.map((k) => ({ ...k, purpose: 'wrap' as const })), { ...this.#keys.pseudonymKey, purpose: 'pseudonym' as const }];
  }

  /**
   * Whether the key file and the registrations tell of a rotation cut short, or of data keys a start must try again:
   * a key of the file not registered, an older wrap version not retired, a data key under an older version.
   */
  async #rotationUnfinished(registered: readonly CryptoTables['crypto_master_keys'][]): Promise<boolean> {
    const known = new Set(registered.map((r) => `${r.purpose}:${r.version}`));
    if (this.#keysInFile().some((k) => !known.has(`${k.purpose}:${k.version}`))) return true;
    if (registered.some((r) => r.purpose === 'wrap' && r.version < this.activeMasterVersion && r.retired_at === null)) return true;
    return (await this.#repo.wrappedBelow(this.activeMasterVersion, '', 1)).length > 0;
  }

  /**
   * Completes a rotation cut short, as the rotation would have: reads the key file again, registers its versions the
   * database lacks, drops the registrations of versions pruned from it, retires the older versions, then re-wraps the
   * data keys left on them. When that changed anything, audits it as the rotation's end (`resumed: true`, actor
   * system). Runs under the key file lock: at a start, and before a rotation or a prune.
   */
  async #finishRotation(): Promise<RewrapReport> {
    const registered = await this.#repo.registeredKeys();
    this.#keys = readKeyFile(this.#keyFilePath);
    const pruned = await checkKeyFile(this.#keys, registered, () => usedWrapVersions(this.#repo));
    const known = new Set(registered.map((r) => `${r.purpose}:${r.version}`));
    let added = false;
    for (const k of this.#keysInFile()) {
      if (known.has(`${k.purpose}:${k.version}`)) continue;
      await this.#repo.registerKey(k.purpose, k.version, keyCheckValue(k.key));
      added ||= k.purpose === 'wrap';
    }
    // Versions pruned from the key file after this database was copied (a restored backup) are dropped here too.
    if (pruned.length > 0) await this.#deregister(pruned, SYSTEM_ACTOR, 'not in the key file and used by no data key');
    // Older versions retired first, as a rotation does: no new key is stored under them; a key that cannot be
    // unwrapped stays behind.
    const retired = await this.#repo.retireWrapKeysBelow(this.activeMasterVersion);
    const report = await this.rewrapAll();
    if (added || retired > 0 || report.rewrapped > 0) await this.#auditRotated(SYSTEM_ACTOR, this.activeMasterVersion, report, true);
    return report;
  }

  /** The master key version new data keys are wrapped with. */
  get activeMasterVersion(): number {
    return (this.#keys.masterKeys.at(-1) as { version: number }).version;
  }

  /** Records that a server printed the notice to back up the generated key file: later starts do not print it. */
  generatedNoticeShown(): void {
    rmSync(generatedMarkerPath(this.#keyFilePath), { force: true });
  }

  /** Where the key file is. */
  get keyFilePath(): string {
    return this.#keyFilePath;
  }

  /** A stable keyed HMAC-SHA-256 pseudonym for an identifier of a kind (lookup without plaintext). */
  pseudonym(kind: string, value: string): string {
    return createHmac('sha256', keyObjectOf(this.#keys.pseudonymKey.key)).update(kind).update('\0').update(value).digest('base64url');
  }

  #masterKey(version: number): KeyObject {
    const found = this.#keys.masterKeys.find((k) => k.version === version);
    if (found) return keyObjectOf(found.key);
    // Another process (the CLI) may have rotated since this one started: re-read the file once.
    this.#keys = readKeyFile(this.#keyFilePath);
    const reloaded = this.#keys.masterKeys.find((k) => k.version === version);
    if (!reloaded) throw new CandorError('CRYPTO_MASTER_KEY_MISSING', { purpose: 'wrap', version });
    return keyObjectOf(reloaded.key);
  }

  #remember(dk: DataKey): DataKey {
    makeRoom(this.#bySubject, this.#cacheLimit, (_subject, oldest) => this.#forget(oldest));
    this.#bySubject.set(dk.subjectId, dk);
    this.#byKeyId.set(dk.keyId, dk);
    return dk;
  }

  #forget(dk: DataKey): void {
    this.#bySubject.delete(dk.subjectId);
    this.#byKeyId.delete(dk.keyId);
  }

  #unwrap(row: SubjectKeyRow): DataKey {
    const key = unwrapDataKey(this.#masterKey(row.master_version), row);
    return { subjectId: row.subject_id, keyId: row.key_id, keyVersion: row.key_version, key: createSecretKey(key), checkedAt: Date.now(), frames: new Map() };
  }

  /**
   * Whether a cached key must be looked up again: checked over KEY_RECHECK_MS ago and another connection may have
   * written since (keys destroyed through this keyring are forgotten at once); always after KEY_RECHECK_MAX_MS.
   */
  #due(dk: DataKey, now: number): boolean {
    return this.#freshness.due(dk.checkedAt, now, KEY_RECHECK_MS, KEY_RECHECK_MAX_MS);
  }

  /** A cached key, unless it is due for a check and its row is gone (destroyed by another process). */
  async #fresh(dk: DataKey | undefined): Promise<DataKey | undefined> {
    if (!dk || !this.#due(dk, Date.now())) return dk;
    // Taken before the look-up: a destruction by another connection noticed while it runs is checked again next time.
    const checkedAt = Date.now();
    if (await this.#repo.byKeyId(dk.keyId)) {
      dk.checkedAt = checkedAt;
      return dk;
    }
    this.#forget(dk);
    return undefined;
  }

  /**
   * Before wrapping new data keys: whether another process (the CLI) rotated the master key, so that they are wrapped
   * with the new version. Looked up once another process wrote the key tables (data_version, commit notices); where
   * that cannot be told, at most every ROTATION_CHECK_MS.
   */
  async #checkRotation(): Promise<void> {
    const again = this.#freshness.lookAgain();
    if (this.#freshness.tracked ? !again : Date.now() - this.#rotationCheckedAt < ROTATION_CHECK_MS) return;
    this.#rotationCheckedAt = Date.now();
    if ((await this.#repo.maxWrapVersion()) > this.activeMasterVersion) this.#keys = readKeyFile(this.#keyFilePath);
  }

  async #dataKeyForSubject(subjectId: string): Promise<DataKey> {
    const cached = await this.#fresh(this.#bySubject.get(subjectId));
    if (cached) return cached;
    const existing = await this.#repo.bySubject(subjectId);
    if (existing) return this.#remember(this.#unwrap(existing));
    await this.#createKeys([subjectId]);
    return this.#bySubject.get(subjectId) as DataKey;
  }

  /**
   * Creates the data keys of subjects who have none, all in one transaction, and holds them in memory; a subject
   * whose key was created concurrently elsewhere gets the stored one.
   */
  async #createKeys(subjectIds: readonly string[]): Promise<void> {
    await this.#checkRotation();
    let made = this.#newKeys(subjectIds);
    let inserted = await this.#repo.insertSubjectKeys(made.map((m) => m.row), this.activeMasterVersion);
    if (inserted === undefined) {
      // The version was retired by a rotation this process had not seen yet: the key file has the new one.
      this.#keys = readKeyFile(this.#keyFilePath);
      made = this.#newKeys(subjectIds);
      inserted = await this.#repo.insertSubjectKeys(made.map((m) => m.row), this.activeMasterVersion);
      if (inserted === undefined) throw new CandorError('CRYPTO_MASTER_KEY_MISSING', { version: this.activeMasterVersion });
    }
    const now = Date.now();
    for (const { row, key } of made) {
      if (inserted.has(row.subject_id)) this.#remember({ subjectId: row.subject_id, keyId: row.key_id, keyVersion: row.key_version, key: createSecretKey(key), checkedAt: now, frames: new Map() });
    }
    const lost = subjectIds.filter((id) => !inserted.has(id));
    if (lost.length === 0) return;
    const stored = new Map((await this.#repo.bySubjects(lost)).map((row) => [row.subject_id, row]));
    for (const id of lost) {
      const row = stored.get(id);
      if (!row) throw new CandorError('CRYPTO_KEY_UNKNOWN');
      this.#remember(this.#unwrap(row));
    }
  }

  /** New data keys for these subjects, wrapped with the active master key version. */
  #newKeys(subjectIds: readonly string[]): { row: SubjectKeyRow; key: Buffer }[] {
    const masterVersion = this.activeMasterVersion;
    const createdAt = new Date().toISOString();
    return subjectIds.map((subjectId) => {
      const key = randomBytes(32);
      const row: SubjectKeyRow = { subject_id: subjectId, key_id: randomBytes(16).toString('hex'), key_version: 1, master_version: masterVersion, wrapped_key: '', created_at: createdAt };
      row.wrapped_key = seal(this.#masterKey(masterVersion), key, wrapAad(row, masterVersion)).toString('base64');
      return { row, key };
    });
  }

  /**
   * Loads (or creates) the data keys of these subjects into memory, so that encryptPrepared can run without I/O,
   * for example inside a database transaction. Call it outside any transaction. Answers the subjects it found without
   * a key, for whom one was made (here, or concurrently elsewhere).
   */
  async prepare(subjectIds: Iterable<string>): Promise<string[]> {
    const now = Date.now();
    this.#freshness.check(now);
    // Cached keys checked recently need no I/O; the rest are read (or re-checked) in one query.
    const due = [...new Set(subjectIds)].filter((id) => {
      const dk = this.#bySubject.get(id);
      if (!dk) return true;
      // The newest in the cache's order: a key asked for is not among the oldest that room is made by (makeRoom).
      this.#bySubject.delete(id);
      this.#bySubject.set(id, dk);
      return this.#due(dk, now);
    });
    if (due.length === 0) return [];
    const rows = new Map((await this.#repo.bySubjects(due)).map((row) => [row.subject_id, row]));
    const missing: string[] = [];
    for (const id of due) {
      const row = rows.get(id);
      const cached = this.#bySubject.get(id);
      if (row && cached && cached.keyId === row.key_id) cached.checkedAt = now;
      else if (row) this.#remember(this.#unwrap(row));
      else {
        // Gone (destroyed by another process) or never made: a new key is created for the subject.
        if (cached) this.#forget(cached);
        missing.push(id);
      }
    }
    // New people's keys are created together: one commit, not one per person.
    if (missing.length > 0) await this.#createKeys(missing);
    return missing;
  }

  /** Encrypts with a data key loaded by prepare(); synchronous, no I/O. Throws if the key was not prepared. */
  encryptPrepared(subjectId: string, plaintext: string, context: string): string {
    const dk = this.#bySubject.get(subjectId);
    if (!dk) throw new Error('data key not prepared for this subject');
    return encryptField(dk.key, dk, plaintext, context, frameOf(dk, context));
  }

  /**
   * Whether the subject's data key is loaded and not due for a check (prepare() would need no I/O for it, and
   * encryptPrepared may run without it). A caller that seals ahead of its transaction tells with sealedWithHeldKey()
   * whether the ciphertext may still be stored.
   */
  holds(subjectId: string): boolean {
    const dk = this.#bySubject.get(subjectId);
    return dk !== undefined && !this.#due(dk, Date.now());
  }

  /** Whether a ciphertext of this context was sealed with the key held for the subject now (its id and version). */
  sealedWithHeldKey(subjectId: string, ciphertext: string, context: string): boolean {
    const dk = this.#bySubject.get(subjectId);
    return dk !== undefined && ciphertext.startsWith(frameOf(dk, context).prefix);
  }

  /** Encrypts a field value with the subject's data key (created on first use); context binds it to its field. */
  async encrypt(subjectId: string, plaintext: string, context: string): Promise<string> {
    const dk = await this.#dataKeyForSubject(subjectId);
    return encryptField(dk.key, dk, plaintext, context, frameOf(dk, context));
  }

  /**
   * Decrypts a field value; fails with CRYPTO_KEY_DESTROYED once the subject's key was destroyed. `subjectId`, where the
   * reader knows whose value it is (the profile of the event or trait row), binds it to that person: a ciphertext
   * sealed with another subject's data key (copied from another person's row) fails with CRYPTO_DECRYPT_FAILED.
   */
  async decrypt(ciphertext: string, context: string, subjectId?: string): Promise<string> {
    const { keyId } = parseEnvelope(ciphertext);
    let dk = await this.#fresh(this.#byKeyId.get(keyId));
    if (!dk) {
      const row = await this.#repo.byKeyId(keyId);
      if (!row) {
        if (await this.#repo.isDestroyed(keyId)) throw new CandorError('CRYPTO_KEY_DESTROYED', { keyId });
        throw new CandorError('CRYPTO_KEY_UNKNOWN', { keyId });
      }
      dk = this.#remember(this.#unwrap(row));
    }
    if (subjectId !== undefined && dk.subjectId !== subjectId) throw new CandorError('CRYPTO_DECRYPT_FAILED', { keyId, reason: 'sealed for another subject' });
    return decryptField(dk.key, ciphertext, context);
  }

  /**
   * Crypto-shredding: destroys the subject's data key, so the database can no longer decrypt its ciphertexts wherever
   * they were copied. Copies of the database made before still hold the key, wrapped, until its master version is pruned.
   * Audited (`crypto.data_key.destroy`; outcome `failure` when the subject had no key) in the destruction's own
   * transaction, last: a key destroyed always has its entry, and one whose entry cannot be written is not destroyed.
   */
  async destroySubjectKey(subjectId: string, actor: Actor, purpose: string): Promise<boolean> {
    this.forgetSubject(subjectId);
    const keyId = await this.#repo.transaction(async (tx) => {
      const { destroyed, audit } = await this.destroySubjectKeyIn(tx, subjectId, actor, purpose);
      await this.#audit.appendIn(tx, [audit]);
      return destroyed;
    });
    return keyId !== undefined;
  }

  /**
   * destroySubjectKey inside the caller's transaction, which deletes what the key protects and appends the returned
   * audit entry (`crypto.data_key.destroy`) with its own: the key goes with the rows, or neither does. Call
   * forgetSubject() before (and after the commit, should a reader have loaded the key meanwhile). Returns the key id
   * destroyed, or undefined when the subject had none.
   */
  async destroySubjectKeyIn(tx: SqlExecutor, subjectId: string, actor: Actor, purpose: string): Promise<{ destroyed: string | undefined; audit: AuditEvent }> {
    const destroyed = await this.#repo.destroySubjectKeyIn(tx, subjectId);
    return {
      destroyed,
      audit: {
        actor: actor.id,
        role: actor.role,
        action: 'crypto.data_key.destroy',
        purpose,
        subject: this.pseudonym('subject', subjectId),
        resource: destroyed ? `data_key:${destroyed}` : null,
        outcome: destroyed ? 'success' : 'failure',
      },
    };
  }

  /**
   * Destroys in the caller's transaction the data keys prepare() made for subjects a deletion took meanwhile (a key
   * made where the deletion had destroyed theirs, which nothing else would destroy), each forgotten here and its
   * `crypto.data_key.destroy` entry appended in `tx` (purpose `essential.legal_obligation`). The caller forgets them
   * again after its commit, should a reader have loaded one meanwhile.
   */
  async destroyMadeIn(tx: SqlExecutor, subjectIds: Iterable<string>, actor: Actor): Promise<void> {
    const destroyed: AuditEvent[] = [];
    for (const id of subjectIds) {
      this.forgetSubject(id);
      const key = await this.destroySubjectKeyIn(tx, id, actor, 'essential.legal_obligation');
      if (key.destroyed !== undefined) destroyed.push(key.audit);
    }
    await this.#audit.appendIn(tx, destroyed);
  }

  /** Lets go of a subject's data key held in this process (it is read again from the database when next needed). */
  forgetSubject(subjectId: string): void {
    const cached = this.#bySubject.get(subjectId);
    if (cached) this.#forget(cached);
  }

  /**
   * Adds a master key version, writes it to the key file, then re-wraps every data key with it (data is not
   * re-encrypted). Older versions stay in the file, so copies of the database made before (backups, dumps, WAL) stay
   * readable until `pruneMasterKeys` removes them. A data key that cannot be unwrapped stays on its version and is
   * reported (ids only); that version then cannot be pruned. Audited as it starts and as it ends; a rotation cut short
   * before is completed first.
   */
  async rotateMasterKey(actor: Actor): Promise<{ version: number } & RewrapReport> {
    return withKeyFileLock(this.#keyFilePath, async () => {
      await this.#finishRotation();
      const current = this.#keys;
      const next = newKey(this.activeMasterVersion + 1);
      // Audited before the key file changes, so that a rotation cut short from here on leaves its trail (with who
      // started it); the start that completes it audits the end.
      await this.#audit.append({
        actor: actor.id,
        role: actor.role,
        action: 'crypto.master_key.rotate',
        purpose: 'essential.service.security',
        resource: `master_key:${next.version}`,
        details: { phase: 'started', version: next.version },
      });
      const updated: KeyFile = { ...current, masterKeys: [...current.masterKeys, next] };
      writeKeyFile(this.#keyFilePath, updated);
      this.#keys = updated;
      await this.#repo.registerKey('wrap', next.version, keyCheckValue(next.key));
      // Retired before the re-wrap: from then on no process stores a new key under an older version (insertSubjectKeys),
      // so the re-wrap leaves none behind for a prune to strand.
      await this.#repo.retireWrapKeysBelow(next.version);
      const report = await this.rewrapAll();
      await this.#auditRotated(actor, next.version, report, false);
      return { version: next.version, ...report };
    });
  }

  /** Audits the end of a rotation to `version`: what it re-wrapped and left behind, and whether a later run completed it. */
  async #auditRotated(actor: Actor, version: number, report: RewrapReport, resumed: boolean): Promise<void> {
    await this.#audit.append({
      actor: actor.id,
      role: actor.role,
      action: 'crypto.master_key.rotate',
      purpose: 'essential.service.security',
      resource: `master_key:${version}`,
      details: {
        phase: 'finished',
        version,
        rewrapped: report.rewrapped,
        ...(resumed ? { resumed: true } : {}),
        ...(report.skipped.length > 0 ? { skipped: report.skipped.length, skippedKeyIds: report.skipped.slice(0, SKIPPED_LISTED).map((k) => k.keyId) } : {}),
      },
    });
  }

  /**
   * Re-wraps every data key still under an older master key (resumable after an interruption). A key that cannot be
   * unwrapped (a damaged row) is left on its version and reported, and the others are re-wrapped all the same.
   */
  async rewrapAll(): Promise<RewrapReport> {
    const target = this.activeMasterVersion;
    const skipped: SkippedKey[] = [];
    let rewrapped = 0;
    let after = '';
    for (;;) {
      const page = await this.#repo.wrappedBelow(target, after, ROTATE_PAGE);
      if (page.length === 0) return { rewrapped, skipped };
      after = (page.at(-1) as SubjectKeyRow).subject_id;
      const updated: SubjectKeyRow[] = [];
      for (const row of page) {
        let key: Buffer;
        try {
          key = unwrapDataKey(this.#masterKey(row.master_version), row);
        } catch (error) {
          if (!UNWRAP_FAILURES.some((code) => isCandorError(error, code))) throw error;
          skipped.push({ keyId: row.key_id, masterVersion: row.master_version });
          continue;
        }
        updated.push({ ...row, master_version: target, wrapped_key: seal(this.#masterKey(target), key, wrapAad(row, target)).toString('base64') });
      }
      await this.#repo.rewrap(updated);
      rewrapped += updated.length;
    }
  }

  /**
   * Removes retired master key versions from the key file, so that copies of the database made before the rotation
   * that retired them (backups, dumps, WAL archives) can no longer be read, erased people's data keys included.
   * Without `version`: every version below the active one, refused as a whole (CRYPTO_MASTER_KEY_IN_USE, nothing
   * removed) while a data key still uses one of them. With `version`: that one only. Audited.
   */
  async pruneMasterKeys(actor: Actor, options: { version?: number } = {}): Promise<{ removed: number[]; active: number }> {
    const { removed, active } = await withKeyFileLock(this.#keyFilePath, async () => {
      // A rotation cut short is completed first: its older versions retired (from then on a key being stored under one
      // of them either fails, insertSubjectKeys, or has committed and is counted) and its data keys re-wrapped.
      await this.#finishRotation();
      const current = this.#keys;
      const active = this.activeMasterVersion;
      const { version } = options;
      if (version !== undefined && !current.masterKeys.some((k) => k.version === version)) throw new CandorError('CRYPTO_MASTER_KEY_UNKNOWN', { version });
      if (version === active) throw new CandorError('CRYPTO_MASTER_KEY_IN_USE', { versions: [{ version, active: true }] });
      const candidates = version === undefined ? current.masterKeys.filter((k) => k.version < active).map((k) => k.version) : [version];
      const counts = await this.#repo.countByMasterVersion();
      const inUse = candidates.filter((v) => (counts[v] ?? 0) > 0);
      if (inUse.length > 0) throw new CandorError('CRYPTO_MASTER_KEY_IN_USE', { versions: inUse.map((v) => ({ version: v, dataKeys: counts[v] })) });
      if (candidates.length > 0) {
        const updated: KeyFile = { ...current, masterKeys: current.masterKeys.filter((k) => !candidates.includes(k.version)) };
        writeKeyFile(this.#keyFilePath, updated);
        this.#keys = updated;
      }
      return { removed: candidates, active };
    });
    if (removed.length > 0) await this.#deregister(removed, actor, 'pruned');
    return { removed, active };
  }

  /** Drops the registrations of wrap versions no longer in the key file, and audits it. */
  async #deregister(versions: readonly number[], actor: Actor, reason: string): Promise<void> {
    await this.#repo.deregisterWrapKeys(versions);
    await this.#audit.append({
      actor: actor.id,
      role: actor.role,
      action: 'crypto.master_key.prune',
      purpose: 'essential.service.security',
      resource: `master_key:${versions.join(',')}`,
      details: { versions: versions.map(String), active: this.activeMasterVersion, reason },
    });
  }

  /** The keyring's handler for access requests (key metadata); erasure destroys keys through destroySubjectKey. */
  subjectData(): SubjectDataHandler {
    return new CryptoSubjectData(this.#repo);
  }

  /** Data keys per master key version. */
  dataKeysByMasterVersion(): Promise<Record<number, number>> {
    return this.#repo.countByMasterVersion();
  }
}
