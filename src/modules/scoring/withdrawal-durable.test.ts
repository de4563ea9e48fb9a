import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { useCli } from '../../../test/support/cli.ts';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { buyerWithAnOrder } from '../../../test/support/subjects.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { backupDatabase } from '../retention/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { openStorage } from '../../storage/index.ts';

const META = { mechanism: 'privacy_center' as const };

/** Stored score rows of a profile, read with plain SQL (whatever the purpose-bound reads answer). */
async function storedRows(kernel: Kernel, profileId: string): Promise<number> {
  const placeholder = kernel.storage.dialect === 'postgres' ? '$1' : '?';
  const [row] = await kernel.storage.raw.all<{ n: number | string }>(`select count(*) as n from scoring_scores where profile_id = ${placeholder}`, [profileId]);
  return Number(row?.n ?? 0);
}

/** Rows of scoring_owed (clean-ups owed), by kind. */
async function owedRows(kernel: Kernel): Promise<Record<string, number>> {
  const rows = await kernel.storage.raw.all<{ kind: string; n: number | string }>('select kind, count(*) as n from scoring_owed group by kind');
  return Object.fromEntries(rows.map((r) => [r.kind, Number(r.n)]));
}

/** Makes the kernel's forget of people whose basis went fail, as if the process had stopped before it ran. */
function forgetNeverRuns(kernel: Kernel): () => void {
  const scoring = kernel.scoring as unknown as { forgetUnlawful: (...args: unknown[]) => Promise<number> };
  scoring.forgetUnlawful = () => Promise.reject(new Error('the process stopped before the forget ran'));
  return () => {
    delete (scoring as Partial<typeof scoring>).forgetUnlawful;
  };
}

describeEachDialect('scoring: an acknowledged withdrawal removes the person’s scores durably', (dialect) => {
  let env: TestEnvironment;
  before(async () => {
    env = await createEnvironment(dialect);
  });
  after(async () => {
    await env?.cleanup();
  });

  it('leaves no score after a restart when the forget after the withdrawal never ran', async () => {
    let profileId = '';
    let kernel = await openKernel(env.config);
    try {
      ({ profileId } = await buyerWithAnOrder(kernel));
      await kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
      assert.equal(await storedRows(kernel, profileId), 1);
      forgetNeverRuns(kernel);
      await kernel.consent.record(profileId, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], META, CLI_ACTOR);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(await storedRows(kernel, profileId), 1, 'the crash simulated: the row is still stored');
    } finally {
      await kernel.close();
    }

    kernel = await openKernel(env.config);
    try {
      assert.equal(await storedRows(kernel, profileId), 0, 'the start reconciled what the withdrawal left owed');
      await kernel.consent.load([profileId]);
      assert.equal(kernel.consent.decide(profileId, 'personalize.profiling').reason, 'withdrawn');
    } finally {
      await kernel.close();
    }
  });

  it('counts no stored score in the overview or a fairness audit once the person’s consent no longer allows it', async () => {
    const kernel = await openKernel(env.config);
    try {
      await kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
      const count = async () => Object.values((await kernel.scoring.overview()).segments).reduce((a, b) => a + b, 0);
      const scored = (await kernel.scoring.memberships()).size;
      assert.equal(await count(), scored);
      const { profileId } = await buyerWithAnOrder(kernel);
      await kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
      assert.equal(await count(), scored + 1);
      const audited = (await kernel.scoring.fairness('age_range', CLI_ACTOR)).people;
      assert.equal(audited, scored + 1);

      const restore = forgetNeverRuns(kernel);
      try {
        await kernel.consent.record(profileId, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], META, CLI_ACTOR);
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.equal(await storedRows(kernel, profileId), 1, 'still stored (its forget failed)');
        assert.equal(await count(), scored, 'the overview leaves it out');
        assert.equal((await kernel.scoring.fairness('age_range', CLI_ACTOR)).people, scored, 'so does the audit');
        assert.equal((await kernel.scoring.scoresOf(profileId)).profiled, false);
      } finally {
        restore();
      }
    } finally {
      await kernel.close();
    }
  });

  it('reconciles what is owed on a running kernel too, and forgets only people whose basis went', async () => {
    const kernel = await openKernel(env.config);
    try {
      const gone = await buyerWithAnOrder(kernel);
      const kept = await buyerWithAnOrder(kernel);
      await kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
      const restore = forgetNeverRuns(kernel);
      await kernel.consent.restrict([gone.profileId], {}, CLI_ACTOR);
      // A change that leaves profiling allowed is decided on as well: nothing of it is forgotten.
      await kernel.consent.record(kept.profileId, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], META, CLI_ACTOR);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(await storedRows(kernel, gone.profileId), 1);
      restore();
      assert.equal(await kernel.scoring.reconcile(), 1);
      assert.equal(await storedRows(kernel, gone.profileId), 0);
      assert.equal(await storedRows(kernel, kept.profileId), 1);
      assert.equal(await kernel.scoring.reconcile(), 0, 'nothing owed any more');
      assert.deepEqual(await owedRows(kernel), {});
    } finally {
      await kernel.close();
    }
  });

  it('leaves nothing owed after a run, and checks every row of a run whose own check after its save was cut off', async () => {
    const kernel = await openKernel(env.config);
    try {
      const { profileId } = await buyerWithAnOrder(kernel);
      const run = await kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
      assert.deepEqual(await owedRows(kernel), {}, 'the run checked its rows after its save and settled its record');
      // A withdrawal that committed while the save did, unseen by both (PostgreSQL), and the run stopped before its
      // check: only the run's record is left.
      const restore = forgetNeverRuns(kernel);
      await kernel.consent.record(profileId, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], META, CLI_ACTOR);
      await new Promise((resolve) => setTimeout(resolve, 100));
      restore();
      await kernel.storage.raw.run('delete from scoring_owed');
      const saved = new Date(Date.now() - 60_000).toISOString();
      await kernel.storage.raw.run(`insert into scoring_owed (kind, subject, token, at) values ('run', ${kernel.storage.dialect === 'postgres' ? '$1, $1, $2' : '?1, ?1, ?2'})`, [run.runId, saved]);
      assert.equal(await kernel.scoring.reconcile(), 0, 'left to the run itself for a while');
      assert.equal(await storedRows(kernel, profileId), 1);
      assert.equal(await kernel.scoring.reconcile(undefined, new Date(Date.now() + 3_600_000)), 1);
      assert.equal(await storedRows(kernel, profileId), 0);
      assert.deepEqual(await owedRows(kernel), {});
    } finally {
      await kernel.close();
    }
  });
});

