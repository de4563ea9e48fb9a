import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useUpgradedKernel } from '../../../test/support/kernel.ts';
import { SYSTEM_ACTOR } from '../../shared/actor.ts';
import { entryHash, GENESIS_HASH } from '../audit/index.ts';
import { DEFAULT_NOTICE_PURPOSES, DEFAULT_NOTICE_TEXT, DEFAULT_PURPOSES } from './defaults.ts';
import { noticeHash, normalizePurposes } from './notices.ts';

const DAY = 86_400_000;
const now = Date.now();
const t = (daysAgo: number) => new Date(now - daysAgo * DAY).toISOString();
// Seeded; personalize.content.limited made ordinary; made explicit again; every explicit purpose's description edited.
const SEEDED = t(100);
const ORDINARY = t(80);
const EXPLICIT_AGAIN = t(50);
const EDITED = t(20);

/**
 * What an older release left: the default purposes seeded (both explicit ones explicit), personalize.content.limited made
 * ordinary and explicit again, analytics.reporting made explicit at its last change, every explicit purpose's
 * description edited last; the audit log's consent.purpose.set entries as that code wrote them. `oldExplicitSince`:
 * the column exists and holds what the first release of migration 0094 set (the last change).
 */
async function seedOldRelease(db: Kysely<object>, oldExplicitSince: boolean): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows of tables the typed schema of this test does not declare
  const any = db as Kysely<any>;
  const explicitNow = new Set(['fairness_audit', 'personalize.content.limited', 'analytics.reporting']);
  await any
    .insertInto('consent_purposes')
    .values(
      DEFAULT_PURPOSES.map((p) => {
        const explicit = explicitNow.has(p.key);
        return {
          key: p.key,
          basis: p.basis,
          sale_or_sharing: p.saleOrSharing ? 1 : 0,
          targeted_advertising: p.targetedAdvertising ? 1 : 0,
          explicit: explicit ? 1 : 0,
          ...(oldExplicitSince ? { explicit_since: explicit ? EDITED : null } : {}),
          opt_out_jurisdictions: '[]',
          description: p.description,
          updated_at: explicit ? EDITED : SEEDED,
          updated_by: explicit ? 'admin' : SYSTEM_ACTOR.id,
        };
      }),
    )
    .execute();
  const purposes = normalizePurposes(DEFAULT_NOTICE_PURPOSES);
  await any
    .insertInto('consent_notices')
    .values({ version: 1, hash: noticeHash(DEFAULT_NOTICE_TEXT, purposes), text: DEFAULT_NOTICE_TEXT, purposes: JSON.stringify(purposes), material: 0, renewal_required: '[]', published_at: SEEDED, published_by: SYSTEM_ACTOR.id })
    .execute();
  const set = (key: string, at: string, explicit: boolean) => ({ at, action: 'consent.purpose.set', purpose: key, details: { basis: 'consent', saleOrSharing: false, targetedAdvertising: false, explicit, optOutJurisdictions: [] } });
  const events = [
    ...DEFAULT_PURPOSES.map((p) => ({ at: SEEDED, action: 'consent.purpose.set', purpose: p.key, details: { basis: p.basis, seeded: true } as Record<string, unknown> })),
    set('personalize.content.limited', ORDINARY, false),
    set('personalize.content.limited', EXPLICIT_AGAIN, true),
    set('personalize.content.limited', EDITED, true),
    set('fairness_audit', EDITED, true),
    set('analytics.reporting', EDITED, true),
  ];
  let prevHash = GENESIS_HASH;
  const rows = events.map((e, i) => {
    const partial = { seq: i + 1, at: e.at, actor: 'admin', role: 'owner', action: e.action, purpose: e.purpose, subject: null, resource: `consent_purpose:${e.purpose}`, outcome: 'success' as const, details: JSON.stringify(e.details), prevHash };
    const hash = entryHash(partial);
    prevHash = hash;
    return { seq: partial.seq, at: partial.at, actor: partial.actor, role: partial.role, action: partial.action, purpose: partial.purpose, subject: null, resource: partial.resource, outcome: partial.outcome, details: partial.details, prev_hash: partial.prevHash, hash };
  });
  await any.insertInto('audit_log').values(rows).execute();
}

describeEachDialect('explicit purposes after the upgrade', (dialect) => {
  for (const [title, before, oldColumn] of [
    ['upgraded by migration 0094', '0094_consent_purposes_explicit_since', false],
    ['repaired after the first release of migration 0094', '0106_consent_purposes_explicit_since_repair', true],
  ] as const) {
    describe(title, () => {
      const ctx = useUpgradedKernel(dialect, before, (db) => seedOldRelease(db, oldColumn));

      it('counts an explicit purpose from when it became explicit, not from its last edit', async () => {
        const rows = (await (ctx.kernel.storage.db as Kysely<{ consent_purposes: { key: string; explicit_since: string | null } }>)
          .selectFrom('consent_purposes')
          .select(['key', 'explicit_since'])
          .where('explicit_since', 'is not', null)
          .orderBy('key')
          .execute());
        assert.deepEqual(rows.map((r) => [r.key, r.explicit_since]), [
          ['analytics.reporting', EDITED],
          ['fairness_audit', SEEDED],
          ['personalize.content.limited', EXPLICIT_AGAIN],
        ]);
      });

      it('keeps consents given while the purpose was explicit, and asks again for one given before', async () => {
        const { consent, storage } = ctx.kernel;
        const subject = `user-upgrade-${dialect}`;
        const pseudonym = consent.pseudonym(subject);
        const given = t(70);
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a consent row as the old release wrote it
        const db = storage.db as Kysely<any>;
        for (const [i, purpose] of ['fairness_audit', 'personalize.content.limited'].entries()) {
          const row = { subject: pseudonym, purpose, state: 'given', basis: 'consent', notice_version: 1, mechanism: 'banner_save', jurisdiction: null, gpc: 0, gpc_override: 0, at: given };
          await db.insertInto('consent_ledger').values({ id: `ce_upgrade_${dialect}_${title.length}_${i}`, ...row, notice_hash: null, source: null, receipt_id: null }).execute();
          await db.insertInto('consent_current').values({ ...row, entry_id: `ce_upgrade_${dialect}_${title.length}_${i}` }).execute();
        }
        await consent.load([subject]);
        assert.deepEqual({ ...consent.decide(subject, 'fairness_audit') }, { allowed: true, basis: 'consent', reason: 'given', explicit: true });
        // Given while personalize.content.limited was an ordinary purpose: not an explicit consent.
        assert.equal(consent.decide(subject, 'personalize.content.limited').reason, 'renewal_required');
      });
    });
  }
});
