import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic, type WriteFunction } from '../../shared/durable-write.ts';
import { CandorError } from '../../shared/errors.ts';
import { lockFile } from '../../shared/file-lock.ts';

/** One key in the key file. */
export interface StoredKey {
  version: number;
  key: Buffer;
  createdAt: string;
}

/** The master key file: versioned wrapping keys and the pseudonym (HMAC) key. */
export interface KeyFile {
  masterKeys: StoredKey[];
  pseudonymKey: StoredKey;
}

const FORMAT = 'candor-keyring';
/** The random part of a temporary key file's name: `<key file>.<12 hex digits>.tmp`. */
const TEMPORARY_ID_BYTES = 6;
const TEMPORARY_ID = new RegExp(`^[0-9a-f]{${TEMPORARY_ID_BYTES * 2}}$`);

/** A fresh 256-bit key. */
export function newKey(version: number): StoredKey {
  return { version, key: randomBytes(32), createdAt: new Date().toISOString() };
}

function parseKey(value: unknown): StoredKey {
  if (typeof value !== 'object' || value === null) throw new Error('key entry is not an object');
  const { version, key, createdAt } = value as Record<string, unknown>;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new Error('bad version');
  if (typeof key !== 'string' || typeof createdAt !== 'string') throw new Error('bad key entry');
  const bytes = Buffer.from(key, 'base64');
  if (bytes.length !== 32 || bytes.toString('base64') !== key) throw new Error('key is not 32 bytes of base64');
  return { version, key: bytes, createdAt };
}

/** Reads and checks the key file: present, private to its owner, well-formed. */
export function readKeyFile(path: string): KeyFile {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (error) {
    throw new CandorError('CRYPTO_KEYFILE_MISSING', { file: path }, { cause: error });
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new CandorError('CRYPTO_KEYFILE_PERMISSIONS', { file: path, mode: (mode & 0o777).toString(8) });
  }
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    if (parsed.format !== FORMAT || parsed.formatVersion !== 1) throw new Error('unknown format');
    if (!Array.isArray(parsed.masterKeys) || parsed.masterKeys.length === 0) throw new Error('no master keys');
    const masterKeys = parsed.masterKeys.map(parseKey).sort((a, b) => a.version - b.version);
    if (new Set(masterKeys.map((k) => k.version)).size !== masterKeys.length) throw new Error('duplicate versions');
    return { masterKeys, pseudonymKey: parseKey(parsed.pseudonymKey) };
  } catch (error) {
    throw new CandorError('CRYPTO_KEYFILE_INVALID', { file: path }, { cause: error });
  }
}

/**
 * Writes the key file atomically, readable by its owner only: a temporary file written in full (a short write on a
 * nearly full disk is continued, and CRYPTO_KEYFILE_WRITE_FAILED when the disk takes no more), fsynced, read back and
 * parsed to the same keys, renamed over the key file, the directory fsynced. On a failure the key file is left as it
 * was and no temporary file stays behind. `write` replaces the write system call (tests).
 */
export function writeKeyFile(path: string, keys: KeyFile, options: { write?: WriteFunction } = {}): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const encode = (k: StoredKey) => ({ version: k.version, key: k.key.toString('base64'), createdAt: k.createdAt });
  const body = JSON.stringify(
    {
      format: FORMAT,
      formatVersion: 1,
      note: 'Candor master keys. Keep this file secret and backed up apart from the database: without it the data cannot be read.',
      masterKeys: keys.masterKeys.map(encode),
      pseudonymKey: encode(keys.pseudonymKey),
    },
    null,
    2,
  );
  // The temporary file holds every key: writeFileAtomic leaves none behind (a prune must leave no copy of a removed version).
  writeFileAtomic(path, body + '\n', {
    code: 'CRYPTO_KEYFILE_WRITE_FAILED',
    temporary: `${path}.${randomBytes(TEMPORARY_ID_BYTES).toString('hex')}.tmp`,
    mode: 0o600,
    write: options.write,
    verify: (temporary) => {
      if (!sameKeys(readKeyFile(temporary), keys)) throw Object.assign(new Error('the key file read back holds other keys'), { code: 'EIO' });
    },
  });
}

/** Whether two key files hold the same keys, versions and dates (the order of master keys aside). */
function sameKeys(a: KeyFile, b: KeyFile): boolean {
  const line = (k: StoredKey) => `${k.version}:${k.key.toString('base64')}:${k.createdAt}`;
  const all = (f: KeyFile) => [...f.masterKeys.map(line).sort(), `pseudonym ${line(f.pseudonymKey)}`].join('\n');
  return all(a) === all(b);
}

/** Creates a new key file with fresh keys; never overwrites an existing one. */
export function createKeyFile(path: string): void {
  if (existsSync(path)) throw new CandorError('CRYPTO_KEYFILE_EXISTS', { file: path });
  writeKeyFile(path, { masterKeys: [newKey(1)], pseudonymKey: newKey(1) });
}

/**
 * The marker beside a generated key file (`<key file>.generated`), there until a server has printed the notice to back
 * the key file up: a start killed or failed between generating the key file and printing the notice leaves it to the
 * next start.
 */
export const generatedMarkerPath = (path: string): string => `${path}.generated`;

/** Writes the marker of a key file about to be generated (before it, so that no kill leaves a key file unmarked). */
export function markGenerated(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(generatedMarkerPath(path), `Removed once a Candor server has printed the notice to back up ${basename(path)}.\n`, { mode: 0o600 });
}

/** The lock beside the key file that rotations, prunes and a start completing a rotation hold. */
export const keyFileLockPath = (path: string): string => `${path}.rotation.lock`;

/**
 * The temporary key files beside the key file (`<key file>.<12 hex digits>.tmp`, as writeKeyFile names them). Outside a
 * write in progress, each was left by a writer killed before its rename, and holds every master key version of its
 * time, versions a prune removed among them.
 */
export function temporaryKeyFiles(path: string): string[] {
  const prefix = `${basename(path)}.`;
  const isTemporary = (file: string) => file.startsWith(prefix) && file.endsWith('.tmp') && TEMPORARY_ID.test(file.slice(prefix.length, -'.tmp'.length));
  return readdirSync(dirname(path))
    .filter(isTemporary)
    .map((file) => join(dirname(path), file));
}

/**
 * Runs fn while holding the key file's lock (lockFile: it ends with the process that holds it, so a crash leaves none
 * behind), so that two rotations or prunes never race; CRYPTO_ROTATION_IN_PROGRESS while another process or
 * connection holds it. Temporary key files left by a killed writer are removed first.
 */
export async function withKeyFileLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = lockFile(keyFileLockPath(path), 0);
  if (!lock) throw new CandorError('CRYPTO_ROTATION_IN_PROGRESS', { lock: keyFileLockPath(path) });
  try {
    // Every writer holds the lock (but createKeyFile, before there is a key file): a temporary file found now is a stray.
    for (const file of temporaryKeyFiles(path)) rmSync(file, { force: true });
    // The plain lock file of earlier releases (`<key file>.lock`, created exclusively), which a crash left behind.
    rmSync(`${path}.lock`, { force: true });
    return await fn();
  } finally {
    lock.close();
  }
}
