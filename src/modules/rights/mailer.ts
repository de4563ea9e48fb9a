import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Transporter } from 'nodemailer';
import { CandorError } from '../../shared/errors.ts';
import { sortableId } from '../../shared/random.ts';

/** A message to a data subject. Its text may hold a verification code or a link, never other personal data. */
export interface Mail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

export interface MailerOptions {
  /** smtp:// or smtps:// URL; empty writes messages to the outbox directory instead. */
  readonly smtpUrl: string;
  readonly from: string;
  /** Where messages go without SMTP: `<dataDir>/outbox/`. */
  readonly outboxDir: string;
}

/**
 * Sends mail to data subjects: through SMTP (nodemailer) when `smtpUrl` is configured, otherwise as `.eml` files in a
 * local outbox directory readable only by the owner, so that a fresh installation works without a mail server.
 */
export class Mailer {
  readonly #from: string;
  readonly #outboxDir: string;
  readonly #smtpUrl: string | undefined;
  /**
   * The SMTP transport (when configured) and the one that builds the RFC 5322 text for the outbox with the same
   * library, made at the first message: nodemailer is not loaded by a process that sends none (~100 ms of a start).
   */
  #transports: Promise<{ smtp: Transporter | undefined; builder: Transporter }> | undefined;

  constructor(options: MailerOptions) {
    this.#from = options.from;
    this.#outboxDir = options.outboxDir;
    this.#smtpUrl = options.smtpUrl || undefined;
  }

  /** Where messages go: `smtp` or `outbox`. */
  get via(): 'smtp' | 'outbox' {
    return this.#smtpUrl ? 'smtp' : 'outbox';
  }

  #load(): Promise<{ smtp: Transporter | undefined; builder: Transporter }> {
    this.#transports ??= import('nodemailer').then(({ default: nodemailer }) => ({
      smtp: this.#smtpUrl ? nodemailer.createTransport(this.#smtpUrl) : undefined,
      builder: nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' }),
    }));
    return this.#transports;
  }

  /** Sends one message; RIGHTS_MAIL_FAILED when the server or the disk refuses it (the cause is logged, not shown). */
  async send(mail: Mail): Promise<{ via: 'smtp' | 'outbox'; id: string }> {
    const message = { from: this.#from, to: mail.to, subject: mail.subject, text: mail.text };
    try {
      const { smtp, builder } = await this.#load();
      if (smtp) {
        const info = (await smtp.sendMail(message)) as { messageId?: string };
        return { via: 'smtp', id: info.messageId ?? '' };
      }
      const built = (await builder.sendMail(message)) as { message: Buffer };
      mkdirSync(this.#outboxDir, { recursive: true, mode: 0o700 });
      const id = sortableId('mail_');
      const file = join(this.#outboxDir, `${id}.eml`);
      writeFileSync(file, built.message, { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
      return { via: 'outbox', id };
    } catch (error) {
      throw new CandorError('RIGHTS_MAIL_FAILED', { via: this.via }, { cause: error });
    }
  }
}
