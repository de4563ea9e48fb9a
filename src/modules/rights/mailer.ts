import { chmodSync, closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Transporter } from 'nodemailer';
import { CandorError } from '../../shared/errors.ts';
import { sortableId } from '../../shared/random.ts';

/** A message to a data subject. Its text may hold a verification code or a link, never other personal data. */
export interface Mail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  /** The request the message is about: an outbox copy carries it as an `X-Candor-Request` header, to be found by it (mail sent over SMTP does not). */
  readonly requestId?: string;
}

/** One message in the outbox, as far as its headers say: never its text. */
export interface OutboxMessage {
  readonly id: string;
  /** When it was written (from its sortable id; the file's modification time for a file named otherwise). */
  readonly writtenAt: Date;
  /** The addresses of its `To` header, as written. */
  readonly to: readonly string[];
  /** Its `X-Candor-Request` header, or null. */
  readonly requestId: string | null;
  /** Its `Subject` header as written, or null. */
  readonly subject: string | null;
}

/** The subject of the notice that an erasure was done: the one message about an erased person the outbox keeps. */
export const ERASED_NOTICE_SUBJECT = 'Your data was erased';

/** Headers are read from at most this many bytes of a message. */
const HEADER_BYTES = 16 * 1024;
/** The part of a mail id (`mail_` + 9 base-36 digits) that is the time it was made, in milliseconds. */
const ID_TIME = /^mail_([0-9a-z]{9})/;

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
        // The request id is for finding outbox copies: mail that leaves does not carry Candor's internal ids.
        const info = (await smtp.sendMail(message)) as { messageId?: string };
        return { via: 'smtp', id: info.messageId ?? '' };
      }
      const built = (await builder.sendMail({ ...message, ...(mail.requestId ? { headers: { 'X-Candor-Request': mail.requestId } } : {}) })) as { message: Buffer };
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

  /** Where messages are written without SMTP. */
  get outboxDir(): string {
    return this.#outboxDir;
  }

  /** The messages in the outbox (also those written before SMTP was configured), oldest first. */
  outbox(): OutboxMessage[] {
    if (!existsSync(this.#outboxDir)) return [];
    const out: OutboxMessage[] = [];
    for (const name of readdirSync(this.#outboxDir).sort()) {
      if (!name.endsWith('.eml')) continue;
      const file = join(this.#outboxDir, name);
      let head: string;
      try {
        head = readHead(file);
      } catch (error) {
        // Removed meanwhile (a sweep and an erasure at once): nothing left to list.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const id = name.slice(0, -'.eml'.length);
      const stamp = ID_TIME.exec(id)?.[1];
      const writtenAt = stamp === undefined ? statSync(file).mtime : new Date(parseInt(stamp, 36));
      out.push({ id, writtenAt, ...headersOf(head) });
    }
    return out;
  }

  /**
   * Deletes outbox messages by id, their bytes overwritten with zeros first (as SQLite's secure_delete does; a file
   * system that writes elsewhere, a copy-on-write one or an SSD's, may still hold them); returns how many were there.
   */
  removeFromOutbox(ids: Iterable<string>): number {
    let removed = 0;
    for (const id of ids) {
      // Any name the outbox listing gives (a file named otherwise by hand, `old note.eml`), never a path elsewhere.
      if (id === '' || id.includes('/') || id.includes('\\') || id.includes('\u0000') || id === '.' || id === '..') continue;
      const file = join(this.#outboxDir, `${id}.eml`);
      let fd: number;
      try {
        fd = openSync(file, 'r+');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      try {
        writeSync(fd, Buffer.alloc(fstatSync(fd).size), 0, undefined, 0);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      rmSync(file, { force: true });
      removed++;
    }
    return removed;
  }
}

/** The header block of a message file (up to the first empty line), its folded lines joined. */
function readHead(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(HEADER_BYTES);
    const length = readSync(fd, buffer, 0, HEADER_BYTES, 0);
    const text = buffer.toString('utf8', 0, length);
    const end = text.search(/\r?\n\r?\n/);
    return (end === -1 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  } finally {
    closeSync(fd);
  }
}

/** The addresses of the `To` header, the request id and the subject of a header block. */
function headersOf(head: string): { to: string[]; requestId: string | null; subject: string | null } {
  const to: string[] = [];
  let requestId: string | null = null;
  let subject: string | null = null;
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'to') {
      for (const part of value.split(',')) {
        const address = /<([^>]*)>/.exec(part)?.[1] ?? part;
        if (address.trim()) to.push(address.trim());
      }
    } else if (name === 'x-candor-request') requestId = value;
    else if (name === 'subject') subject = value;
  }
  return { to, requestId, subject };
}
