import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
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
