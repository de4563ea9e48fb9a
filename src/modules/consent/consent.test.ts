import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { openStorage, type Storage } from '../../storage/index.ts';
import { addMonths } from './decide.ts';
import { Consent, type PurposeConfig } from './index.ts';

const actor = CLI_ACTOR;
const banner = { mechanism: 'banner_save', source: 'https://shop.example/' } as const;
const SALE = 'third_party_sharing';
const TARGETED = 'marketing.advertising.third_party.targeted';
const rejectsWith = (code: string) => (error: unknown) => isCandorError(error) && error.code === code;

describeEachDialect('consent', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const newSubject = () => `user-${randomUUID()}`;

  it('seeds the default purposes and notice version 1 on first open', () => {
    const keys = consent().purposes().map((p) => p.key);
    for (const key of ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email', TARGETED, SALE, 'essential.service.operations', 'fairness_audit']) {
      assert.ok(keys.includes(key), key);
    }
    assert.deepEqual(consent().purpose(TARGETED), {
      key: TARGETED, basis: 'consent', saleOrSharing: true, targetedAdvertising: true, explicit: false, optOutJurisdictions: [], description: consent().purpose(TARGETED)?.description,
    });
    assert.equal(consent().purpose('essential.fraud_detection')?.basis, 'legitimate_interests');
    assert.equal(consent().purpose('fairness_audit')?.explicit, true);
    const notice = consent().currentNotice();
    assert.equal(notice.version, 1);
    assert.match(notice.hash, /^[0-9a-f]{64}$/);
    assert.ok(notice.purposes.some((p) => p.purpose === 'analytics.reporting' && p.categories.includes('user.behavior')));
  });

  it('denies a consent-based purpose when the subject has no record, and an unknown purpose always', async () => {
    const subject = newSubject();
    await consent().load([subject]);
    assert.deepEqual(consent().decide(subject, 'analytics.reporting'), { allowed: false, basis: null, reason: 'no_record', explicit: false });
    assert.deepEqual(consent().decide(subject, 'no.such.purpose'), { allowed: false, basis: null, reason: 'unknown_purpose', explicit: false });
    assert.deepEqual(consent().allowedPurposes(subject, ['analytics.reporting', 'essential.service.operations', 'no.such.purpose']), ['essential.service.operations']);
  });

  it('states the basis of every purpose for a subject with no record: the one the purpose rests on, consent included', async () => {
    const state = await consent().state(newSubject());
    for (const purpose of consent().purposes()) {
      assert.equal(state[purpose.key]?.state, 'none', purpose.key);
      assert.equal(state[purpose.key]?.basis, purpose.basis, purpose.key);
    }
    assert.deepEqual([state['analytics.reporting']?.basis, state['analytics.reporting']?.allowed, state['analytics.reporting']?.reason], ['consent', false, 'no_record']);
    assert.deepEqual([state['essential.fraud_detection']?.basis, state['essential.fraud_detection']?.allowed], ['legitimate_interests', true]);
  });

  it('refuses a source that would pass for what Candor writes again after a restore (restore:<backup>)', async () => {
    const subject = newSubject();
    for (const source of ['restore:backup.db', 'RESTORE:x', 'restore:b.db?x=1', 'Restore:']) {
      await assert.rejects(consent().record(subject, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { mechanism: 'import', source }, actor), (error) => rejectsWith('CONSENT_CHANGE_INVALID')(error) && (error as { details?: { reason?: string } }).details?.reason === 'source_reserved');
    }
    // A source named `restore` (a write key's, say) is an ordinary one.
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { mechanism: 'import', source: 'restored-shop' }, actor);
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'refused' }], { mechanism: 'banner_save', source: 'restore' }, actor);
  });

  it('refuses to decide for a subject whose state was not loaded', () => {
    assert.throws(() => consent().decide(newSubject(), 'analytics.reporting'), rejectsWith('CONSENT_SUBJECT_NOT_LOADED'));
    assert.throws(() => consent().allowedPurposes(newSubject(), ['analytics.reporting']), rejectsWith('CONSENT_SUBJECT_NOT_LOADED'));
  });

  it('allows a purpose once consent is given, with a receipt and ledger entries under the current notice', async () => {
    const subject = newSubject();
    const result = await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'fairness_audit', state: 'given' }], banner, actor);
    assert.equal(result.entries.length, 2);
    assert.deepEqual(result.rejected, []);
    assert.equal(result.gpcHonoured, false);
    assert.match(result.receipt, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const notice = consent().currentNotice();
    for (const entry of result.entries) {
      assert.equal(entry.noticeVersion, notice.version);
      assert.equal(entry.noticeHash, notice.hash);
      assert.equal(entry.receiptId, result.receiptId);
      assert.equal(entry.mechanism, 'banner_save');
      assert.equal(entry.source, 'https://shop.example/');
    }
    // The write updated the cache: no load needed.
    assert.deepEqual(consent().decide(subject, 'analytics.reporting'), { allowed: true, basis: 'consent', reason: 'given', explicit: false });
    assert.deepEqual(consent().decide(subject, 'fairness_audit'), { allowed: true, basis: 'consent', reason: 'given', explicit: true });
    assert.equal(consent().decide(subject, 'personalize.profiling').reason, 'no_record');
  });

  it('stops processing for a purpose the moment consent is withdrawn', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'personalize.profiling', state: 'given' }], banner, actor);
    await consent().load([subject]);
    assert.equal(consent().decide(subject, 'personalize.profiling').allowed, true);
    await consent().record(subject, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], { mechanism: 'privacy_center' }, actor);
    assert.deepEqual(consent().decide(subject, 'personalize.profiling'), { allowed: false, basis: null, reason: 'withdrawn', explicit: false });
    const { receiptId } = await consent().withdrawAll(subject, { mechanism: 'privacy_center' }, actor);
    assert.ok(receiptId);
    for (const p of consent().purposes().filter((p) => p.basis === 'consent')) assert.equal(consent().decide(subject, p.key).reason, 'withdrawn', p.key);
    assert.equal(consent().decide(subject, 'essential.service.operations').allowed, true);
  });

  it('allows contract and legal-obligation purposes without a record and will not record a refusal of them', async () => {
    const subject = newSubject();
    await consent().load([subject]);
    assert.deepEqual(consent().decide(subject, 'essential.service.operations'), { allowed: true, basis: 'contract', reason: 'contract', explicit: false });
    assert.equal(consent().decide(subject, 'essential.legal_obligation').basis, 'legal_obligation');
    await assert.rejects(consent().record(subject, [{ purpose: 'essential.service.operations', state: 'refused' }], banner, actor), rejectsWith('CONSENT_BASIS_NOT_CONSENT'));
    await assert.rejects(consent().record(subject, [{ purpose: 'essential.legal_obligation', state: 'withdrawn' }], banner, actor), rejectsWith('CONSENT_BASIS_NOT_CONSENT'));
    assert.deepEqual(await consent().history(subject), []);
  });

  it('allows a legitimate-interest purpose until the subject objects', async () => {
    const subject = newSubject();
    await consent().load([subject]);
    assert.deepEqual(consent().decide(subject, 'essential.fraud_detection'), { allowed: true, basis: 'legitimate_interests', reason: 'legitimate_interests', explicit: false });
    await consent().record(subject, [{ purpose: 'essential.fraud_detection', state: 'refused' }], { mechanism: 'privacy_center' }, actor);
    assert.deepEqual(consent().decide(subject, 'essential.fraud_detection'), { allowed: false, basis: null, reason: 'objected', explicit: false });
  });

  it('rejects unknown purposes, duplicate changes, reserved mechanisms and unknown notice versions, recording nothing', async () => {
    const subject = newSubject();
    await assert.rejects(consent().record(subject, [{ purpose: 'no.such.purpose', state: 'given' }], banner, actor), rejectsWith('CONSENT_PURPOSE_UNKNOWN'));
    await assert.rejects(
      consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'analytics.reporting', state: 'refused' }], banner, actor),
      rejectsWith('CONSENT_CHANGE_INVALID'),
    );
    await assert.rejects(consent().record(subject, [], banner, actor), rejectsWith('CONSENT_CHANGE_INVALID'));
    await assert.rejects(consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'merge' as never }, actor), rejectsWith('CONSENT_CHANGE_INVALID'));
    await assert.rejects(consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { ...banner, noticeVersion: 999 }, actor), rejectsWith('CONSENT_NOTICE_UNKNOWN'));
    await assert.rejects(consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { ...banner, jurisdiction: 'california' }, actor), rejectsWith('CONSENT_CHANGE_INVALID'));
    assert.deepEqual(await consent().history(subject), []);
  });

  it('records the valid changes of a request and lists every invalid one in rejected with its own code', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'personalize.profiling', state: 'given' }], banner, actor);
    const result = await consent().record(
      subject,
      [
        { purpose: 'no.such.purpose', state: 'refused' },
        { purpose: 'personalize.profiling', state: 'withdrawn' },
        { purpose: 'essential.service.operations', state: 'refused' },
        { purpose: 'other.unknown.purpose', state: 'given' },
      ],
      { mechanism: 'privacy_center' },
      actor,
    );
    assert.deepEqual(result.entries.map((e) => [e.purpose, e.state]), [['personalize.profiling', 'withdrawn']]);
    assert.deepEqual(result.rejected, [
      { purpose: 'no.such.purpose', code: 'CONSENT_PURPOSE_UNKNOWN' },
      { purpose: 'essential.service.operations', code: 'CONSENT_BASIS_NOT_CONSENT' },
      { purpose: 'other.unknown.purpose', code: 'CONSENT_PURPOSE_UNKNOWN' },
    ]);
    assert.equal(consent().decide(subject, 'personalize.profiling').reason, 'withdrawn', 'the withdrawal is not lost');
    // The receipt covers what was recorded, and only that.
    const payload = (await consent().verifyReceipt(result.receipt)) as { services: { purposes: { purpose: string; state: string }[] }[] };
    assert.deepEqual(payload.services[0]?.purposes.map((p) => [p.purpose, p.state]), [['personalize.profiling', 'withdrawn']]);
    const audited = (await ctx.kernel.audit.list({ subject: consent().pseudonym(subject), action: 'consent.record', limit: 10 })).at(-1);
    assert.equal(JSON.parse(audited?.details ?? '{}').rejected, 3);
  });

  it('fails a request none of whose changes can be recorded with the first code, naming every rejected purpose', async () => {
    const subject = newSubject();
    const changes = [{ purpose: 'no.such.purpose', state: 'refused' as const }, { purpose: 'essential.service.operations', state: 'refused' as const }];
    await assert.rejects(consent().record(subject, changes, banner, actor), (error: unknown) => {
      assert.ok(isCandorError(error, 'CONSENT_PURPOSE_UNKNOWN'));
      assert.deepEqual(error.details, {
        purposes: ['no.such.purpose', 'essential.service.operations'],
        rejected: [{ purpose: 'no.such.purpose', code: 'CONSENT_PURPOSE_UNKNOWN' }, { purpose: 'essential.service.operations', code: 'CONSENT_BASIS_NOT_CONSENT' }],
      });
      return true;
    });
    await assert.rejects(consent().checkChanges(changes, {}), rejectsWith('CONSENT_PURPOSE_UNKNOWN'));
    assert.deepEqual(await consent().checkChanges([...changes, { purpose: 'analytics.reporting', state: 'given' }], {}), [
      { purpose: 'no.such.purpose', code: 'CONSENT_PURPOSE_UNKNOWN' },
      { purpose: 'essential.service.operations', code: 'CONSENT_BASIS_NOT_CONSENT' },
    ]);
    assert.deepEqual(await consent().history(subject), []);
    // With a GPC signal, the signal alone is recorded (its own receipt), and the refusal says so.
    let receiptId: unknown;
    await assert.rejects(consent().record(subject, changes, { ...banner, gpc: true }, actor), (error: unknown) => {
      assert.ok(isCandorError(error, 'CONSENT_PURPOSE_UNKNOWN'));
      assert.equal(error.details?.gpcHonoured, true);
      receiptId = error.details?.receiptId;
      return true;
    });
    const history = await consent().history(subject);
    assert.deepEqual(history.map((e) => [e.purpose, e.state, e.mechanism, e.gpc]).sort(), [
      ['marketing.advertising.third_party.targeted', 'refused', 'gpc', true],
      ['third_party_sharing', 'refused', 'gpc', true],
    ]);
    assert.ok(history.every((e) => e.receiptId === receiptId));
  });

  it('treats a given consent as expired after the configured months, before and after expireDue writes the entry', async () => {
    const subject = newSubject();
    const { entries } = await consent().record(subject, [{ purpose: 'marketing.communications.email', state: 'given' }], banner, actor);
    const givenAt = Date.parse(entries[0]?.at as string);
    const months = ctx.kernel.config.consentExpiryMonths;
    assert.equal(months, 13);
    const expiresAt = addMonths(givenAt, months);
    assert.equal(consent().decide(subject, 'marketing.communications.email', new Date(expiresAt - 1)).allowed, true);
    assert.deepEqual(consent().decide(subject, 'marketing.communications.email', new Date(expiresAt)), { allowed: false, basis: null, reason: 'expired', explicit: false });
    const state = await consent().state(subject, new Date(expiresAt + 86_400_000));
    assert.equal(state['marketing.communications.email']?.state, 'expired');
    assert.equal(state['marketing.communications.email']?.expiresAt, new Date(expiresAt).toISOString());

    assert.equal(await consent().expireDue(new Date(expiresAt - 60_000)), 0, 'nothing is due a minute early');
    const later = new Date(expiresAt + 60_000);
    assert.ok((await consent().expireDue(later)) >= 1);
    assert.equal(await consent().expireDue(later), 0, 'expiring again writes nothing');
    const last = (await consent().history(subject)).at(-1);
    assert.equal(last?.state, 'expired');
    assert.equal(last?.mechanism, 'expiry');
    // The expiry has a signed receipt of its own, which the person can fetch and anyone can verify.
    assert.ok(last?.receiptId);
    const stored = await consent().receipt(last.receiptId, [subject]);
    assert.equal(stored.mechanism, 'expiry');
    const payload = await consent().verifyReceipt(stored.receipt);
    assert.equal(JSON.stringify(payload).includes('"expired"'), true);
    assert.equal(consent().decide(subject, 'marketing.communications.email', new Date(givenAt + 1000)).reason, 'expired');
    const audited = await ctx.kernel.audit.list({ subject: consent().pseudonym(subject), action: 'consent.expire', limit: 10 });
    assert.deepEqual(audited.map((e) => [e.actor, e.details]), [['system', JSON.stringify({ entries: 1, expiryMonths: 13 })]]);
    await consent().record(subject, [{ purpose: 'marketing.communications.email', state: 'given' }], banner, actor);
    assert.equal(consent().decide(subject, 'marketing.communications.email').allowed, true, 'consent given again counts');
  });

  it('keeps a withdrawal in force in memory from before its commit, also against a read of the database meanwhile', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], banner, actor);
    const raw = ctx.kernel.storage.raw;
    const original = raw.transaction.bind(raw);
    let beforeCommit: string[] | undefined;
    raw.transaction = async (fn) =>
      original(async (tx) => {
        const out = await fn(tx);
        // Between the change's writes and its commit: a read of the person's state from the database (on PostgreSQL
        // another connection, which still sees the consent; on SQLite it waits for the commit).
        const read = consent().state(subject);
        if (dialect === 'postgres') await read;
        else void read.catch(() => undefined);
        beforeCommit = consent().allowedPurposes(subject, ['analytics.reporting']);
        return out;
      });
    try {
      await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { ...banner, mechanism: 'privacy_center' }, actor);
    } finally {
      raw.transaction = original;
    }
    assert.deepEqual(beforeCommit, []);
    assert.deepEqual(consent().allowedPurposes(subject, ['analytics.reporting']), []);
  });

  it('requires renewal after a material notice change, but not after a change of wording', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'marketing.communications.email', state: 'given' }], banner, actor);
    const before = consent().currentNotice();

    const reworded = await consent().publishNotice({ text: `${before.text}\n\nReworded.`, purposes: before.purposes }, actor);
    assert.deepEqual({ version: reworded.version, material: reworded.material, renewalRequired: reworded.renewalRequired }, { version: before.version + 1, material: false, renewalRequired: [] });
    assert.equal(consent().decide(subject, 'analytics.reporting').allowed, true);
    const again = await consent().publishNotice({ text: `${before.text}\n\nReworded.`, purposes: before.purposes }, actor);
    assert.equal(again.version, reworded.version, 'publishing the same content again is not a new version');

    // A narrower category under one already listed is no widening.
    const narrower = before.purposes.map((p) => (p.purpose === 'essential.legal_obligation' ? { ...p, categories: [...p.categories, 'user.contact.address.city'] } : p));
    assert.equal((await consent().publishNotice({ text: 'Narrower.', purposes: narrower }, actor)).material, false);

    const widened = narrower.map((p) => (p.purpose === 'analytics.reporting' ? { ...p, categories: [...p.categories, 'user.contact.email'] } : p));
    const material = await consent().publishNotice({ text: 'Widened.', purposes: widened }, actor);
    assert.equal(material.material, true);
    assert.deepEqual(material.renewalRequired, ['analytics.reporting']);
    assert.equal(material.created, true);
    // Published again (a retry after a timeout): no new version, answered as it was published.
    const retried = await consent().publishNotice({ text: 'Widened.', purposes: widened }, actor);
    assert.deepEqual(retried, { ...material, created: false });
    assert.deepEqual(consent().decide(subject, 'analytics.reporting'), { allowed: false, basis: null, reason: 'renewal_required', explicit: false });
    assert.equal(consent().decide(subject, 'marketing.communications.email').allowed, true);
    const state = await consent().state(subject);
    assert.equal(state['analytics.reporting']?.needsRenewal, true);
    assert.equal(state['marketing.communications.email']?.needsRenewal, false);

    await assert.rejects(consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { ...banner, noticeVersion: before.version }, actor), rejectsWith('CONSENT_NOTICE_OUTDATED'));
    assert.equal(consent().decide(subject, 'analytics.reporting').reason, 'renewal_required', 'consent under the old notice does not renew');
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { ...banner, noticeVersion: material.version }, actor);
    assert.equal(consent().decide(subject, 'analytics.reporting').allowed, true);
    assert.equal((await consent().state(subject))['analytics.reporting']?.needsRenewal, false);

    // A later notice that drops a purpose: consent to it is refused under that notice, naming the version in force.
    const dropped = await consent().publishNotice({ text: 'Without SMS.', purposes: widened.filter((p) => p.purpose !== 'marketing.communications.sms') }, actor);
    const sms = newSubject();
    await assert.rejects(consent().record(sms, [{ purpose: 'marketing.communications.sms', state: 'given' }], banner, actor), (error) => rejectsWith('CONSENT_PURPOSE_NOT_IN_NOTICE')(error) && (error as { details?: Record<string, unknown> }).details?.currentNoticeVersion === dropped.version);
    await consent().publishNotice({ text: 'Widened.', purposes: widened }, actor);

    await assert.rejects(consent().publishNotice({ text: 'x', purposes: [{ purpose: 'analytics.reporting', categories: ['user.no_such_category'] }] }, actor), rejectsWith('CONSENT_NOTICE_INVALID'));
    await assert.rejects(consent().publishNotice({ text: 'x', purposes: [{ purpose: 'no.such.purpose', categories: ['user.contact.email'] }] }, actor), rejectsWith('CONSENT_NOTICE_INVALID'));
  });

  it('honours GPC as an opt-out of sale, sharing and targeted advertising, once per subject', async () => {
    const device = newSubject();
    const profile = newSubject();
    await consent().record(profile, [{ purpose: SALE, state: 'given' }, { purpose: 'analytics.reporting', state: 'given' }], banner, actor);
    const result = await consent().recordGpc([device, profile], { source: 'https://shop.example/' }, actor);
    assert.ok(result);
    assert.equal(result.entries.length, 4, 'two purposes for each of two subjects');
    assert.ok(result.entries.every((e) => e.gpc && e.state === 'refused' && e.mechanism === 'gpc'));
    await consent().load([device, profile]);
    for (const subject of [device, profile]) {
      assert.equal(consent().decide(subject, SALE).reason, 'refused');
      assert.equal(consent().decide(subject, TARGETED).reason, 'refused');
    }
    assert.equal(consent().decide(profile, 'analytics.reporting').allowed, true, 'other purposes are untouched');
    assert.equal(await consent().recordGpc([device, profile], {}, actor), undefined, 'nothing to write the second time');
    const state = await consent().state(profile);
    assert.equal(state[SALE]?.gpc, true);
  });

  it('records an opt-in that conflicts with a GPC opt-out only with an explicit confirmation', async () => {
    const subject = newSubject();
    await consent().recordGpc([subject], {}, actor);
    const partial = await consent().record(subject, [{ purpose: SALE, state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], banner, actor);
    assert.deepEqual(partial.rejected, [{ purpose: SALE, code: 'CONSENT_GPC_CONFLICT' }]);
    assert.deepEqual(partial.entries.map((e) => e.purpose), ['personalize.profiling']);
    assert.equal(consent().decide(subject, SALE).allowed, false);
    assert.equal(consent().decide(subject, 'personalize.profiling').allowed, true);
    await assert.rejects(consent().record(subject, [{ purpose: SALE, state: 'given' }], banner, actor), rejectsWith('CONSENT_GPC_CONFLICT'));
    // Refusing again through the banner keeps the GPC opt-out in force.
    await consent().record(subject, [{ purpose: SALE, state: 'withdrawn' }], banner, actor);
    await assert.rejects(consent().record(subject, [{ purpose: SALE, state: 'given' }], banner, actor), rejectsWith('CONSENT_GPC_CONFLICT'));

    // A confirmation by a mechanism that is not the person's own deliberate choice (accept-all, an import, an API
    // call) is no confirmation.
    for (const mechanism of ['banner_accept', 'import', 'api'] as const) {
      await assert.rejects(consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism, confirmOverGpc: true }, actor), rejectsWith('CONSENT_GPC_CONFLICT'));
    }
    const confirmed = await consent().record(subject, [{ purpose: SALE, state: 'given' }], { mechanism: 'privacy_center', confirmOverGpc: true }, actor);
    assert.equal(confirmed.entries[0]?.gpcOverride, true);
    assert.equal(consent().decide(subject, SALE).allowed, true);
    // The same browser keeps sending the signal: the explicit confirmation stands.
    const repeated = await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { ...banner, gpc: true }, actor);
    assert.equal(repeated.gpcHonoured, true);
    assert.equal(consent().decide(subject, SALE).allowed, true);

    const fresh = newSubject();
    const withSignal = await consent().record(fresh, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: TARGETED, state: 'given' }], { ...banner, gpc: true }, actor);
    assert.equal(withSignal.gpcHonoured, true);
    assert.deepEqual(withSignal.rejected, [{ purpose: TARGETED, code: 'CONSENT_GPC_CONFLICT' }]);
    assert.equal(consent().decide(fresh, TARGETED).reason, 'refused');
    assert.equal(consent().decide(fresh, SALE).reason, 'refused');
    assert.equal(consent().decide(fresh, 'analytics.reporting').allowed, true);

    // Not in the same call as the signal it would override: the confirmation must be separate.
    const same = newSubject();
    const together = await consent().record(same, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: SALE, state: 'given' }], { mechanism: 'privacy_center', gpc: true, confirmOverGpc: true }, actor);
    assert.deepEqual(together.rejected, [{ purpose: SALE, code: 'CONSENT_GPC_CONFLICT' }]);
    assert.equal(consent().decide(same, SALE).allowed, false);
  });

  it('accepts an opt-out notice as a lawful basis only in the jurisdictions listed for the purpose', async () => {
    const key = 'analytics.reporting.content_performance';
    const config: PurposeConfig = { key, basis: 'consent', saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: ['US-CA'], description: 'Campaign insights.' };
    await consent().setPurpose(config, actor);
    const current = consent().currentNotice();
    const { version } = await consent().publishNotice({ text: `${current.text}\n\nCampaign insights.`, purposes: [...current.purposes, { purpose: key, categories: ['user.behavior.browsing_history'] }] }, actor);

    const californian = newSubject();
    await consent().load([californian]);
    assert.equal(consent().decide(californian, key).reason, 'no_record', 'never silent: without the recorded notice there is no basis');
    const { entries } = await consent().recordOptOutNotice(californian, key, { jurisdiction: 'US-CA', noticeVersion: version, source: 'https://shop.example/' }, actor);
    assert.deepEqual([entries[0]?.basis, entries[0]?.mechanism, entries[0]?.jurisdiction], ['opt_out_notice', 'notice_opt_out', 'US-CA']);
    assert.deepEqual(consent().decide(californian, key), { allowed: true, basis: 'opt_out_notice', reason: 'opt_out_notice', explicit: false });

    const german = newSubject();
    await assert.rejects(consent().recordOptOutNotice(german, key, { jurisdiction: 'DE', noticeVersion: version }, actor), rejectsWith('CONSENT_OPT_OUT_NOT_ALLOWED'));
    await assert.rejects(consent().recordOptOutNotice(german, 'analytics.reporting', { jurisdiction: 'US-CA', noticeVersion: version }, actor), rejectsWith('CONSENT_OPT_OUT_NOT_ALLOWED'));

    await consent().record(californian, [{ purpose: key, state: 'refused' }], { mechanism: 'privacy_center' }, actor);
    assert.equal(consent().decide(californian, key).reason, 'refused');
    await assert.rejects(consent().recordOptOutNotice(californian, key, { jurisdiction: 'US-CA', noticeVersion: version }, actor), rejectsWith('CONSENT_ALREADY_OPTED_OUT'));

    const other = newSubject();
    await consent().recordOptOutNotice(other, key, { jurisdiction: 'US-CA', noticeVersion: version }, actor);
    await consent().setPurpose({ ...config, optOutJurisdictions: [] }, actor);
    assert.equal(consent().decide(other, key).reason, 'jurisdiction_not_opt_out', 'no longer a basis once the jurisdiction is removed');
    await assert.rejects(consent().setPurpose({ ...config, explicit: true }, actor), rejectsWith('CONSENT_PURPOSE_INVALID'));
    await assert.rejects(consent().setPurpose({ ...config, basis: 'contract', optOutJurisdictions: [], saleOrSharing: true }, actor), rejectsWith('CONSENT_PURPOSE_INVALID'));
    await assert.rejects(consent().setPurpose({ ...config, key: 'not.a.data_use' }, actor), rejectsWith('CONSENT_PURPOSE_INVALID'));
  });

  it('never lets an opt-out notice replace a consent the person gave that still counts', async () => {
    const purpose = consent().purpose('analytics.reporting');
    assert.ok(purpose);
    const version = consent().currentNotice().version;
    const meta = { jurisdiction: 'US-CA', noticeVersion: version };
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { ...banner, jurisdiction: 'US-CA' }, actor);
    await consent().setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, actor);
    try {
      const before = await consent().history(subject);
      const shown = await consent().recordOptOutNotice(subject, 'analytics.reporting', meta, actor);
      assert.deepEqual(shown.entries, []);
      assert.equal(shown.receipt, null);
      assert.equal(shown.receiptId, null);
      assert.deepEqual(shown.kept, [{ purpose: 'analytics.reporting', state: 'given', basis: 'consent', at: before[0]?.at }]);
      assert.deepEqual(await consent().history(subject), before, 'nothing written');
      assert.deepEqual(consent().decide(subject, 'analytics.reporting'), { allowed: true, basis: 'consent', reason: 'given', explicit: false });
      // The jurisdiction removed from the purpose again: the person's consent still stands.
      await consent().setPurpose(purpose, actor);
      assert.deepEqual(consent().decide(subject, 'analytics.reporting'), { allowed: true, basis: 'consent', reason: 'given', explicit: false });
      await consent().setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, actor);
      // Once consent is withdrawn, the notice is refused as over any opt-out; someone without a record gets it recorded.
      await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { mechanism: 'privacy_center' }, actor);
      await assert.rejects(consent().recordOptOutNotice(subject, 'analytics.reporting', meta, actor), rejectsWith('CONSENT_ALREADY_OPTED_OUT'));
      const other = newSubject();
      const recorded = await consent().recordOptOutNotice(other, 'analytics.reporting', meta, actor);
      assert.deepEqual([recorded.entries[0]?.basis, recorded.kept, typeof recorded.receipt], ['opt_out_notice', [], 'string']);
      // A notice shown again over a notice is recorded again (it names the version shown).
      assert.equal((await consent().recordOptOutNotice(other, 'analytics.reporting', meta, actor)).entries.length, 1);
    } finally {
      await consent().setPurpose(purpose, actor);
    }
  });

  it('checks an opt-out notice without writing anything', async () => {
    const purpose = consent().purpose('analytics.reporting');
    assert.ok(purpose);
    const version = consent().currentNotice().version;
    await consent().setPurpose({ ...purpose, optOutJurisdictions: ['US-CA'] }, actor);
    try {
      await consent().checkOptOutNotice('analytics.reporting', { jurisdiction: 'US-CA', noticeVersion: version });
      await assert.rejects(consent().checkOptOutNotice('foo.bar', { jurisdiction: 'US-CA', noticeVersion: version }), rejectsWith('CONSENT_PURPOSE_UNKNOWN'));
      await assert.rejects(consent().checkOptOutNotice('analytics.reporting', { jurisdiction: 'DE', noticeVersion: version }), rejectsWith('CONSENT_OPT_OUT_NOT_ALLOWED'));
      await assert.rejects(consent().checkOptOutNotice('analytics.reporting', { jurisdiction: 'US-CA', noticeVersion: version + 100 }), rejectsWith('CONSENT_NOTICE_UNKNOWN'));
    } finally {
      await consent().setPurpose(purpose, actor);
    }
  });

  it('follows purposes and notices changed by another process with refreshConfigurationIfChanged', async () => {
    const key = 'analytics.reporting.ad_performance';
    const config: PurposeConfig = { key, basis: 'legitimate_interests', saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: 'How campaigns perform.' };
    await consent().setPurpose(config, actor);
    const subject = newSubject();
    await consent().load([subject]);
    assert.equal(consent().decide(subject, key).allowed, true);
    const other = await openKernel(ctx.env.config);
    try {
      await consent().refreshConfigurationIfChanged();
      // Another process makes the purpose rest on consent: this subject gave none.
      await other.consent.setPurpose({ ...config, basis: 'consent' }, actor);
    } finally {
      await other.close();
    }
    const deadline = Date.now() + 3000;
    while (consent().purpose(key)?.basis !== 'consent' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      await consent().refreshConfigurationIfChanged();
    }
    assert.equal(consent().purpose(key)?.basis, 'consent');
    assert.equal(consent().decide(subject, key).allowed, false);
  });

  it('merges subjects: refusals and objections win, consents do not spread, a GPC opt-out spreads', async () => {
    const from = newSubject();
    const into = newSubject();
    await consent().record(from, [
      { purpose: 'analytics.reporting', state: 'refused' },
      { purpose: 'personalize.profiling', state: 'given' },
      { purpose: 'essential.fraud_detection', state: 'refused' },
    ], banner, actor);
    await consent().recordGpc([from], {}, actor);
    await consent().record(into, [
      { purpose: 'analytics.reporting', state: 'given' },
      { purpose: 'marketing.communications.email', state: 'given' },
      { purpose: SALE, state: 'given' },
    ], banner, actor);

    const merged = await consent().mergeSubjects(from, into, actor);
    assert.ok(merged.receipt);
    assert.ok(merged.entries.every((e) => e.mechanism === 'merge' && e.subject === consent().pseudonym(into)));
    await consent().load([into]);
    assert.equal(consent().decide(into, 'analytics.reporting').reason, 'refused');
    assert.equal(consent().decide(into, 'personalize.profiling').reason, 'no_record', 'no record stays no record');
    assert.equal(consent().decide(into, 'marketing.communications.email').allowed, true);
    assert.equal(consent().decide(into, 'essential.fraud_detection').reason, 'objected');
    assert.equal(consent().decide(into, SALE).reason, 'refused', 'the GPC opt-out spreads over an earlier consent');
    assert.equal(consent().decide(into, TARGETED).reason, 'refused');
    assert.equal((await consent().state(into))[SALE]?.gpc, true);
    assert.equal((await consent().mergeSubjects(from, into, actor)).entries.length, 0, 'merging again changes nothing');
    await assert.rejects(consent().mergeSubjects(into, into, actor), rejectsWith('CONSENT_CHANGE_INVALID'));
  });

  it("marks a purpose sensitive in a receipt when a category it covers is, as the receipt's own flag does", async () => {
    // Reporting is not explicit, but its notice describes survey answers (private content, a sensitive category).
    const { receipt } = await consent().record(newSubject(), [{ purpose: 'analytics.reporting', state: 'given' }], banner, actor);
    const payload = decodeJwt(receipt) as { sensitive: boolean; spiCat: string[]; services: { purposes: { sensitive: boolean; piiCategory: string[] }[] }[] };
    const [item] = payload.services[0]?.purposes ?? [];
    assert.equal(payload.sensitive, true);
    assert.ok(payload.spiCat.length > 0 && payload.spiCat.every((c) => item?.piiCategory.includes(c)), JSON.stringify(payload.spiCat));
    assert.equal(item?.sensitive, true);
  });

  it('issues receipts that verify with the published JWKS, naming the subject only by pseudonym', async () => {
    const subject = newSubject();
    const { receipt, receiptId } = await consent().record(subject, [{ purpose: 'fairness_audit', state: 'given' }], { ...banner, jurisdiction: 'DE' }, actor);
    const jwks = await consent().jwks();
    assert.ok(jwks.keys.length >= 1);
    assert.ok(jwks.keys.every((k) => k.kty === 'OKP' && k.crv === 'Ed25519' && !('d' in k)));
    const header = decodeProtectedHeader(receipt);
    assert.equal(header.alg, 'EdDSA');
    assert.ok(jwks.keys.some((k) => k.kid === header.kid));
    const { payload } = await jwtVerify(receipt, createLocalJWKSet(jwks));
    assert.equal(payload.jti, receiptId);
    assert.equal(payload.consentReceiptID, receiptId);
    assert.equal(payload.piiPrincipalId, consent().pseudonym(subject));
    assert.ok(!receipt.includes(Buffer.from(subject).toString('base64url').slice(0, 20)));
    assert.ok(!JSON.stringify(payload).includes(subject), 'the plain subject id is never in a receipt');
    assert.equal(payload.jurisdiction, 'DE');
    assert.equal(payload.collectionMethod, 'banner_save');
    assert.deepEqual(payload.piiControllers, [{ name: 'Candor deployment', piiController: 'Candor deployment', contact: null, email: null, onBehalf: false }]);
    assert.equal(payload.sensitive, true);
    const [service] = payload.services as { purposes: Record<string, unknown>[] }[];
    const [item] = service?.purposes ?? [];
    assert.equal(item?.purpose, 'fairness_audit');
    assert.equal(item?.lawfulBasis, 'consent');
    assert.equal(item?.consentType, 'explicit');
    assert.equal(item?.state, 'given');
    assert.deepEqual(item?.piiCategory, ['user.demographic.age_range', 'user.demographic.gender', 'user.demographic.race_ethnicity', 'user.health_and_medical']);
    assert.deepEqual(await consent().verifyReceipt(receipt), payload);

    const [h, body, signature] = receipt.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...payload, piiPrincipalId: 'someone-else' })).toString('base64url');
    await assert.rejects(jwtVerify(`${h}.${forged}.${signature}`, createLocalJWKSet(jwks)));
    await assert.rejects(consent().verifyReceipt(`${h}.${forged}.${signature}`), rejectsWith('CONSENT_RECEIPT_INVALID'));
    await assert.rejects(consent().verifyReceipt(`${h}.${body}.${signature.slice(0, -4)}AAAA`), rejectsWith('CONSENT_RECEIPT_INVALID'));
    await assert.rejects(consent().verifyReceipt('not a receipt'), rejectsWith('CONSENT_RECEIPT_INVALID'));
  });

  it('keeps the ledger and published notices append-only at the database', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], banner, actor);
    const db = ctx.kernel.storage.db;
    await assert.rejects(sql`UPDATE consent_ledger SET state = 'given'`.execute(db), /append-only/);
    await assert.rejects(sql`DELETE FROM consent_ledger`.execute(db), /append-only/);
    await assert.rejects(sql`UPDATE consent_notices SET text = 'changed'`.execute(db), /append-only/);
    if (dialect === 'postgres') await assert.rejects(sql`TRUNCATE consent_ledger`.execute(db), /append-only/);
  });

  it('stores the subject pseudonym, never the plain id, in the ledger, current state and audit log', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], banner, actor);
    const db = ctx.kernel.storage.db;
    const pseudonym = ctx.kernel.keyring.pseudonym('subject', subject);
    for (const table of ['consent_ledger', 'consent_current', 'audit_log']) {
      const plain = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM ${sql.table(table)} WHERE subject = ${subject}`.execute(db);
      assert.equal(Number(plain.rows[0]?.n), 0, table);
      const pseudo = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM ${sql.table(table)} WHERE subject = ${pseudonym}`.execute(db);
      assert.ok(Number(pseudo.rows[0]?.n) >= 1, table);
    }
    const audited = await ctx.kernel.audit.list({ subject: pseudonym, limit: 10 });
    assert.deepEqual(audited.map((e) => [e.action, e.purpose, e.actor]), [['consent.record', 'analytics.reporting', 'cli']]);
    assert.ok(!String(audited[0]?.details).includes(subject));
  });

  it('audits GPC signals, merges, notices and purpose changes', async () => {
    const subject = newSubject();
    await consent().recordGpc([subject], {}, actor);
    const [entry] = await ctx.kernel.audit.list({ subject: consent().pseudonym(subject), limit: 10 });
    assert.equal(entry?.action, 'consent.gpc');
    assert.equal(entry?.purpose, 'essential.legal_obligation', 'several purposes: the accountability purpose');
    for (const action of ['consent.merge', 'consent.notice.publish', 'consent.purpose.set']) {
      assert.ok((await ctx.kernel.audit.list({ action, limit: 1 })).length === 1, action);
    }
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('reads a subject again at the next load once another process changed its consent, however recent the cached state', async () => {
    const subject = newSubject();
    const { storage, audit, keyring, taxonomy } = ctx.kernel;
    // The default refresh interval (1 s) applies only where other processes' commits cannot be heard.
    const mine = await Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13 });
    await mine.record(subject, [{ purpose: 'personalize.content.profiling', state: 'given' }], banner, actor);
    await mine.load([subject]);
    const began = Date.now();
    // Another process (the CLI, a second server) withdraws: a second connection to the same database.
    const elsewhere = await openStorage(ctx.env.config);
    try {
      const theirs = await Consent.open({ storage: elsewhere, audit, keyring, taxonomy, expiryMonths: 13 });
      await theirs.record(subject, [{ purpose: 'personalize.content.profiling', state: 'withdrawn' }], { mechanism: 'api' }, actor);
    } finally {
      await elsewhere.close();
    }
    assert.equal(mine.decide(subject, 'personalize.content.profiling').allowed, true, 'answers from its cache until it loads again');
    // SQLite's data_version tells at once; PostgreSQL's notice arrives a moment after the commit.
    await mine.load([subject]);
    while (mine.decide(subject, 'personalize.content.profiling').allowed && Date.now() - began < 900) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      await mine.load([subject]);
    }
    assert.equal(mine.decide(subject, 'personalize.content.profiling').reason, 'withdrawn');
    assert.ok(Date.now() - began < 900, 'seen before the refresh interval would have read it again');
  });

  it('shares state with another Consent instance on the same database', async () => {
    const subject = newSubject();
    await consent().record(subject, [{ purpose: 'personalize.content.profiling', state: 'given' }], banner, actor);
    const { storage, audit, keyring, taxonomy } = ctx.kernel;
    const second = await Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13, refreshAfterMs: 0 });
    assert.deepEqual(second.purposes(), consent().purposes());
    assert.equal(second.currentNotice().version, consent().currentNotice().version);
    assert.deepEqual((await second.jwks()).keys.map((k) => k.kid), (await consent().jwks()).keys.map((k) => k.kid), 'the signing key is generated once');
    await second.load([subject]);
    assert.deepEqual(second.decide(subject, 'personalize.content.profiling'), consent().decide(subject, 'personalize.content.profiling'));
    const { receipt } = await second.record(subject, [{ purpose: 'personalize.content.profiling', state: 'withdrawn' }], { mechanism: 'api' }, actor);
    assert.ok(await consent().verifyReceipt(receipt), "one instance's receipts verify with the other's keys");
    // The kernel's instance answers from its cache until it reads again; a load after its refresh interval sees it.
    const third = await Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13, refreshAfterMs: 0 });
    await third.load([subject]);
    assert.equal(third.decide(subject, 'personalize.content.profiling').reason, 'withdrawn');
    await second.record(subject, [{ purpose: 'personalize.content.profiling', state: 'given' }], { mechanism: 'api' }, actor);
    await third.load([subject]);
    assert.equal(third.decide(subject, 'personalize.content.profiling').allowed, true);
    assert.deepEqual(
      (await third.history(subject)).map((e) => e.state),
      ['given', 'withdrawn', 'given'],
    );
    await third.forgetSubject(subject);
    assert.equal(third.isLoaded(subject), false);
  });

  it('keeps the cache in step with the database when changes to one subject run concurrently', async () => {
    const subject = newSubject();
    const states = ['given', 'withdrawn', 'given', 'refused', 'given', 'withdrawn', 'given', 'refused'] as const;
    await Promise.all([
      ...states.map((state) => consent().record(subject, [{ purpose: 'analytics.reporting', state }], { mechanism: 'api' }, actor)),
      consent().load([subject]),
      consent().recordGpc([subject], {}, actor),
    ]);
    const history = await consent().history(subject);
    assert.equal(history.filter((e) => e.purpose === 'analytics.reporting').at(-1)?.state, 'refused', 'changes of one subject commit in call order');
    const { storage, audit, keyring, taxonomy } = ctx.kernel;
    const fresh = await Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13 });
    await fresh.load([subject]);
    for (const purpose of ['analytics.reporting', SALE, TARGETED]) assert.deepEqual(consent().decide(subject, purpose), fresh.decide(subject, purpose), purpose);
  });

  it('loads up to 100 subjects with one query and answers every decision from memory', async () => {
    const { storage, audit, keyring, taxonomy } = ctx.kernel;
    let queries = 0;
    const counting: Storage = { ...storage, raw: { ...storage.raw, all: (text, params) => (queries++, storage.raw.all(text, params)) } };
    const instance = await Consent.open({ storage: counting, audit, keyring, taxonomy, expiryMonths: 13 });
    const subjects = Array.from({ length: 150 }, newSubject);
    await consent().record(subjects[7] as string, [{ purpose: 'analytics.reporting', state: 'given' }], banner, actor);
    queries = 0;
    await instance.load(subjects.slice(0, 100));
    assert.equal(queries, 1);
    await instance.load(subjects);
    assert.equal(queries, 2, 'only the 50 not loaded yet are read');
    await instance.load(subjects);
    assert.equal(queries, 2, 'subjects read within the refresh interval are not read again');
    assert.deepEqual(subjects.filter((s) => instance.decide(s, 'analytics.reporting').allowed), [subjects[7]]);
    assert.equal(queries, 2);
  });
});
