import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { Kernel } from '../../src/kernel.ts';
import { Mailer, RightsRequests, type Mail, type RightsRequestsDeps } from '../../src/modules/rights/index.ts';
import { CandorError } from '../../src/shared/errors.ts';

/**
 * A rights-request workflow on a kernel's modules, for tests that need their own (a clock, rate limits, a lease, a mail
 * outbox, an erasure engine of their own): GDPR by default, links to http://candor.test, and what `deps` sets.
 */
export function rightsRequests(k: Kernel, deps: Partial<RightsRequestsDeps> & Pick<RightsRequestsDeps, 'mailer'>): RightsRequests {
  return new RightsRequests({
    storage: k.storage,
    audit: k.audit,
    keyring: k.keyring,
    identity: k.identity,
    consent: k.consent,
    profiles: k.profiles,
    catalog: k.catalog,
    subjectSessions: k.subjectSessions,
    erasure: k.erasure,
    exporter: k.exporter,
    logger: k.logger,
    defaultJurisdiction: 'gdpr',
    publicUrl: 'http://candor.test',
    ...deps,
  });
}

/** A mailer whose sends fail (RIGHTS_MAIL_FAILED) for subjects matching `refuse`, as a refusing mail server would. */
export class RefusingMailer extends Mailer {
  refuse: RegExp | null = null;
  override async send(mail: Mail): Promise<{ via: 'smtp' | 'outbox'; id: string }> {
    if (this.refuse?.test(mail.subject)) throw new CandorError('RIGHTS_MAIL_FAILED');
    return super.send(mail);
  }
}

/**
 * A rights-request workflow whose mail goes to an outbox directory of its own through a RefusingMailer, made before
 * the suite's tests and closed after them (its directory removed): `outbox`, `mailer` and `rights` once made.
 */
export function useRefusingRights(ctx: { readonly kernel: Kernel }): { readonly outbox: string; readonly mailer: RefusingMailer; readonly rights: RightsRequests } {
  let made: { outbox: string; mailer: RefusingMailer; rights: RightsRequests } | undefined;
  const get = () => {
    if (!made) throw new Error('useRefusingRights: used before the suite started');
    return made;
  };
  before(() => {
    const outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    const mailer = new RefusingMailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox });
    made = { outbox, mailer, rights: rightsRequests(ctx.kernel, { mailer }) };
  });
  after(async () => {
    if (!made) return;
    await made.rights.close();
    rmSync(made.outbox, { recursive: true, force: true });
  });
  return {
    get outbox() {
      return get().outbox;
    },
    get mailer() {
      return get().mailer;
    },
    get rights() {
      return get().rights;
    },
  };
}
