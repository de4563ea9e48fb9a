import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { intercepted, type TransactionHooks } from '../../../test/support/intercept.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

const actor = CLI_ACTOR;
const PURPOSES = [
  'analytics.reporting', 'analytics.reporting.campaign_insights', 'personalize.profiling', 'personalize.content.profiling', 'personalize.content.limited',
  'marketing.communications.email', 'marketing.communications.sms', 'fairness_audit',
];
const REVERSED = [...PURPOSES].reverse();
const banner = { mechanism: 'banner_save', noticeVersion: 1, jurisdiction: 'DE' } as const;

/** Every purpose set to `state`, in the order given. */
const all = (order: readonly string[], state: 'given' | 'withdrawn') => order.map((purpose) => ({ purpose, state }));

const deadlock = () => Object.assign(new Error('deadlock detected'), { code: '40P01' });
const LEDGER_INSERT = /insert into "consent_ledger"/i;
const isConsentWrite = (statements: readonly string[]) => statements.some((text) => LEDGER_INSERT.test(text));
/** Fails the first `n` transactions that write consent entries, at their commit, as PostgreSQL ends a deadlock victim. */
const failingCommits = (n: number) => {
  const hooks = {
    failed: 0,
    commit(statements: readonly string[]) {
      if (isConsentWrite(statements) && hooks.failed < n) {
        hooks.failed++;
        throw deadlock();
      }
    },
  };
  return hooks;
};

