import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TEST_PG_URL } from '../../test/support/databases.ts';
import { isCandorError } from '../shared/errors.ts';
import { openStorage } from './index.ts';

const urlWith = (change: (url: URL) => void) => {
  const url = new URL(TEST_PG_URL);
  change(url);
  return url.toString();
};

const skip = !(process.env.CANDOR_TEST_DIALECTS ?? 'sqlite,postgres').includes('postgres');

describe('PostgreSQL refusing a connection for its settings', { skip }, () => {
  it('names a database that does not exist: STORAGE_CONNECTION_REFUSED, not an internal error', async () => {
    const databaseUrl = urlWith((url) => (url.pathname = '/candor_no_such_database'));
    await assert.rejects(openStorage({ databaseUrl, dataDir: '/nonexistent', sqliteSynchronous: 'FULL', postgresTimeoutMs: 0 }), (error) => {
      assert.ok(isCandorError(error, 'STORAGE_CONNECTION_REFUSED'), String(error));
      assert.deepEqual(error.details, { reason: 'the database does not exist', sqlstate: '3D000' });
      assert.ok(!JSON.stringify(error.details).includes('candor_no_such_database'));
      return true;
    });
  });

  it('names a role that does not exist the same way', async () => {
    const databaseUrl = urlWith((url) => (url.username = 'candor_no_such_role'));
    await assert.rejects(openStorage({ databaseUrl, dataDir: '/nonexistent', sqliteSynchronous: 'FULL', postgresTimeoutMs: 0 }), (error) => {
      assert.ok(isCandorError(error, 'STORAGE_CONNECTION_REFUSED'), String(error));
      assert.equal(error.details?.sqlstate, '28000');
      return true;
    });
  });
});
