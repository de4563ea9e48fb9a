import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../test/support/databases.ts';
import { loadConfig } from '../config/index.ts';
import { openKernel, type Kernel } from '../kernel.ts';
import { isCandorError } from '../shared/errors.ts';
import { buildServer } from './server.ts';

describeEachDialect('trustProxy: the client address behind a proxy', (dialect) => {
  let env: TestEnvironment;
  const kernels: Kernel[] = [];
  before(async () => {
    env = await createEnvironment(dialect);
  });
  after(async () => {
    for (const kernel of kernels) await kernel.close();
    await env?.cleanup();
  });

  /** request.ip as a server with this setting sees a request from 127.0.0.1 that names 203.0.113.9 as its client. */
  const ipSeen = async (setting: string) => {
    const kernel = await openKernel(env.configWith({ CANDOR_TRUST_PROXY: setting }));
    kernels.push(kernel);
    const { app } = await buildServer(kernel, {
      extend: (scope) => {
        scope.get('/test/ip', { config: { access: { audience: 'public', purpose: 'essential.service.operations' } } }, async (request) => ({ ip: request.ip }));
      },
    });
    try {
      const answer = await app.inject({ url: '/test/ip', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.9' } });
      return (answer.json() as { ip: string }).ip;
    } finally {
      await app.close();
    }
  };

  it('believes X-Forwarded-For only from the proxies configured', async () => {
    assert.equal(await ipSeen(''), '127.0.0.1', 'by default nobody is trusted: a client could name any address');
    assert.equal(await ipSeen('loopback'), '203.0.113.9');
    assert.equal(await ipSeen('10.0.0.0/8'), '127.0.0.1', 'a proxy not listed is not believed');
  });

  it('refuses a setting that is none of the accepted forms at start', () => {
    for (const bad of ['yes', '1', '10.0.0.0/8, not-an-address']) {
      assert.throws(() => loadConfig({ environment: { CANDOR_TRUST_PROXY: bad } }), (e) => isCandorError(e, 'CONFIG_INVALID'), bad);
    }
  });
});
