import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Actor } from '../../shared/actor.ts';
import { CandorError } from '../../shared/errors.ts';
import { Freshness, type Storage } from '../../storage/index.ts';
import type { AuditLog } from '../audit/index.ts';
import { AccessRepo, type RevokeOutcome, type TokenRow } from './access.repo.ts';
import { INGEST_ROLE, isStaffRole, type StaffRole } from './roles.ts';

/** scrypt as older releases hashed secrets with it; only credentials they created are still checked with it. */
export type Scrypt = (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;
const scryptAsync = promisify(scrypt) as Scrypt;
const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const TOKEN_PATTERN = /^(cnd|cwk)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const SOURCE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SECURITY_PURPOSE = 'essential.service.security';
/** A credential's row is read again at the latest after this long, even when nobody else wrote. */
const ROW_RECHECK_MAX_MS = 60_000;
/** The stored form of a secret: its SHA-256 (a 256-bit random secret gains nothing from a slow hash). */
const HASH_PREFIX = 'sha256:';

export type CredentialKind = 'api' | 'write_key';

/** Who a verified credential belongs to. */
export interface Principal {
  tokenId: string;
  kind: CredentialKind;
  role: StaffRole | typeof INGEST_ROLE;
  source: string | null;
}

/** A credential as listed to staff: never its secret or hash. */
export interface CredentialInfo {
  id: string;
  kind: CredentialKind;
  role: string;
  source: string | null;
  label: string | null;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

function info(row: TokenRow): CredentialInfo {
  return {
    id: row.id,
    kind: row.kind as CredentialKind,
    role: row.role,
    source: row.source,
    label: row.label,
    createdAt: row.created_at,
    createdBy: row.created_by,
    revokedAt: row.revoked_at,
  };
}

const digest = (secret: string) => createHash('sha256').update(secret).digest();
const stored = (secret: string) => HASH_PREFIX + digest(secret).toString('base64');
/** Whether the row holds a scrypt hash an older release wrote (upgraded on the credential's first successful check). */
const isScrypt = (row: TokenRow) => !row.hash.startsWith(HASH_PREFIX);

/** Whether a secret matches a row in the stored (SHA-256) form; constant-time. */
function matches(row: TokenRow, secret: string): boolean {
  const known = Buffer.from(row.hash.slice(HASH_PREFIX.length), 'base64');
  const presented = digest(secret);
  return known.length === presented.length && timingSafeEqual(known, presented);
}

export interface AccessControlOptions {
  /** scrypt for credentials older releases stored (tests count its calls). */
  scrypt?: Scrypt | undefined;
}

/**
 * API tokens (staff roles) and write keys (per ingestion source): created with a secret shown once, stored as the
 * secret's SHA-256, verified per request, revocable at once.
 */
export class AccessControl {
  readonly #storage: Storage;
  readonly #repo: AccessRepo;
  readonly #audit: AuditLog;
  readonly #scrypt: Scrypt;
  /**
   * Per credential id still stored with scrypt, the end of the last check queued for it: such checks run one after
   * the other, so wrong secrets for one credential occupy at most one of libuv's threads.
   */
  readonly #scryptChecks = new Map<string, Promise<void>>();
  /** Per credential id still stored with scrypt, the SHA-256 of the secret last refused (a client repeating it). */
  readonly #scryptRefused = new Map<string, Buffer>();
  /**
   * Credential rows as last read. A row is read again only after another process (the CLI, another server) wrote
   * (`storage.externalWrites()`), so a revocation there counts from its next request; while that cannot be told
   * (PostgreSQL with its commit notices unheard) every request reads it.
   */
  readonly #rows = new Map<string, { row: TokenRow; at: number }>();
  readonly #freshness: Freshness;
  /** Writes of this process to credential rows (revocations, upgrades), counted while under way. */
  #ownWrites = 0;

  constructor(storage: Storage, audit: AuditLog, options: AccessControlOptions = {}) {
    this.#storage = storage;
    this.#repo = new AccessRepo(storage);
    this.#audit = audit;
    this.#scrypt = options.scrypt ?? scryptAsync;
    this.#freshness = new Freshness(storage, ['access_tokens']);
  }

  async #row(id: string): Promise<TokenRow | undefined> {
    const now = Date.now();
    this.#freshness.check(now);
    const cached = this.#rows.get(id);
    if (cached && !this.#freshness.due(cached.at, now, 0, ROW_RECHECK_MAX_MS)) return cached.row;
    const writes = this.#ownWrites;
    const row = await this.#repo.byId(id);
    // A row read while this process revoked or upgraded a credential may predate that write: used once, not kept.
    if (row && writes === this.#ownWrites) this.#rows.set(id, { row, at: now });
    else this.#rows.delete(id);
    return row;
  }

  #create(kind: CredentialKind, role: string, source: string | null, label: string | null, actor: Actor): Promise<CredentialInfo & { secret: string }>;
  #create(kind: CredentialKind, role: string, source: string | null, label: string | null, actor: Actor, onlyIfFirst: true): Promise<(CredentialInfo & { secret: string }) | undefined>;
  async #create(kind: CredentialKind, role: string, source: string | null, label: string | null, actor: Actor, onlyIfFirst = false): Promise<(CredentialInfo & { secret: string }) | undefined> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const row: TokenRow = {
      id,
      kind,
      role,
      source,
      label,
      salt: '',
      hash: stored(secret),
      created_at: new Date().toISOString(),
      created_by: actor.id,
      revoked_at: null,
      revoked_by: null,
    };
    // Audited in the creation's own transaction (last: on PostgreSQL the audit head is held from there to the commit).
    const created = await this.#storage.raw.transaction(async (tx) => {
      if (onlyIfFirst && (await this.#repo.anyLocked(tx))) return false;
      await this.#repo.insert(tx, row);
      await this.#audit.appendIn(tx, [
        {
          actor: actor.id,
          role: actor.role,
          action: kind === 'api' ? 'access.token.create' : 'access.write_key.create',
          purpose: SECURITY_PURPOSE,
          resource: `credential:${id}`,
          details: kind === 'api' ? { role } : { source: source ?? '' },
        },
      ]);
      return true;
    });
    return created ? { ...info(row), secret: `${kind === 'api' ? 'cnd' : 'cwk'}_${id}_${secret}` } : undefined;
  }

  /** Creates an API token for a staff role; the returned secret is shown once and never stored. */
  async createToken(role: string, label: string | null, actor: Actor): Promise<CredentialInfo & { secret: string }> {
    if (!isStaffRole(role)) throw new CandorError('ACCESS_ROLE_UNKNOWN', { role });
    return this.#create('api', role, null, label, actor);
  }

  /**
   * A first start's owner token: created only while the database holds no credential at all, checked and created in
   * one transaction, so servers starting together on one database create one (the others get undefined).
   */
  createFirstOwnerToken(label: string, actor: Actor): Promise<(CredentialInfo & { secret: string }) | undefined> {
    return this.#create('api', 'owner', null, label, actor, true);
  }

  /** Creates a write key for one ingestion source; the returned secret is shown once. */
  async createWriteKey(source: string, label: string | null, actor: Actor): Promise<CredentialInfo & { secret: string }> {
    if (!SOURCE_PATTERN.test(source)) throw new CandorError('ACCESS_SOURCE_NAME_INVALID');
    return this.#create('write_key', INGEST_ROLE, source, label, actor);
  }

  /** Revokes a token or write key (optionally only of one kind); it stops working on the next request. */
  async revoke(id: string, actor: Actor, onlyKind?: CredentialKind): Promise<CredentialInfo> {
    if (onlyKind) {
      const row = await this.#repo.byId(id);
      if (row && row.kind !== onlyKind) throw new CandorError('AUTH_ROLE_FORBIDDEN', { role: actor.role });
    }
    const outcome = await this.#revoke(id, actor);
    if (outcome === 'missing') throw new CandorError('ACCESS_TOKEN_NOT_FOUND', { id });
    if (outcome === 'already') throw new CandorError('ACCESS_TOKEN_ALREADY_REVOKED', { id });
    if (outcome === 'last_owner') throw new CandorError('ACCESS_LAST_OWNER', { id });
    return info((await this.#repo.byId(id)) as TokenRow);
  }

  /**
   * After a restore: revokes again the credentials that the replaced database had revoked and the restored one holds
   * active (a key revoked after the backup was taken must not work again). Each is audited as a revocation, with
   * `restoredFrom` naming the backup. The last active owner token is kept (ACCESS_LAST_OWNER: create another owner
   * token, then revoke it); credentials the restored database does not have, or has revoked too, need nothing.
   */
  async revokeAgainAfterRestore(ids: readonly string[], backup: string, actor: Actor): Promise<{ revoked: string[]; keptLastOwner: string[] }> {
    const revoked: string[] = [];
    const keptLastOwner: string[] = [];
    for (const id of ids) {
      const outcome = await this.#revoke(id, actor, { restoredFrom: backup });
      if (outcome === 'revoked') revoked.push(id);
      if (outcome === 'last_owner') keptLastOwner.push(id);
    }
    return { revoked, keptLastOwner };
  }

  /** Revokes in one transaction, audited in it, last: a revocation that commits always has its entry. */
  async #revoke(id: string, actor: Actor, details?: Record<string, string>): Promise<RevokeOutcome> {
    this.#ownWrites++;
    this.#rows.delete(id);
    try {
      return await this.#storage.raw.transaction(async (tx) => {
        const result = await this.#repo.revoke(tx, id, actor.id);
        if (result === 'revoked') {
          await this.#audit.appendIn(tx, [{ actor: actor.id, role: actor.role, action: 'access.credential.revoke', purpose: SECURITY_PURPOSE, resource: `credential:${id}`, ...(details ? { details } : {}) }]);
        }
        return result;
      });
    } finally {
      this.#ownWrites++;
      this.#rows.delete(id);
    }
  }

  /** Every credential, without secrets. */
  async list(): Promise<CredentialInfo[]> {
    return (await this.#repo.list()).map(info);
  }

  /** How many credentials were ever created (zero means a first start). */
  count(): Promise<number> {
    return this.#repo.countAll();
  }

  /** Verifies a presented secret; throws AUTH_CREDENTIAL_INVALID or AUTH_CREDENTIAL_REVOKED. */
  async authenticate(presented: string): Promise<Principal> {
    const match = TOKEN_PATTERN.exec(presented);
    if (!match) throw new CandorError('AUTH_CREDENTIAL_INVALID');
    const [, prefix, id, secret] = match as unknown as [string, string, string, string];
    let row = await this.#row(id);
    if (!row || (prefix === 'cnd') !== (row.kind === 'api')) throw new CandorError('AUTH_CREDENTIAL_INVALID');
    if (isScrypt(row)) row = await this.#checkScrypt(id, secret);
    else if (!matches(row, secret)) throw new CandorError('AUTH_CREDENTIAL_INVALID');
    // Only after the secret: a guessed id with any secret must not learn whether that credential was revoked.
    if (row.revoked_at !== null) throw new CandorError('AUTH_CREDENTIAL_REVOKED');
    return { tokenId: row.id, kind: row.kind as CredentialKind, role: row.role as Principal['role'], source: row.source };
  }

  /**
   * Checks a secret against a credential an older release stored with scrypt, one check per credential at a time
   * (later ones wait, and the secret last refused is refused again without scrypt): the row is read again when its
   * turn comes, since the check before may have upgraded it. The right secret replaces the scrypt hash by the SHA-256
   * form (compare-and-set: several servers may do it at once).
   */
  async #checkScrypt(id: string, secret: string): Promise<TokenRow> {
    const previous = this.#scryptChecks.get(id) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    const turn = previous.then(() => mine);
    this.#scryptChecks.set(id, turn);
    try {
      await previous;
      const row = await this.#row(id);
      if (!row) throw new CandorError('AUTH_CREDENTIAL_INVALID');
      if (!isScrypt(row)) {
        if (!matches(row, secret)) throw new CandorError('AUTH_CREDENTIAL_INVALID');
        return row;
      }
      const presented = digest(secret);
      const refused = this.#scryptRefused.get(id);
      if (refused && timingSafeEqual(refused, presented)) throw new CandorError('AUTH_CREDENTIAL_INVALID');
      const hash = await this.#scrypt(secret, Buffer.from(row.salt, 'base64'), 32, SCRYPT);
      const known = Buffer.from(row.hash, 'base64');
      if (hash.length !== known.length || !timingSafeEqual(hash, known)) {
        this.#scryptRefused.set(id, presented);
        throw new CandorError('AUTH_CREDENTIAL_INVALID');
      }
      this.#ownWrites++;
      this.#rows.delete(id);
      try {
        await this.#repo.upgradeHash(id, row.hash, stored(secret));
      } finally {
        this.#ownWrites++;
        this.#rows.delete(id);
      }
      this.#scryptRefused.delete(id);
      return row;
    } finally {
      done();
      if (this.#scryptChecks.get(id) === turn) this.#scryptChecks.delete(id);
    }
  }
}
