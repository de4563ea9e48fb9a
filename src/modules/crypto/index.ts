/**
 * Crypto: the keyring (versioned master keys in an owner-only key file, per-subject data keys wrapped by them),
 * field encryption with AES-256-GCM carrying the data key id and version, keyed HMAC pseudonyms, rotation and
 * crypto-shredding.
 */
export { Keyring, checkKeyFile, unwrapDataKey, type KeyringOptions, type RegisteredKey, type RewrapReport, type SkippedKey } from './keyring.ts';
export { CRYPTO_MIGRATIONS } from './crypto.repo.ts';
export { parseEnvelope } from './envelope.ts';
export { readKeyFile, createKeyFile } from './key-file.ts';
export { CryptoSubjectData } from './crypto.subject-data.ts';
