import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type * as JoseApi from 'jose';
import type { JWK, JWTPayload } from 'jose';
import { SYSTEM_ACTOR, type Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Keyring } from '../crypto/index.ts';
import type { Freshness } from '../../storage/index.ts';
import type { ConsentRepo, SigningKeyRow } from './consent.repo.ts';

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

/** A key receipts are signed with: its id (the JWK thumbprint) and its private key. */
interface ActiveKey {
  kid: string;
  privateKey: KeyObject;
}

/** A new signing key: the row to store (private key sealed by the keyring) and the key to sign with. */
async function generateKey(keyring: Keyring, at: string): Promise<{ row: SigningKeyRow; key: ActiveKey }> {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await (await jose()).calculateJwkThumbprint(jwk);
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
  // Sealed before the caller's transaction: the keyring may create its data key (its own transaction).
  const sealed = await keyring.encrypt(KEY_SUBJECT, pkcs8, KEY_CONTEXT);
  const row = { kid, alg: RECEIPT_ALG, public_jwk: JSON.stringify({ ...jwk, kid, alg: RECEIPT_ALG, use: 'sig' }), private_key: sealed, created_at: at, retired_at: null };
  return { row, key: { kid, privateKey } };
}

/**
 * Signs consent receipts (compact JWS, EdDSA over Ed25519) and publishes the verification keys. The private key is
 * generated on first open and stored encrypted by the keyring; a rotation retires it and makes a new one active.
 * Every key ever used stays in the JWKS for good: receipts are kept as long as the ledger, and so must keep verifying.
 */
export class ReceiptSigner {
  readonly #repo: ConsentRepo;
  readonly #keyring: Keyring;
  readonly #audit: AuditLog;
  /** Whether another process wrote the signing keys since they were last read (a rotation by the CLI). */
  readonly #freshness: Freshness;
  #active: ActiveKey;
  /** Moved by every rotation made here: a reload that read the keys before it reads them again. */
  #epoch = 0;
  /** Set when the keys may have changed elsewhere, until a reload succeeds. */
  #reloadDue = false;
  #jwks: PublicJwk[];

  private constructor(repo: ConsentRepo, keyring: Keyring, audit: AuditLog, freshness: Freshness, active: ActiveKey, jwks: PublicJwk[]) {
    this.#repo = repo;
    this.#keyring = keyring;
    this.#audit = audit;
    this.#freshness = freshness;
    this.#active = active;
    this.#jwks = jwks;
  }

  /**
   * Loads the active signing key, generating one on first open: stored and audited (`crypto.signing_key.create`, actor
   * `system`, the key id as resource) in one transaction, so a key that signs receipts always has its entry, and none
   * is stored when the entry cannot be written (the open fails). `freshness` watches `consent_signing_keys`.
   */
  static async open(repo: ConsentRepo, keyring: Keyring, audit: AuditLog, freshness: Freshness): Promise<ReceiptSigner> {
    if (!(await repo.signingKeys()).some((r) => r.retired_at === null)) {
      const { row } = await generateKey(keyring, new Date().toISOString());
      await repo.transaction(async (tx) => {
        await repo.insertSigningKeyIn(tx, row);
        // Last: on PostgreSQL the audit head is held from here to the commit.
        await audit.appendIn(tx, [{ actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role, action: 'crypto.signing_key.create', purpose: 'essential.service.security', resource: `signing_key:${row.kid}`, details: { alg: RECEIPT_ALG, use: 'consent_receipts' } }]);
      });
    }
    const { active, rows } = await ReceiptSigner.#load(repo, keyring, undefined);
    return new ReceiptSigner(repo, keyring, audit, freshness, active, rows.map((r) => JSON.parse(r.public_jwk) as PublicJwk));
  }

  /** The active key as stored now (decrypted only when it is not `current`), and every key. */
  static async #load(repo: ConsentRepo, keyring: Keyring, current: ActiveKey | undefined): Promise<{ active: ActiveKey; rows: SigningKeyRow[] }> {
    const rows = await repo.signingKeys();
    // The oldest active key, so that processes which generated one at the same moment agree on it.
    const row = rows.find((r) => r.retired_at === null);
    if (!row) throw new CandorError('INTERNAL_ERROR', { reason: 'no consent signing key' });
    if (row.kid === current?.kid) return { active: current, rows };
    const der = Buffer.from(await keyring.decrypt(row.private_key, KEY_CONTEXT), 'base64');
    return { active: { kid: row.kid, privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) }, rows };
  }

  /**
   * Reads the active key again once another process may have changed the keys (the database tells: SQLite's
   * data_version, PostgreSQL's commit notices; at every call when it cannot tell). Called with the consent
   * configuration's refresh (every second by `candor serve`), so a key another process rotated to signs from then on.
   * A reload that fails is tried again at the next call.
   */
  async refreshIfChanged(): Promise<void> {
    if (this.#freshness.lookAgain()) this.#reloadDue = true;
    if (!this.#reloadDue) return;
    // A rotation made here while the keys were read may be missing from them: read again rather than undo it.
    for (let attempt = 0; ; attempt++) {
      const epoch = this.#epoch;
      const { active, rows } = await ReceiptSigner.#load(this.#repo, this.#keyring, this.#active);
      if (epoch !== this.#epoch && attempt < 5) continue;
      this.#active = active;
      this.#jwks = rows.map((r) => JSON.parse(r.public_jwk) as PublicJwk);
      this.#reloadDue = false;
      return;
    }
  }

  /**
   * Retires every active key and makes a new one active, audited (`crypto.signing_key.rotate`, the new key id as
   * resource, the retired ones in `retired`) in the transaction that does it. This instance signs with the new key at
   * once; the retired keys stay in the JWKS.
   */
  async rotate(actor: Actor): Promise<{ kid: string; retired: string[] }> {
    const { row, key } = await generateKey(this.#keyring, new Date().toISOString());
    const retired = await this.#repo.transaction(async (tx) => {
      const kids = await this.#repo.retireSigningKeysIn(tx, row.created_at);
      await this.#repo.insertSigningKeyIn(tx, row);
      // Last: on PostgreSQL the audit head is held from here to the commit.
      await this.#audit.appendIn(tx, [{ actor: actor.id, role: actor.role, action: 'crypto.signing_key.rotate', purpose: 'essential.service.security', resource: `signing_key:${row.kid}`, details: { alg: RECEIPT_ALG, use: 'consent_receipts', retired: kids } }]);
      return kids;
    });
    this.#epoch++;
    this.#active = key;
    return { kid: row.kid, retired };
  }

  /** The key id receipts are signed with now. */
  get kid(): string {
    return this.#active.kid;
  }

  /** Signs a receipt payload as a JWT (compact JWS) with the key id in the protected header; answers that key id. */
  async sign(payload: JWTPayload, receiptId: string, subject: string, issuedAt: Date): Promise<{ jws: string; kid: string }> {
    // The key of this moment: a rotation while jose loads does not split the header's kid from the signature.
    const { kid, privateKey } = this.#active;
    const { CompactSign } = await jose();
    // The JWT's claims as SignJWT would set them, serialized once: SignJWT deep-copies the payload first.
    const claims = { ...payload, jti: receiptId, sub: subject, iat: Math.floor(issuedAt.getTime() / 1000) };
    const jws = await new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader({ alg: RECEIPT_ALG, kid, typ: 'JWT' }).sign(privateKey);
    return { jws, kid };
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