// PostgreSQL may end a consent change's transaction as a deadlock victim (or as unserializable): it wrote nothing, and
// the change is written again instead of being answered 500 and lost; its audit entry and receipt are written once.
// Several servers (processes) on one PostgreSQL database that change the same person's consent at once run their
// changes one after the other: before, their transactions could lock the person's rows (or insert their first rows)
// in different orders, and PostgreSQL ended one as a deadlock victim, or a change read before another's commit
// overwrote it with an older entry. SQLite serves a data directory from one server only (a second `candor serve`
// refuses to start) and runs one write transaction at a time.
describeEachDialect('concurrent consent changes', (dialect) => {
  const ctx = useKernel(dialect);
  const others: Kernel[] = [];
  const postgres = dialect === 'postgres';

  before(async () => {
    if (!postgres) return;
    // A table of many people, as the planner knows it: a person's rows are found through the index and then read in the
    // order they lie in the table (a bitmap scan), not in the index's, as on a production database.
    await ctx.kernel.storage.raw.run(
      `INSERT INTO consent_current (subject, purpose, entry_id, state, basis, notice_version, mechanism, jurisdiction, gpc, gpc_override, at)
       SELECT 'filler-' || g, p, 'ce_filler', 'given', 'consent', 1, 'banner_save', NULL, 0, 0, '2020-01-01T00:00:00.000Z'
       FROM generate_series(1, 500) AS g, unnest($1::text[]) AS p`,
      [PURPOSES],
    );
    await ctx.kernel.storage.raw.run('ANALYZE consent_current');
    for (let i = 0; i < 2; i++) others.push(await openKernel(ctx.env.config));
  });
  after(async () => {
    for (const kernel of others) await kernel.close();
  });

  it('a change whose transaction is ended as a deadlock victim is written again, once, with its receipt and audit entry', async () => {
    const consent = ctx.kernel.consent;
    const subjectId = `dv-${randomUUID()}`;
    await consent.record(subjectId, all(PURPOSES, 'given'), banner, actor);
    // The first two attempts fail at their commit, after everything (opt-outs put in force ahead, the audit lock) was done.
    const hooks = failingCommits(2);
    const result = await intercepted(ctx.kernel, hooks, () => consent.record(subjectId, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, actor));
    assert.equal(hooks.failed, 2);
    assert.deepEqual(result.entries.map((e) => [e.purpose, e.state]), [['analytics.reporting', 'withdrawn']]);
    assert.equal((await consent.history(subjectId)).filter((e) => e.state === 'withdrawn').length, 1);
    assert.equal((await consent.receipt(result.receiptId, [subjectId])).receipt, result.receipt);
    const audited = await ctx.kernel.audit.list({ action: 'consent.record', subject: consent.pseudonym(subjectId), limit: 10 });
    assert.equal(audited.filter((e) => e.resource === `consent_receipt:${result.receiptId}`).length, 1);
    await consent.load([subjectId]);
    assert.equal(consent.decide(subjectId, 'analytics.reporting').reason, 'withdrawn');
    assert.equal(consent.decide(subjectId, 'personalize.profiling').reason, 'given');
  });

  it('a withdrawal of everything ended as a deadlock victim is written again and answers the receipt it committed', async () => {
    const consent = ctx.kernel.consent;
    const subjectId = `dv-${randomUUID()}`;
    await consent.record(subjectId, all(PURPOSES, 'given'), banner, actor);
    const hooks = failingCommits(1);
    const result = await intercepted(ctx.kernel, hooks, () => consent.withdrawAll(subjectId, banner, actor));
    assert.equal(hooks.failed, 1);
    assert.equal((await consent.receipt(result.receiptId, [subjectId])).receipt, result.receipt);
    const state = await consent.state(subjectId);
    for (const purpose of PURPOSES) assert.equal(state[purpose]?.state, 'withdrawn', purpose);
  });

  it('a change is given up after four deadlocks, and one failing for another reason is not run again', async () => {
    const consent = ctx.kernel.consent;
    const subjectId = `dv-${randomUUID()}`;
    const hooks = failingCommits(Infinity);
    await assert.rejects(intercepted(ctx.kernel, hooks, () => consent.record(subjectId, all(PURPOSES, 'given'), banner, actor)), (e: { code?: string }) => e.code === '40P01');
    assert.equal(hooks.failed, 4);
    assert.deepEqual(await consent.history(subjectId), []);
    await consent.load([subjectId]);
    assert.equal(consent.decide(subjectId, 'analytics.reporting').reason, 'no_record');
    // Nothing to lift: the change fails inside its transaction, which is not run again.
    const transactions: string[][] = [];
    await assert.rejects(intercepted(ctx.kernel, { transactions }, () => consent.liftRestriction([subjectId], {}, actor)), (e) => isCandorError(e, 'CONSENT_RESTRICTION_NOT_FOUND'));
    assert.equal(transactions.filter((statements) => statements.some((text) => /consent_restrictions/i.test(text))).length, 1);
  });

  /** consent_current agrees with the ledger: per purpose, the entry stamped last (the one committed last). */
  const assertCurrentIsLatest = async (subjectId: string) => {
    const consent = ctx.kernel.consent;
    const history = await consent.history(subjectId);
    const rows = await ctx.kernel.storage.raw.all<{ purpose: string; entry_id: string; at: string }>('SELECT purpose, entry_id, at FROM consent_current WHERE subject = $1', [consent.pseudonym(subjectId)]);
    assert.deepEqual(rows.map((r) => r.purpose).sort(), [...PURPOSES].sort());
    for (const row of rows) {
      const entries = history.filter((e) => e.purpose === row.purpose);
      const newest = entries.reduce((a, b) => (b.at > a.at ? b : a));
      // Two servers may stamp entries in the same millisecond: the current row is one of the newest.
      assert.ok(entries.some((e) => e.id === row.entry_id && e.at === newest.at), `${row.purpose}: current row ${row.at}, newest ledger entry ${newest.at}`);
    }
  };

  it('changes from two servers whose row locks would wait for each other in a cycle run one after the other', { skip: !postgres }, async () => {
    const [b, c] = others as [Kernel, Kernel];
    const subjectId = `cc-${randomUUID()}`;
    // The person's rows, stored in PURPOSES order.
    await ctx.kernel.consent.record(subjectId, all(PURPOSES, 'given'), banner, actor);
    const pseudonym = ctx.kernel.consent.pseudonym(subjectId);
    // Two sessions of another process: `holder` keeps one row from being locked for update (a key-share lock, which
    // an update of other columns keeps on the row's next version); `mover` updates every row, in reversed order, so
    // that their latest versions lie in that order while the previous ones still lie in PURPOSES order.
    const holder = new pg.Client({ connectionString: ctx.env.databaseUrl });
    const mover = new pg.Client({ connectionString: ctx.env.databaseUrl });
    await holder.connect();
    await mover.connect();
    const errors: unknown[] = [];
    try {
      const held = PURPOSES[4] as string;
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM consent_current WHERE subject = $1 AND purpose = $2 FOR KEY SHARE', [pseudonym, held]);
      await mover.query('BEGIN');
      for (const purpose of REVERSED) await mover.query('UPDATE consent_current SET at = $3 WHERE subject = $1 AND purpose = $2', [pseudonym, purpose, new Date().toISOString()]);
      // Consent writers waiting for a lock (of a row, or of the person), read outside a transaction (which would keep
      // reading the activity it read first).
      const waiting = async (onHolder = false) =>
        Number(
          (
            await ctx.kernel.storage.raw.all<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND (query LIKE '%consent_current%' OR query LIKE '%pg_advisory_xact_lock%') AND ($1::int = 0 OR $1::int = ANY(pg_blocking_pids(pid)))`,
              [onHolder ? holderPid : 0],
            )
          )[0]?.n,
        );
      const until = async (condition: () => Promise<boolean>) => {
        for (let i = 0; i < 2000 && !(await condition()); i++) await delay(5);
      };
      await intercepted(b, { errors }, () =>
        intercepted(c, { errors }, async () => {
          // B reads the rows as they were before the mover's commit, and waits for it.
          const first = b.consent.record(subjectId, all(PURPOSES, 'withdrawn'), banner, actor);
          await until(async () => (await waiting()) === 1);
          await mover.query('COMMIT');
          // Then B goes on along the rows' latest versions, in their previous order, up to the held row.
          await until(async () => (await waiting(true)) === 1);
          // C reads the latest versions, in the order they lie, up to the held row.
          const second = c.consent.record(subjectId, all(REVERSED, 'given'), banner, actor);
          await until(async () => (await waiting()) === 2);
          await holder.query('COMMIT');
          await Promise.all([first, second]);
        }),
      );
    } finally {
      await holder.end();
      await mover.end();
    }
    assert.deepEqual(errors.map((e) => (e as { code?: string }).code), []);
    await assertCurrentIsLatest(subjectId);
  });

  it("a person's first consent on one server, withdrawn on another meanwhile: the withdrawal is current", { skip: !postgres }, async () => {
    const [a, b] = [ctx.kernel, others[0] as Kernel];
    const subjectId = `cc-${randomUUID()}`;
    // Server A has read the person's (absent) rows and stamped its entries; it is held before writing them until
    // server B's withdrawal has committed or waits for A.
    let reached!: () => void;
    const atLedger = new Promise<void>((resolve) => (reached = resolve));
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    const hooks: TransactionHooks = {
      async statement(text) {
        if (!LEDGER_INSERT.test(text)) return;
        reached();
        await resumed;
      },
    };
    await intercepted(a, hooks, async () => {
      const given = a.consent.record(subjectId, all(PURPOSES, 'given'), banner, actor);
      await atLedger;
      await delay(5); // B's entries are stamped in a later millisecond than A's
      let settled = false;
      const withdrawn = b.consent.record(subjectId, all(REVERSED, 'withdrawn'), banner, actor).finally(() => (settled = true));
      const waiting = async () => (await a.storage.raw.all<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))[0]?.n ?? 0;
      for (let i = 0; i < 2000 && !settled && (await waiting()) === 0; i++) await delay(5);
      resume();
      await Promise.all([given, withdrawn]);
    });
    await assertCurrentIsLatest(subjectId);
    const state = await b.consent.state(subjectId);
    for (const purpose of PURPOSES) assert.equal(state[purpose]?.state, 'withdrawn', purpose);
  });

  it('changes from three servers at once for the same people are all recorded, and the newest entry is current', { skip: !postgres }, async () => {
    const ROUNDS = 20;
    const CHANGES = 3;
    const servers = [ctx.kernel, ...others];
    const failures: string[] = [];
    let recorded = 0;
    const send = async (kernel: Kernel, subjectId: string, changes: ReturnType<typeof all>) => {
      try {
        const { entries } = await kernel.consent.record(subjectId, changes, banner, actor);
        recorded += entries.length;
      } catch (error) {
        failures.push(`${(error as { code?: string }).code ?? ''} ${(error as Error).message}`);
      }
    };
    for (let round = 0; round < ROUNDS; round++) {
      const subjectId = `cc-${randomUUID()}`;
      // A person's first consent from two servers at once, then changes from three servers at once over rows the
      // previous writer moved, each server sending its own one after the other, in alternating purpose orders.
      await Promise.all([send(servers[0] as Kernel, subjectId, all(PURPOSES, 'given')), send(servers[1] as Kernel, subjectId, all(REVERSED, 'withdrawn'))]);
      await Promise.all(
        servers.map(async (kernel, i) => {
          for (let k = 0; k < CHANGES; k++) await send(kernel, subjectId, all((i + k) % 2 === 0 ? PURPOSES : REVERSED, (i + k) % 2 === 0 ? 'withdrawn' : 'given'));
        }),
      );
      await assertCurrentIsLatest(subjectId);
    }
    assert.deepEqual(failures, []);
    assert.equal(recorded, ROUNDS * (2 + servers.length * CHANGES) * PURPOSES.length);
  });
});
