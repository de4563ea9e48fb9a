import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type * as JoseApi from 'jose';
import type { JWK, JWTPayload } from 'jose';
import { SYSTEM_ACTOR } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { ConsentRepo } from './consent.repo.ts';

/** The keyring "subject" whose data key encrypts the receipt signing keys, and the field context of the key. */
const KEY_SUBJECT = 'system:consent-receipts';
const KEY_CONTEXT = 'consent.signing_key';
export const RECEIPT_ALG = 'EdDSA';
const encoder = new TextEncoder();
/** jose, loaded when a receipt is first signed or checked (~50 ms that a server start need not pay), then kept. */
let loaded: Promise<typeof JoseApi> | undefined;
const jose = () => (loaded ??= import('jose'));

/** A public verification key as published at /.well-known/jwks.json. */
export type PublicJwk = JWK & { kid: string; alg: string; use: 'sig' };

/**
 * Signs consent receipts (compact JWS, EdDSA over Ed25519) and publishes the verification keys. The private key is
 * generated on first open and stored encrypted by the keyring; every key ever used stays in the JWKS so old
 * receipts keep verifying.
 */
export class ReceiptSigner {
  readonly #repo: ConsentRepo;
  readonly #kid: string;
  readonly #privateKey: KeyObject;
  #jwks: PublicJwk[];

  private constructor(repo: ConsentRepo, kid: string, privateKey: KeyObject, jwks: PublicJwk[]) {
    this.#repo = repo;
    this.#kid = kid;
    this.#privateKey = privateKey;
    this.#jwks = jwks;
  }

  /**
   * Loads the active signing key, generating one on first open: stored and audited (`crypto.signing_key.create`, actor
   * `system`, the key id as resource) in one transaction, so a key that signs receipts always has its entry, and none
   * is stored when the entry cannot be written (the open fails).
   */
  static async open(repo: ConsentRepo, keyring: Keyring, audit: AuditLog): Promise<ReceiptSigner> {
    let rows = await repo.signingKeys();
    if (!rows.some((r) => r.retired_at === null)) {
      const { publicKey, privateKey } = generateKeyPairSync('ed25519');
      const jwk = publicKey.export({ format: 'jwk' }) as JWK;
      const kid = await (await jose()).calculateJwkThumbprint(jwk);
      const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
      // Sealed before the transaction: the keyring may create its data key (its own transaction).
      const sealed = await keyring.encrypt(KEY_SUBJECT, pkcs8, KEY_CONTEXT);
      await repo.transaction(async (tx) => {
        await repo.insertSigningKeyIn(tx, {
          kid,
          alg: RECEIPT_ALG,
          public_jwk: JSON.stringify({ ...jwk, kid, alg: RECEIPT_ALG, use: 'sig' }),
          private_key: sealed,
          created_at: new Date().toISOString(),
          retired_at: null,
        });
        // Last: on PostgreSQL the audit head is held from here to the commit.
        await audit.appendIn(tx, [{ actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role, action: 'crypto.signing_key.create', purpose: 'essential.service.security', resource: `signing_key:${kid}`, details: { alg: RECEIPT_ALG, use: 'consent_receipts' } }]);
      });
      rows = await repo.signingKeys();
    }
    // The oldest active key, so that processes which generated one at the same moment agree on it.
    const active = rows.find((r) => r.retired_at === null);
    if (!active) throw new CandorError('INTERNAL_ERROR', { reason: 'no consent signing key' });
    const der = Buffer.from(await keyring.decrypt(active.private_key, KEY_CONTEXT), 'base64');
    const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    return new ReceiptSigner(repo, active.kid, privateKey, rows.map((r) => JSON.parse(r.public_jwk) as PublicJwk));
  }

  /** The key id receipts are signed with now. */
  get kid(): string {
    return this.#kid;
  }

  /** Signs a receipt payload as a JWT (compact JWS) with the key id in the protected header. */
  async sign(payload: JWTPayload, receiptId: string, subject: string, issuedAt: Date): Promise<string> {
    const { CompactSign } = await jose();
    // The JWT's claims as SignJWT would set them, serialized once: SignJWT deep-copies the payload first.
    const claims = { ...payload, jti: receiptId, sub: subject, iat: Math.floor(issuedAt.getTime() / 1000) };
    return new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader({ alg: RECEIPT_ALG, kid: this.#kid, typ: 'JWT' }).sign(this.#privateKey);
  }

  /** Every verification key (re-read, so keys added by other processes are published too). */
  async jwks(): Promise<{ keys: PublicJwk[] }> {
    this.#jwks = (await this.#repo.signingKeys()).map((r) => JSON.parse(r.public_jwk) as PublicJwk);
    return { keys: this.#jwks.map((k) => ({ ...k })) };
  }

  /** Verifies a receipt against the published keys and returns its payload; CONSENT_RECEIPT_INVALID otherwise. */
  async verify(jws: string): Promise<JWTPayload> {
    const keys = await this.jwks();
    const { createLocalJWKSet, jwtVerify } = await jose();
    try {
      const { payload } = await jwtVerify(jws, createLocalJWKSet(keys), { algorithms: [RECEIPT_ALG] });
      return payload;
    } catch (error) {
      throw new CandorError('CONSENT_RECEIPT_INVALID', undefined, { cause: error });
    }
  }
}
