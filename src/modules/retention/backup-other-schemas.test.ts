import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { sql } from 'kysely';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { withStorage } from '../../../test/support/with-storage.ts';
import { MIGRATIONS } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { migrateToLatest } from '../../storage/index.ts';
import { backupDatabase, restoreDatabase } from './index.ts';

const onlyPostgres = (dialect: string) => dialect !== 'postgres' && 'objects in other schemas: a PostgreSQL matter';

describeEachDialect('restore with objects in other schemas that depend on Candor’s', (dialect) => {
  let env: TestEnvironment;
  let file = '';

  before(async () => {
    env = await createEnvironment(dialect);
    file = env.beside('before-reporting.backup');
    await withStorage(env, async (storage) => {
      await migrateToLatest(storage, MIGRATIONS);
      await sql`INSERT INTO collect_refusals (day, source, event, purpose, count) VALUES ('2026-01-01', 'web', 'page', 'analytics', 3)`.execute(storage.db);
    });
    await backupDatabase(env.config, file, CLI_ACTOR);
    // Written after the backup: a restore that went through would take it away.
    await withStorage(env, (storage) => sql`INSERT INTO collect_refusals (day, source, event, purpose, count) VALUES ('2026-01-02', 'web', 'page', 'analytics', 5)`.execute(storage.db));
  });
  after(async () => {
    await env?.cleanup();
  });

  /** The live database as a refused restore must leave it: the reporting schema's objects and Candor's rows. */
  async function liveState(): Promise<unknown> {
    return withStorage(env, async (storage) => ({
      reporting: (await sql<{ name: string }>`SELECT c.relname || ' ' || c.relkind::text AS name FROM pg_class c WHERE c.relnamespace = 'reporting'::regnamespace ORDER BY 1`.execute(storage.db)).rows,
      constraints: (await sql`SELECT conname FROM pg_constraint WHERE connamespace = 'reporting'::regnamespace ORDER BY 1`.execute(storage.db)).rows,
      triggers: (await sql`SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'reporting'::regnamespace ORDER BY 1`.execute(storage.db)).rows,
      refusals: (await sql`SELECT day, count FROM collect_refusals ORDER BY day`.execute(storage.db)).rows,
      head: (await sql`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`.execute(storage.db)).rows,
    }));
  }

  const refusal = async () => {
    try {
      await restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS);
    } catch (error) {
      return error;
    }
    assert.fail('the restore went through');
  };

  it('refuses with BACKUP_FAILED naming a view in another schema over a Candor table, changing nothing', { timeout: 120_000, skip: onlyPostgres(dialect) }, async () => {
    await withStorage(env, (storage) =>
      sql`CREATE SCHEMA reporting; CREATE VIEW reporting.daily_refusals AS SELECT day, sum(count) AS n FROM public.collect_refusals GROUP BY day; CREATE TABLE reporting.notes (id int)`.execute(storage.db),
    );
    const before = await liveState();
    const error = await refusal();
    assert.ok(isCandorError(error, 'BACKUP_FAILED'), String(error));
    assert.equal(error.details?.tool, 'psql');
    assert.deepEqual(error.details?.dependents, ['reporting.daily_refusals (view)']);
    assert.match(String(error.details?.reason), /drop or move them/);
    assert.deepEqual(await liveState(), before);
    const rows = await withStorage(env, async (storage) => (await sql<{ day: string }>`SELECT day FROM reporting.daily_refusals ORDER BY day`.execute(storage.db)).rows);
    assert.deepEqual(rows.map((r) => r.day), ['2026-01-01', '2026-01-02']);
  });

  it('names every dependent object: a foreign key and a trigger on a table of another schema too', { timeout: 120_000, skip: onlyPostgres(dialect) }, async () => {
    await withStorage(env, (storage) =>
      sql`CREATE TABLE reporting.flags (day text, source text, event text, purpose text,
            CONSTRAINT flags_refusal_fk FOREIGN KEY (day, source, event, purpose) REFERENCES public.collect_refusals (day, source, event, purpose));
          CREATE TRIGGER flags_notice AFTER INSERT ON reporting.flags FOR EACH STATEMENT EXECUTE FUNCTION public.candor_commit_notice()`.execute(storage.db),
    );
    const before = await liveState();
    const error = await refusal();
    assert.ok(isCandorError(error, 'BACKUP_FAILED'), String(error));
    assert.deepEqual(error.details?.dependents, ['flags_notice on reporting.flags (trigger)', 'flags_refusal_fk on reporting.flags (table constraint)', 'reporting.daily_refusals (view)']);
    assert.deepEqual(await liveState(), before);
  });

  it('restores as before once they are gone, leaving the other schema’s own objects alone', { timeout: 120_000, skip: onlyPostgres(dialect) }, async () => {
    await withStorage(env, (storage) =>
      sql`DROP VIEW reporting.daily_refusals; DROP TABLE reporting.flags; CREATE VIEW reporting.note_ids AS SELECT id FROM reporting.notes; INSERT INTO reporting.notes VALUES (7)`.execute(storage.db),
    );
    await restoreDatabase(env.config, file, CLI_ACTOR, MIGRATIONS);
    await withStorage(env, async (storage) => {
      assert.deepEqual((await sql`SELECT day, count FROM collect_refusals ORDER BY day`.execute(storage.db)).rows, [{ day: '2026-01-01', count: 3 }]);
      assert.deepEqual((await sql`SELECT id FROM reporting.note_ids`.execute(storage.db)).rows, [{ id: 7 }]);
    });
  });
});
