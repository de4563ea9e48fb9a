// A banner shows the notice version another server (or the CLI) published a moment ago: POST /v1/consent records
// choices and withdrawals under it at once, reading the version when it is first named, as the consent module does.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer } from '../server.ts';

describeEachDialect('POST /v1/consent under a notice version another process just published', (dialect) => {
  it('records the choices and a withdrawal of everything, and still refuses a version nobody published', { timeout: 60_000 }, async (t) => {
    const env = await createEnvironment(dialect);
    t.after(() => env.cleanup());
    const kernel = await openKernel(env.config);
    const server = await buildServer(kernel);
    const other = await openKernel(env.config);
    t.after(async () => {
      await other.close();
      await server.app.close();
      await kernel.close();
    });
    const writeKey = (await kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    const current = other.consent.currentNotice();
    const published = await other.consent.publishNotice({ text: `${current.text} Reworded.`, purposes: current.purposes }, CLI_ACTOR);
    assert.equal(published.version, current.version + 1);
    const post = (body: object) =>
      server.app.inject({ method: 'POST', url: '/v1/consent', headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    // This process has not refreshed its configuration since the publish.
    assert.equal(kernel.consent.currentNotice().version, current.version);
    const withdrawn = await post({ anonymousId: 'a-elsewhere', mechanism: 'privacy_center', noticeVersion: published.version, withdrawAll: true });
    assert.equal(withdrawn.statusCode, 200, withdrawn.body);
    const given = await post({ anonymousId: 'a-elsewhere-2', mechanism: 'banner_save', noticeVersion: published.version, purposes: { 'analytics.reporting': 'given' } });
    assert.equal(given.statusCode, 200, given.body);
    assert.deepEqual((given.json() as { recorded: { purpose: string; state: string }[] }).recorded.map((r) => [r.purpose, r.state]), [['analytics.reporting', 'given']]);
    const unknown = await post({ anonymousId: 'a-elsewhere-3', mechanism: 'banner_save', noticeVersion: published.version + 1, purposes: { 'analytics.reporting': 'given' } });
    assert.equal(unknown.statusCode, 400, unknown.body);
    assert.deepEqual([(unknown.json() as { code: string }).code, (unknown.json() as { details: unknown }).details], ['CONSENT_NOTICE_UNKNOWN', { noticeVersion: published.version + 1 }]);
  });
});
