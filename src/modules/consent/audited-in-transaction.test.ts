import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { MIGRATIONS } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { migrateToLatest, openStorage } from '../../storage/index.ts';
import { AuditLog } from '../audit/index.ts';
import { Consent, type ConsentDeps, type PurposeConfig } from './index.ts';

/** As failsWhileAuditFails, with the queued append failing too: however the change appends, it must not be made. */
async function failsWhileNoAuditIsWritten(audit: AuditLog, change: () => Promise<unknown>): Promise<void> {
  const append = audit.append.bind(audit);
  audit.append = () => Promise.reject(new Error('audit log unavailable'));
  try {
    await failsWhileAuditFails(audit, change);
  } finally {
    audit.append = append;
  }
}

describeEachDialect('consent: changes audited in their own transaction', (dialect) => {
  const ctx = useKernel(dialect);
  const entries = async (audit: AuditLog, action: string, resource?: string) =>
    (await audit.list({ action, limit: 1000 })).filter((e) => resource === undefined || e.resource === resource);
  /** Another instance on the same database: it sees what was committed, and only that. */
  const reopened = () => {
    const { storage, audit, keyring, taxonomy } = ctx.kernel;
    return Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13 });
  };

  it('seeds no purposes and no notice on a first open whose audit entries cannot be written', async () => {
    const env: TestEnvironment = await createEnvironment(dialect);
    const storage = await openStorage({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      await migrateToLatest(storage, MIGRATIONS);
      const audit = new AuditLog(storage);
      const deps: ConsentDeps = { storage, audit, keyring: ctx.kernel.keyring, taxonomy: ctx.kernel.taxonomy, expiryMonths: 13 };
      const count = async (table: string) => Number((await storage.raw.all<{ n: number }>(`select count(*) as n from ${table}`))[0]?.n);

      await failsWhileNoAuditIsWritten(audit, () => Consent.open(deps));
      assert.equal(await count('consent_purposes'), 0, 'no purpose seeded');
      assert.equal(await count('consent_notices'), 0, 'no notice seeded');
      assert.equal(await count('audit_log'), 0);

      const consent = await Consent.open(deps);
      assert.equal(consent.currentNotice().version, 1);
      const set = await entries(audit, 'consent.purpose.set');
      assert.deepEqual(set.map((e) => e.resource).sort(), consent.purposes().map((p) => `consent_purpose:${p.key}`).sort());
      assert.equal((await entries(audit, 'consent.notice.publish', 'consent_notice:1')).length, 1);
      assert.equal((await audit.verify()).ok, true);
    } finally {
      await storage.close();
      await env.cleanup();
    }
  });

  it('changes no purpose, here or in the database, when its audit entry cannot be written', async () => {
    const consent = ctx.kernel.consent;
    const reporting = consent.purpose('analytics.reporting') as PurposeConfig;
    const added: PurposeConfig = { key: 'marketing.advertising.profiling', basis: 'consent', saleOrSharing: false, targetedAdvertising: false, explicit: false, optOutJurisdictions: [], description: 'Profiling to choose the ads we show you.' };
    const before = await entries(ctx.kernel.audit, 'consent.purpose.set');

    await failsWhileNoAuditIsWritten(ctx.kernel.audit, () => consent.setPurpose({ ...reporting, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR));
    await failsWhileNoAuditIsWritten(ctx.kernel.audit, () => consent.setPurpose(added, CLI_ACTOR));
    assert.deepEqual(consent.purpose('analytics.reporting'), reporting);
    assert.equal(consent.purpose(added.key), undefined);
    const noticeVersion = consent.currentNotice().version;
    await assert.rejects(consent.checkOptOutNotice('analytics.reporting', { jurisdiction: 'US-CA', noticeVersion }), (e) => isCandorError(e, 'CONSENT_OPT_OUT_NOT_ALLOWED'));
    const other = await reopened();
    assert.deepEqual(other.purpose('analytics.reporting'), reporting, 'nothing committed');
    assert.equal(other.purpose(added.key), undefined, 'nothing committed');
    assert.equal((await entries(ctx.kernel.audit, 'consent.purpose.set')).length, before.length);

    await consent.setPurpose({ ...reporting, optOutJurisdictions: ['US-CA'] }, CLI_ACTOR);
    await consent.setPurpose(added, CLI_ACTOR);
    assert.deepEqual(consent.purpose('analytics.reporting')?.optOutJurisdictions, ['US-CA']);
    assert.equal((await entries(ctx.kernel.audit, 'consent.purpose.set', 'consent_purpose:analytics.reporting')).length, 2, 'seeded, then changed once');
    assert.equal((await entries(ctx.kernel.audit, 'consent.purpose.set', `consent_purpose:${added.key}`)).length, 1);
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('publishes no notice version, here or in the database, when its audit entry cannot be written', async () => {
    const consent = ctx.kernel.consent;
    const current = consent.currentNotice();
    const input = { text: `${current.text} Reworded.`, purposes: current.purposes };
    const next = `consent_notice:${current.version + 1}`;

    await failsWhileNoAuditIsWritten(ctx.kernel.audit, () => consent.publishNotice(input, CLI_ACTOR));
    assert.deepEqual(consent.currentNotice(), current);
    assert.deepEqual((await reopened()).currentNotice(), current, 'nothing committed');
    assert.equal((await entries(ctx.kernel.audit, 'consent.notice.publish', next)).length, 0);

    const published = await consent.publishNotice(input, CLI_ACTOR);
    assert.equal(published.version, current.version + 1);
    assert.equal(consent.currentNotice().version, published.version);
    const [entry] = await entries(ctx.kernel.audit, 'consent.notice.publish', next);
    assert.deepEqual(JSON.parse(entry?.details ?? 'null'), { version: published.version, material: false, renewalRequired: [] });
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('audits a merge that carries over only a restriction, in its transaction', async () => {
    const consent = ctx.kernel.consent;
    const [from, into] = [`user-${randomUUID()}`, `user-${randomUUID()}`];
    await consent.restrict([from], {}, CLI_ACTOR);
    const merges = async () => (await entries(ctx.kernel.audit, 'consent.merge')).filter((e) => e.subject === consent.pseudonym(into));

    await failsWhileNoAuditIsWritten(ctx.kernel.audit, () => consent.mergeSubjects(from, into, CLI_ACTOR));
    assert.equal((await consent.restrictions(into)).restricted, false, 'nothing committed');

    const merged = await consent.mergeSubjects(from, into, CLI_ACTOR);
    assert.deepEqual([merged.entries.length, merged.receiptId], [0, null]);
    assert.equal((await consent.restrictions(into)).restricted, true);
    const [entry, ...more] = await merges();
    assert.equal(more.length, 0);
    assert.deepEqual(JSON.parse(entry?.details ?? 'null'), { entries: 0, from: consent.pseudonym(from), restricted: true });
  });
});
