import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCandorError } from '../shared/errors.ts';
import { codedPostgresError, isConnectionLost } from './pg-coded.ts';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('PostgreSQL errors of a statement ended at its timeout', () => {
  it('codes query_canceled (57014, statement_timeout) and lock_not_available (55P03) as STORAGE_UNAVAILABLE with a reason code', () => {
    for (const [code, reason] of [['57014', 'statement_timeout'], ['55P03', 'lock_not_available']] as const) {
      const error = pgError(code, 'canceling statement due to statement timeout');
      const coded = codedPostgresError(error);
      assert.ok(isCandorError(coded, 'STORAGE_UNAVAILABLE'), code);
      assert.deepEqual(coded.details, { reason, sqlstate: code }, 'a code, never the message');
      assert.equal(coded.cause, error);
    }
  });

  it('keeps the connection: a statement ended by the server is not a lost connection', () => {
    assert.equal(isConnectionLost(pgError('57014', 'canceling statement due to statement timeout')), false);
  });

  it('leaves errors that concern the statement as they are', () => {
    const deadlock = pgError('40P01', 'deadlock detected');
    assert.equal(codedPostgresError(deadlock), deadlock);
    const unique = pgError('23505', 'duplicate key value violates unique constraint');
    assert.equal(codedPostgresError(unique), unique);
  });
});
