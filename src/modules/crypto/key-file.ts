import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { CandorError } from '../../shared/errors.ts';

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

/** Writes the key file atomically (temporary file, fsync, rename), readable by its owner only. */
export function writeKeyFile(path: string, keys: KeyFile): void {
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
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(temporary, 'wx', 0o600);
  try {
    writeSync(fd, body + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Creates a new key file with fresh keys; never overwrites an existing one. */
export function createKeyFile(path: string): void {
  if (existsSync(path)) throw new CandorError('CRYPTO_KEYFILE_EXISTS', { file: path });
  writeKeyFile(path, { masterKeys: [newKey(1)], pseudonymKey: newKey(1) });
}

/** Runs fn while holding an exclusive lock file beside the key file, so two rotations never race. */
export async function withKeyFileLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  let fd: number;
  try {
    fd = openSync(lock, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new CandorError('CRYPTO_ROTATION_IN_PROGRESS', { lock });
    throw error;
  }
  try {
    writeSync(fd, String(process.pid));
    return await fn();
  } finally {
    closeSync(fd);
    unlinkSync(lock);
  }
}
