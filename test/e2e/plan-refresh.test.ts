// A tracking plan published by another process (the CLI, another server) is put in force by a running server,
// with no restart: an event the old plan refuses is stored once the new version declares it.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { openKernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../support/databases.ts';
import { planWithEvent } from '../support/plans.ts';
import { seedIngestion, start, stop } from '../support/serve-process.ts';


describeEachDialect('a running server and a plan published by another process', (dialect) => {
  let env: TestEnvironment;
  let auth: { authorization: string };
  before(async () => {
    env = await createEnvironment(dialect);
    auth = await seedIngestion(env, [{ userId: 'searcher' }], ['analytics.reporting']);
  });
  after(async () => {
    await env.cleanup();
  });

  it('stores an event the old plan refused within seconds of the publication, without a restart', async () => {
    const running = await start(env);
    try {
      const send = async () => {
        const response = await fetch(`${running.url}/v1/track`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ userId: 'searcher', event: 'Products Searched', properties: { query: 'boots' } }),
        });
        assert.equal(response.status, 200);
        return ((await response.json()) as { results: { status: string; code?: string }[] }).results[0];
      };
      const before = await send();
      assert.deepEqual([before?.status, before?.code], ['invalid', 'CATALOG_EVENT_UNDECLARED']);

      const publisher = await openKernel(env.configWith({ NODE_ENV: 'development' }));
      let published: number;
      try {
        published = (await publisher.catalog.publish(planWithEvent('Products Searched'), CLI_ACTOR)).version;
      } finally {
        await publisher.close();
      }
      assert.equal(published, 2);

      const began = Date.now();
      let result = await send();
      while (result?.status !== 'stored' && Date.now() - began < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        result = await send();
      }
      assert.equal(result?.status, 'stored', `still ${JSON.stringify(result)} after ${Date.now() - began} ms`);
      assert.ok(Date.now() - began < 4_000, `took ${Date.now() - began} ms`);
    } finally {
      await stop(running);
    }
  });
});
