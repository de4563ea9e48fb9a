import { createCipheriv, createDecipheriv, createHmac, type KeyObject } from 'node:crypto';
import { randomBytesPooled } from '../../shared/random.ts';
import { CandorError } from '../../shared/errors.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT = 'c1';

/** The parts of a field ciphertext: which data key (id and version) sealed it. */
export interface EnvelopeHeader {
  keyId: string;
  keyVersion: number;
}

/** AES-256-GCM with a random 96-bit IV; returns iv || ciphertext || tag (a string is encrypted as UTF-8). */
export function seal(key: Buffer | KeyObject, plaintext: Buffer | string, aad: Buffer): Buffer {
  const iv = randomBytesPooled(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = typeof plaintext === 'string' ? cipher.update(plaintext, 'utf8') : cipher.update(plaintext);
  // The envelope is laid out in one buffer (no intermediate concatenations on the ingestion hot path).
  const tail = cipher.final();
  const sealed = Buffer.allocUnsafe(IV_BYTES + body.length + tail.length + TAG_BYTES);
  iv.copy(sealed, 0);
  body.copy(sealed, IV_BYTES);
  tail.copy(sealed, IV_BYTES + body.length);
  cipher.getAuthTag().copy(sealed, IV_BYTES + body.length + tail.length);
  return sealed;
}

/** Opens what seal produced; a wrong key, AAD or any altered byte fails with CRYPTO_DECRYPT_FAILED. */
export function open(key: Buffer | KeyObject, sealed: Buffer, aad: Buffer): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new CandorError('CRYPTO_CIPHERTEXT_INVALID');
  const iv = sealed.subarray(0, IV_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const body = sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (error) {
    throw new CandorError('CRYPTO_DECRYPT_FAILED', undefined, { cause: error });
  }
}

function fieldAad(header: EnvelopeHeader, context: string): Buffer {
  return Buffer.from(`${FORMAT}.${header.keyId}.${header.keyVersion}.${context}`, 'utf8');
}

/** The associated data and the text prefix of one key's ciphertexts for one field (nothing secret in either). */
export interface FieldFrame {
  aad: Buffer;
  prefix: string;
}

/** The frame of a key's ciphertexts for a field, which a caller sealing many values may keep. */
export function fieldFrame(header: EnvelopeHeader, context: string): FieldFrame {
  return { aad: fieldAad(header, context), prefix: `${FORMAT}.${header.keyId}.${header.keyVersion}.` };
}

/**
 * Encrypts a field value as `c1.<keyId>.<keyVersion>.<base64url(iv|ciphertext|tag)>`. The context (for example
 * `profiles.traits.email`) is bound as associated data, so a ciphertext cannot be moved to another field.
 */
export function encryptField(key: Buffer | KeyObject, header: EnvelopeHeader, plaintext: string, context: string, frame: FieldFrame = fieldFrame(header, context)): string {
  return frame.prefix + seal(key, plaintext, frame.aad).toString('base64url');
}

/** Reads the header of a field ciphertext without decrypting it. */
export function parseEnvelope(ciphertext: string): EnvelopeHeader & { sealed: Buffer } {
  const parts = ciphertext.split('.');
  const [format, keyId, version, body] = parts;
  if (parts.length !== 4 || format !== FORMAT || !keyId || !/^[0-9a-f]{32}$/.test(keyId) || !version || !/^\d{1,9}$/.test(version) || !body) {
    throw new CandorError('CRYPTO_CIPHERTEXT_INVALID');
  }
  return { keyId, keyVersion: Number(version), sealed: Buffer.from(body, 'base64url') };
}

/** Decrypts a field ciphertext with the data key its header names. */
export function decryptField(key: Buffer | KeyObject, ciphertext: string, context: string): string {
  const envelope = parseEnvelope(ciphertext);
  return open(key, envelope.sealed, fieldAad(envelope, context)).toString('utf8');
}

/** A short public fingerprint of a key, stored beside it to detect a swapped or altered key file. */
export function keyCheckValue(key: Buffer): string {
  return createHmac('sha256', key).update('candor key check v1').digest('hex').slice(0, 32);
}
