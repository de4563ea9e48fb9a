import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isCandorError } from '../../shared/errors.ts';
import { Mailer } from './mailer.ts';

describe('mailer', () => {
  it('writes an RFC 5322 message readable only by its owner to the outbox when no SMTP server is configured', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-mail-'));
    try {
      const outbox = join(dir, 'outbox');
      const mailer = new Mailer({ smtpUrl: '', from: 'privacy@example.test', outboxDir: outbox });
      assert.equal(mailer.via, 'outbox');
      const sent = await mailer.send({ to: 'ada@example.test', subject: 'Your verification code', text: 'Your code is 012345.' });
      const files = readdirSync(outbox);
      assert.deepEqual(files, [`${sent.id}.eml`]);
      const file = join(outbox, files[0] as string);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(outbox).mode & 0o777, 0o700);
      const text = readFileSync(file, 'utf8');
      assert.match(text, /^From: privacy@example\.test$/m);
      assert.match(text, /^To: ada@example\.test$/m);
      assert.match(text, /Your code is 012345\./);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers RIGHTS_MAIL_FAILED when the SMTP server cannot be reached', async () => {
    const mailer = new Mailer({ smtpUrl: 'smtp://127.0.0.1:1?connectionTimeout=2000', from: 'privacy@example.test', outboxDir: '/nonexistent' });
    assert.equal(mailer.via, 'smtp');
    await assert.rejects(mailer.send({ to: 'ada@example.test', subject: 's', text: 't' }), (e) => isCandorError(e, 'RIGHTS_MAIL_FAILED'));
  });
});

describe('mailer outbox', () => {
  it('tags a message with its request, lists the outbox by headers and deletes messages by id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'candor-mail-'));
    try {
      const outbox = join(dir, 'outbox');
      const mailer = new Mailer({ smtpUrl: '', from: 'privacy@example.test', outboxDir: outbox });
      assert.deepEqual(mailer.outbox(), []);
      const before = Date.now();
      const tagged = await mailer.send({ to: 'ada@example.test', subject: 'Your data was erased', text: 'Done.', requestId: 'rr_1' });
      const plain = await mailer.send({ to: 'bob@example.test', subject: 'About your request', text: 'Hello.' });
      assert.match(readFileSync(join(outbox, `${tagged.id}.eml`), 'utf8'), /^X-Candor-Request: rr_1$/m);
      const listed = mailer.outbox();
      assert.deepEqual(
        listed.map((m) => [m.id, m.to, m.requestId]),
        [
          [tagged.id, ['ada@example.test'], 'rr_1'],
          [plain.id, ['bob@example.test'], null],
        ],
      );
      assert.ok(listed.every((m) => m.writtenAt.getTime() >= before - 1 && m.writtenAt.getTime() <= Date.now()));
      assert.equal(mailer.removeFromOutbox([tagged.id, 'mail_gone', '../outbox/x']), 1);
      assert.deepEqual(readdirSync(outbox), [`${plain.id}.eml`]);
      // Files named by hand otherwise are listed and deleted too (a sweep once skipped them for good).
      for (const name of ['old note', 'old+1']) writeFileSync(join(outbox, `${name}.eml`), 'To: carol@example.test\r\n\r\nHi');
      const byHand = mailer.outbox().filter((m) => m.id !== plain.id).map((m) => m.id);
      assert.deepEqual(byHand.sort(), ['old note', 'old+1']);
      assert.equal(mailer.removeFromOutbox(byHand), 2);
      assert.deepEqual(readdirSync(outbox), [`${plain.id}.eml`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
