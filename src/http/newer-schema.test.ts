import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect } from '../../test/support/databases.ts';
import { openKernel } from '../kernel.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { createLogger } from '../shared/logger.ts';
import { buildServer } from './server.ts';
import { captureLog } from '../../test/support/log-capture.ts';

describeEachDialect('a database migrated by a newer release under a running server', (dialect) => {
  it('answers the requests that fail on its schema STORAGE_NEWER_THAN_CODE, naming the unknown migrations, and logs why once', async () => {
    const env = await createEnvironment(dialect);
    const { lines, stream } = captureLog();
    const logger = createLogger('error', stream);
    const kernel = await openKernel(env.config, { logger });
    const server = await buildServer(kernel);
    try {
      const { secret } = await kernel.access.createWriteKey('web', null, CLI_ACTOR);
      const send = (url: string, payload: unknown) =>
        server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${secret}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
      const track = (messageId: string) => send('/v1/track', { userId: 'p1', messageId, event: 'Order Completed', properties: { order_id: messageId, total: 5, currency: 'EUR' } });
      assert.equal((await send('/v1/consent', { mechanism: 'banner_save', userId: 'p1', purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' } })).statusCode, 200);
      assert.equal((await track('m1')).statusCode, 200);

      // A column gone while the database knows every migration is not a newer release's doing: an internal error.
      await sql`ALTER TABLE profiles_computed RENAME COLUMN last_active_day TO last_active_day_renamed`.execute(kernel.storage.db);
      const broken = await track('m2');
      assert.equal(broken.statusCode, 500, broken.body);
      assert.equal(broken.json().code, 'INTERNAL_ERROR');

      await sql`INSERT INTO storage_migrations (name, timestamp) VALUES ('9999_from_a_newer_release', ${new Date().toISOString()})`.execute(kernel.storage.db);
      for (const response of [await track('m3'), await send('/v1/identify', { userId: 'p1', messageId: 'm4', traits: { first_name: 'Ada' } })]) {
        assert.equal(response.statusCode, 503, response.body);
        assert.equal(response.json().code, 'STORAGE_NEWER_THAN_CODE');
        assert.deepEqual(response.json().details, { unknownMigrations: ['9999_from_a_newer_release'] });
      }
      await new Promise((resolve) => setImmediate(resolve));
      const explained = lines.filter((line) => line.includes('a newer Candor release migrated the database under this server'));
      assert.equal(explained.length, 1, lines.join(''));
      assert.deepEqual(JSON.parse(explained[0] as string).unknownMigrations, ['9999_from_a_newer_release']);
    } finally {
      await server.app.close();
      await kernel.close();
      await env.cleanup();
    }
  });
});
