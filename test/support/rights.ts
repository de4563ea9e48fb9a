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
