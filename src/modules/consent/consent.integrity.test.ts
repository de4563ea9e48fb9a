import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isUniqueViolation } from '../../storage/index.ts';

const actor = CLI_ACTOR;
const TARGETED = 'marketing.advertising.third_party.targeted';

describeEachDialect('consent integrity', (dialect) => {
  const ctx = useKernel(dialect);
  const consent = () => ctx.kernel.consent;
  const db = () => ctx.kernel.storage.db as Kysely<object>;
  const newSubject = () => `user-${randomUUID()}`;
  const count = async (table: string, where: ReturnType<typeof sql>) =>
    Number((await sql<{ n: number }>`SELECT count(*) AS n FROM ${sql.table(table)} WHERE ${where}`.execute(db())).rows[0]?.n);

  /** Makes every insert into audit_log fail until the returned function is called. */
  async function breakAudit(): Promise<() => Promise<void>> {
    if (dialect === 'sqlite') {
      await sql`CREATE TRIGGER test_audit_fails BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected failure'); END`.execute(db());
      return async () => void (await sql`DROP TRIGGER test_audit_fails`.execute(db()));
    }
    await sql`CREATE FUNCTION test_audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`.execute(db());
    await sql`CREATE TRIGGER test_audit_fails BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION test_audit_fails()`.execute(db());
    return async () => {
      await sql`DROP TRIGGER test_audit_fails ON audit_log`.execute(db());
      await sql`DROP FUNCTION test_audit_fails()`.execute(db());
    };
  }

  it('keeps an opt-in confirmed over GPC when the same consent is saved again while GPC is sent', async () => {
    const subject = newSubject();
    await consent().recordGpc([subject], {}, actor);
    const confirmed = await consent().record(subject, [{ purpose: TARGETED, state: 'given' }], { mechanism: 'privacy_center', confirmOverGpc: true }, actor);
    assert.equal(confirmed.entries[0]?.gpcOverride, true);
    // The banner saves the same choice again; the browser sends GPC as it always does.
    const saved = await consent().record(subject, [{ purpose: TARGETED, state: 'given' }], { mechanism: 'banner_save', gpc: true }, actor);
    assert.deepEqual(saved.entries.map((e) => [e.purpose, e.state, e.gpcOverride]), [[TARGETED, 'given', true]]);
    // The next GPC page view leaves the confirmed opt-in alone.
    await consent().recordGpc([subject], {}, actor);
    const state = await consent().state(subject);
    assert.equal(state[TARGETED]?.state, 'given');
    assert.equal(state[TARGETED]?.allowed, true);
  });

  it('refuses to overwrite a row of an append-only table by REPLACE or upsert, and stays a unique violation', async () => {
    await consent().record(newSubject(), [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, actor);
    const tables: [string, string, string][] = [
      ['consent_ledger', 'id', 'state'],
      ['consent_receipts', 'id', 'jws'],
      ['consent_notices', 'version', 'text'],
      ['audit_log', 'seq', 'actor'],
    ];
    for (const [table, key, column] of tables) {
      const row = (await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(table)} ORDER BY ${sql.ref(key)} LIMIT 1`.execute(db())).rows[0];
      assert.ok(row, table);
      const columns = Object.keys(row);
      const values = columns.map((c) => (c === column ? 'forged' : row[c]));
      const list = sql.join(columns.map((c) => sql.ref(c)));
      const params = sql.join(values.map((v) => sql`${v}`));
      const attempts = [
        sql`INSERT INTO ${sql.table(table)} (${list}) VALUES (${params}) ON CONFLICT (${sql.ref(key)}) DO UPDATE SET ${sql.ref(column)} = 'forged'`,
        sql`INSERT INTO ${sql.table(table)} (${list}) VALUES (${params})`,
        ...(dialect === 'sqlite' ? [sql`INSERT OR REPLACE INTO ${sql.table(table)} (${list}) VALUES (${params})`, sql`REPLACE INTO ${sql.table(table)} (${list}) VALUES (${params})`] : []),
      ];
      for (const attempt of attempts) await assert.rejects(attempt.execute(db()), `${table}: ${attempt.compile(db()).sql}`);
      // A plain insert of a key taken is still told as a unique violation (writers retry on it).
      await assert.rejects(attempts[1]!.execute(db()), (error) => isUniqueViolation(error));
      const after = (await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(table)} WHERE ${sql.ref(key)} = ${row[key]}`.execute(db())).rows;
      assert.deepEqual(after, [row], `${table} row unchanged`);
    }
  });

  it('writes a consent change and its audit entry together: an audit failure leaves neither', async () => {
    const subject = newSubject();
    const pseudonym = consent().pseudonym(subject);
    const repair = await breakAudit();
    try {
      await assert.rejects(consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save', gpc: true }, actor));
      await assert.rejects(consent().recordGpc([subject], {}, actor));
      await assert.rejects(consent().withdrawAll(subject, { mechanism: 'privacy_center' }, actor));
    } finally {
      await repair();
    }
    assert.equal(await count('consent_ledger', sql`subject = ${pseudonym}`), 0, 'no ledger entry without its audit entry');
    assert.equal(await count('consent_receipts', sql`subject = ${pseudonym}`), 0);
    assert.equal((await consent().state(subject))['analytics.reporting']?.allowed, false);

    const result = await consent().record(subject, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save', gpc: true }, actor);
    const audited = await ctx.kernel.audit.list({ subject: pseudonym, limit: 10 });
    assert.deepEqual(audited.map((e) => e.action), ['consent.gpc', 'consent.record']);
    assert.ok(audited.every((e) => e.resource === `consent_receipt:${result.receiptId}`));
    assert.equal((await ctx.kernel.audit.verify()).ok, true);
  });

  it('keeps one unbroken audit chain when changes, other appends and a second process write at once', async () => {
    // SQLite: a second connection in this very process would wait for the write lock blocking the thread that holds it.
    const other = dialect === 'postgres' ? await openKernel(ctx.env.config) : ctx.kernel;
    try {
      const subjects = Array.from({ length: 60 }, newSubject);
      await Promise.all([
        ...subjects.map((s, i) => (i % 2 === 0 ? consent() : other.consent).record(s, [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_save' }, actor)),
        ...subjects.map((s, i) => (i % 2 === 0 ? other.audit : ctx.kernel.audit).append({ actor: actor.id, role: actor.role, action: 'test.append', purpose: 'essential.legal_obligation', details: { i } })),
        ...subjects.map((s, i) => (i % 2 === 0 ? other.consent : consent()).recordGpc([s], {}, actor)),
      ]);
      for (const s of subjects) {
        const actions = (await ctx.kernel.audit.list({ subject: consent().pseudonym(s), limit: 10 })).map((e) => e.action).sort();
        assert.deepEqual(actions, ['consent.gpc', 'consent.record']);
      }
      assert.equal((await ctx.kernel.audit.verify()).ok, true);
    } finally {
      if (other !== ctx.kernel) await other.close();
    }
  });
});
