import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

const actor = CLI_ACTOR;
const ANALYTICS = 'analytics.reporting';

// A banner or opt-out notice still showing a notice version that a later one changed materially for a purpose: what
// the person agreed to is not what the purpose now covers, so a consent under it would need renewal at once.
describeEachDialect('consent under an outdated notice version', (dialect) => {
  const ctx = useKernel(dialect);
  const harness = useServer(ctx);
  const consent = () => ctx.kernel.consent;
  const newSubject = () => `user-${randomUUID()}`;
  let old = 0;
  let current = 0;
  let writeKey = '';
  const send = (url: string, payload: unknown) =>
    harness.server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });

  before(async () => {
    const notice = consent().currentNotice();
    old = notice.version;
    const analytics = consent().purpose(ANALYTICS);
    assert.ok(analytics);
    await consent().setPurpose({ ...analytics, optOutJurisdictions: ['US-CA'] }, actor);
    const widened = notice.purposes.map((p) => (p.purpose === ANALYTICS ? { ...p, categories: [...p.categories, 'user.contact.email'] } : p));
    const published = await consent().publishNotice({ text: `${notice.text}\n\nReports use e-mail addresses.`, purposes: widened }, actor);
    assert.deepEqual(published.renewalRequired, [ANALYTICS]);
    current = published.version;
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });

  it('refuses consent given under it with CONSENT_NOTICE_OUTDATED, naming the current version, and records nothing', async () => {
    const subject = newSubject();
    await assert.rejects(consent().record(subject, [{ purpose: ANALYTICS, state: 'given' }], { mechanism: 'banner_save', noticeVersion: old }, actor), (error: unknown) => {
      assert.ok(isCandorError(error, 'CONSENT_NOTICE_OUTDATED'), String(error));
      assert.deepEqual(error.details, { purposes: [ANALYTICS], rejected: [{ purpose: ANALYTICS, code: 'CONSENT_NOTICE_OUTDATED' }], noticeVersion: old, currentNoticeVersion: current });
      return true;
    });
    assert.deepEqual(await consent().history(subject), []);
    await assert.rejects(consent().checkChanges([{ purpose: ANALYTICS, state: 'given' }], { noticeVersion: old }), (error: unknown) => isCandorError(error, 'CONSENT_NOTICE_OUTDATED'));
  });

  it('records the purposes the old version still covers as the current one does, and lists the others in rejected', async () => {
    const subject = newSubject();
    const result = await consent().record(subject, [{ purpose: ANALYTICS, state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_save', noticeVersion: old }, actor);
    assert.deepEqual(result.rejected, [{ purpose: ANALYTICS, code: 'CONSENT_NOTICE_OUTDATED' }]);
    assert.deepEqual(result.entries.map((e) => [e.purpose, e.state, e.noticeVersion]), [['personalize.profiling', 'given', old]]);
    assert.equal(consent().decide(subject, 'personalize.profiling').allowed, true);
  });

  it('always records a refusal or a withdrawal under it', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: ANALYTICS, state: 'given' }], { mechanism: 'banner_save', noticeVersion: current }, actor);
    const withdrawn = await consent().record(subject, [{ purpose: ANALYTICS, state: 'withdrawn' }], { mechanism: 'privacy_center', noticeVersion: old }, actor);
    assert.deepEqual(withdrawn.entries.map((e) => e.state), ['withdrawn']);
    const refused = await consent().record(newSubject(), [{ purpose: ANALYTICS, state: 'refused' }], { mechanism: 'banner_reject', noticeVersion: old }, actor);
    assert.deepEqual(refused.entries.map((e) => e.state), ['refused']);
    const all = await consent().withdrawAll(newSubject(), { mechanism: 'privacy_center', noticeVersion: old }, actor);
    assert.ok(all.entries.some((e) => e.purpose === ANALYTICS && e.state === 'withdrawn'));
  });

  it('refuses an opt-out notice shown under it, and takes one under the current version', async () => {
    const subject = newSubject();
    await assert.rejects(consent().recordOptOutNotice(subject, ANALYTICS, { jurisdiction: 'US-CA', noticeVersion: old }, actor), (error: unknown) => {
      assert.ok(isCandorError(error, 'CONSENT_NOTICE_OUTDATED'), String(error));
      assert.deepEqual(error.details, { purpose: ANALYTICS, noticeVersion: old, currentNoticeVersion: current });
      return true;
    });
    assert.deepEqual(await consent().history(subject), []);
    const shown = await consent().recordOptOutNotice(subject, ANALYTICS, { jurisdiction: 'US-CA', noticeVersion: current }, actor);
    assert.equal(shown.entries.length, 1);
    assert.equal(consent().decide(subject, ANALYTICS).reason, 'opt_out_notice');
  });

  it('answers 409 over HTTP, before a profile is created', async () => {
    const given = await send('/v1/consent', { userId: 'outdated-1', purposes: { [ANALYTICS]: 'given' }, mechanism: 'banner_save', noticeVersion: old });
    assert.equal(given.statusCode, 409, given.body);
    assert.equal((given.json() as { code: string }).code, 'CONSENT_NOTICE_OUTDATED');
    assert.equal((given.json() as { details: { currentNoticeVersion: number } }).details.currentNoticeVersion, current);
    const notice = await send('/v1/consent/opt-out-notice', { userId: 'outdated-1', purpose: ANALYTICS, jurisdiction: 'US-CA', noticeVersion: old });
    assert.equal(notice.statusCode, 409, notice.body);
    assert.equal((notice.json() as { code: string }).code, 'CONSENT_NOTICE_OUTDATED');
    const found = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'outdated-1' }], source: 'web', at: new Date().toISOString() }]);
    assert.deepEqual(found, [null]);
  });
});
