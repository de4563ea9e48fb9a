import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { captureLog as capture } from '../../test/support/log-capture.ts';
import { createLogger, redact } from './logger.ts';


describe('logger', () => {
  it('redacts personal fields by name at any depth', () => {
    const out = redact({ userId: 'u-1', nested: { traits: { email: 'a@b.co' }, Phone_Number: '555' }, count: 3 }) as Record<string, unknown>;
    assert.deepEqual(out, { userId: '[redacted]', nested: { traits: '[redacted]', Phone_Number: '[redacted]' }, count: 3 });
  });

  it('redacts email addresses inside free text', () => {
    assert.equal(redact('could not send to ada.lovelace@example.org today'), 'could not send to [redacted-email] today');
  });

  it('redacts the row and parameters database errors carry', () => {
    const out = redact({ err: { message: 'duplicate key', code: '23505', detail: 'Key (subject)=(u-42) already exists.', parameters: ['u-42'] } }) as { err: Record<string, unknown> };
    assert.equal(out.err.detail, '[redacted]');
    assert.equal(out.err.parameters, '[redacted]');
    assert.equal(out.err.code, '23505');
  });

  it('redacts Candor credentials inside free text', () => {
    const token = `cwk_0123456789abcdef_${'A'.repeat(43)}`;
    assert.equal(redact(`bad key ${token} from web`), 'bad key cwk_[redacted] from web');
  });

  it('writes no personal value to the log stream, in objects or messages', async () => {
    const { lines, stream } = capture();
    const logger = createLogger('info', stream);
    logger.info({ email: 'ada@example.com', firstName: 'Ada', route: '/v1/identify', authorization: 'Bearer cnd_x' }, 'identify from ada@example.com');
    logger.child({ subject: { userId: 'user-42' } }).warn('merge');
    await new Promise((resolve) => setImmediate(resolve));
    const text = lines.join('');
    for (const secret of ['ada@example.com', 'Ada"', 'user-42', 'cnd_x']) assert.ok(!text.includes(secret), secret);
    assert.ok(text.includes('/v1/identify'));
  });
});
