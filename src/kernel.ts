import type { Config } from './config/index.ts';
import { AccessControl, ACCESS_MIGRATIONS, SubjectSessions, SUBJECT_SESSION_MIGRATIONS } from './modules/access/index.ts';
import { AuditLog, AUDIT_MIGRATIONS } from './modules/audit/index.ts';
import { Catalog, CATALOG_MIGRATIONS } from './modules/catalog/index.ts';
import { Collector, COLLECT_MIGRATIONS } from './modules/collect/index.ts';
import { Consent, CONSENT_MIGRATIONS } from './modules/consent/index.ts';
import { Keyring, CRYPTO_MIGRATIONS } from './modules/crypto/index.ts';
import { Identity, IDENTITY_MIGRATIONS } from './modules/identity/index.ts';
import { Profiles, PROFILES_MIGRATIONS } from './modules/profiles/index.ts';
import { Taxonomy, TAXONOMY_MIGRATIONS } from './modules/taxonomy/index.ts';
import { SYSTEM_ACTOR } from './shared/actor.ts';
import { CandorError } from './shared/errors.ts';
import { createLogger, type Logger } from './shared/logger.ts';
import { migrateToLatest, openStorage, pendingMigrations, type ModuleMigration, type Storage } from './storage/index.ts';

/** Every module's migrations, in the order their names sort. */
export const MIGRATIONS: readonly ModuleMigration[] = [
  ...CRYPTO_MIGRATIONS,
  ...AUDIT_MIGRATIONS,
  ...ACCESS_MIGRATIONS,
  ...SUBJECT_SESSION_MIGRATIONS,
  ...TAXONOMY_MIGRATIONS,
  ...CATALOG_MIGRATIONS,
  ...CONSENT_MIGRATIONS,
  ...IDENTITY_MIGRATIONS,
  ...PROFILES_MIGRATIONS,
  ...COLLECT_MIGRATIONS,
].sort((a, b) => a.name.localeCompare(b.name));

/** The privacy kernel, wired once and shared by the HTTP server, the CLI and jobs. */
export interface Kernel {
  readonly config: Config;
  readonly logger: Logger;
  readonly storage: Storage;
  readonly audit: AuditLog;
  readonly keyring: Keyring;
  readonly access: AccessControl;
  readonly subjectSessions: SubjectSessions;
  readonly taxonomy: Taxonomy;
  readonly catalog: Catalog;
  readonly consent: Consent;
  readonly identity: Identity;
  readonly profiles: Profiles;
  readonly collect: Collector;
  /** Whether this start generated the master key file. */
  readonly keyFileGenerated: boolean;
  /** Migrations applied by this start. */
  readonly migrationsApplied: readonly string[];
  close(): Promise<void>;
}

export interface KernelOptions {
  /** Apply pending migrations (the server and CLI do); otherwise refuse to run on an old schema. */
  migrate?: boolean;
  logger?: Logger;
}

/** Opens storage, applies migrations, loads the keyring and wires every module. */
export async function openKernel(config: Config, options: KernelOptions = {}): Promise<Kernel> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, sqliteSynchronous: config.sqliteSynchronous });
  try {
    let migrationsApplied: string[] = [];
    if (options.migrate ?? true) {
      migrationsApplied = await migrateToLatest(storage, MIGRATIONS);
    } else {
      const pending = await pendingMigrations(storage, MIGRATIONS);
      if (pending.length > 0) throw new CandorError('STORAGE_NOT_MIGRATED', { pending });
    }
    const audit = new AuditLog(storage);
    const { keyring, generated } = await Keyring.open(storage, audit, {
      keyFile: config.keyFile,
      allowGenerate: config.env !== 'production',
    });
    const access = new AccessControl(storage, audit);
    const subjectSessions = new SubjectSessions(storage, audit);
    const taxonomy = await Taxonomy.open(storage, audit);
    const catalog = await Catalog.open({ storage, audit, taxonomy });
    const consent = await Consent.open({
      storage,
      audit,
      keyring,
      taxonomy,
      expiryMonths: config.consentExpiryMonths,
      controllerName: config.controllerName,
      policyUrl: config.privacyPolicyUrl || undefined,
    });
    const identity = await Identity.open({ storage, audit, keyring });
    const profiles = await Profiles.open({ storage, audit, keyring });
    // When two profiles turn out to be one person, the most restrictive consent of the two applies to both.
    identity.onMerge(async (merge) => {
      await consent.mergeSubjects(merge.from, merge.into, SYSTEM_ACTOR);
    });
    const collect = new Collector({ storage, keyring, catalog, consent, identity, profiles });
    return {
      config,
      logger,
      storage,
      audit,
      keyring,
      access,
      subjectSessions,
      taxonomy,
      catalog,
      consent,
      identity,
      profiles,
      collect,
      keyFileGenerated: generated,
      migrationsApplied,
      close: async () => {
        // Counts of the tracking plan not flushed yet; losing them must not keep storage open.
        await catalog.flushStats().catch((err: unknown) => logger.warn({ err }, 'catalog stats not flushed'));
        await collect.flush().catch((err: unknown) => logger.warn({ err }, 'refusal counts not flushed'));
        await storage.close();
      },
    };
  } catch (error) {
    await storage.close();
    throw error;
  }
}