describeEachDialect('scoring: a restore that writes a withdrawal again', (dialect) => {
  const cli = useCli(dialect);

  it('leaves no score of the person once the restore command has ended, nor after a start', { timeout: 60_000 }, async () => {
    const backupFile = cli.env.beside('scores.backup');
    let profileId = '';
    let kernel = await openKernel(cli.env.config);
    try {
      ({ profileId } = await buyerWithAnOrder(kernel));
      await kernel.scoring.run(CLI_ACTOR, { models: ['rfm'] });
      assert.equal(await storedRows(kernel, profileId), 1);
      await backupDatabase(cli.env.config, backupFile, CLI_ACTOR);
      await kernel.consent.record(profileId, [{ purpose: 'personalize.profiling', state: 'withdrawn' }], META, CLI_ACTOR);
      for (let i = 0; i < 250 && (await storedRows(kernel, profileId)) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await storedRows(kernel, profileId), 0);
    } finally {
      await kernel.close();
    }

    const { code, out, err } = await cli.candor('restore', backupFile);
    assert.equal(code, 0, `${out}\n${err}`);
    assert.match(out, /refusals and withdrawals written again \(in force in the replaced database, not in the backup\): 1\n/);

    // Read before any kernel opens again (a start reconciles too): what the restore command itself left.
    const storage = await openStorage({ dataDir: cli.env.dataDir, databaseUrl: cli.env.databaseUrl, sqliteSynchronous: 'FULL', sqliteWriterThread: 'off' });
    try {
      const [row] = await storage.raw.all<{ n: number | string }>(`select count(*) as n from scoring_scores where profile_id = ${storage.dialect === 'postgres' ? '$1' : '?'}`, [profileId]);
      assert.equal(Number(row?.n), 0, 'the restore command ended with the score forgotten');
    } finally {
      await storage.close();
    }
    kernel = await openKernel(cli.env.config);
    try {
      assert.equal(await storedRows(kernel, profileId), 0);
      await kernel.consent.load([profileId]);
      assert.equal(kernel.consent.decide(profileId, 'personalize.profiling').reason, 'withdrawn');
    } finally {
      await kernel.close();
    }
  });
});
